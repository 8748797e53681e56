"""Geometry of the toy face world: factor names, noise, signed distances, face layout.

Everything here works on a *scene* coordinate frame shared by all output sizes:
``y`` runs from -1 (top row) to +1 (bottom row) and ``x`` from ``-W/H`` to ``+W/H``,
so a wider image shows more of the same scene to the left and right.  Shapes and
shading are defined in scene units, which makes a 128x128 render a sharper view of
exactly the same face as a 64x64 render.  The stochastic detail (hair strands, pores,
background grain) is not: it comes from texture noise maps aligned to the output pixel
grid (see :func:`hrinv_nb.toy.render.draw_texture_noise`), as a StyleGAN generator's
noise inputs are aligned to its feature grid.  Nothing here is seeded by an integer
derived from a factor: every deterministic part is a smooth function of the factors.

Face parts live in a *face-local* frame: the scene frame shifted and rotated by the
pose nuisance and divided by a fixed zoom (``hrinv_nb.toy.render.FACE_ZOOM``).
Distances are signed (negative inside) and measured in face-local units.  Shapes that
are not exact distance functions are turned into approximate ones by dividing the
implicit field by its finite-difference gradient norm (:func:`normalise_field`),
which is accurate near the boundary, where antialiasing and outlines need it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

IDENTITY_FACTORS: tuple[str, ...] = (
    "head_width",
    "head_length",
    "jaw_width",
    "chin_length",
    "eye_spacing",
    "eye_size",
    "eye_height",
    "iris_hue",
    "brow_weight",
    "brow_tilt",
    "nose_length",
    "nose_width",
    "mouth_width",
    "mouth_curve",
    "lip_fullness",
    "hair_length",
    "hair_volume",
    "fringe",
    "hair_part",
    "hair_darkness",
    "hair_warmth",
    "skin_tone",
)
# The three *_seed factors are continuous (see ``render_shading.Nuisance``): background_seed and
# hair_seed are phases of smooth wall and hair-clump patterns, skin_seed sets the pore/mottling
# contrast and the phase of a broad complexion variation.  Stochastic texture: the noise maps.
NUISANCE_FACTORS: tuple[str, ...] = (
    "light_azimuth",
    "light_elevation",
    "light_intensity",
    "background_hue",
    "background_lightness",
    "background_texture",
    "background_seed",
    "pose_shift_x",
    "pose_shift_y",
    "pose_tilt",
    "hair_seed",
    "skin_seed",
    "shirt_hue",
)
N_IDENTITY: int = len(IDENTITY_FACTORS)
N_NUISANCE: int = len(NUISANCE_FACTORS)
TORSO_CY, TORSO_RX, TORSO_RY = 0.9, 1.1, 0.45  # shoulders: an ellipse below the head
NECKLINE_Y = 0.55  # lowest point of the (U-shaped) neckline, face-local units


# ----------------------------------------------------------------------------- basics


def smoothstep(e0: float | Tensor, e1: float | Tensor, x: Tensor) -> Tensor:
    """Hermite step from 0 at ``e0`` to 1 at ``e1``."""
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def coverage(d: Tensor, width: float) -> Tensor:
    """Box-filtered coverage of the region ``d < 0`` for a pixel footprint ``width``."""
    return (0.5 - d / width).clamp(0.0, 1.0)


def line_coverage(d: Tensor, thickness: float | Tensor, width: float) -> Tensor:
    """Coverage of a line of given ``thickness`` centred on the curve ``d == 0``."""
    return coverage(d.abs() - 0.5 * thickness, width)


def normalise_field(f: Tensor, px: float) -> Tensor:
    """Approximate signed distance ``f / |grad f|`` (finite differences, grid step ``px``)."""
    gy, gx = torch.gradient(f, spacing=px, dim=(-2, -1))
    return f / torch.sqrt(gx * gx + gy * gy).clamp_min(1e-3)


def ellipse_field(
    x: Tensor, y: Tensor, cx: Tensor | float, cy: Tensor | float, rx: Tensor | float, ry: Tensor | float
) -> Tensor:
    """Implicit ellipse field (0 on the boundary, negative inside; not a distance)."""
    return torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + 1e-12) - 1.0


def box_sd(
    x: Tensor, y: Tensor, cx: Tensor | float, cy: Tensor | float, hx: Tensor | float, hy: Tensor | float, r: float
) -> Tensor:
    """Exact signed distance to an axis-aligned box with half sizes ``hx, hy`` and rounding ``r``."""
    qx = (x - cx).abs() - hx + r
    qy = (y - cy).abs() - hy + r
    outside = torch.sqrt(qx.clamp_min(0.0) ** 2 + qy.clamp_min(0.0) ** 2)
    return outside + torch.maximum(qx, qy).clamp_max(0.0) - r


def nexp(a: Tensor) -> Tensor:
    """``exp(a)`` with ``a >= -60``: never underflows into (very slow) denormal floats."""
    return torch.exp(a.clamp_min(-60.0))


def spec_pow(c: Tensor, k: float) -> Tensor:
    """Specular lobe ``c ** k`` for a cosine ``c`` in [0, 1], floored so it stays a normal float."""
    return c.clamp_min(0.06) ** k


def gauss(
    x: Tensor, y: Tensor, cx: Tensor | float, cy: Tensor | float, sx: Tensor | float, sy: Tensor | float
) -> Tensor:
    """Unnormalised anisotropic Gaussian bump of height 1."""
    return nexp(-(((x - cx) / sx) ** 2) - ((y - cy) / sy) ** 2)


# ----------------------------------------------------------------------------- noise

_M32 = 0xFFFFFFFF


def mix32(h: Tensor) -> Tensor:
    """Integer avalanche hash of int64 values (low 32 bits used) -> int64 in [0, 2**32)."""
    h = h & _M32
    h = (((h >> 16) ^ h) * 0x45D9F3B) & _M32
    h = (((h >> 16) ^ h) * 0x45D9F3B) & _M32
    return (h >> 16) ^ h


def hash_normal(seed: Tensor, iy: Tensor, ix: Tensor) -> Tensor:
    """Standard-normal value per (seed, row, column): Box-Muller on two hashed uniforms.

    ``seed`` int64 [B,1,1], ``iy`` and ``ix`` int64 lattice indices broadcastable to
    [B,H,W].  Pure integer arithmetic up to the final floats, so the result is the same on
    every device and does not depend on the batch it is computed in.
    """
    h = mix32(mix32(mix32(seed) ^ (iy & _M32)) ^ (ix & _M32))
    u1 = ((mix32(h ^ 0x68E31DA4) >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216.0)
    u2 = (mix32(h ^ 0x1B56C4E9) >> 8).to(torch.float32) * (1.0 / 16777216.0)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)


# ----------------------------------------------------------------------------- colours


def palette(t: Tensor, stops: list[tuple[float, float, float]]) -> Tensor:
    """Piecewise-linear colour ramp: ``t`` in [-1, 1] (clamped) -> RGB [B, 3, 1, 1]."""
    s = torch.tensor(stops, dtype=torch.float32, device=t.device)
    n = s.shape[0]
    pos = ((t.flatten() + 1.0) * 0.5 * (n - 1)).clamp(0.0, n - 1.0)
    i0 = pos.floor().clamp(max=n - 2).long()
    w = (pos - i0.float())[:, None]
    return (s[i0] * (1 - w) + s[i0 + 1] * w)[:, :, None, None]


def hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV (each [B], hue in turns) -> RGB [B, 3, 1, 1]."""
    k = torch.stack([torch.full_like(h, 5.0), torch.full_like(h, 3.0), torch.full_like(h, 1.0)], 1)
    k = (k + h[:, None] * 6.0) % 6.0
    f = v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return f[:, :, None, None]


