"""Image and projection-file loading on hostile or unusual files: EXIF orientation, float
images, transparency, size limits, decompression bombs, pickles, read-only outputs, and errors
that name the file and the reason as the package's own error types."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hrinv_nb.errors import FileFormatError, HrinvError
from hrinv_nb.images import ImageLoadError, load_image, save_image
from hrinv_nb.projector import load_projection, save_projection

# ---------------------------------------------------------------------------------------------
# EXIF orientation


def _corner_means(img: torch.Tensor, k: int = 10) -> dict[str, float]:
    red = img[0, 0]
    return {
        "top_left": red[:k, :k].mean().item(),
        "top_right": red[:k, -k:].mean().item(),
        "bottom_left": red[-k:, :k].mean().item(),
        "bottom_right": red[-k:, -k:].mean().item(),
    }


@pytest.mark.parametrize(
    "orientation,shape,corner",
    [
        (1, (80, 120), "top_left"),
        (3, (80, 120), "bottom_right"),
        (6, (120, 80), "top_right"),
        (8, (120, 80), "bottom_left"),
    ],
)
def test_exif_orientation_is_applied(tmp_path, orientation, shape, corner):
    # Stored 120 wide x 80 tall with a red patch in the stored top-left corner. Orientation 3 shows
    # it upside down, 6 rotated 90° clockwise (patch top right), 8 counter-clockwise (bottom left).
    array = np.zeros((80, 120, 3), dtype=np.uint8)
    array[:20, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"orient{orientation}.jpg"
    Image.fromarray(array).save(path, quality=95, exif=exif)
    img = load_image(path, crop=False)
    assert tuple(img.shape[2:]) == shape
    means = _corner_means(img)
    assert max(means, key=means.get) == corner
    assert means[corner] > 0.8 and all(v < -0.8 for name, v in means.items() if name != corner)


# ---------------------------------------------------------------------------------------------
# Float images


def _float_tiff(tmp_path, values: np.ndarray, name: str = "float.tif"):
    path = tmp_path / name
    Image.fromarray(values.astype(np.float32), mode="F").save(path)
    assert Image.open(path).mode == "F"
    return path


def test_float_image_in_unit_range_with_slight_overshoot_is_not_black(tmp_path):
    values = np.full((40, 40), 0.5, dtype=np.float32)
    values[0, 0] = 1.01  # one pixel slightly above 1 must not switch the whole image to 8-bit scale
    img = load_image(_float_tiff(tmp_path, values))
    assert torch.allclose(img[0, :, 1:, 1:], torch.tensor(128 / 255 * 2 - 1), atol=1e-6)
    assert torch.all(img[0, :, 0, 0] == 1.0)  # the overshoot is clipped


def test_float_image_in_8bit_scale_keeps_its_levels(tmp_path):
    values = np.full((40, 40), 128.0, dtype=np.float32)
    values[:, :20] = 255.0
    img = load_image(_float_tiff(tmp_path, values))
    assert torch.all(img[:, :, :, :20] == 1.0)
    assert torch.allclose(img[:, :, :, 20:], torch.tensor(128 / 255 * 2 - 1), atol=1e-6)


def test_float_image_with_a_nan_pixel_is_refused(tmp_path):
    values = np.full((40, 40), 0.5, dtype=np.float32)
    values[3, 4] = np.nan
    with pytest.raises(ImageLoadError, match=r"nan_pixel\.tif.*NaN"):
        load_image(_float_tiff(tmp_path, values, "nan_pixel.tif"))


@pytest.mark.parametrize("low,high", [(0.0, 1000.0), (-0.5, 0.5), (0.0, 1.5)])
def test_float_image_outside_the_declared_ranges_is_refused(tmp_path, low, high):
    values = np.linspace(low, high, 1600, dtype=np.float32).reshape(40, 40)
    with pytest.raises(ImageLoadError, match=r"range_case\.tif.*float pixel values span"):
        load_image(_float_tiff(tmp_path, values, "range_case.tif"))


# ---------------------------------------------------------------------------------------------
# Transparency


def _red_half_transparent_rgba() -> np.ndarray:
    array = np.zeros((40, 40, 4), dtype=np.uint8)
    array[..., 0] = 200
    array[:, :20, 3] = 255  # left half opaque red, right half transparent red
    return array


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_are_composited_on_the_background(tmp_path, mode):
    if mode == "P":
        # a palette image whose index 0 is transparent (PNG tRNS); both indices are the same red
        pixels = np.zeros((40, 40), dtype=np.uint8)
        pixels[:, :20] = 1
        image = Image.fromarray(pixels, mode="P")
        image.putpalette([200, 0, 0, 200, 0, 0] + [0] * 762)
        save_kwargs = {"transparency": 0}
    else:
        image = Image.fromarray(_red_half_transparent_rgba()).convert(mode)
        save_kwargs = {}
    path = tmp_path / f"alpha_{mode}.png"
    image.save(path, **save_kwargs)
    opaque = np.asarray(Image.open(path).convert("RGBA"))[5, 5, :3]
    expected_left = torch.tensor(opaque / 255.0 * 2 - 1, dtype=torch.float32)
    white = load_image(path)
    black = load_image(path, background="black")
    assert torch.all(white[0, :, :, 20:] == 1.0)
    assert torch.all(black[0, :, :, 20:] == -1.0)
    for img in (white, black):
        torch.testing.assert_close(img[0, :, 5, 5], expected_left)


def test_partial_alpha_blends_with_the_background(tmp_path):
    array = np.zeros((40, 40, 4), dtype=np.uint8)
    array[..., 0], array[..., 3] = 200, 128
    path = tmp_path / "half.png"
    Image.fromarray(array).save(path)
    img = load_image(path)
    a = 128 / 255
    expected = torch.tensor([200 * a + 255 * (1 - a), 255 * (1 - a), 255 * (1 - a)]) / 255 * 2 - 1
    torch.testing.assert_close(img[0, :, 0, 0], expected, atol=2 / 255, rtol=0)


def test_unknown_background_is_refused(tmp_path):
    path = tmp_path / "bg.png"
    Image.fromarray(_red_half_transparent_rgba()).save(path)
    with pytest.raises(HrinvError, match="background"):
        load_image(path, background="pink")


# ---------------------------------------------------------------------------------------------
# Size limits


@pytest.mark.parametrize("size", [256, (256, 256), None])
def test_a_tiny_image_is_refused_before_resizing(tmp_path, size):
    path = tmp_path / "one_pixel.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    with pytest.raises(ImageLoadError, match=r"one_pixel\.png.*1x1.*short side"):
        load_image(path, size)


def test_a_thin_image_is_refused_when_size_is_given(tmp_path):
    path = tmp_path / "thin.png"
    Image.new("RGB", (400, 20)).save(path)
    with pytest.raises(ImageLoadError, match=r"thin\.png.*short side"):
        load_image(path, size=(64, 64))


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB with valid chunk CRCs but almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * min(width, 1000)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_decompression_bomb_png_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header(46000, 46000))  # ~100 bytes that would decode to 6.3 GB
    assert path.stat().st_size < 1000
    with pytest.raises(ImageLoadError, match=r"bomb\.png.*too large"):
        load_image(path, 256)


def test_the_pixel_cap_is_a_parameter_checked_before_decoding(tmp_path):
    path = tmp_path / "large.png"
    path.write_bytes(_png_with_header(5000, 5000))
    with pytest.raises(ImageLoadError, match=r"large\.png.*too large.*5000x5000.*limit of 1000000"):
        load_image(path, 256, max_pixels=1_000_000)
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 40)).save(small)
    with pytest.raises(ImageLoadError, match=r"small\.png.*limit"):
        load_image(small, max_pixels=1000)
    assert load_image(small, max_pixels=1600).shape == (1, 3, 40, 40)


# ---------------------------------------------------------------------------------------------
# Errors name the file and are the package's own types


def test_image_errors_are_the_package_error_types(tmp_path):
    assert issubclass(ImageLoadError, FileFormatError) and issubclass(ImageLoadError, ValueError)
    with pytest.raises(HrinvError, match="missing_image.png") as info:
        load_image(tmp_path / "missing_image.png")
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg"), ("TIFF", "tif")])
def test_truncated_images_raise_image_load_error_naming_the_file(tmp_path, fmt, ext):
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format=fmt)
    data = buffer.getvalue()
    for cut in (8, 30, len(data) // 2, len(data) - 30):  # PNG: the last 20 bytes are checksums and IEND
        path = tmp_path / f"cut_{cut}.{ext}"
        path.write_bytes(data[:cut])
        with pytest.raises(ImageLoadError, match=f"cut_{cut}"):
            load_image(path)


def test_formats_outside_the_raster_allowlist_are_refused(tmp_path):
    # EPS would be decoded by running Ghostscript; it is never opened.
    path = tmp_path / "figure.eps"
    Image.new("RGB", (40, 40)).save(path, format="EPS")
    with pytest.raises(ImageLoadError, match=r"figure\.eps.*not a recognised image file"):
        load_image(path)


# ---------------------------------------------------------------------------------------------
# Writing images: read-only files


def test_save_image_refuses_a_read_only_file(tmp_path):
    path = tmp_path / "keep.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    before = path.read_bytes()
    os.chmod(path, 0o444)
    try:
        with pytest.raises(HrinvError, match=r"keep\.png.*read-only"):
            save_image(torch.zeros(1, 3, 8, 8), path)
        assert path.read_bytes() == before
    finally:
        os.chmod(path, 0o644)
    save_image(torch.zeros(1, 3, 8, 8), path)  # writable again: replaced
    assert path.read_bytes() != before


def test_save_image_unknown_extension_is_a_package_error(tmp_path):
    with pytest.raises(HrinvError, match="extension"):
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "img.unknown")


# ---------------------------------------------------------------------------------------------
# Projection files


def _projection(tmp_path, name: str = "proj.npz"):
    noise = {"b4.conv1.noise_const": torch.randn(4, 4), "b8.conv0.noise_const": torch.randn(8, 8)}
    return save_projection(tmp_path / name, torch.randn(1, 6, 16), noise)


def _npz(path, **arrays) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


class _MarkerWriter:
    """A pickle payload that would create ``marker`` when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _zip_member(path, name: str, data: bytes, compress: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compress) as archive:
        archive.writestr(name, data)


