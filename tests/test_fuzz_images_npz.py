"""Fuzzing the loaders: mutated PNG, JPEG and TIFF images and mutated projection ``.npz`` files
(truncations, bit flips, random headers, random bytes; fixed seed). Each file either loads as a
valid result or is refused with the package's own error type naming the file; no file takes long,
and no payload hidden in a pickle ever runs."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from hrinv_nb.errors import HrinvError
from hrinv_nb.images import load_image
from hrinv_nb.projector import load_projection, save_projection

SEED = 20240601
# Generous bound against hangs on a loaded 2-core machine; a decode of these files takes milliseconds.
SECONDS_PER_FILE = 5.0
SIZE = 40


class _MarkerWriter:
    """A pickle payload that creates ``marker`` when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _image_seeds() -> dict[str, bytes]:
    rng = np.random.RandomState(SEED)
    rgb = rng.randint(0, 256, (48, 48, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, rng.randint(0, 256, (48, 48, 1), dtype=np.uint8)], axis=2)
    seeds = {}
    for name, image, fmt, kwargs in [
        ("rgb.png", Image.fromarray(rgb), "PNG", {}),
        ("rgba.png", Image.fromarray(rgba), "PNG", {}),
        ("photo.jpg", Image.fromarray(rgb), "JPEG", {"exif": _exif(6)}),
        ("rgb.tif", Image.fromarray(rgb), "TIFF", {}),
        ("float.tif", Image.fromarray(rng.rand(48, 48).astype(np.float32), mode="F"), "TIFF", {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **kwargs)
        seeds[name] = buffer.getvalue()
    return seeds


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _npz_seeds(tmp_path, marker) -> dict[str, bytes]:
    gen = torch.Generator().manual_seed(SEED)
    noise = {
        "b4.conv1.noise_const": torch.randn(4, 4, generator=gen),
        "b8.conv0.noise_const": torch.randn(8, 8, generator=gen),
    }
    seeds = {
        "proj.npz": save_projection(
            tmp_path / "seed_proj.npz", torch.randn(1, 6, 16, generator=gen), noise
        ).read_bytes()
    }
    for name, noise_bufs in [
        ("authors.npz", {"b4": np.ones((4, 4))}),
        ("hostile.npz", {"b4": _MarkerWriter(str(marker))}),
    ]:
        buffer = io.BytesIO()
        np.savez(buffer, w=np.zeros((1, 6, 16), np.float32), noise_bufs=noise_bufs)
        seeds[name] = buffer.getvalue()
    return seeds


def _mutations(data: bytes, rng: np.random.RandomState, count: int) -> list[tuple[str, bytes]]:
    """``count`` mutated copies of ``data``: truncations, bit flips, random headers, random bytes."""
    out = []
    for i in range(count):
        kind = ("truncate", "flip", "header", "random", "splice")[i % 5]
        buf = bytearray(data)
        if kind == "truncate":
            buf = buf[: rng.randint(0, len(buf))]
        elif kind == "flip":
            for pos in rng.randint(0, len(buf), size=rng.randint(1, 9)):
                buf[pos] ^= 1 << rng.randint(0, 8)
        elif kind == "header":
            n = rng.randint(1, 65)
            buf[:n] = rng.randint(0, 256, n, dtype=np.uint8).tobytes()
        elif kind == "random":
            buf = bytearray(rng.randint(0, 256, rng.randint(1, 2 * len(data)), dtype=np.uint8).tobytes())
        else:  # overwrite a random window inside the file (dimension fields, chunk lengths, zip sizes)
            start = rng.randint(0, len(buf))
            n = rng.randint(1, 17)
            buf[start : start + n] = rng.randint(0, 256, n, dtype=np.uint8).tobytes()
        out.append((f"{kind}{i}", bytes(buf)))
    return out


def _check_refusal(err: Exception, path) -> None:
    assert isinstance(err, HrinvError), f"{path.name}: {type(err).__name__}: {err}"
    assert path.name in str(err), str(err)
    assert "allow_pickle" not in str(err)


def test_mutated_images_load_or_are_refused_cleanly(tmp_path):
    rng = np.random.RandomState(SEED)
    loaded = refused = 0
    for seed_name, data in _image_seeds().items():
        stem, ext = seed_name.rsplit(".", 1)
        for tag, mutated in _mutations(data, rng, 50):
            path = tmp_path / f"{stem}_{tag}.{ext}"
            path.write_bytes(mutated)
            start = time.perf_counter()
            try:
                img = load_image(path, SIZE)
            except Exception as err:
                _check_refusal(err, path)
                refused += 1
            else:
                assert img.shape == (1, 3, SIZE, SIZE) and img.dtype == torch.float32, path.name
                assert torch.isfinite(img).all() and img.min() >= -1 and img.max() <= 1, path.name
                loaded += 1
            assert time.perf_counter() - start < SECONDS_PER_FILE, path.name
            path.unlink()
    assert loaded > 0 and refused > 0  # the mutations exercise both outcomes


def test_mutated_projection_files_load_or_are_refused_cleanly(tmp_path):
    rng = np.random.RandomState(SEED + 1)
    marker = tmp_path / "marker"
    loaded = refused = 0
    for seed_name, data in _npz_seeds(tmp_path, marker).items():
        stem = seed_name[:-4]
        for tag, mutated in _mutations(data, rng, 70):
            path = tmp_path / f"{stem}_{tag}.npz"
            path.write_bytes(mutated)
            start = time.perf_counter()
            try:
                w, noise = load_projection(path)
            except Exception as err:
                _check_refusal(err, path)
                refused += 1
            else:
                assert w.dtype == torch.float32 and w.ndim == 3 and w.shape[0] == 1, path.name
                assert torch.isfinite(w).all(), path.name
                assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in noise.values()), path.name
                loaded += 1
            assert time.perf_counter() - start < SECONDS_PER_FILE, path.name
            path.unlink()
    assert not marker.exists()
    assert loaded > 0 and refused > 0


@pytest.mark.parametrize("seed_name", ["hostile.npz"])
def test_the_unmutated_hostile_seed_is_refused(tmp_path, seed_name):
    marker = tmp_path / "marker"
    path = tmp_path / seed_name
    path.write_bytes(_npz_seeds(tmp_path, marker)[seed_name])
    with pytest.raises(HrinvError, match=seed_name):
        load_projection(path)
    assert not marker.exists()