SKIN_STOPS = [(0.98, 0.85, 0.76), (0.92, 0.72, 0.59), (0.77, 0.55, 0.41), (0.55, 0.37, 0.26), (0.35, 0.23, 0.16)]
HAIR_STOPS = [(0.93, 0.84, 0.60), (0.80, 0.62, 0.35), (0.56, 0.38, 0.22), (0.31, 0.20, 0.12), (0.10, 0.08, 0.07)]
IRIS_STOPS = [(0.28, 0.50, 0.82), (0.42, 0.56, 0.62), (0.36, 0.54, 0.30), (0.52, 0.38, 0.17), (0.30, 0.17, 0.09)]


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class StyleGeometry:
    """How a style deforms the shared face layout (multipliers on the photo geometry)."""

    exaggeration: float = 1.0  # identity factors are multiplied by this (caricature)
    eye_scale_x: float = 1.0
    eye_scale_y: float = 1.0
    eye_lower: float = 0.8  # lower-lid radius relative to upper-lid radius
    iris_x: float = 0.46  # iris half-width relative to eye half-width
    iris_y: float = 0.0  # iris half-height relative to eye height (0: round iris)
    eye_drop: float = 0.0
    brow_scale: float = 1.0
    mouth_scale: float = 1.0
    nose_scale: float = 1.0
    jaw_taper_add: float = 0.0
    jaw_exponent: float = 2.0  # 2: rounded jaw; towards 1: V-shaped chin
    head_scale: float = 1.0


