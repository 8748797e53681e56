"""Image I/O for inversion targets and results (spec §3.1, §3.6, §7.4).

Tensors are float32 ``[1, 3, H, W]`` in [-1, 1]. :func:`load_image` follows the authors' target
preprocessing: RGB conversion, centre crop to a square of side min(W, H), PIL LANCZOS resize,
then ``(v / 255 - 0.5) * 2``. A non-square path (no crop, any ``(H, W)``) serves Style-INR-GAN.
:func:`save_image` rounds to uint8 (the authors' ``to_pil`` truncates, a quirk we avoid, §11.16).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .files import atomic_write

# The VGG16 loss needs a short side of more than 32 px (5 max-pools), spec §2.1.
MIN_SHORT_SIDE = 33

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageLoadError(ValueError):
    """A file that cannot serve as an inversion target: not an image, empty, corrupt or too small."""


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16-bit and integer grey levels are rescaled, alpha is dropped."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "I":
        values = np.asarray(img).astype(np.float64)
        sixteen_bit = img.mode in _SIXTEEN_BIT_MODES or values.max(initial=0) > 255
        grey = np.clip(values / 257.0 if sixteen_bit else values, 0, 255)
        return Image.fromarray(np.rint(grey).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        values = np.asarray(img).astype(np.float64)
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        grey = np.clip(values * scale, 0, 255)
        return Image.fromarray(np.rint(grey).astype(np.uint8)).convert("RGB")
    if img.mode in ("P", "PA"):
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def center_crop_box(width: int, height: int, aspect: float = 1.0) -> tuple[int, int, int, int]:
    """The centred box of the largest crop with ``aspect`` = w / h; for 1.0 the spec's square box."""
    if aspect == 1.0:
        crop_w = crop_h = min(width, height)
    elif width / height > aspect:
        crop_h, crop_w = height, min(width, int(round(height * aspect)))
    else:
        crop_w, crop_h = width, min(height, int(round(width / aspect)))
    return ((width - crop_w) // 2, (height - crop_h) // 2, (width + crop_w) // 2, (height + crop_h) // 2)


def _open(path: Path) -> Image.Image:
    """Open and fully decode ``path``; raise :class:`ImageLoadError` naming the file and the reason."""
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: the file is empty")
    try:
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError as err:
        raise ImageLoadError(f"{path}: not a recognised image file ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(f"{path}: the image is truncated or corrupt ({err})") from err
    return img


def load_image(
    path: str | os.PathLike,
    size: int | tuple[int, int] | None = None,
    *,
    crop: bool | None = None,
    min_short_side: int = MIN_SHORT_SIDE,
) -> torch.Tensor:
    """Load an image as a ``[1, 3, H, W]`` float32 tensor in [-1, 1].

    ``size=int``: centre-crop to a square, LANCZOS-resize to ``size``² (spec §3.1).
    ``size=(H, W)``: LANCZOS-resize to H×W without cropping (non-square path, §7.4); with
    ``crop=True`` the image is first centre-cropped to the aspect W/H.
    ``size=None``: centre-crop to a square (``crop=False`` keeps the full frame), no resize.
    Raises :class:`ImageLoadError` when the short side after preparation is below ``min_short_side``.
    """
    path = Path(path)
    img = _to_rgb(_open(path))
    if crop is None:
        crop = not isinstance(size, (tuple, list))
    if size is None:
        out_hw = None
        aspect = 1.0
    elif isinstance(size, int):
        out_hw = (size, size)
        aspect = 1.0
    else:
        out_hw = (int(size[0]), int(size[1]))
        aspect = out_hw[1] / out_hw[0]
    if out_hw is not None and min(out_hw) <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    if crop:
        img = img.crop(center_crop_box(img.width, img.height, aspect))
    if out_hw is not None and (img.height, img.width) != out_hw:
        img = img.resize((out_hw[1], out_hw[0]), Image.LANCZOS)
    if min(img.width, img.height) < min_short_side:
        raise ImageLoadError(
            f"{path}: the prepared image is {img.width}x{img.height}; its short side must be at least "
            f"{min_short_side} px (the VGG16 loss needs more than 32 px)"
        )
    array = np.asarray(img, dtype=np.uint8)
    assert array.ndim == 3 and array.shape[2] == 3, array.shape
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32)
    return ((tensor / 255.0 - 0.5) * 2.0).unsqueeze(0)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``[1, C, H, W]`` or ``[C, H, W]`` in [-1, 1] -> ``[H, W, C]`` uint8, rounding (not truncating)."""
    if img.ndim == 4:
        assert img.shape[0] == 1, f"expected a single image, got batch {img.shape[0]}"
        img = img[0]
    assert img.ndim == 3 and img.shape[0] in (1, 3), f"expected [C,H,W] with C in (1,3), got {tuple(img.shape)}"
    values = ((img.detach().to("cpu", torch.float32) + 1.0) * 127.5).round().clamp(0, 255)
    return values.to(torch.uint8).permute(1, 2, 0).numpy()


def _pil_format(path: Path) -> str:
    """The PIL format name for ``path``'s extension."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image extension {path.suffix!r}")
    return fmt


def save_image(img: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write ``img`` (``[1, C, H, W]`` or ``[C, H, W]`` in [-1, 1]) atomically; returns the path."""
    path = Path(path)
    array = to_uint8(img)
    pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    fmt = _pil_format(path)
    return atomic_write(path, lambda tmp: pil.save(tmp, format=fmt))
