"""Shading building blocks of the toy face world, shared by all styles.

Nuisance decoding (light, background, pose, phases), the texture fields derived from
the noise maps, compositing, Lambert shading of height fields, the relief of the head,
the hair strand geometry and toon helpers.  All per-pixel tensors are [B, Hs, Ws] on
the supersampled grid; colours are [B,3,...]; every tensor is created on the device of
the inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hrinv_nb.toy.render_geometry import (
    NUISANCE_FACTORS,
    TORSO_CY,
    TORSO_RX,
    TORSO_RY,
    FaceLayout,
    FaceShapes,
    coverage,
    gauss,
    hsv_to_rgb,
    line_coverage,
    smoothstep,
)


@dataclass(frozen=True)
class Nuisance:
    """Decoded nuisance factors; scalars [B,1,1], ``light`` [B,3,1,1].

    The three former texture seeds are continuous now: ``bg_phase`` and ``hair_phase``
    (radians, from ``background_seed`` and ``hair_seed``) shift smooth, low-frequency
    patterns (wall blotches and panels; hair clumps and the fringe edge), and
    ``skin_detail`` (from ``skin_seed``, in [0, 1]) sets the contrast of pores and
    mottling and the phase of a broad complexion variation.  The stochastic texture
    itself comes from the noise maps (:class:`Texture`).
    """

    light: Tensor
    intensity: Tensor
    ambient: Tensor
    bg_hue: Tensor
    bg_value: Tensor
    bg_texture: Tensor
    bg_phase: Tensor
    shift_x: Tensor
    shift_y: Tensor
    tilt: Tensor
    hair_phase: Tensor
    skin_detail: Tensor
    shirt_hue: Tensor


def decode_nuisance(nuisance: Tensor) -> Nuisance:
    """Map nuisance factors [B, N_NUISANCE] (each in [-1, 1]) to physical quantities."""
    assert nuisance.ndim == 2 and nuisance.shape[1] == len(NUISANCE_FACTORS), nuisance.shape
    v = {k: nuisance[:, i].float().view(-1, 1, 1) for i, k in enumerate(NUISANCE_FACTORS)}
    light = torch.cat(
        [0.65 * v["light_azimuth"], -0.45 + 0.3 * v["light_elevation"], torch.full_like(v["light_azimuth"], 0.8)], 1
    )
    light = light / light.norm(dim=1, keepdim=True)
    return Nuisance(
        light=light.unsqueeze(-1),
        intensity=0.85 + 0.15 * v["light_intensity"],
        ambient=0.36 - 0.06 * v["light_intensity"],
        bg_hue=(v["background_hue"] + 1) * 0.5,
        bg_value=0.62 + 0.25 * v["background_lightness"],
        bg_texture=(v["background_texture"] + 1) * 0.5,
        bg_phase=math.pi * v["background_seed"],
        shift_x=0.05 * v["pose_shift_x"],
        shift_y=0.04 * v["pose_shift_y"],
        tilt=0.10 * v["pose_tilt"],
        hair_phase=math.pi * v["hair_seed"],
        skin_detail=(v["skin_seed"] + 1) * 0.5,
        shirt_hue=(v["shirt_hue"] + 1) * 0.5,
    )


# ----------------------------------------------------------------------------- texture noise

TEXTURE_NOISE: tuple[str, ...] = ("fine", "grain", "coarse")
STREAK_TAPS = 7  # length (output pixels) of the strand filter applied to the upsampled coarse map
HAIR_STREAK, HAIR_FINE = 0.8, 0.3  # hair texture: weights of the strand streaks and of the fine map
_GRAIN_GAIN, _STREAK_GAIN, _MOTTLE_GAIN = 1.99, 2.87, 2.37  # unit-variance normalisers of the fields


def texture_noise_shapes(size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """Shapes ``(h, w)`` of the texture noise maps for an output of ``size = (H, W)``."""
    h, w = int(size[0]), int(size[1])
    return {"fine": (h, w), "grain": (h, w), "coarse": ((h + 1) // 2, (w + 1) // 2)}


@dataclass(frozen=True)
class Texture:
    """Texture fields on the supersampled grid, each [B, Hs, Ws], roughly unit variance, zero mean.

    * ``fine``: the ``fine`` map itself (skin pores, brow hairs, fine hair detail);
    * ``grain``: the ``grain`` map lightly blurred by a 3x3 kernel (background grain, shirt weave);
    * ``streak_v`` / ``streak_h``: the ``coarse`` map upsampled x2, low-passed along the
      vertical / horizontal direction by a ``STREAK_TAPS``-pixel Hann window and high-passed
      across it by ``[-1, 2, -1]`` (thin hair strands);
    * ``mottle``: the ``coarse`` map upsampled and blurred by a 5x5 binomial (skin mottling).

    Every field is computed at output resolution by small, local linear filters and then
    bilinearly sampled on the supersampled grid (pixel centres aligned).
    """

    fine: Tensor
    grain: Tensor
    streak_v: Tensor
    streak_h: Tensor
    mottle: Tensor


def _sep_filter(x: Tensor, ky: Tensor, kx: Tensor) -> Tensor:
    """Separable 'same' filtering of [B,1,H,W] with replicate padding."""
    py, px = ky.numel() // 2, kx.numel() // 2
    x = F.pad(x, (px, px, py, py), mode="replicate")
    return F.conv2d(x, ky.view(1, 1, -1, 1) * kx.view(1, 1, 1, -1))


def _normalised(k: list[float], x: Tensor) -> Tensor:
    """A filter kernel on the device of ``x``, scaled to unit sum."""
    t = torch.tensor(k, dtype=torch.float32, device=x.device)
    return t / t.sum()


def texture_fields(noise: dict[str, Tensor], hs: int, ws: int, supersample: int) -> Texture:
    """Turn the noise maps (shapes from :func:`texture_noise_shapes`) into :class:`Texture`."""
    fine, grain, coarse = (noise[k].float() for k in TEXTURE_NOISE)
    b, h, w = fine.shape[0], hs // supersample, ws // supersample
    light = _normalised([1.0, 4.0, 1.0], fine)
    hann = _normalised([math.sin(math.pi * (i + 1) / (STREAK_TAPS + 1)) ** 2 for i in range(STREAK_TAPS)], fine)
    across = torch.tensor([-1.0, 2.0, -1.0], device=fine.device)  # high-pass across the strands
    wide = _normalised([1.0, 4.0, 6.0, 4.0, 1.0], fine)
    up = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)[..., :h, :w]
    fields = torch.cat(
        [
            fine,
            _sep_filter(grain, light, light) * _GRAIN_GAIN,
            _sep_filter(up, hann, across) * _STREAK_GAIN,
            _sep_filter(up, across, hann) * _STREAK_GAIN,
            _sep_filter(up, wide, wide) * _MOTTLE_GAIN,
        ],
        1,
    )
    assert fields.shape == (b, 5, h, w), fields.shape
    if supersample > 1:
        fields = F.interpolate(fields, scale_factor=supersample, mode="bilinear", align_corners=False)
    return Texture(*fields.unbind(1))


# ----------------------------------------------------------------------------- helpers


def fract(x: Tensor) -> Tensor:
    """Fractional part in [0, 1) (also for negative inputs, unlike ``torch.frac``)."""
    return x - torch.floor(x)


def rgb(r: float, g: float, b: float, device: torch.device | str = "cpu") -> Tensor:
    """A constant colour [1, 3, 1, 1] on ``device``."""
    return torch.tensor([r, g, b], dtype=torch.float32, device=device).view(1, 3, 1, 1)


def over(img: Tensor, colour: Tensor, alpha: Tensor) -> Tensor:
    """Alpha-composite ``colour`` ([B,3,H,W] or [B,3,1,1]) with ``alpha`` [B,H,W] over ``img``."""
    return img + (colour - img) * alpha.unsqueeze(1)


def lambert(h: Tensor, px: float, N: Nuisance) -> tuple[Tensor, Tensor]:
    """Diffuse term and Blinn half-vector cosine of the height field ``h`` [B,H,W]."""
    gy, gx = torch.gradient(h, spacing=px, dim=(-2, -1))
    inv = torch.rsqrt(gx * gx + gy * gy + 1.0)
    lx, ly, lz = N.light[:, 0], N.light[:, 1], N.light[:, 2]
    ndl = ((-gx * lx - gy * ly + lz) * inv).clamp_min(0.0)
    hz = lz + 1.0
    hn = torch.sqrt(lx * lx + ly * ly + hz * hz)
    ndh = ((-gx * lx - gy * ly + hz) * inv / hn).clamp_min(0.0)
    return ndl, ndh


def hue_colour(h: Tensor, s: float, v: Tensor | float) -> Tensor:
    """RGB [B,3,1,1] of hue ``h`` [B,1,1] (turns) at saturation ``s`` and value ``v``."""
    hh = h.flatten()
    vv = v.flatten() if isinstance(v, Tensor) else torch.full_like(hh, v)
    return hsv_to_rgb(hh, torch.full_like(hh, s), vv)


def saturate(c: Tensor, amount: float) -> Tensor:
    """Push a colour [B,3,...] away from its grey value by ``amount`` (0: unchanged)."""
    g = c.mean(1, keepdim=True)
    return (g + (c - g) * (1 + amount)).clamp(0.0, 1.0)


def torso_height(x: Tensor, y: Tensor) -> Tensor:
    """Height field of the shoulders (an ellipsoid)."""
    q = 1 - (x / TORSO_RX) ** 2 - ((y - TORSO_CY) / TORSO_RY) ** 2
    return 0.5 * torch.sqrt(q.clamp_min(0) + 0.02)


def dome(S: FaceShapes, scale: float = 0.22) -> Tensor:
    """Height field of the head as an ellipsoid (softened at the silhouette)."""
    return scale * torch.sqrt((1 - S.head_rho * S.head_rho).clamp_min(0.0) + 0.02)


def face_relief(L: FaceLayout, S: FaceShapes) -> Tensor:
    """Photo height field: head dome plus nose, sockets, brow ridge, cheeks, lips and chin."""
    x, y, xa = S.x, S.y, S.x.abs()
    nose_mid = 0.5 * (L.eye_y + L.nose_y)
    h = dome(S)
    h = h + 0.05 * gauss(x, y, 0.0, L.nose_y - 0.015, 0.7 * L.nose_w, 0.035)
    h = h + 0.035 * gauss(x, y, 0.0, nose_mid, 0.45 * L.nose_w, 0.5 * (L.nose_y - L.eye_y))
    h = h + 0.02 * gauss(xa, y, 0.75 * L.nose_w, L.nose_y, 0.4 * L.nose_w, 0.025)
    h = h - 0.035 * gauss(xa, y, L.eye_x, L.eye_y, 0.09, 0.055)
    h = h + 0.02 * gauss(xa, y, L.eye_x, L.eye_y, L.eye_rx, 1.3 * L.eye_ry)
    h = h + 0.02 * gauss(xa, y, L.eye_x, L.brow_y, 0.10, 0.03)
    h = h + 0.03 * gauss(xa, y, L.eye_x + 0.03, L.nose_y, 0.09, 0.08)
    h = h + 0.015 * gauss(x, y, 0.0, L.mouth_y, L.mouth_w, 0.03)
    h = h - 0.01 * gauss(x, y, 0.0, L.mouth_y + 0.05, 0.7 * L.mouth_w, 0.015)
    return h + 0.025 * gauss(x, y, 0.0, L.chin_y - 0.06, 0.08, 0.05)


@dataclass(frozen=True)
class HairFlow:
    """Deterministic strand geometry of the hair, each [B, Hs, Ws].

    ``s_cap`` / ``s_hang``: strand coordinates (one unit per strand) over the skull (fanning
    out from the parting) and below it (hanging vertically); ``hang`` blends the two;
    ``r``: distance from the crown; ``wv`` / ``wh``: how vertical / horizontal the strands
    run (used to steer the noise streaks); ``line``: distance to every third strand line;
    ``clumps``: a smooth, broad light/dark clump pattern in [-1, 1] whose phase is the
    ``hair_seed`` nuisance (continuous).
    """

    s_cap: Tensor
    s_hang: Tensor
    hang: Tensor
    r: Tensor
    wv: Tensor
    wh: Tensor
    line: Tensor
    clumps: Tensor


def hair_flow(L: FaceLayout, S: FaceShapes, N: Nuisance) -> HairFlow:
    """Strand geometry: strands fan out from the parting over the skull and hang vertically below it."""
    dx = S.x - L.part_x
    dy = S.y - (L.hair_cy - L.hair_ry - 0.02)
    r = torch.sqrt(dx * dx + dy * dy + 1e-6)
    ph = N.hair_phase
    warp = 0.5 * torch.sin(3.1 * S.x + 2.3 * S.y + ph) + 0.5 * torch.sin(4.3 * S.y - 2.9 * S.x + 2.0 * ph)
    s_cap = (torch.atan2(dx, dy) + 0.12 * warp) * 9.0
    s_hang = (S.x + 0.05 * warp) / 0.045
    hang = smoothstep(L.hair_cy - 0.05, L.hair_cy + 0.2, S.y)
    line_cap = (fract(s_cap / 3.0) - 0.5) * r / 3.0
    line_hang = (fract(s_hang / 3.0) - 0.5) * 0.135
    clump_cap = torch.sin(0.7 * s_cap + ph)
    clump_hang = torch.sin(0.35 * s_hang + ph + 0.8 * torch.sin(5.0 * S.y + ph))
    return HairFlow(
        s_cap=s_cap,
        s_hang=s_hang,
        hang=hang,
        r=r,
        wv=torch.lerp(dy.abs() / r, torch.ones_like(r), hang),
        wh=torch.lerp(dx.abs() / r, torch.zeros_like(r), hang),
        line=torch.where(hang > 0.5, line_hang, line_cap),
        clumps=torch.lerp(clump_cap, clump_hang, hang),
    )


def hair_texture(H: HairFlow, T: Texture) -> Tensor:
    """Stochastic hair detail (zero mean): steered strand streaks from ``coarse`` plus ``fine``."""
    return HAIR_STREAK * (H.wv * T.streak_v + H.wh * T.streak_h) + HAIR_FINE * T.fine


def hair_height(L: FaceLayout, S: FaceShapes) -> Tensor:
    """Hair volume: a dome over the cap continuing as a vertical cylinder below it."""
    yy = (S.y - L.hair_cy).clamp_max(0.0) / L.hair_ry
    q = 1 - (S.x / L.hair_rx) ** 2 - yy * yy
    return 0.8 * L.hair_rx * torch.sqrt(q.clamp_min(0.0) + 0.03)


def head_mask_distance(S: FaceShapes) -> Tensor:
    """Distance field of the whole head (face, ears, hair) used for the returned mask."""
    return torch.minimum(torch.minimum(S.head, S.ears), S.hair_outer)


def front_hair(S: FaceShapes, jag: Tensor | float = 0.0) -> Tensor:
    """Distance field of the hair in front of the face (cap above the hairline)."""
    return torch.maximum(S.hair_outer + jag, S.hairline + jag)


# ----------------------------------------------------------------------------- toon helpers


def toon_layer(
    img: Tensor, d: Tensor, fill: Tensor, ink: Tensor, t: float, w: float, fill_alpha: float = 1.0
) -> Tensor:
    """Paint a region ``d < 0`` with ``fill`` and an outline of thickness ``t`` in ``ink``."""
    img = over(img, fill, fill_alpha * coverage(d, w))
    return over(img, ink, line_coverage(d, t, w))


def cel(v: Tensor, threshold: float, w: float = 0.04) -> Tensor:
    """Two-tone quantisation of a shading value with a short smooth transition; [B,1,H,W]."""
    return smoothstep(threshold - w, threshold + w, v).unsqueeze(1)


def toon_eyes(
    img: Tensor,
    L: FaceLayout,
    S: FaceShapes,
    iris_col: Tensor,
    w: float,
    sparks: tuple[tuple[float, float, float], ...],
    gradient: float,
) -> Tensor:
    """White eyes, shaded iris, pupil and highlight circles ``(dx, dy, radius)`` in iris units."""
    x, ey = S.x, S.y - L.eye_y
    eye_a = coverage(S.eyes, w)
    dev = img.device
    img = over(img, rgb(0.97, 0.97, 0.97, dev), eye_a)
    shade = (1 - gradient + gradient * smoothstep(-L.iris_ry, L.iris_ry, ey)).unsqueeze(1)
    img = over(img, iris_col * shade, coverage(S.iris, w) * eye_a)
    img = over(img, iris_col * 0.15, coverage(S.pupil, w) * eye_a)
    hx = x - torch.sign(x) * L.eye_x
    for ox, oy, rad in sparks:
        d = torch.sqrt((hx - ox * L.iris_rx) ** 2 + (ey - oy * L.iris_ry) ** 2) - rad * L.iris_rx
        img = over(img, rgb(1.0, 1.0, 1.0, dev), coverage(d, w) * eye_a)
    return img
