"""Image I/O for inversion targets and results.

Tensors are float32 ``[1, 3, H, W]`` in [-1, 1]. :func:`load_image` follows the authors' target
preprocessing: RGB conversion, centre crop to a square of side min(W, H), PIL LANCZOS resize,
then ``(v / 255 - 0.5) * 2``. A non-square path (no crop, any ``(H, W)``) serves Style-INR-GAN.
:func:`save_image` rounds to uint8 (the authors' ``to_pil`` truncates, a quirk we avoid).

Every file is untrusted input: :func:`load_image` applies the EXIF orientation, composites
transparency on a stated background, scales float images by their declared range, checks the
decoded size against a cap before decoding, and turns every failure into :class:`ImageLoadError`
naming the file and the reason.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import FileFormatError, HrinvError
from .files import atomic_write

# The VGG16 loss needs a short side of more than 32 px (5 max-pools).
MIN_SHORT_SIDE = 33

# Largest width x height decoded (checked from the header before decoding): 1.5e8 px is a 450 MB
# RGB image, far above any inversion target, while a few-KB PNG can declare gigapixels.
MAX_PIXELS = 150_000_000

# Float images: values within [0, 1] up to this relative tolerance are [0, 1] data (overshoot is
# clipped); values reaching at least FLOAT_8BIT_MIN_MAX and within [0, 255] (same tolerance) are
# 8-bit scale. The gap between is ambiguous (slightly-overshooting [0, 1] data, or an 8-bit-scale
# image that is black) and is refused rather than guessed.
FLOAT_TOLERANCE = 0.02
FLOAT_8BIT_MIN_MAX = 2.0

BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}

# The raster formats Pillow may decode here (its JPEG opener also reads the multi-picture JPEGs of
# many cameras). Others, such as EPS (decoded by running Ghostscript), are refused as unrecognised.
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "PPM", "TGA")

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


class ImageLoadError(FileFormatError):
    """A file that cannot serve as an inversion target: not an image, empty, corrupt, too small or too large."""


class ImageNotFoundError(ImageLoadError, FileNotFoundError):
    """The image file does not exist (also a :class:`FileNotFoundError`)."""


class ImageSaveError(HrinvError):
    """An image that cannot be written where asked: unknown extension or a read-only file."""


def _background_rgb(background: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """``"white"``, ``"black"`` or an ``(r, g, b)`` triple of 0..255 ints, as an RGB triple."""
    if isinstance(background, str):
        if background not in BACKGROUNDS:
            raise HrinvError(
                f"background must be one of {sorted(BACKGROUNDS)} or an (r, g, b) triple, got {background!r}"
            )
        return BACKGROUNDS[background]
    rgb = tuple(background)
    if len(rgb) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in rgb):
        raise HrinvError(f"background must be an (r, g, b) triple of ints in 0..255, got {background!r}")
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    """A float grey array already in [0, 255] -> rounded 8-bit RGB."""
    return Image.fromarray(np.rint(np.clip(grey, 0, 255)).astype(np.uint8)).convert("RGB")


def _float_to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """Scale a float (mode "F") image by its declared range; refuse non-finite or out-of-range pixels."""
    values = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        raise ImageLoadError(f"{path}: {int((~finite).sum())} pixel(s) are NaN or infinite")
    lo, hi = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if lo >= -FLOAT_TOLERANCE and hi <= 1.0 + FLOAT_TOLERANCE:
        return _grey_to_rgb(values * 255.0)
    if lo >= -255.0 * FLOAT_TOLERANCE and FLOAT_8BIT_MIN_MAX <= hi <= 255.0 * (1.0 + FLOAT_TOLERANCE):
        return _grey_to_rgb(values)
    raise ImageLoadError(
        f"{path}: float pixel values span [{lo:g}, {hi:g}]; only [0, 1] (maximum up to {1 + FLOAT_TOLERANCE:g}) "
        f"or 8-bit scale [0, 255] (maximum from {FLOAT_8BIT_MIN_MAX:g} to {255 * (1 + FLOAT_TOLERANCE):g}) are accepted"
    )


def _int_to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """16-bit and 32-bit integer grey levels: 16-bit data (or any value above 255) are divided by 257."""
    values = np.asarray(img).astype(np.float64)
    lo, hi = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if lo < 0 or hi > 65535:
        raise ImageLoadError(f"{path}: integer pixel values span [{lo:g}, {hi:g}], outside the 16-bit range [0, 65535]")
    sixteen_bit = img.mode in _SIXTEEN_BIT_MODES or hi > 255
    return _grey_to_rgb(values / 257.0 if sixteen_bit else values)


def _to_rgb(img: Image.Image, path: Path, background: tuple[int, int, int]) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Transparent pixels (alpha channels, and palette/grey/RGB images with a transparency key) are
    composited over ``background``, so the hidden colour of fully transparent pixels never
    reaches the target. 16-bit, integer and float grey levels are rescaled.
    """
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "I":
        return _int_to_rgb(img, path)
    if img.mode == "F":
        return _float_to_rgb(img, path)
    try:
        if img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info):
            rgba = img.convert("RGBA")
            base = Image.new("RGBA", rgba.size, (*background, 255))
            return Image.alpha_composite(base, rgba).convert("RGB")
        return img if img.mode == "RGB" else img.convert("RGB")
    except (ValueError, OSError) as err:
        raise ImageLoadError(f"{path}: cannot convert image mode {img.mode!r} to RGB ({err})") from err


