"""Face alignment: an unaligned photo -> the square, upright crop that the FFHQ networks were trained on.

StyleGAN2-ADA's FFHQ generators only produce faces placed the way the FFHQ crops place them: eyes
level, at a fixed height, with a fixed scale. A photo must therefore be aligned the same way before it
is inverted. This module follows the FFHQ alignment recipe (also used by the HRInversion authors'
``align_raw_faces.py``), written here from the recipe:

1. dlib's frontal face detector finds the face; dlib's 68-point shape predictor places its landmarks.
2. From the eye centres (means of landmarks 36-41 and 42-47) and the mouth corners (48, 54):
   ``eye_to_eye``, ``eye_to_mouth`` (eye midpoint -> mouth midpoint). The crop's half-axis
   ``x = eye_to_eye - rot90(eye_to_mouth)``, normalised and scaled to
   ``max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)``; ``y = rot90(x)``; centre
   ``c = eye_avg + 0.1 eye_to_mouth``. The oriented square ``(c-x-y, c-x+y, c+x+y, c+x-y)``
   (top-left, bottom-left, bottom-right, top-right) is the crop (:func:`ffhq_quad`).
3. Large photos are first shrunk by an integer factor when the crop is at least four times the
   output, cropped to the square plus a border, and, where the square leaves the photo, padded by
   reflection, blurred and faded towards the median colour so the padding does not look like a
   mirrored face. The square is then warped to ``transform_size``² (bilinear) and LANCZOS-resized to
   the output size (:func:`crop_quad`).

dlib is an optional dependency (``pip install 'hrinv_nb[align]'``) imported only when a face is
detected; the landmark model is never downloaded or shipped (:func:`find_predictor` says where to get it).
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import HrinvError
from .files import atomic_write
from .images import load_image, to_uint8

ENV_LANDMARKS = "HRINV_DLIB_LANDMARKS"
DEFAULT_PREDICTOR = Path("/usr/share/dlib/shape_predictor_68_face_landmarks.dat")
PREDICTOR_URL = "http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2"

# The recipe's constants: crop half-size factors on the eye distance and on the eye-to-mouth distance,
# and how far the centre sits below the eye midpoint, as a fraction of eye_to_mouth.
EYE_SCALE = 2.0
MOUTH_SCALE = 1.8
CENTRE_SHIFT = 0.1

# Detection runs on a copy whose long side is at most this (a 12-megapixel phone photo would take
# seconds and gigabytes in dlib's detector); the landmarks are placed on the full-resolution image.
DETECT_MAX_SIDE = 1280

# Aligned images are saved as JPEG with this quality when the output name ends in .jpg/.jpeg.
JPEG_QUALITY = 95


class AlignmentError(HrinvError):
    """A photo that cannot be aligned (no face found), or alignment that cannot run (dlib or its model missing).

    The message names the file and what to do.
    """


# ----------------------------------------------------------------------------------------------------
# dlib and its landmark model


def _import_dlib():
    """The dlib module, or an :class:`AlignmentError` saying how to install it."""
    try:
        import dlib
    except ImportError as err:
        raise AlignmentError(
            f"face alignment needs dlib, which is not installed ({err}): pip install 'hrinv_nb[align]' "
            "(the dlib-bin wheel)"
        ) from err
    return dlib


def _missing_model_message(path: Path, how: str) -> str:
    return (
        f"dlib's 68-point landmark model not found at {path} ({how}). Install it with "
        f"`apt-get install libdlib-data` (Debian/Ubuntu; it lands at {DEFAULT_PREDICTOR}), or download "
        f"{PREDICTOR_URL}, decompress it (bunzip2) and give its path with --landmarks or ${ENV_LANDMARKS}"
    )


def find_predictor(path: str | os.PathLike | None = None) -> Path:
    """The landmark model file: ``path`` if given, else ``$HRINV_DLIB_LANDMARKS``, else the Debian location.

    Never downloads anything. A missing file (or a still-compressed ``.bz2``) is an
    :class:`AlignmentError` saying where to get the model.
    """
    if path is not None:
        candidate, how = Path(path), "the path given"
    elif os.environ.get(ENV_LANDMARKS):
        candidate, how = Path(os.environ[ENV_LANDMARKS]), f"from ${ENV_LANDMARKS}"
    else:
        candidate, how = DEFAULT_PREDICTOR, f"the default location; neither a path nor ${ENV_LANDMARKS} was given"
    candidate = candidate.expanduser()
    if not candidate.is_file():
        raise AlignmentError(_missing_model_message(candidate, how))
    with open(candidate, "rb") as f:
        if f.read(3) == b"BZh":
            raise AlignmentError(
                f"{candidate}: this is the bzip2-compressed download; decompress it first "
                f"(bunzip2 {candidate}) and give the .dat file"
            )
    return candidate


@functools.lru_cache(maxsize=1)
def _detector():
    """dlib's HOG frontal face detector (built once)."""
    return _import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=4)
