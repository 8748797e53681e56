"""Fuzzing the loaders: mutated PNG, JPEG and TIFF images and mutated projection ``.npz`` files
(truncations, bit flips, random headers, random bytes; fixed seed). Each file either loads as a
valid result or is refused with the package's own error type naming the file; no file takes long or
much memory (all files run in one child process under a memory cap, tests/probe_util.py), and no
payload hidden in a pickle ever runs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from probe_util import probe

from hrinv_nb.errors import HrinvError
from hrinv_nb.projector import load_projection, save_projection

SEED = 20240601
# Generous bound against hangs on a loaded 2-core machine; a decode of these files takes milliseconds.
SECONDS_PER_FILE = 5.0
# Peak RSS during one load minus RSS before it, in a child under a 1.5 GiB address-space cap
# (tests/probe_util.py). Measured on a shared 2-core machine: at most 12 MB over the 250 images (0.02 s
# the slowest) and 1.2 MB over the 210 .npz files (1 ms the slowest); a valid .npz holding a 512 MiB w,
# read with max_bytes raised, grows it by about 1 GB.
RSS_GROWTH_MB_PER_FILE = 256
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


def _probe_mutants(tmp_path, loader: str, mutants: list[tuple[str, bytes]], **kwargs) -> dict:
    """Write the mutants and run ``loader`` on all of them in one capped child (tests/probe_util.py);
    check what holds for every file, whatever it decoded to: loaded or refused with an HrinvError
    naming the file, in time, in bounded memory, never out of memory. Returns {file name: result}."""
    paths = []
    for name, data in mutants:
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    results = probe(paths, loader, timeout=120, **kwargs)
    problems = []
    for path in paths:
        r = results[str(path)]
        if r["error"] is not None and ("HrinvError" not in r["mro"] or path.name not in r["message"]):
            problems.append(f"{path.name}: {r['error']}: {r['message'][:300]}")
        if "allow_pickle" in r["message"]:
            problems.append(f"{path.name}: the message recommends allow_pickle: {r['message'][:300]}")
        if r["capped"]:  # a MemoryError, even one wrapped in the package's error: the cap was hit
            problems.append(f"{path.name}: ran out of memory under the cap: {r['chain']} {r['message'][:300]}")
        if r["seconds"] > SECONDS_PER_FILE:
            problems.append(f"{path.name}: {r['seconds']:.1f} s")
        if r["rss_growth_mb"] > RSS_GROWTH_MB_PER_FILE:
            problems.append(f"{path.name}: peak RSS +{r['rss_growth_mb']:.0f} MB")
    assert not problems, f"{len(problems)} problems in {len(paths)} files:\n" + "\n".join(problems[:20])
    return {path.name: results[str(path)] for path in paths}


def _finite_float32(t: dict) -> bool:
    return t["dtype"] == "float32" and t.get("finite", True)


def test_mutated_images_load_or_are_refused_cleanly(tmp_path):
    rng = np.random.RandomState(SEED)
    mutants = []
    for seed_name, data in _image_seeds().items():
        stem, ext = seed_name.rsplit(".", 1)
        mutants += [(f"{stem}_{tag}.{ext}", mutated) for tag, mutated in _mutations(data, rng, 50)]
    results = _probe_mutants(tmp_path, "hrinv_nb.images:load_image", mutants, args=(SIZE,))
    loaded = refused = 0
    for name, r in results.items():
        if r["error"] is not None:
            refused += 1
            continue
        img = r["result"]
        assert img["shape"] == [1, 3, SIZE, SIZE] and _finite_float32(img), (name, img)
        assert img["min"] >= -1 and img["max"] <= 1, (name, img)
        loaded += 1
    assert loaded > 0 and refused > 0  # the mutations exercise both outcomes


def test_mutated_projection_files_load_or_are_refused_cleanly(tmp_path):
    rng = np.random.RandomState(SEED + 1)
    marker = tmp_path / "marker"
    mutants = []
    for seed_name, data in _npz_seeds(tmp_path, marker).items():
        mutants += [(f"{seed_name[:-4]}_{tag}.npz", mutated) for tag, mutated in _mutations(data, rng, 70)]
    results = _probe_mutants(tmp_path, "hrinv_nb.projector:load_projection", mutants)
    assert not marker.exists()
    loaded = refused = 0
    for name, r in results.items():
        if r["error"] is not None:
            refused += 1
            continue
        w, noise = r["result"]
        assert w["shape"][0] == 1 and len(w["shape"]) == 3 and _finite_float32(w), (name, w)
        assert all(_finite_float32(v) for v in noise.values()), (name, noise)
        loaded += 1
    assert loaded > 0 and refused > 0


@pytest.mark.parametrize("seed_name", ["hostile.npz"])
def test_the_unmutated_hostile_seed_is_refused(tmp_path, seed_name):
    marker = tmp_path / "marker"
    path = tmp_path / seed_name
    path.write_bytes(_npz_seeds(tmp_path, marker)[seed_name])
    with pytest.raises(HrinvError, match=seed_name):
        load_projection(path)
    assert not marker.exists()
