"""Procedural "toy FFHQ" face renderer: the data source of the whole toy world.

A face is fixed by an *identity* vector (``N_IDENTITY`` continuous factors, each in
[-1, 1] with 0 the mean face, names in ``IDENTITY_FACTORS``), a *nuisance* vector
(``N_NUISANCE`` factors in [-1, 1]: lighting, background, small pose offset and the
phases of smooth hair/background patterns, names in ``NUISANCE_FACTORS``; the three
``*_seed`` factors are continuous phases/contrasts, see
:class:`hrinv_nb.toy.render_shading.Nuisance`) and *texture noise maps*
(``TEXTURE_NOISE``: standard-normal maps aligned to the output pixel grid, as a
StyleGAN generator's noise inputs are aligned to its feature grid).  It can be drawn in
one of ``STYLES``:

* ``"photo"`` - the source domain: Lambertian shading of an implied relief, hair
  strands, skin pores and a grainy background (real detail up to Nyquist).  All of its
  stochastic detail is a local function of the noise maps: ``fine`` -> skin pores, brow
  hairs, fine hair detail (pointwise); ``grain`` -> background grain and shirt weave (3x3
  blur); ``coarse`` -> hair streaks (upsampled x2, filtered along the strands over 7
  pixels) and skin mottling (upsampled, blurred).  Everything else is a smooth function
  of the factors, so resampling the noise changes strands, pores and grain, never the
  identity, pose or colours;
* ``"cartoon"`` - flat posterised colours, dark outlines, large eyes (no noise);
* ``"caricature"`` - identity factors exaggerated x1.9 (clipped to [-2, 2]), ink
  lines with light washes on paper (paper grain from ``grain`` only);
* ``"anime"`` - huge glossy eyes, tiny nose and mouth, pointed chin, vivid hair (no noise).

Rendering is batched torch code on the device of ``identity`` (CPU or CUDA), evaluated
on a ``supersample``-times finer grid with ~1-pixel soft edges and then
area-downsampled (antialiased).  The scene is defined in units of the image height
(see :mod:`hrinv_nb.toy.render_geometry`), so any ``(H, W)`` works: a 64x192 render is
the 64x64 render with more background and shoulders on both sides (with the default
noise, whose maps are keyed by the offset from the centre column, the centre even has
the same texture), and a 128x128 render is a sharper view of the same face (with finer
texture: the noise is per output pixel).  Without ``noise`` the maps are drawn by
:func:`draw_texture_noise` from a hash of each nuisance row, so ``render(identity,
nuisance)`` is a deterministic function of its inputs, independent of the batch.  Identity values outside [-1, 1] (up to +-2, as
the caricature uses) still give sensible faces.  ``return_mask=True`` adds a soft
mask of the whole head (face, ears, hair), e.g. to measure changes outside the face.

Example::

    g = torch.Generator().manual_seed(0)
    ident, nuis = sample_identity(8, g), sample_nuisance(8, g)
    imgs = render(ident, nuis, style="anime", size=(64, 64))    # [8, 3, 64, 64] in [-1, 1]
    noise = {k: torch.randn(8, 1, *hw, generator=g) for k, hw in texture_noise_shapes((128, 128)).items()}
    photo = render(ident, nuis, noise=noise)                     # [8, 3, 128, 128], other strands
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
    hash_normal,
    mix32,
)
from hrinv_nb.toy.render_shading import (
    TEXTURE_NOISE,
    decode_nuisance,
    head_mask_distance,
    texture_fields,
    texture_noise_shapes,
)
from hrinv_nb.toy.render_styles import STYLE_SPECS

__all__ = [
    "IDENTITY_FACTORS",
    "NUISANCE_FACTORS",
    "N_IDENTITY",
    "N_NUISANCE",
    "STYLES",
    "TEXTURE_NOISE",
    "texture_noise_shapes",
    "draw_texture_noise",
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


def draw_texture_noise(nuisance: Tensor, size: tuple[int, int] = (128, 128)) -> dict[str, Tensor]:
    """Default texture noise maps for ``nuisance`` [B, N_NUISANCE] and an output ``size``.

    Each sample's maps (keys ``TEXTURE_NOISE``, shapes from :func:`texture_noise_shapes`,
    [B, 1, h, w] float32 standard normal, on the device of ``nuisance``) are seeded by a
    hash of the bits of its float32 nuisance row, so they do not depend on the batch.  A
    map value is a hash of (seed, map, row, column offset from the centre column): the
    centre of a wide render gets the same maps as the square render of that height.
    """
    assert nuisance.ndim == 2 and nuisance.shape[1] == N_NUISANCE, nuisance.shape
    bits = nuisance.float().contiguous().view(torch.int32).to(torch.int64)
    seed = torch.zeros_like(bits[:, 0])
    for j in range(N_NUISANCE):
        seed = mix32(seed * 31 + bits[:, j] + j)
    out = {}
    for k, (name, (h, w)) in enumerate(texture_noise_shapes(size).items()):
        iy = torch.arange(h, device=nuisance.device).view(1, h, 1)
        ix = (torch.arange(w, device=nuisance.device) - w // 2).view(1, 1, w)
        s = mix32(seed + 0x3C6EF372 * (k + 1)).view(-1, 1, 1)
        out[name] = hash_normal(s, iy, ix).unsqueeze(1)
        assert out[name].shape == (nuisance.shape[0], 1, h, w), out[name].shape
    return out


def _check_noise(noise: dict[str, Tensor], b: int, size: tuple[int, int], device: torch.device) -> dict[str, Tensor]:
    """Validate texture noise maps (keys and shapes) and move them to ``device`` as float32."""
    assert set(noise) >= set(TEXTURE_NOISE), f"noise needs keys {TEXTURE_NOISE}, got {sorted(noise)}"
    out = {}
    for name, (h, w) in texture_noise_shapes(size).items():
        assert tuple(noise[name].shape) == (b, 1, h, w), (name, tuple(noise[name].shape), (b, 1, h, w))
        out[name] = noise[name].to(device=device, dtype=torch.float32)
    return out


def _scene_grid(hs: int, ws: int, device: torch.device) -> tuple[Tensor, Tensor, float]:
    """Pixel-centre coordinates [1, hs, ws] of the scene frame and the grid step."""
    px = 2.0 / hs
    y = -1.0 + (torch.arange(hs, dtype=torch.float32, device=device) + 0.5) * px
    x = (torch.arange(ws, dtype=torch.float32, device=device) + 0.5 - ws / 2) * px
    return x.view(1, 1, ws).expand(1, hs, ws), y.view(1, hs, 1).expand(1, hs, ws), px


def _render_chunk(
    identity: Tensor, nuisance: Tensor, noise: dict[str, Tensor], style: str, hs: int, ws: int, supersample: int
) -> tuple[Tensor, Tensor]:
    """Render one chunk on the supersampled grid: RGB [B,3,hs,ws] in [0,1], mask [B,1,hs,ws]."""
    geom, fringe, shade = STYLE_SPECS[style]
    L = face_layout(identity, geom)
    N = decode_nuisance(nuisance)
    T = texture_fields(noise, hs, ws, supersample)
    bx, by, px = _scene_grid(hs, ws, identity.device)
    c, s = torch.cos(N.tilt), torch.sin(N.tilt)
    dx, dy = bx - N.shift_x, by - N.shift_y
    x, y = (c * dx + s * dy) / FACE_ZOOM, (-s * dx + c * dy) / FACE_ZOOM
    S = face_shapes(L, x, y, px / FACE_ZOOM, fringe_edge=fringe(L, x, N))
    img = shade(L, S, bx, by, N, T).clamp(0.0, 1.0)
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
    size: tuple[int, int] = (128, 128),
    return_mask: bool = False,
    supersample: int = 2,
    chunk_pixels: int = 1 << 18,
    num_threads: int | None = None,
    noise: dict[str, Tensor] | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Render faces on the device of ``identity``.

    Args:
        identity: [B, N_IDENTITY] factors in [-1, 1] (see ``IDENTITY_FACTORS``).
        nuisance: [B, N_NUISANCE] factors in [-1, 1] (see ``NUISANCE_FACTORS``).
        style: one of ``STYLES``.
        size: output ``(H, W)``; the face is scaled to ``H`` and centred horizontally.
        return_mask: also return the soft head mask (face, ears and hair) [B, 1, H, W] in [0, 1].
        supersample: grid refinement per axis before area downsampling (antialiasing).
        chunk_pixels: approximate number of supersampled pixels per internal batch (memory
            bound); on a GPU a large value (e.g. ``1 << 24``) avoids many small launches.
        num_threads: torch intra-op threads for this call (restored afterwards); ``None`` keeps
            the current setting.  On a busy, shared CPU ``1`` is often much faster.
        noise: texture noise maps ``{name: [B, 1, h, w]}`` for the names in ``TEXTURE_NOISE``
            and the shapes of ``texture_noise_shapes(size)``, standard normal; ``None``:
            ``draw_texture_noise(nuisance, size)``.  Moved to the device of ``identity``.
            Only ``photo`` (all maps) and ``caricature`` (``grain``) depend on them.

    Returns:
        float32 images [B, 3, H, W] in [-1, 1] (and the mask if requested).
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    assert identity.ndim == 2 and identity.shape[1] == N_IDENTITY, identity.shape
    assert nuisance.shape == (identity.shape[0], N_NUISANCE), nuisance.shape
    h, w = int(size[0]), int(size[1])
    assert h > 0 and w > 0 and supersample >= 1, (size, supersample)
    dev, b = identity.device, identity.shape[0]
    hs, ws = h * supersample, w * supersample
    step = max(1, chunk_pixels // (hs * ws))
    imgs, masks = [], []
    with torch.no_grad(), _intra_op_threads(num_threads):
        nuisance = nuisance.to(device=dev, dtype=torch.float32)
        maps = _check_noise(draw_texture_noise(nuisance, (h, w)) if noise is None else noise, b, (h, w), dev)
        for i in range(0, b, step):
            sl = slice(i, i + step)
            chunk = {k: v[sl] for k, v in maps.items()}
            img, mask = _render_chunk(identity[sl].float(), nuisance[sl], chunk, style, hs, ws, supersample)
            imgs.append(F.avg_pool2d(img, supersample))
            masks.append(F.avg_pool2d(mask, supersample))
    out = torch.cat(imgs) * 2.0 - 1.0 if imgs else torch.zeros(0, 3, h, w, device=dev)
    assert out.shape == (b, 3, h, w), out.shape
    if return_mask:
        return out, (torch.cat(masks) if masks else torch.zeros(0, 1, h, w, device=dev))
    return out


NUISANCE_STREAM = 0x5EED_0000  # offset of the nuisance stream's seed from the identity stream's


def render_from_seed(
    seed: int, n: int, style: str = "photo", size: tuple[int, int] = (64, 64), return_mask: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Sample ``n`` identities and nuisances from ``seed`` and render them.

    Identities and nuisances come from two streams of ``seed``, so the first k faces of
    ``render_from_seed(seed, n)`` are the same for every n >= k: a content seed names the same face in
    every notebook, whatever its sample size."""
    identity = sample_identity(n, torch.Generator().manual_seed(seed))
    nuisance = sample_nuisance(n, torch.Generator().manual_seed(seed + NUISANCE_STREAM))
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
