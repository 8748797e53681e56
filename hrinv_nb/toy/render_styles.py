"""The four styles of the toy face world: photo (source), cartoon, caricature, anime.

Each ``shade_*`` function paints one batch of faces on the supersampled grid back to
front -- background, shoulders, back hair, neck, ears, head, eyes, brows, nose,
mouth, front hair -- and returns RGB in [0, 1], shape [B, 3, Hs, Ws].  Geometry is
shared (:mod:`hrinv_nb.toy.render_geometry`); a style changes proportions through its
:class:`StyleGeometry`, the fringe edge, and how every part is painted.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from hrinv_nb.toy.render_geometry import (
    FaceLayout,
    FaceShapes,
    StyleGeometry,
    coverage,
    gauss,
    hsv_to_rgb,
    line_coverage,
    nexp,
    smoothstep,
    spec_pow,
)
from hrinv_nb.toy.render_shading import (
    Nuisance,
    Texture,
    cel,
    dome,
    face_relief,
    fract,
    front_hair,
    hair_flow,
    hair_height,
    hair_texture,
    hue_colour,
    lambert,
    over,
    rgb,
    saturate,
    toon_eyes,
    toon_layer,
    torso_height,
)

Shader = Callable[[FaceLayout, FaceShapes, Tensor, Tensor, Nuisance, Texture], Tensor]
Fringe = Callable[[FaceLayout, Tensor, Nuisance], Tensor]

# Amplitudes of the stochastic (noise-map) detail of the photo style.
BG_GRAIN = (0.02, 0.06)  # background grain: base + gain with the background_texture factor
SHIRT_WEAVE = 0.06
HAIR_TEX = 0.16  # hair strand texture around its mean 0.5
PORES, MOTTLE = 0.05, 0.02  # skin albedo modulation (scaled by 0.6 + 0.8 * skin_detail)
BROW_HAIRS = 0.2


# ----------------------------------------------------------------------------- photo


def photo_background(bx: Tensor, by: Tensor, N: Nuisance, T: Texture) -> Tensor:
    """Wall-like background: colour, smooth blotches and panels (phase: ``background_seed``), grain."""
    ph = N.bg_phase
    base = hue_colour(N.bg_hue, 0.32, N.bg_value)
    blot = 0.6 * torch.sin(2.3 * bx + 1.7 * by + ph) * torch.cos(1.9 * by - 1.1 * bx + 2.0 * ph)
    blot = blot + 0.4 * torch.sin(4.1 * bx - 3.3 * by + 3.0 * ph)
    period = 0.8 + 0.25 * (1.0 + torch.sin(ph))
    panels = torch.sin(2 * math.pi * bx / period + ph)
    amp = BG_GRAIN[0] + BG_GRAIN[1] * N.bg_texture
    lum = 1.0 - 0.12 * by + 0.10 * blot + 0.05 * panels + amp * T.grain
    return (base * lum.unsqueeze(1)).clamp(0.0, 1.0)


def shade_photo(L: FaceLayout, S: FaceShapes, bx: Tensor, by: Tensor, N: Nuisance, T: Texture) -> Tensor:
    """Photo style: Lambertian relief shading, hair strands, skin pores, textured background.

    Stochastic detail comes only from the texture fields ``T`` (noise maps): background
    grain and shirt weave from ``grain``, hair streaks and skin mottling from ``coarse``,
    pores, brow hairs and fine hair detail from ``fine``.
    """
    w, x, y, xa, dev = S.px, S.x, S.y, S.x.abs(), S.x.device

    def lit(ndl: Tensor) -> Tensor:
        return (N.ambient + N.intensity * ndl).unsqueeze(1)

    img = photo_background(bx, by, N, T)
    # shoulders: fabric folds and weave
    ndl, _ = lambert(torso_height(x, y) + 0.012 * torch.sin(x * 14.0 + 3.0 * torch.sin(y * 5.0)), w, N)
    weave = 1 + SHIRT_WEAVE * T.grain
    shirt = hue_colour(N.shirt_hue, 0.45, 0.62) * lit(ndl) * weave.unsqueeze(1)
    img = over(img, shirt, coverage(S.torso, w))
    # hair: strands, Lambert shading and a strand-modulated sheen; inner back hair darker
    H = hair_flow(L, S, N)
    tex = 0.5 + 0.06 * H.clumps + HAIR_TEX * hair_texture(H, T)
    ndl, ndh = lambert(hair_height(L, S) + 0.006 * tex, w, N)
    tex_f = (0.5 + (tex - 0.5) * smoothstep(0.03, 0.25, H.r)).unsqueeze(1)
    sheen = (0.4 * spec_pow(ndh, 10) + 0.05).unsqueeze(1) * (2.0 * tex_f - 0.6)
    hair_col = L.hair * (0.3 + 1.4 * tex_f) * lit(ndl) + sheen
    jag = 0.08 * (tex - 0.5)
    inner = 1 - 0.4 * nexp(-((x / (2.0 * L.neck_w)) ** 2)) * smoothstep(L.cy, L.chin_y, y)
    img = over(img, hair_col * (0.75 * inner).unsqueeze(1), coverage(S.hair_outer + jag, w))
    # skin albedo: pores (fine), mottling (coarse) and a broad complexion variation
    detail = 0.6 + 0.8 * N.skin_detail
    complexion = torch.sin(7.0 * x + 2.0 * math.pi * N.skin_detail) * torch.sin(6.0 * y + 1.3)
    pores = 1 + detail * (PORES * T.fine + MOTTLE * T.mottle) + 0.05 * complexion
    skin = L.skin * pores.unsqueeze(1)
    # neck (a cylinder) in the shadow of the jaw
    ndl, _ = lambert(0.15 * torch.sqrt((1 - (x / L.neck_w) ** 2).clamp_min(0) + 0.02), w, N)
    jaw_shadow = 1 - 0.55 * nexp(-S.head.clamp_min(0) / 0.1)
    img = over(img, skin * lit(ndl) * jaw_shadow.unsqueeze(1), coverage(S.neck, w))
    # ears and face with relief shading, specular, blush and the shadow of the fringe
    ndl_e, _ = lambert(dome(S) * 0.5, w, N)
    concha = 1 - 0.35 * gauss(xa, y, L.ear_x + 0.008, L.ear_y, 0.018, 0.045)
    img = over(img, skin * lit(ndl_e) * concha.unsqueeze(1), coverage(S.ears, w))
    ndl, ndh = lambert(face_relief(L, S), w, N)
    d_front = front_hair(S, jag)
    hair_shadow = 1 - 0.35 * nexp(-d_front.clamp_min(0) / 0.035)
    blush = gauss(xa, y, L.eye_x + 0.02, L.nose_y, 0.07, 0.05).unsqueeze(1) * rgb(0.04, -0.015, -0.015, dev)
    face = skin * lit(ndl) * hair_shadow.unsqueeze(1) + (0.12 * spec_pow(ndh, 24)).unsqueeze(1)
    face = face + blush
    img = over(img, face, coverage(S.head, w))
    # eyes: sclera shaded by the upper lid, iris with a dark rim, pupil, catch light, lash line
    ey = y - L.eye_y
    lid = (0.62 + 0.38 * smoothstep(-L.eye_ry, 0.4 * L.eye_ry, ey)).unsqueeze(1)
    eye_a = coverage(S.eyes, w)
    img = over(img, rgb(0.92, 0.89, 0.86, dev) * lid * (0.75 + 0.25 * N.intensity.unsqueeze(1)), eye_a)
    rr = torch.sqrt(((xa - L.eye_x) / L.iris_rx) ** 2 + (ey / L.iris_ry) ** 2)
    iris = L.iris * (1.2 - 0.55 * rr.clamp(0, 1) ** 3).unsqueeze(1) * lid
    img = over(img, iris, coverage(S.iris, w) * eye_a)
    img = over(img, rgb(0.03, 0.03, 0.03, dev), coverage(S.pupil, w) * eye_a)
    hx = x - torch.sign(x) * L.eye_x
    spark = torch.sqrt((hx + 0.3 * L.iris_rx) ** 2 + (ey + 0.35 * L.iris_ry) ** 2) - 0.28 * L.iris_rx
    img = over(img, rgb(1.0, 1.0, 1.0, dev), 0.8 * coverage(spark, w) * eye_a)
    upper = smoothstep(0.4 * L.eye_ry, -0.2 * L.eye_ry, ey)
    img = over(img, L.skin * 0.2, line_coverage(S.eyes, 0.013, w) * (0.35 + 0.6 * upper))
    # brows (hairs from the fine map), nostrils, lips and the mouth line
    brow_tex = (0.75 + BROW_HAIRS * T.fine).clamp(0.0, 1.0)
    img = over(img, L.hair * 0.7 + L.skin * 0.1, 0.92 * coverage(S.brows, w) * brow_tex)
    img = over(img, L.skin * 0.35, 0.75 * coverage(S.nostrils, w))
    img = over(img, L.skin * rgb(0.85, 0.55, 0.55, dev) * lit(ndl), 0.9 * coverage(S.lips, w))
    img = over(img, L.skin * 0.28, 0.9 * line_coverage(S.mouth_line, 0.011, w))
    return over(img, hair_col, coverage(d_front, w))


def photo_fringe(L: FaceLayout, x: Tensor, N: Nuisance) -> Tensor:
    """Wavy strand clumps along the fringe (phase: ``hair_seed``)."""
    ph = N.hair_phase
    return 0.010 * torch.sin(x / 0.04 + ph) + 0.006 * torch.sin(x / 0.017 + 2.3 * ph)


# ----------------------------------------------------------------------------- cartoon

INK = (0.13, 0.09, 0.09)


def shade_cartoon(L: FaceLayout, S: FaceShapes, bx: Tensor, by: Tensor, N: Nuisance, _: Texture) -> Tensor:
    """Cartoon style: flat two-tone colours, dark outlines, big glossy eyes, blushed cheeks (no noise)."""
    w, x, y, xa, T, dev = S.px, S.x, S.y, S.x.abs(), 0.03, S.x.device
    ink = rgb(*INK, dev)
    img = hue_colour(N.bg_hue, 0.38, 0.88) * (1.06 - 0.10 * (bx * bx + by * by)).unsqueeze(1)
    img = img.expand(-1, 3, -1, -1)
    ndl, _ = lambert(torso_height(x, y), w, N)
    shirt = saturate(hue_colour(N.shirt_hue, 0.55, 0.75), 0.2) * (0.75 + 0.25 * cel(ndl, 0.45))
    img = toon_layer(img, S.torso, shirt, ink, T, w)
    hair = saturate(L.hair, 0.35)
    img = toon_layer(img, S.hair_outer, hair * 0.62, ink, T, w)
    skin = saturate(L.skin, 0.15)
    img = toon_layer(img, S.neck, skin * 0.78, ink, T, w)
    img = toon_layer(img, S.ears, skin * 0.9, ink, T, w)
    ndl, _ = lambert(dome(S) + 0.03 * gauss(x, y, 0.0, L.nose_y - 0.01, 0.6 * L.nose_w, 0.04), w, N)
    img = toon_layer(img, S.head, skin * (0.8 + 0.2 * cel(ndl, 0.35)), ink, T, w)
    img = over(img, rgb(0.95, 0.45, 0.45, dev), 0.3 * gauss(xa, y, L.eye_x + 0.02, L.nose_y + 0.01, 0.06, 0.035))
    img = toon_eyes(img, L, S, saturate(L.iris, 0.4), w, ((-0.35, -0.4, 0.32), (0.35, 0.4, 0.12)), 0.35)
    upper = smoothstep(0.3 * L.eye_ry, -0.1 * L.eye_ry, y - L.eye_y)
    img = over(img, ink, line_coverage(S.eyes, 0.6 * T, w).maximum(line_coverage(S.eyes, 1.5 * T, w) * upper))
    img = over(img, hair * 0.45, coverage(S.brows, w))
    img = over(img, skin * 0.5, line_coverage(S.nose_arc, 0.8 * T, w))
    img = over(img, rgb(1.1, 0.52, 0.52, dev) * skin.mean(1, keepdim=True), coverage(S.lips, w))
    img = over(img, ink, line_coverage(S.mouth_line, 0.9 * T, w))
    ndl_h, ndh_h = lambert(hair_height(L, S), w, N)
    hair_fill = hair * (0.72 + 0.28 * cel(ndl_h, 0.4)) + 0.18 * cel(spec_pow(ndh_h, 12), 0.5)
    return toon_layer(img, front_hair(S), hair_fill, ink, T, w)


def cartoon_fringe(L: FaceLayout, x: Tensor, N: Nuisance) -> Tensor:
    """Rounded hair clumps along the fringe (phase: ``hair_seed``)."""
    return 0.025 * torch.sin(math.pi * x / 0.09 + N.hair_phase).abs()


# ----------------------------------------------------------------------------- caricature

PAPER = (0.96, 0.94, 0.88)
CARI_INK = (0.16, 0.14, 0.13)
PAPER_GRAIN = 0.04  # caricature paper grain (from the ``grain`` noise map)


def _wash(c: Tensor, k: float) -> Tensor:
    """A light watercolour wash of colour ``c`` (``k`` = pigment amount) on paper."""
    paper = rgb(*PAPER, c.device)
    return paper + (c - paper) * k


def _nose_bridge(L: FaceLayout, S: FaceShapes) -> Tensor:
    """Distance to a curved line down one side of the nose (the side of the hair parting)."""
    side = torch.sign(L.part_x + 1e-3)
    top, bottom = L.eye_y + 0.04, L.nose_y - 0.015
    t = ((S.y - L.eye_y) / (L.nose_y - L.eye_y)).clamp(0, 1)
    xc = side * L.nose_w * (0.3 + 0.5 * t * t)
    beyond = ((S.y - 0.5 * (top + bottom)).abs() - 0.5 * (bottom - top)).clamp_min(0)
    return torch.sqrt((S.x - xc) ** 2 + beyond**2 + 1e-12)


def shade_caricature(L: FaceLayout, S: FaceShapes, bx: Tensor, by: Tensor, N: Nuisance, tex: Texture) -> Tensor:
    """Caricature style: exaggerated geometry as ink lines with light washes on paper.

    The only stochastic detail is the paper grain (``grain`` noise map); the pen strokes
    in the hair follow the deterministic strand geometry.
    """
    w, x, y, T, dev = S.px, S.x, S.y, 0.026, S.x.device
    ink = rgb(*CARI_INK, dev)
    paper = rgb(*PAPER, dev) * (1 + PAPER_GRAIN * tex.grain).unsqueeze(1)
    img = toon_layer(paper, S.torso, _wash(hue_colour(N.shirt_hue, 0.5, 0.7), 0.2), ink, T, w)
    H = hair_flow(L, S, N)
    strokes = line_coverage(H.line, 0.012, w) * smoothstep(-0.4, 0.2, H.clumps) * smoothstep(0.08, 0.25, H.r)
    img = toon_layer(img, S.hair_outer, _wash(L.hair, 0.45), ink, T, w)
    img = over(img, ink, 0.6 * strokes * coverage(S.hair_outer, w))
    skin = _wash(L.skin, 0.35)
    img = toon_layer(img, S.neck, skin, ink, T, w)
    img = toon_layer(img, S.ears, skin, ink, T, w)
    img = toon_layer(img, S.head, skin, ink, T, w)
    ndl, _ = lambert(dome(S), w, N)
    hatch = line_coverage((fract((x + y) / 0.06) - 0.5) * 0.06, 0.01, w)
    img = over(img, ink, 0.5 * hatch * smoothstep(0.45, 0.3, ndl) * coverage(S.head + 0.02, w))
    eye_a = coverage(S.eyes, w)
    img = over(img, _wash(L.iris, 0.8), coverage(S.iris, w) * eye_a)
    img = over(img, ink, coverage(S.pupil, w) * eye_a)
    upper = smoothstep(0.3 * L.eye_ry, -0.1 * L.eye_ry, y - L.eye_y)
    img = over(img, ink, line_coverage(S.eyes, T, w).maximum(line_coverage(S.eyes, 1.8 * T, w) * upper))
    img = over(img, ink, coverage(S.brows, w))
    nose = line_coverage(S.nose_arc, T, w).maximum(line_coverage(_nose_bridge(L, S), 0.8 * T, w))
    img = over(img, ink, nose)
    img = over(img, _wash(rgb(0.85, 0.4, 0.4, dev), 0.35), coverage(S.lips, w))
    img = over(img, ink, line_coverage(S.mouth_line, T, w))
    img = over(img, ink, 0.6 * line_coverage(S.lips, 0.6 * T, w) * (y > L.mouth_y).float())
    d_front = front_hair(S)
    img = toon_layer(img, d_front, _wash(L.hair, 0.45), ink, T, w)
    return over(img, ink, 0.6 * strokes * coverage(d_front, w))


def caricature_fringe(L: FaceLayout, x: Tensor, N: Nuisance) -> Tensor:
    """Pointed pen strokes along the fringe (phase: ``hair_seed``)."""
    t = fract(x / 0.06 + N.hair_phase / (2 * math.pi))
    return 0.02 * (1 - (2 * t - 1).abs())


# ----------------------------------------------------------------------------- anime


def anime_hair_colour(L: FaceLayout) -> Tensor:
    """Vivid hair: natural lightness order kept, hue rotated (cool -> teal/blue, warm -> pink/red)."""
    warm, dark = L.hair_warmth.flatten(), L.hair_darkness.flatten()
    hue = (0.45 + 0.62 * (warm + 1) * 0.5) % 1.0
    val = (0.97 - 0.30 * (dark + 1)).clamp(0.25, 1.0)
    sat = (0.45 + 0.1 * (dark + 1)).clamp(0.3, 0.8)
    return hsv_to_rgb(hue, sat, val)


def shade_anime(L: FaceLayout, S: FaceShapes, bx: Tensor, by: Tensor, N: Nuisance, _: Texture) -> Tensor:
    """Anime style: cel shading, huge glossy eyes, tiny nose and mouth, vivid spiky hair with
    strand lines (no noise)."""
    w, x, y, xa, T, dev = S.px, S.x, S.y, S.x.abs(), 0.022, S.x.device
    top, bottom = hue_colour(N.bg_hue, 0.35, 0.97), hue_colour(N.bg_hue + 0.08, 0.12, 1.0)
    img = top + (bottom - top) * smoothstep(-1.0, 1.0, by).unsqueeze(1)
    ndl, _ = lambert(torso_height(x, y), w, N)
    shirt = hue_colour(N.shirt_hue, 0.35, 0.9)
    img = toon_layer(img, S.torso, shirt * (0.8 + 0.2 * cel(ndl, 0.45)), shirt * 0.4, T, w)
    hair = anime_hair_colour(L)
    H = hair_flow(L, S, N)
    strands = line_coverage(H.line, 0.012, w) * smoothstep(-0.3, 0.3, H.clumps) * smoothstep(0.1, 0.3, H.r)
    img = toon_layer(img, S.hair_outer, hair * 0.7, hair * 0.22, T, w)
    img = over(img, hair * 0.4, 0.7 * strands * coverage(S.hair_outer + 0.01, w))
    skin = L.skin**0.55
    shadow = skin * rgb(0.88, 0.76, 0.78, dev)
    line = skin * rgb(0.34, 0.2, 0.18, dev)
    img = toon_layer(img, S.neck, shadow, line, T, w)
    img = toon_layer(img, S.ears, skin, line, T, w)
    ndl, _ = lambert(dome(S), w, N)
    d_front = front_hair(S)
    cast = (smoothstep(0.05, 0.03, d_front) * (y > L.hairline_top - 0.2).float()).unsqueeze(1)
    skin_lit = skin + (shadow - skin) * torch.maximum(1 - cel(ndl, 0.25), cast)
    img = toon_layer(img, S.head, skin_lit, line, T, w)
    blush = gauss(xa, y, L.eye_x + 0.01, L.eye_y + L.eye_ry_low + 0.04, 0.05, 0.018)
    img = over(img, rgb(1.0, 0.5, 0.55, dev), 0.35 * blush)
    iris = (saturate(L.iris, 0.9) * 1.15).clamp(0, 1)
    img = toon_eyes(img, L, S, iris, w, ((-0.35, -0.45, 0.38), (0.3, 0.45, 0.16)), 0.6)
    ey = y - L.eye_y
    lash = line_coverage(S.eyes, 2.6 * T, w) * smoothstep(0.25 * L.eye_ry, -0.05 * L.eye_ry, ey)
    img = over(img, rgb(0.12, 0.08, 0.1, dev), lash)
    lower = smoothstep(0.2 * L.eye_ry, 0.6 * L.eye_ry, ey)
    img = over(img, line, 0.7 * line_coverage(S.eyes, 0.7 * T, w) * lower)
    img = over(img, hair * 0.4, coverage(S.brows, w))
    img = over(img, line, 0.6 * line_coverage(S.nose_arc, 0.8 * T, w))
    img = over(img, skin * rgb(0.95, 0.62, 0.62, dev), 0.6 * coverage(S.lips, w))
    img = over(img, line * 0.8, line_coverage(S.mouth_line, 0.9 * T, w))
    ndl_h, _ = lambert(hair_height(L, S), w, N)
    ring = line_coverage(H.r - 0.45 * L.hair_ry, 0.035, w) * (0.8 + 0.2 * H.clumps)
    hair_fill = hair * (0.75 + 0.25 * cel(ndl_h, 0.4))
    hair_fill = hair_fill + (1 - hair_fill) * 0.55 * ring.unsqueeze(1)
    img = toon_layer(img, d_front, hair_fill, hair * 0.22, T, w)
    return over(img, hair * 0.4, 0.7 * strands * coverage(d_front + 0.01, w))


def anime_fringe(L: FaceLayout, x: Tensor, N: Nuisance) -> Tensor:
    """Sharp spikes along the fringe (phase: ``hair_seed``)."""
    t = fract(x / 0.075 + N.hair_phase / (2 * math.pi))
    return 0.07 * (1 - (2 * t - 1).abs()) ** 1.5


# ----------------------------------------------------------------------------- registry

# A table: one style per entry, its geometry on as few lines as fit.
# fmt: off
STYLE_SPECS: dict[str, tuple[StyleGeometry, Fringe, Shader]] = {
    "photo": (StyleGeometry(), photo_fringe, shade_photo),
    "cartoon": (StyleGeometry(eye_scale_x=1.45, eye_scale_y=2.0, eye_lower=0.95, iris_x=0.5, brow_scale=1.2,
                              nose_scale=0.8, mouth_scale=1.1), cartoon_fringe, shade_cartoon),
    "caricature": (StyleGeometry(exaggeration=1.9, head_scale=1.06), caricature_fringe, shade_caricature),
    "anime": (StyleGeometry(eye_scale_x=1.35, eye_scale_y=2.5, eye_lower=0.9, iris_x=0.66, iris_y=0.85,
                            eye_drop=0.03, brow_scale=0.45, mouth_scale=0.45, nose_scale=0.45,
                            jaw_taper_add=0.22, jaw_exponent=1.35), anime_fringe, shade_anime),
}
# fmt: on