def _npy_header(shape, descr: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _bad_projection(tmp_path, case: str):
    path = tmp_path / f"bad_{case}.npz"
    w = np.zeros((1, 6, 16), np.float32)
    if case == "text":
        path.write_text("not a zip archive")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(_projection(tmp_path).read_bytes()[:300])
    elif case == "no_w":
        _npz(path, x=w)
    elif case == "int_w":
        _npz(path, w=w.astype(np.int32))
    elif case == "w_4d":
        _npz(path, w=w[None])
    elif case == "w_batch":
        _npz(path, w=np.zeros((2, 6, 16), np.float32))
    elif case == "w_nan":
        w[0, 0, 0] = np.nan
        _npz(path, w=w)
    elif case == "w_object":
        _npz(path, w=np.array([w], dtype=object))
    elif case == "noise_int":
        _npz(path, w=w, **{"noise_bufs/b4": np.zeros((4, 4), np.int64)})
    elif case == "bad_magic":
        _zip_member(path, "w.npy", b"NOTNUMPY" + bytes(64))
    elif case == "short_data":
        _zip_member(path, "w.npy", _npy_header((1, 6, 16)) + bytes(10))
    elif case == "negative_shape":
        _zip_member(path, "w.npy", _npy_header((1, 6, 16)).replace(b"(1, 6, 16)", b"(1, -6, 1)"))
    else:
        raise AssertionError(case)
    return path


_BAD_CASES = [
    "text",
    "empty",
    "truncated",
    "no_w",
    "int_w",
    "w_4d",
    "w_batch",
    "w_nan",
    "w_object",
    "noise_int",
    "bad_magic",
    "short_data",
    "negative_shape",
]


@pytest.mark.parametrize("case", _BAD_CASES)
def test_bad_projection_files_raise_a_file_format_error_naming_the_file(tmp_path, case):
    path = _bad_projection(tmp_path, case)
    with pytest.raises(FileFormatError) as info:
        load_projection(path)
    message = str(info.value)
    assert path.name in message
    assert "allow_pickle" not in message


def test_projection_error_type(tmp_path):
    from hrinv_nb.projector import ProjectionFileError

    assert issubclass(ProjectionFileError, FileFormatError)
    with pytest.raises(ProjectionFileError, match="nowhere.npz") as info:
        load_projection(tmp_path / "nowhere.npz")
    assert isinstance(info.value, FileNotFoundError)


def test_a_hostile_pickle_never_runs_and_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "hostile.npz"
    _npz(path, w=np.zeros((1, 6, 16), np.float32), noise_bufs={"b4": _MarkerWriter(str(marker))})
    with pytest.raises(FileFormatError, match=r"hostile\.npz.*refused") as info:
        load_projection(path)
    assert "allow_pickle" not in str(info.value)
    assert not marker.exists()


def test_the_authors_pickled_noise_dict_loads_without_opt_in(tmp_path):
    path = tmp_path / "authors.npz"
    b8 = np.asfortranarray(np.arange(64, dtype=np.float64).reshape(8, 8))
    _npz(path, w=np.ones((1, 6, 16), np.float32), noise_bufs={"b4": np.ones((4, 4), ">f4"), "b8": b8})
    w, noise = load_projection(path)
    assert w.shape == (1, 6, 16) and torch.all(w == 1)
    assert torch.equal(noise["b4"], torch.ones(4, 4))
    assert torch.equal(noise["b8"], torch.arange(64.0).reshape(8, 8))


def test_an_npz_declaring_gigabytes_is_refused_before_reading(tmp_path):
    path = tmp_path / "npz_bomb.npz"
    _zip_member(path, "w.npy", _npy_header((700_000_000,)) + bytes(1000))  # 2.8 GB declared in 1 KB
    assert path.stat().st_size < 2000
    with pytest.raises(FileFormatError, match=r"npz_bomb\.npz.*2800000000 bytes.*limit"):
        load_projection(path)


def test_the_zip_directory_sizes_are_checked_against_max_bytes(tmp_path):
    path = tmp_path / "zipped.npz"
    payload = _npy_header((1, 1024, 512)) + bytes(4 * 1024 * 512)  # 2 MB uncompressed, ~2 KB deflated
    _zip_member(path, "w.npy", payload, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 20_000
    with pytest.raises(FileFormatError, match=r"zipped\.npz.*uncompressed.*limit of 1048576"):
        load_projection(path, max_bytes=1 << 20)
    w, _ = load_projection(path)
    assert w.shape == (1, 1024, 512)


def test_save_projection_refuses_a_read_only_file(tmp_path):
    path = _projection(tmp_path, "locked.npz")
    before = path.read_bytes()
    os.chmod(path, 0o444)
    try:
        with pytest.raises(HrinvError, match=r"locked\.npz.*read-only"):
            save_projection(path, torch.zeros(1, 6, 16))
        assert path.read_bytes() == before
    finally:
        os.chmod(path, 0o644)