def center_crop_box(width: int, height: int, aspect: float = 1.0) -> tuple[int, int, int, int]:
    """The centred box of the largest crop with ``aspect`` = w / h; for 1.0 the square of side min(W, H)."""
    if aspect == 1.0:
        crop_w = crop_h = min(width, height)
    elif width / height > aspect:
        crop_h, crop_w = height, min(width, int(round(height * aspect)))
    else:
        crop_w, crop_h = width, min(height, int(round(width / aspect)))
    return ((width - crop_w) // 2, (height - crop_h) // 2, (width + crop_w) // 2, (height + crop_h) // 2)


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open, size-check, fully decode and EXIF-orient ``path``.

    This is the one place images are opened. The width x height declared in the header is checked
    against ``max_pixels`` before any pixel is decoded. Any failure of the decoder on the file's
    bytes (Pillow's plugins raise many exception types on malformed input) becomes an
    :class:`ImageLoadError` naming the file and the reason.
    """
    if not path.exists():
        raise ImageNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: the file is empty")
    try:
        with warnings.catch_warnings():
            # The cap below replaces Pillow's warning; its hard limit (DecompressionBombError) still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=IMAGE_FORMATS) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageLoadError(
                        f"{path}: the image is too large: the header declares {width}x{height} = {width * height} pixels, above the "
                        f"limit of {max_pixels} (max_pixels); refused before decoding"
                    )
                img.load()
                try:
                    oriented = ImageOps.exif_transpose(img)
                except Exception as err:
                    raise ImageLoadError(f"{path}: its EXIF metadata is corrupt ({type(err).__name__}: {err})") from err
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"{path}: the image is too large to decode safely (Pillow: {err})") from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(
            f"{path}: not a recognised image file (accepted formats: {', '.join(IMAGE_FORMATS)})"
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageLoadError(f"{path}: the image is truncated or corrupt ({type(err).__name__}: {err})") from err
    except MemoryError as err:
        raise ImageLoadError(f"{path}: not enough memory to decode the image") from err
    except Exception as err:
        raise ImageLoadError(f"{path}: the image cannot be decoded ({type(err).__name__}: {err})") from err
    assert oriented is not None
    return oriented


def _check_short_side(path: Path, img: Image.Image, what: str, min_short_side: int) -> None:
    """Refuse ``img`` when its short side is below ``min_short_side``."""
    if min(img.width, img.height) < min_short_side:
        raise ImageLoadError(
            f"{path}: {what} is {img.width}x{img.height}; its short side must be at least "
            f"{min_short_side} px (the VGG16 loss needs more than 32 px)"
        )


def load_image(
    path: str | os.PathLike,
    size: int | tuple[int, int] | None = None,
    *,
    crop: bool | None = None,
    min_short_side: int = MIN_SHORT_SIDE,
    background: str | tuple[int, int, int] = "white",
    max_pixels: int = MAX_PIXELS,
) -> torch.Tensor:
    """Load an image as a ``[1, 3, H, W]`` float32 tensor in [-1, 1].

    ``size=int``: centre-crop to a square, LANCZOS-resize to ``size``².
    ``size=(H, W)``: LANCZOS-resize to H×W without cropping (non-square path); with
    ``crop=True`` the image is first centre-cropped to the aspect W/H.
    ``size=None``: centre-crop to a square (``crop=False`` keeps the full frame), no resize.

    The EXIF orientation is applied first, so the image is upright as viewers show it.
    Transparent pixels are composited over ``background`` (default white; ``"black"`` or any
    ``(r, g, b)``). Float images are read as [0, 1] or 8-bit-scale data by their value range
    (see ``FLOAT_TOLERANCE``); NaN/inf pixels are refused.

    Size rule: the image as stored, the cropped region (before resizing) and the result must
    each have a short side of at least ``min_short_side`` px, so a tiny image is never upsampled
    into a target. Images above ``max_pixels`` (width × height from the header) are refused before
    decoding. Every refusal is an :class:`ImageLoadError` naming the file and the reason.
    """
    path = Path(path)
    if crop is None:
        crop = not isinstance(size, (tuple, list))
    if size is None:
        out_hw = None
        aspect = 1.0
    elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        out_hw = (int(size), int(size))
        aspect = 1.0
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        out_hw = (int(size[0]), int(size[1]))
        aspect = out_hw[1] / out_hw[0] if out_hw[0] > 0 else 0.0
    else:
        raise HrinvError(f"size must be an int, an (H, W) pair or None, got {size!r}")
    if out_hw is not None and min(out_hw) <= 0:
        raise HrinvError(f"size must be positive, got {size!r}")
    bg = _background_rgb(background)
    img = _open(path, max_pixels)
    _check_short_side(path, img, "the image", min_short_side)
    img = _to_rgb(img, path, bg)
    if crop:
        img = img.crop(center_crop_box(img.width, img.height, aspect))
        _check_short_side(path, img, "the cropped region", min_short_side)
    if out_hw is not None and (img.height, img.width) != out_hw:
        img = img.resize((out_hw[1], out_hw[0]), Image.LANCZOS)
    _check_short_side(path, img, "the prepared image", min_short_side)
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
        raise ImageSaveError(f"{path}: unknown image extension {path.suffix!r}")
    return fmt


def _check_overwritable(path: Path) -> None:
    """Refuse to replace an existing file the user cannot write.

    The atomic rename would otherwise replace a read-only file silently (renaming needs only the
    directory's permission). A file with no write bits at all counts as read-only even for root,
    for whom ``os.access`` always answers yes.
    """
    if path.is_dir():
        raise ImageSaveError(f"{path}: is a directory")
    if path.exists() and (not os.access(path, os.W_OK) or path.stat().st_mode & 0o222 == 0):
        raise ImageSaveError(f"{path}: the file exists and is read-only; refusing to overwrite it")


def save_image(img: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write ``img`` (``[1, C, H, W]`` or ``[C, H, W]`` in [-1, 1]) atomically; returns the path.

    Refuses (:class:`ImageSaveError`) an unknown extension and an existing read-only file.
    """
    path = Path(path)
    fmt = _pil_format(path)
    _check_overwritable(path)
    array = to_uint8(img)
    pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    return atomic_write(path, lambda tmp: pil.save(tmp, format=fmt))