@dataclass(frozen=True)
class FaceLayout:
    """Per-sample geometry and colours; scalars are [B,1,1], colours [B,3,1,1]."""

    cy: Tensor
    rx: Tensor
    ry: Tensor
    ry_low: Tensor
    jaw_taper: Tensor
    jaw_exponent: float
    chin_y: Tensor
    eye_x: Tensor
    eye_y: Tensor
    eye_rx: Tensor
    eye_ry: Tensor
    eye_ry_low: Tensor
    iris_rx: Tensor
    iris_ry: Tensor
    brow_y: Tensor
    brow_len: Tensor
    brow_thick: Tensor
    brow_tilt: Tensor
    nose_y: Tensor
    nose_w: Tensor
    mouth_y: Tensor
    mouth_w: Tensor
    mouth_curve: Tensor
    lip_up: Tensor
    lip_low: Tensor
    ear_x: Tensor
    ear_y: Tensor
    neck_w: Tensor
    hair_cy: Tensor
    hair_rx: Tensor
    hair_ry: Tensor
    hair_bottom: Tensor
    hairline_top: Tensor
    hairline_side: Tensor
    part_x: Tensor
    part_sweep: Tensor
    skin: Tensor
    hair: Tensor
    iris: Tensor
    hair_darkness: Tensor
    hair_warmth: Tensor
    skin_tone: Tensor
    iris_hue: Tensor


def exaggerate_identity(identity: Tensor, factor: float = 1.9, limit: float = 2.0) -> Tensor:
    """Caricature rule: scale deviations from the mean face (0) by ``factor`` and clip to ``limit``."""
    return (identity * factor).clamp(-limit, limit)


