"""Procedural "toy FFHQ" face renderer: the data source of the whole toy world.

A face is fixed by an *identity* vector (``N_IDENTITY`` continuous factors, each in
[-1, 1] with 0 the mean face, names in ``IDENTITY_FACTORS``) and a *nuisance*
vector (``N_NUISANCE`` factors in [-1, 1]: lighting, background, small pose offset
and texture seeds, names in ``NUISANCE_FACTORS``).  It can be drawn in one of
``STYLES``:

* ``"photo"`` - the source domain: Lambertian shading of an implied relief, hair
  strands, skin pores and a textured background (real detail up to Nyquist);
* ``"cartoon"`` - flat posterised colours, dark outlines, large eyes;
* ``"caricature"`` - identity factors exaggerated x1.9 (clipped to [-2, 2]), ink
  lines with light washes on paper;
* ``"anime"`` - huge glossy eyes, tiny nose and mouth, pointed chin, vivid hair.

Rendering is deterministic, batched torch code (CPU) evaluated on a
``supersample``-times finer grid with ~1-pixel soft edges and then area-downsampled
(antialiased).  The scene is defined in units of the image height (see
:mod:`hrinv_nb.toy.render_geometry`), so any ``(H, W)`` works: a 64x192 render is the
64x64 render with more background and shoulders on both sides, and a 128x128 render
is a sharper view of the same face.  Identity values outside [-1, 1] (up to +-2, as
the caricature uses) still give sensible faces.  ``return_mask=True`` adds a soft
mask of the whole head (face, ears, hair), e.g. to measure changes outside the face.

Example::

    g = torch.Generator().manual_seed(0)
    ident, nuis = sample_identity(8, g), sample_nuisance(8, g)
    imgs = render(ident, nuis, style="anime", size=(64, 64))    # [8, 3, 64, 64] in [-1, 1]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hrinv_nb.toy.render_geometry import (
    IDENTITY_FACTORS,
    N_IDENTITY,
    N_NUISANCE,
    NUISANCE_FACTORS,
    coverage,
    exaggerate_identity,
    face_layout,
    face_shapes,
)
from hrinv_nb.toy.render_shading import decode_nuisance, head_mask_distance
from hrinv_nb.toy.render_styles import STYLE_SPECS

__all__ = [
    "IDENTITY_FACTORS",
    "NUISANCE_FACTORS",
    "N_IDENTITY",
    "N_NUISANCE",
    "STYLES",
    "sample_identity",
    "sample_nuisance",
    "render",
    "render_from_seed",
    "exaggerate_identity",
    "render_contact_sheet",
]

STYLES: tuple[str, ...] = ("photo", "cartoon", "caricature", "anime")
FACE_ZOOM: float = 1.18  # size of the figure (head, neck, shoulders) relative to the frame


def sample_identity(n: int, generator: torch.Generator) -> Tensor:
    """Draw ``n`` identities [n, N_IDENTITY], each factor uniform in [-1, 1] (0 = mean face)."""
    return torch.rand(n, N_IDENTITY, generator=generator) * 2.0 - 1.0


def sample_nuisance(n: int, generator: torch.Generator) -> Tensor:
    """Draw ``n`` nuisance vectors [n, N_NUISANCE], each factor uniform in [-1, 1]."""
    return torch.rand(n, N_NUISANCE, generator=generator) * 2.0 - 1.0


def _scene_grid(hs: int, ws: int) -> tuple[Tensor, Tensor, float]:
    """Pixel-centre coordinates [1, hs, ws] of the scene frame and the grid step."""
    px = 2.0 / hs
    y = -1.0 + (torch.arange(hs, dtype=torch.float32) + 0.5) * px
    x = (torch.arange(ws, dtype=torch.float32) + 0.5 - ws / 2) * px
    return x.view(1, 1, ws).expand(1, hs, ws), y.view(1, hs, 1).expand(1, hs, ws), px


def _render_chunk(identity: Tensor, nuisance: Tensor, style: str, hs: int, ws: int) -> tuple[Tensor, Tensor]:
    """Render one chunk on the supersampled grid: RGB [B,3,hs,ws] in [0,1], mask [B,1,hs,ws]."""
    geom, fringe, shade = STYLE_SPECS[style]
    L = face_layout(identity, geom)
    N = decode_nuisance(nuisance)
    bx, by, px = _scene_grid(hs, ws)
    c, s = torch.cos(N.tilt), torch.sin(N.tilt)
    dx, dy = bx - N.shift_x, by - N.shift_y
    x, y = (c * dx + s * dy) / FACE_ZOOM, (-s * dx + c * dy) / FACE_ZOOM
    S = face_shapes(L, x, y, px / FACE_ZOOM, fringe_edge=fringe(L, x, N))
    img = shade(L, S, bx, by, N).clamp(0.0, 1.0)
    mask = coverage(head_mask_distance(S), px).unsqueeze(1)
    return img, mask


@contextlib.contextmanager
def _intra_op_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None``: leave it alone)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def render(
    identity: Tensor,
    nuisance: Tensor,
    style: str = "photo",
    size: tuple[int, int] = (64, 64),
    return_mask: bool = False,
    supersample: int = 2,
    chunk_pixels: int = 1 << 18,
    num_threads: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Render faces.

    Args:
        identity: [B, N_IDENTITY] factors in [-1, 1] (see ``IDENTITY_FACTORS``).
        nuisance: [B, N_NUISANCE] factors in [-1, 1] (see ``NUISANCE_FACTORS``).
        style: one of ``STYLES``.
        size: output ``(H, W)``; the face is scaled to ``H`` and centred horizontally.
        return_mask: also return the soft head mask (face, ears and hair) [B, 1, H, W] in [0, 1].
        supersample: grid refinement per axis before area downsampling (antialiasing).
        chunk_pixels: approximate number of supersampled pixels per internal batch (memory bound).
        num_threads: torch intra-op threads for this call (restored afterwards); ``None`` keeps
            the current setting.  On a busy, shared CPU ``1`` is often much faster.

    Returns:
        float32 images [B, 3, H, W] in [-1, 1] (and the mask if requested).
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    assert identity.ndim == 2 and identity.shape[1] == N_IDENTITY, identity.shape
    assert nuisance.shape == (identity.shape[0], N_NUISANCE), nuisance.shape
    h, w = int(size[0]), int(size[1])
    assert h > 0 and w > 0 and supersample >= 1, (size, supersample)
    hs, ws = h * supersample, w * supersample
    step = max(1, chunk_pixels // (hs * ws))
    imgs, masks = [], []
    with torch.no_grad(), _intra_op_threads(num_threads):
        for i in range(0, identity.shape[0], step):
            img, mask = _render_chunk(
                identity[i : i + step].float().cpu(), nuisance[i : i + step].float().cpu(), style, hs, ws
            )
            imgs.append(F.avg_pool2d(img, supersample))
            masks.append(F.avg_pool2d(mask, supersample))
    out = torch.cat(imgs) * 2.0 - 1.0 if imgs else torch.zeros(0, 3, h, w)
    assert out.shape == (identity.shape[0], 3, h, w), out.shape
    if return_mask:
        return out, (torch.cat(masks) if masks else torch.zeros(0, 1, h, w))
    return out


def render_from_seed(
    seed: int, n: int, style: str = "photo", size: tuple[int, int] = (64, 64), return_mask: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Sample ``n`` identities and nuisances from ``seed`` (identities first) and render them."""
    g = torch.Generator().manual_seed(seed)
    identity = sample_identity(n, g)
    nuisance = sample_nuisance(n, g)
    return render(identity, nuisance, style=style, size=size, return_mask=return_mask)


