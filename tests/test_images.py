"""Image loading and saving: preprocessing, modes, errors, round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hrinv_nb.images import ImageLoadError, center_crop_box, load_image, save_image, to_uint8


def _random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, size=(height, width, 3), dtype=np.uint8)


def _expected(array: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 255.0 - 0.5) * 2.0)[None]


def test_load_rgb_maps_uint8_to_minus_one_one(tmp_path):
    array = _random_rgb(40, 40)
    array[0, 0] = (0, 128, 255)
    path = tmp_path / "img.png"
    Image.fromarray(array).save(path)
    img = load_image(path)
    assert img.shape == (1, 3, 40, 40) and img.dtype == torch.float32
    torch.testing.assert_close(img, _expected(array))
    assert img[0, 0, 0, 0] == -1.0 and img[0, 2, 0, 0] == 1.0


def test_centre_crop_box_matches_the_square_formula():
    # box ((W-s)//2, (H-s)//2, (W+s)//2, (H+s)//2) with s = min(W, H)
    assert center_crop_box(101, 60) == (20, 0, 80, 60)
    assert center_crop_box(60, 101) == (0, 20, 60, 80)
    left, top, right, bottom = center_crop_box(1677, 6143, aspect=1677 / 6143)
    assert (right - left, bottom - top) == (1677, 6143)


def test_centre_crop_and_lanczos_resize_match_pil(tmp_path):
    array = _random_rgb(60, 101, seed=1)
    path = tmp_path / "wide.png"
    Image.fromarray(array).save(path)
    cropped = load_image(path)
    assert cropped.shape == (1, 3, 60, 60)
    torch.testing.assert_close(cropped, _expected(array[:, 20:80]))
    resized = load_image(path, 48)
    reference = np.asarray(Image.fromarray(array).crop((20, 0, 80, 60)).resize((48, 48), Image.LANCZOS))
    torch.testing.assert_close(resized, _expected(reference))


def test_non_square_path_keeps_the_full_frame(tmp_path):
    array = _random_rgb(50, 120, seed=2)
    path = tmp_path / "pano.png"
    Image.fromarray(array).save(path)
    full = load_image(path, crop=False)
    assert full.shape == (1, 3, 50, 120)
    torch.testing.assert_close(full, _expected(array))
    resized = load_image(path, size=(40, 96))
    assert resized.shape == (1, 3, 40, 96)
    reference = np.asarray(Image.fromarray(array).resize((96, 40), Image.LANCZOS))
    torch.testing.assert_close(resized, _expected(reference))


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "CMYK", "1"])
def test_other_modes_become_rgb(tmp_path, mode):
    rgb = Image.fromarray(_random_rgb(40, 40, seed=3))
    converted = rgb.convert(mode)
    path = tmp_path / f"img_{mode}.{'tif' if mode == 'CMYK' else 'png'}"
    converted.save(path)
    img = load_image(path)
    assert img.shape == (1, 3, 40, 40)
    assert img.min() >= -1.0 and img.max() <= 1.0
    torch.testing.assert_close(img, _expected(np.asarray(Image.open(path).convert("RGB"))))


def test_rgba_transparent_pixels_become_the_background(tmp_path):
    array = np.zeros((40, 40, 4), dtype=np.uint8)
    array[..., 0], array[..., 3] = 200, 0  # fully transparent red: its colour must not show
    path = tmp_path / "rgba.png"
    Image.fromarray(array).save(path)
    assert torch.all(load_image(path) == 1.0)  # white by default
    assert torch.all(load_image(path, background="black") == -1.0)


def test_sixteen_bit_grey_is_rescaled_not_clipped(tmp_path):
    values = np.zeros((40, 40), dtype=np.uint16)
    values[:, :20] = 65535
    values[:, 20:] = 128 * 257
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    img = load_image(path)
    assert img.shape == (1, 3, 40, 40)
    assert torch.all(img[:, :, :, :20] == 1.0)
    assert torch.allclose(img[:, :, :, 20:], torch.tensor((128 / 255 - 0.5) * 2), atol=1e-6)


def test_not_an_image_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(ImageLoadError, match="notes.png.*not a recognised image"):
        load_image(path)
    assert issubclass(ImageLoadError, ValueError)


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.jpg.*empty"):
        load_image(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(_random_rgb(64, 64)).save(good)
    bad = tmp_path / "truncated.png"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageLoadError, match="truncated.png"):
        load_image(bad)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        load_image(tmp_path / "nowhere.png")


@pytest.mark.parametrize("height,width,size", [(32, 32, None), (200, 30, None), (100, 100, 32), (100, 100, (64, 20))])
def test_too_small_after_preparation(tmp_path, height, width, size):
    path = tmp_path / "small.png"
    Image.fromarray(_random_rgb(height, width)).save(path)
    with pytest.raises(ImageLoadError, match="small.png.*short side"):
        load_image(path, size)


def test_33_pixels_is_accepted(tmp_path):
    path = tmp_path / "ok.png"
    Image.fromarray(_random_rgb(33, 50)).save(path)
    assert load_image(path).shape == (1, 3, 33, 33)


def test_to_uint8_rounds_instead_of_truncating():
    # (x + 1) * 127.5 = 10.6 -> 11 when rounded, 10 when truncated
    value = 10.6 / 127.5 - 1.0
    img = torch.full((1, 3, 2, 2), value)
    assert to_uint8(img)[0, 0, 0] == 11
    assert to_uint8(torch.full((3, 1, 1), 5.0))[0, 0, 0] == 255
    assert to_uint8(torch.full((3, 1, 1), -5.0))[0, 0, 0] == 0


def test_save_then_load_round_trip(tmp_path):
    array = _random_rgb(40, 56, seed=4)
    img = _expected(array) + 0.3 / 127.5  # off the uint8 grid by less than half a level
    path = save_image(img, tmp_path / "out" / "img.png")
    assert path.exists()
    assert np.array_equal(np.asarray(Image.open(path)), array)
    torch.testing.assert_close(load_image(path, crop=False), _expected(array))
    assert sorted(p.name for p in path.parent.iterdir()) == ["img.png"]  # no temporary files left


def test_save_rejects_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="extension"):
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "img.unknown")