def face_layout(identity: Tensor, sg: StyleGeometry) -> FaceLayout:
    """Map identity factors [B, N_IDENTITY] to the geometry of one style."""
    assert identity.ndim == 2 and identity.shape[1] == N_IDENTITY, identity.shape
    ident = identity.float()
    if sg.exaggeration != 1.0:
        ident = exaggerate_identity(ident, sg.exaggeration)
    f = {k: ident[:, i].view(-1, 1, 1) for i, k in enumerate(IDENTITY_FACTORS)}
    hs = sg.head_scale
    cy = torch.full_like(f["head_width"], -0.12)
    rx = 0.37 * (1 + 0.10 * f["head_width"]) * hs
    ry = 0.49 * (1 + 0.07 * f["head_length"]) * hs
    ry_low = ry * (1 + 0.08 * f["chin_length"])
    chin_y = cy + ry_low
    eye_y = cy + 0.03 + 0.03 * f["eye_height"] + sg.eye_drop
    eye_rx = 0.060 * (1 + 0.15 * f["eye_size"]) * sg.eye_scale_x
    eye_ry = 0.030 * (1 + 0.20 * f["eye_size"]) * sg.eye_scale_y
    iris_rx = sg.iris_x * eye_rx
    iris_ry = torch.maximum(iris_rx, sg.iris_y * eye_ry)
    nose_y = torch.minimum(eye_y + 0.16 + 0.03 * f["nose_length"], chin_y - 0.15)
    mouth_y = nose_y + 0.42 * (chin_y - nose_y)
    ms = sg.mouth_scale
    fringe01 = ((f["fringe"] + 1) * 0.5).clamp(0.0, 1.15)
    len01 = ((f["hair_length"] + 1) * 0.5).clamp(0.0, 1.25)
    hair_rx = torch.maximum(rx + 0.05 + 0.035 * f["hair_volume"], rx + 0.015)
    hair_ry = torch.maximum(ry + 0.05 + 0.03 * f["hair_volume"], ry + 0.025)
    hair = palette(f["hair_darkness"], HAIR_STOPS)
    warm = f["hair_warmth"].view(-1, 1, 1, 1)
    hair = hair * torch.cat([1 + 0.3 * warm.clamp_min(0), 1 + 0.02 * warm, 1 - 0.3 * warm.clamp_min(0)], 1)
    hair = torch.lerp(hair, hair.mean(1, keepdim=True), 0.5 * (-warm).clamp(0, 1)).clamp(0, 1)
    return FaceLayout(
        cy=cy,
        rx=rx,
        ry=ry,
        ry_low=ry_low,
        jaw_taper=(0.30 - 0.10 * f["jaw_width"] + sg.jaw_taper_add).clamp(0.05, 0.75),
        jaw_exponent=sg.jaw_exponent,
        chin_y=chin_y,
        eye_x=0.145 + 0.02 * f["eye_spacing"],
        eye_y=eye_y,
        eye_rx=eye_rx,
        eye_ry=eye_ry,
        eye_ry_low=eye_ry * sg.eye_lower,
        iris_rx=iris_rx,
        iris_ry=iris_ry,
        brow_y=eye_y - eye_ry - 0.045 * (0.6 + 0.4 * sg.eye_scale_y),
        brow_len=0.075 * (0.7 + 0.3 * sg.eye_scale_x),
        brow_thick=(0.021 + 0.010 * f["brow_weight"]).clamp_min(0.006) * sg.brow_scale,
        brow_tilt=0.022 * f["brow_tilt"],
        nose_y=nose_y,
        nose_w=(0.044 + 0.016 * f["nose_width"]).clamp_min(0.015) * sg.nose_scale,
        mouth_y=mouth_y,
        mouth_w=(0.09 + 0.03 * f["mouth_width"]).clamp_min(0.03) * ms,
        mouth_curve=(0.01 + 0.022 * f["mouth_curve"]) * ms**0.5,
        lip_up=(0.014 + 0.006 * f["lip_fullness"]).clamp_min(0.004) * ms**0.5,
        lip_low=(0.02 + 0.009 * f["lip_fullness"]).clamp_min(0.006) * ms**0.5,
        ear_x=rx * 0.97,
        ear_y=eye_y + 0.06,
        neck_w=0.24 * (1 + 0.06 * f["head_width"]),
        hair_cy=cy - 0.03,
        hair_rx=hair_rx,
        hair_ry=hair_ry,
        hair_bottom=cy + 0.05 + 0.8 * len01,
        hairline_top=cy - ry * (0.55 - 0.35 * fringe01),
        hairline_side=cy + ry * (-0.15 + 0.45 * len01.clamp(max=1.0)),
        part_x=0.25 * f["hair_part"] * rx,
        part_sweep=0.10 * ry * f["hair_part"],
        skin=palette(f["skin_tone"], SKIN_STOPS),
        hair=hair,
        iris=palette(f["iris_hue"], IRIS_STOPS),
        hair_darkness=f["hair_darkness"],
        hair_warmth=f["hair_warmth"],
        skin_tone=f["skin_tone"],
        iris_hue=f["iris_hue"],
    )


# ----------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class FaceShapes:
    """Signed distances (face-local units, negative inside) of the face parts, each [B, Hs, Ws]."""

    x: Tensor
    y: Tensor  # face-local coordinates
    px: float  # grid step (face-local units)
    head: Tensor
    head_rho: Tensor  # head distance, normalised head radius (0 centre, 1 edge)
    ears: Tensor
    neck: Tensor
    torso: Tensor
    hair_outer: Tensor
    hairline: Tensor
    eyes: Tensor
    iris: Tensor
    pupil: Tensor
    brows: Tensor
    lips: Tensor
    mouth_line: Tensor
    nostrils: Tensor
    nose_arc: Tensor


def hairline_curve(L: FaceLayout, x: Tensor, fringe_edge: Tensor | None = None) -> Tensor:
    """Lower boundary ``y(x)`` of the front hair (the fringe / temples)."""
    side = smoothstep(0.6, 1.0, (x / L.rx).abs())
    y = L.hairline_top + (L.hairline_side - L.hairline_top) * side
    y = y + L.part_sweep * (x / L.rx).clamp(-1.2, 1.2)
    y = y - 0.09 * L.ry * nexp(-(((x - L.part_x) / 0.05) ** 2))
    if fringe_edge is not None:
        y = y + fringe_edge
    return y