def _predictor(path: str):
    """dlib's shape predictor loaded from ``path`` (once per path)."""
    dlib = _import_dlib()
    try:
        return dlib.shape_predictor(path)
    except RuntimeError as err:
        raise AlignmentError(
            f"{path}: dlib cannot read this as a shape predictor ({err}); it should be "
            f"shape_predictor_68_face_landmarks.dat (apt-get install libdlib-data, or {PREDICTOR_URL} decompressed)"
        ) from err


# ----------------------------------------------------------------------------------------------------
# Landmarks


def _check_rgb_uint8(image: np.ndarray, source: str) -> np.ndarray:
    """``image`` as a C-contiguous uint8 ``[H, W, 3]`` array, or an :class:`HrinvError`."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        what = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise HrinvError(f"{source}: expected a uint8 RGB array of shape [H, W, 3], got a {what}")
    return np.ascontiguousarray(image)


# dlib's HOG detector reports anything scoring above 0; real frontal faces score well above this, while
# face-like patterns (the astronaut photo's round mission patch, after JPEG compression: 0.07, and larger
# than her face) score near 0. Weak detections count only when no confident one exists.
CONFIDENT_SCORE = 0.5


def _detect_faces(image: np.ndarray) -> list[tuple[float, float, tuple[int, int, int, int]]]:
    """Confident faces as ``(area, score, (left, top, right, bottom))`` in ``image``'s pixels, largest first.

    Detections scoring below :data:`CONFIDENT_SCORE` are dropped when at least one scores above it.

    The detector runs on a copy shrunk to :data:`DETECT_MAX_SIDE`, first at its own scale, then (only
    if that finds nothing) upsampled once to find faces down to about 40 px there. Equal areas (the
    detector's windows come in discrete sizes) are ordered by detection score.
    """
    height, width = image.shape[:2]
    factor = min(1.0, DETECT_MAX_SIDE / max(height, width))
    small = image
    if factor < 1.0:
        small_size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = np.asarray(Image.fromarray(image).resize(small_size, Image.LANCZOS))
    detector = _detector()
    rects, scores = [], []
    for upsample in (0, 1):
        rects, scores, _ = detector.run(np.ascontiguousarray(small), upsample, 0.0)
        if len(rects):
            break
    faces = []
    for rect, score in zip(rects, scores):
        box = tuple(int(round(v / factor)) for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
        area = float((box[2] - box[0]) * (box[3] - box[1]))
        faces.append((area, float(score), box))
    confident = [face for face in faces if face[1] >= CONFIDENT_SCORE]
    return sorted(confident or faces, key=lambda f: (f[0], f[1]), reverse=True)


def face_landmarks(
    image: np.ndarray, predictor_path: str | os.PathLike | None = None, *, source: str = "image"
) -> np.ndarray:
    """dlib's 68 landmarks of the largest face in a uint8 ``[H, W, 3]`` RGB image, as ``[68, 2]`` float64 (x, y).

    No face: :class:`AlignmentError` naming ``source``. Several faces: the largest is used and a
    warning names ``source`` and the number of faces.
    """
    image = _check_rgb_uint8(image, source)
    predictor = _predictor(str(find_predictor(predictor_path)))
    faces = _detect_faces(image)
    if not faces:
        raise AlignmentError(
            f"{source}: no face found by dlib's frontal face detector; the photo needs a face seen roughly "
            "from the front and at least about 40 px wide (crop or rotate the photo so the face is upright)"
        )
    area, score, box = faces[0]
    if len(faces) > 1:
        others = ", ".join(f"{f[2]} (score {f[1]:.2f})" for f in faces[1:])
        warnings.warn(
            f"{source}: dlib found {len(faces)} faces; aligning the largest, box {box} (score {score:.2f}); "
            f"also found: {others}. Crop the photo to align another one.",
            stacklevel=2,
        )
    dlib = _import_dlib()
    shape = predictor(image, dlib.rectangle(*box))
    points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64)
    assert points.shape == (68, 2), f"expected 68 landmarks, the model gave {points.shape[0]}"
    return points


# ----------------------------------------------------------------------------------------------------
# Geometry


def _rot90(v: np.ndarray) -> np.ndarray:
    """``(vx, vy) -> (-vy, vx)``: a quarter turn (clockwise on screen, where y points down)."""
    return np.array([-v[1], v[0]], dtype=np.float64)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square for 68 dlib landmarks: ``[4, 2]`` corners (x, y).

    Corner order: top-left, bottom-left, bottom-right, top-right of the aligned image (the order
    PIL's QUAD transform takes). The side is ``2 max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)``; the
    centre is ``eye_avg + 0.1 eye_to_mouth``; the orientation blends the eye line with the
    perpendicular of the eye-to-mouth line.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise HrinvError(f"expected [68, 2] finite landmarks, got shape {lm.shape}")
    eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    norm = np.hypot(*x)
    if norm == 0:
        raise HrinvError("degenerate landmarks: the eyes and mouth coincide, no crop orientation")
    x = x / norm * max(np.hypot(*eye_to_eye) * EYE_SCALE, np.hypot(*eye_to_mouth) * MOUTH_SCALE)
    y = _rot90(x)
    c = eye_avg + eye_to_mouth * CENTRE_SHIFT
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    """Integer box ``(left, top, right, bottom)`` enclosing the quad."""
    return (
        int(np.floor(quad[:, 0].min())),
        int(np.floor(quad[:, 1].min())),
        int(np.ceil(quad[:, 0].max())),
        int(np.ceil(quad[:, 1].max())),
    )


def _reflect_pad(img: Image.Image, pad: tuple[int, int, int, int], qsize: float) -> Image.Image:
    """Reflect-pad by ``(left, top, right, bottom)``, blur towards the edges and fade to the median colour.

    ``ramp`` is 1 on the outer edge of the padding, 0 where the photo begins, negative inside it: the
    padding is fully blurred (sigma 2 % of the crop), the blur fades out over the outer third of the
    photo's margin, and the padding fades linearly towards the median colour.
    """
    from scipy.ndimage import gaussian_filter

    left, top, right, bottom = (max(p, 1) for p in pad)
    arr = np.pad(np.asarray(img, dtype=np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w, _ = arr.shape
    yy, xx = np.ogrid[:h, :w]
    ramp_x = 1.0 - np.minimum(xx.astype(np.float32) / left, (w - 1 - xx).astype(np.float32) / right)
    ramp_y = 1.0 - np.minimum(yy.astype(np.float32) / top, (h - 1 - yy).astype(np.float32) / bottom)
    ramp = np.maximum(ramp_x, ramp_y)[:, :, None]
    sigma = qsize * 0.02
    arr += (gaussian_filter(arr, [sigma, sigma, 0]) - arr) * np.clip(ramp * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(ramp, 0.0, 1.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def crop_quad(
    img: Image.Image, quad: np.ndarray, size: int = 1024, *, transform_size: int = 4096, enable_padding: bool = True
) -> Image.Image:
    """Warp the square ``quad`` (as :func:`ffhq_quad` orders it) of an RGB image to a ``size``² image.

    FFHQ's steps: shrink the photo by an integer factor when the crop is at least four times the
    output, crop to the quad plus a 10 % border, pad where the quad leaves the photo
    (reflection, blurred and faded: see :func:`_reflect_pad`; with ``enable_padding=False`` such
    regions are black), warp to ``transform_size``² (bilinear) and LANCZOS-resize to ``size``².
    """
    quad = np.array(quad, dtype=np.float64)
    assert quad.shape == (4, 2), quad.shape
    for name, value in (("size", size), ("transform_size", transform_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise HrinvError(f"{name} must be a positive int, got {value!r}")
    img = img.convert("RGB")
    qsize = float(np.hypot(*(quad[3] - quad[0])))  # the side of the square

    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        img = img.resize((int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink))), Image.LANCZOS)
        quad /= shrink
        qsize /= shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    left, top, right, bottom = _bounds(quad)
    box = (
        max(left - border, 0),
        max(top - border, 0),
        min(right + border, img.width),
        min(bottom + border, img.height),
    )
    if box[2] - box[0] < img.width or box[3] - box[1] < img.height:
        img = img.crop(box)
        quad -= box[:2]

    left, top, right, bottom = _bounds(quad)
    pad = (
        max(border - left, 0),
        max(border - top, 0),
        max(right - img.width + border, 0),
        max(bottom - img.height + border, 0),
    )
    if enable_padding and max(pad) > border - 4:
        pad = tuple(max(p, int(np.rint(qsize * 0.3))) for p in pad)
        img = _reflect_pad(img, pad, qsize)
        quad += pad[:2]

    out = img.transform((transform_size, transform_size), Image.QUAD, tuple((quad + 0.5).flatten()), Image.BILINEAR)
    if size != transform_size:
        out = out.resize((size, size), Image.LANCZOS)
    assert out.size == (size, size), out.size
    return out


# ----------------------------------------------------------------------------------------------------
# Images and files


def _pil_rgb(image: Image.Image) -> Image.Image:
    """An in-memory PIL image, upright (EXIF orientation applied) and RGB, transparency over white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _open_rgb(image: str | os.PathLike | Image.Image) -> tuple[Image.Image, str]:
    """``(RGB PIL image, source name)`` for a path (read by :func:`hrinv_nb.images.load_image`) or a PIL image."""
    if isinstance(image, Image.Image):
        return _pil_rgb(image), str(getattr(image, "filename", "") or "image")
    # load_image applies the EXIF orientation, composites transparency over white, refuses
    # decompression bombs and unreadable files (ImageLoadError naming the file); its [-1, 1] float
    # tensor maps back to the same 8-bit values exactly.
    tensor = load_image(image, size=None, crop=False)
    assert isinstance(tensor, torch.Tensor) and tensor.ndim == 4, tensor.shape
    return Image.fromarray(to_uint8(tensor)), str(image)


def align_face(
    image: str | os.PathLike | Image.Image,
    size: int = 1024,
    *,
    predictor_path: str | os.PathLike | None = None,
    transform_size: int = 4096,
    enable_padding: bool = True,
) -> Image.Image:
    """Align the largest face of a photo (a path or a PIL image) the FFHQ way; returns a ``size``² RGB image.

    The photo is first turned upright by its EXIF orientation. Raises :class:`AlignmentError` when
    no face is found (naming the file) or dlib / its landmark model is missing.
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise HrinvError(f"size must be a positive int, got {size!r}")
    rgb, source = _open_rgb(image)
    landmarks = face_landmarks(np.asarray(rgb), predictor_path, source=source)
    return crop_quad(rgb, ffhq_quad(landmarks), int(size), transform_size=transform_size, enable_padding=enable_padding)


def _save_format(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise HrinvError(f"{path}: unknown image extension {path.suffix!r}; use .png (or .jpg)")
    return fmt


def align_file(
    src: str | os.PathLike, dst: str | os.PathLike, size: int = 1024, *, predictor_path: str | os.PathLike | None = None
) -> Path:
    """Align the face in ``src`` and write the ``size``² result to ``dst`` atomically; returns ``dst``.

    The format follows ``dst``'s extension (PNG recommended; JPEG at quality 95).
    """
    dst = Path(dst)
    fmt = _save_format(dst)
    aligned = align_face(src, size, predictor_path=predictor_path)
    options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
    return atomic_write(dst, lambda tmp: aligned.save(tmp, format=fmt, **options))