def _paste(sheet: Tensor, img: Tensor, top: int, left: int) -> None:
    """Copy a [3, h, w] image into the [3, H, W] sheet in place."""
    sheet[:, top : top + img.shape[1], left : left + img.shape[2]] = img


# fmt: off
def render_contact_sheet(path: str | Path | None = None, n_identities: int = 8, seed: int = 0, cell: int = 64,
                         wide: int = 192, gap: int = 2, upscale: int = 2, label_width: int = 84) -> Tensor:
# fmt: on
    """Contact sheet of the toy world, as uint8 [H, W, 3]; also written as PNG to ``path``.

    Rows are ``STYLES`` (columns: the same identity and nuisance in every row, ``cell``
    pixels square), then a last row with ``cell x wide`` photo renders of the first
    identities and their head masks.  Pixels are upscaled ``upscale`` times (nearest)
    and rows are labelled in a left margin of ``label_width`` (output) pixels.
    """
    g = torch.Generator().manual_seed(seed)
    ident, nuis = sample_identity(n_identities, g), sample_nuisance(n_identities, g)
    pitch = cell + gap
    width = n_identities * pitch + gap
    sheet = torch.ones(3, (len(STYLES) + 1) * pitch + gap, width)
    for r, style in enumerate(STYLES):
        row = render(ident, nuis, style=style, size=(cell, cell))
        for c in range(n_identities):
            _paste(sheet, row[c], gap + r * pitch, gap + c * pitch)
    n_wide = max(1, min(2, n_identities, (width - gap) // (wide + gap)))
    wide_imgs = render(ident[:n_wide], nuis[:n_wide], "photo", (cell, wide))
    _, masks = render(ident[:n_wide], nuis[:n_wide], "photo", (cell, cell), return_mask=True)
    top, left = gap + len(STYLES) * pitch, gap
    for item in [*wide_imgs, *(m.expand(3, -1, -1) * 2 - 1 for m in masks)]:
        if left + item.shape[2] > width:
            break
        _paste(sheet, item, top, left)
        left += item.shape[2] + gap
    out = ((sheet.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
    out = out.repeat_interleave(upscale, 0).repeat_interleave(upscale, 1)

    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.new("RGB", (out.shape[1] + label_width, out.shape[0]), (255, 255, 255))
    canvas.paste(Image.fromarray(out.numpy()), (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, 7 * upscale))
    labels = [*STYLES, f"photo\n{cell}x{wide}\n+ masks"]
    for r, text in enumerate(labels):
        box = draw.multiline_textbbox((0, 0), text, font=font)
        y = (gap + r * pitch + cell // 2) * upscale - (box[3] - box[1]) // 2
        draw.multiline_text((4, y), text, fill=(0, 0, 0), font=font)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path)
    return torch.from_numpy(np.asarray(canvas).copy())