def face_shapes(L: FaceLayout, x: Tensor, y: Tensor, px: float, fringe_edge: Tensor | None = None) -> FaceShapes:
    """Evaluate all part distances at face-local coordinates ``x, y`` [B, Hs, Ws]."""
    assert x.shape == y.shape and x.ndim == 3, (x.shape, y.shape)
    xa = x.abs()
    # head: ellipse whose lower half tapers into a jaw
    yn = torch.where(y > L.cy, (y - L.cy) / L.ry_low, (y - L.cy) / L.ry)
    taper = 1 - L.jaw_taper * yn.clamp(0.0, 1.0) ** L.jaw_exponent
    xn = x / (L.rx * taper)
    rho = torch.sqrt(xn * xn + yn * yn + 1e-12)
    head = normalise_field(rho - 1.0, px)
    ears = normalise_field(ellipse_field(xa, y, L.ear_x, L.ear_y, 0.042, 0.078), px)
    neck_top = L.cy + 0.5 * L.ry
    half = 0.5 * (NECKLINE_Y - neck_top)
    neck = box_sd(x, y, 0.0, neck_top + half, L.neck_w, half, 0.18)
    torso = normalise_field(ellipse_field(x, y, 0.0, TORSO_CY, TORSO_RX, TORSO_RY), px)
    # hair: a cap around the skull united with a curtain down to the hair length
    cap = normalise_field(ellipse_field(x, y, 0.0, L.hair_cy, L.hair_rx, L.hair_ry), px)
    half = 0.5 * (L.hair_bottom - L.hair_cy)
    flare = ((y - L.hair_cy) / (2 * half)).clamp(0.0, 1.0)
    curtain = box_sd(x, y, 0.0, L.hair_cy + half, L.hair_rx * (0.95 + 0.1 * flare), half, 0.12)
    hair_outer = torch.minimum(cap, curtain)
    hairline = normalise_field(y - hairline_curve(L, x, fringe_edge), px)
    # eyes (mirrored: one evaluation serves both)
    ex, ey = xa - L.eye_x, y - L.eye_y
    eyes = normalise_field(
        torch.sqrt((ex / L.eye_rx) ** 2 + (ey / torch.where(ey < 0, L.eye_ry, L.eye_ry_low)) ** 2 + 1e-12) - 1.0, px
    )
    iris = normalise_field(ellipse_field(ex, ey, 0.0, 0.0, L.iris_rx, L.iris_ry), px)
    pupil = normalise_field(ellipse_field(ex, ey, 0.0, 0.0, 0.45 * L.iris_rx, 0.45 * L.iris_ry), px)
    # brows: arched, tapered bands above the eyes
    u = (xa - L.eye_x) / L.brow_len
    bc = L.brow_y - 0.018 * (1 - u * u) + L.brow_tilt * u
    bt = L.brow_thick * (1 - 0.45 * ((u + 0.3) / 1.3).clamp(-1, 1) ** 2)
    brows = normalise_field(torch.maximum((y - bc).abs() - 0.5 * bt, (u.abs() - 1) * L.brow_len), px)
    # mouth: a curved line with lips above and below it
    mu = (x / L.mouth_w).clamp(-1.0, 1.0)
    yl = L.mouth_y - L.mouth_curve * (mu * mu - 0.35)
    env = torch.sqrt((1 - mu * mu).clamp_min(0.0) + 1e-4)
    bow = 1 - 0.3 * nexp(-((x / (0.25 * L.mouth_w)) ** 2))
    lips = normalise_field(
        torch.maximum(torch.maximum(yl - L.lip_up * env * bow - y, y - yl - L.lip_low * env), xa - L.mouth_w), px
    )
    mouth_line = torch.sqrt((xa - L.mouth_w).clamp_min(0.0) ** 2 + (y - yl) ** 2 + 1e-12)
    mouth_line = mouth_line / torch.sqrt(1 + (2 * L.mouth_curve * mu / L.mouth_w) ** 2)
    # nose: nostrils and the arc under the tip
    nostrils = normalise_field(
        ellipse_field(xa, y, 0.55 * L.nose_w, L.nose_y + 0.004, 0.32 * L.nose_w, 0.13 * L.nose_w + 0.004), px
    )
    nu = (x / L.nose_w).clamp(-0.9, 0.9)
    nose_arc = torch.sqrt(
        (xa - 0.9 * L.nose_w).clamp_min(0.0) ** 2 + (y - (L.nose_y + 0.012 - 0.3 * L.nose_w * nu * nu)) ** 2 + 1e-12
    )
    return FaceShapes(
        x=x,
        y=y,
        px=px,
        head=head,
        head_rho=rho,
        ears=ears,
        neck=neck,
        torso=torso,
        hair_outer=hair_outer,
        hairline=hairline,
        eyes=eyes,
        iris=iris,
        pupil=pupil,
        brows=brows,
        lips=lips,
        mouth_line=mouth_line,
        nostrils=nostrils,
        nose_arc=nose_arc,
    )
