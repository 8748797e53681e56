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
    value_noise,
)
from hrinv_nb.toy.render_shading import (
    Nuisance,
    cel,
    dome,
    face_relief,
    fract,
    front_hair,
    hair_height,
    hair_strands,
    hue_colour,
    lambert,
    over,
    rgb,
    saturate,
    toon_eyes,
    toon_layer,
    torso_height,
)

Shader = Callable[[FaceLayout, FaceShapes, Tensor, Tensor, Nuisance], Tensor]
Fringe = Callable[[FaceLayout, Tensor, Nuisance], Tensor]


# ----------------------------------------------------------------------------- photo


def photo_background(bx: Tensor, by: Tensor, N: Nuisance) -> Tensor:
    """Wall-like background: colour, soft blotches, panels, grain and (optionally) a weave."""
    seed = N.bg_seed
    base = hue_colour(N.bg_hue, 0.32, N.bg_value)
    blot = value_noise(bx * 2.5, by * 2.5, seed) + 0.5 * value_noise(bx * 5.0, by * 5.0, seed + 1)
    period = 0.7 + 1.2 * (seed % 97).float() / 97.0
    panels = torch.sin(2 * math.pi * bx / period + (seed % 89).float())
    grain = value_noise(bx / 0.035, by / 0.035, seed + 2) - 0.5
    weave = torch.sin(bx * 60.0 + 3.0 * value_noise(bx * 8, by * 8, seed + 3)) * torch.sin(by * 60.0)
    tex = N.bg_texture
    lum = 1.0 - 0.12 * by + 0.16 * (blot - 0.75) + 0.05 * panels + (0.05 + 0.3 * tex) * grain + 0.12 * tex * weave
    return (base * lum.unsqueeze(1)).clamp(0.0, 1.0)


def shade_photo(L: FaceLayout, S: FaceShapes, bx: Tensor, by: Tensor, N: Nuisance) -> Tensor:
    """Photo style: Lambertian relief shading, hair strands, skin pores, textured background."""
    w, x, y, xa = S.px, S.x, S.y, S.x.abs()

    def lit(ndl: Tensor) -> Tensor:
        return (N.ambient + N.intensity * ndl).unsqueeze(1)

    img = photo_background(bx, by, N)
    # shoulders: fabric folds and weave
    ndl, _ = lambert(torso_height(x, y) + 0.012 * torch.sin(x * 14.0 + 3.0 * torch.sin(y * 5.0)), w, N)
    weave = 1 + 0.08 * (value_noise(x / 0.03, y / 0.03, N.skin_seed + 5) - 0.5)
    shirt = hue_colour(N.shirt_hue, 0.45, 0.62) * lit(ndl) * weave.unsqueeze(1)
    img = over(img, shirt, coverage(S.torso, w))
    # hair: strands, Lambert shading and a strand-modulated sheen; inner back hair darker
    tex, _, r = hair_strands(L, S, N.hair_seed)
    ndl, ndh = lambert(hair_height(L, S) + 0.006 * tex, w, N)
    tex_f = (0.5 + (tex - 0.5) * smoothstep(0.03, 0.25, r)).unsqueeze(1)
    sheen = (0.4 * spec_pow(ndh, 10) + 0.05).unsqueeze(1) * (2.0 * tex_f - 0.6)
    hair_col = L.hair * (0.3 + 1.4 * tex_f) * lit(ndl) + sheen
    jag = 0.02 * (tex - 0.5)
    inner = 1 - 0.4 * nexp(-((x / (2.0 * L.neck_w)) ** 2)) * smoothstep(L.cy, L.chin_y, y)
    img = over(img, hair_col * (0.75 * inner).unsqueeze(1), coverage(S.hair_outer + jag, w))
    # skin albedo with pores and mottling
    pores = (
        1
        + 0.16 * (value_noise(x / 0.03, y / 0.03, N.skin_seed) - 0.5)
        + 0.08 * (value_noise(x / 0.12, y / 0.12, N.skin_seed + 1) - 0.5)
    )
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
    blush = gauss(xa, y, L.eye_x + 0.02, L.nose_y, 0.07, 0.05).unsqueeze(1) * rgb(0.04, -0.015, -0.015)
    face = skin * lit(ndl) * hair_shadow.unsqueeze(1) + (0.12 * spec_pow(ndh, 24)).unsqueeze(1)
    face = face + blush
    img = over(img, face, coverage(S.head, w))
    # eyes: sclera shaded by the upper lid, iris with a dark rim, pupil, catch light, lash line
    ey = y - L.eye_y
    lid = (0.62 + 0.38 * smoothstep(-L.eye_ry, 0.4 * L.eye_ry, ey)).unsqueeze(1)
    eye_a = coverage(S.eyes, w)
    img = over(img, rgb(0.92, 0.89, 0.86) * lid * (0.75 + 0.25 * N.intensity.unsqueeze(1)), eye_a)
    rr = torch.sqrt(((xa - L.eye_x) / L.iris_rx) ** 2 + (ey / L.iris_ry) ** 2)
    iris = L.iris * (1.2 - 0.55 * rr.clamp(0, 1) ** 3).unsqueeze(1) * lid
    img = over(img, iris, coverage(S.iris, w) * eye_a)
    img = over(img, rgb(0.03, 0.03, 0.03), coverage(S.pupil, w) * eye_a)
    hx = x - torch.sign(x) * L.eye_x
    spark = torch.sqrt((hx + 0.3 * L.iris_rx) ** 2 + (ey + 0.35 * L.iris_ry) ** 2) - 0.28 * L.iris_rx
    img = over(img, rgb(1.0, 1.0, 1.0), 0.8 * coverage(spark, w) * eye_a)
    upper = smoothstep(0.4 * L.eye_ry, -0.2 * L.eye_ry, ey)
    img = over(img, L.skin * 0.2, line_coverage(S.eyes, 0.013, w) * (0.35 + 0.6 * upper))
    # brows, nostrils, lips and the mouth line
    brow_tex = 0.65 + 0.35 * value_noise(x / 0.012, y / 0.03, N.hair_seed + 7)
    img = over(img, L.hair * 0.7 + L.skin * 0.1, 0.92 * coverage(S.brows, w) * brow_tex)
    img = over(img, L.skin * 0.35, 0.75 * coverage(S.nostrils, w))
    img = over(img, L.skin * rgb(0.85, 0.55, 0.55) * lit(ndl), 0.9 * coverage(S.lips, w))
    img = over(img, L.skin * 0.28, 0.9 * line_coverage(S.mouth_line, 0.011, w))
    return over(img, hair_col, coverage(d_front, w))


def photo_fringe(L: FaceLayout, x: Tensor, N: Nuisance) -> Tensor:
    """Irregular strand clumps along the fringe."""
    return 0.03 * (value_noise(x / 0.035, torch.zeros_like(x), N.hair_seed + 3) - 0.5)


# ----------------------------------------------------------------------------- cartoon

INK = rgb(0.13, 0.09, 0.09)


def shade_cartoon(L: FaceLayout, S: FaceShapes, bx: Tensor, by: Tensor, N: Nuisance) -> Tensor:
    """Cartoon style: flat two-tone colours, dark outlines, big glossy eyes, blushed cheeks."""
    w, x, y, xa, T = S.px, S.x, S.y, S.x.abs(), 0.03
    img = hue_colour(N.bg_hue, 0.38, 0.88) * (1.06 - 0.10 * (bx * bx + by * by)).unsqueeze(1)
    img = img.expand(-1, 3, -1, -1)
    ndl, _ = lambert(torso_height(x, y), w, N)
    shirt = saturate(hue_colour(N.shirt_hue, 0.55, 0.75), 0.2) * (0.75 + 0.25 * cel(ndl, 0.45))
    img = toon_layer(img, S.torso, shirt, INK, T, w)
    hair = saturate(L.hair, 0.35)
    img = toon_layer(img, S.hair_outer, hair * 0.62, INK, T, w)
    skin = saturate(L.skin, 0.15)
    img = toon_layer(img, S.neck, skin * 0.78, INK, T, w)
    img = toon_layer(img, S.ears, skin * 0.9, INK, T, w)
    ndl, _ = lambert(dome(S) + 0.03 * gauss(x, y, 0.0, L.nose_y - 0.01, 0.6 * L.nose_w, 0.04), w, N)
    img = toon_layer(img, S.head, skin * (0.8 + 0.2 * cel(ndl, 0.35)), INK, T, w)
    img = over(img, rgb(0.95, 0.45, 0.45), 0.3 * gauss(xa, y, L.eye_x + 0.02, L.nose_y + 0.01, 0.06, 0.035))
    img = toon_eyes(img, L, S, saturate(L.iris, 0.4), w, ((-0.35, -0.4, 0.32), (0.35, 0.4, 0.12)), 0.35)
    upper = smoothstep(0.3 * L.eye_ry, -0.1 * L.eye_ry, y - L.eye_y)
    img = over(img, INK, line_coverage(S.eyes, 0.6 * T, w).maximum(line_coverage(S.eyes, 1.5 * T, w) * upper))
    img = over(img, hair * 0.45, coverage(S.brows, w))
    img = over(img, skin * 0.5, line_coverage(S.nose_arc, 0.8 * T, w))
    img = over(img, rgb(1.1, 0.52, 0.52) * skin.mean(1, keepdim=True), coverage(S.lips, w))
    img = over(img, INK, line_coverage(S.mouth_line, 0.9 * T, w))
    ndl_h, ndh_h = lambert(hair_height(L, S), w, N)
    hair_fill = hair * (0.72 + 0.28 * cel(ndl_h, 0.4)) + 0.18 * cel(spec_pow(ndh_h, 12), 0.5)
    return toon_layer(img, front_hair(S), hair_fill, INK, T, w)


def cartoon_fringe(L: FaceLayout, x: Tensor, N: Nuisance) -> Tensor:
    """Rounded hair clumps along the fringe."""
    return 0.025 * torch.sin(math.pi * x / 0.09 + (N.hair_seed % 13).float()).abs()


# ----------------------------------------------------------------------------- caricature

PAPER = rgb(0.96, 0.94, 0.88)
CARI_INK = rgb(0.16, 0.14, 0.13)


def _wash(c: Tensor, k: float) -> Tensor:
    """A light watercolour wash of colour ``c`` (``k`` = pigment amount) on paper."""
    return PAPER + (c - PAPER) * k


def _nose_bridge(L: FaceLayout, S: FaceShapes) -> Tensor:
    """Distance to a curved line down one side of the nose (the side of the hair parting)."""
    side = torch.sign(L.part_x + 1e-3)
    top, bottom = L.eye_y + 0.04, L.nose_y - 0.015
    t = ((S.y - L.eye_y) / (L.nose_y - L.eye_y)).clamp(0, 1)
    xc = side * L.nose_w * (0.3 + 0.5 * t * t)
    beyond = ((S.y - 0.5 * (top + bottom)).abs() - 0.5 * (bottom - top)).clamp_min(0)
    return torch.sqrt((S.x - xc) ** 2 + beyond**2 + 1e-12)


def shade_caricature(L: FaceLayout, S: FaceShapes, bx: Tensor, by: Tensor, N: Nuisance) -> Tensor:
    """Caricature style: exaggerated geometry as ink lines with light washes on paper."""
    w, x, y, T = S.px, S.x, S.y, 0.026
    paper = PAPER * (1 + 0.03 * (value_noise(bx * 3, by * 3, N.bg_seed) - 0.5)).unsqueeze(1)
    img = toon_layer(paper, S.torso, _wash(hue_colour(N.shirt_hue, 0.5, 0.7), 0.2), CARI_INK, T, w)
    tex, sline, r = hair_strands(L, S, N.hair_seed)
    strokes = line_coverage(sline, 0.012, w) * smoothstep(0.4, 0.55, tex) * smoothstep(0.08, 0.25, r)
    img = toon_layer(img, S.hair_outer, _wash(L.hair, 0.45), CARI_INK, T, w)
    img = over(img, CARI_INK, 0.6 * strokes * coverage(S.hair_outer, w))
    skin = _wash(L.skin, 0.35)
    img = toon_layer(img, S.neck, skin, CARI_INK, T, w)
    img = toon_layer(img, S.ears, skin, CARI_INK, T, w)
    img = toon_layer(img, S.head, skin, CARI_INK, T, w)
    ndl, _ = lambert(dome(S), w, N)
    hatch = line_coverage((fract((x + y) / 0.06) - 0.5) * 0.06, 0.01, w)
    img = over(img, CARI_INK, 0.5 * hatch * smoothstep(0.45, 0.3, ndl) * coverage(S.head + 0.02, w))
    eye_a = coverage(S.eyes, w)
    img = over(img, _wash(L.iris, 0.8), coverage(S.iris, w) * eye_a)
    img = over(img, CARI_INK, coverage(S.pupil, w) * eye_a)
    upper = smoothstep(0.3 * L.eye_ry, -0.1 * L.eye_ry, y - L.eye_y)
    img = over(img, CARI_INK, line_coverage(S.eyes, T, w).maximum(line_coverage(S.eyes, 1.8 * T, w) * upper))
    img = over(img, CARI_INK, coverage(S.brows, w))
    nose = line_coverage(S.nose_arc, T, w).maximum(line_coverage(_nose_bridge(L, S), 0.8 * T, w))
    img = over(img, CARI_INK, nose)
    img = over(img, _wash(rgb(0.85, 0.4, 0.4), 0.35), coverage(S.lips, w))
    img = over(img, CARI_INK, line_coverage(S.mouth_line, T, w))
    img = over(img, CARI_INK, 0.6 * line_coverage(S.lips, 0.6 * T, w) * (y > L.mouth_y).float())
    d_front = front_hair(S)
    img = toon_layer(img, d_front, _wash(L.hair, 0.45), CARI_INK, T, w)
    return over(img, CARI_INK, 0.6 * strokes * coverage(d_front, w))


def caricature_fringe(L: FaceLayout, x: Tensor, N: Nuisance) -> Tensor:
    """Pointed pen strokes along the fringe."""
    t = fract(x / 0.06 + (N.hair_seed % 7).float() / 7.0)
    return 0.02 * (1 - (2 * t - 1).abs())


# ----------------------------------------------------------------------------- anime


def anime_hair_colour(L: FaceLayout) -> Tensor:
    """Vivid hair: natural lightness order kept, hue rotated (cool -> teal/blue, warm -> pink/red)."""
    warm, dark = L.hair_warmth.flatten(), L.hair_darkness.flatten()
    hue = (0.45 + 0.62 * (warm + 1) * 0.5) % 1.0
    val = (0.97 - 0.30 * (dark + 1)).clamp(0.25, 1.0)
    sat = (0.45 + 0.1 * (dark + 1)).clamp(0.3, 0.8)
    return hsv_to_rgb(hue, sat, val)


def shade_anime(L: FaceLayout, S: FaceShapes, bx: Tensor, by: Tensor, N: Nuisance) -> Tensor:
    """Anime style: cel shading, huge glossy eyes, tiny nose and mouth, vivid spiky hair."""
    w, x, y, xa, T = S.px, S.x, S.y, S.x.abs(), 0.022
    top, bottom = hue_colour(N.bg_hue, 0.35, 0.97), hue_colour(N.bg_hue + 0.08, 0.12, 1.0)
    img = top + (bottom - top) * smoothstep(-1.0, 1.0, by).unsqueeze(1)
    ndl, _ = lambert(torso_height(x, y), w, N)
    shirt = hue_colour(N.shirt_hue, 0.35, 0.9)
    img = toon_layer(img, S.torso, shirt * (0.8 + 0.2 * cel(ndl, 0.45)), shirt * 0.4, T, w)
    hair = anime_hair_colour(L)
    img = toon_layer(img, S.hair_outer, hair * 0.7, hair * 0.35, T, w)
    skin = L.skin**0.55
    shadow = skin * rgb(0.88, 0.76, 0.78)
    line = skin * rgb(0.45, 0.28, 0.25)
    img = toon_layer(img, S.neck, shadow, line, T, w)
    img = toon_layer(img, S.ears, skin, line, T, w)
    ndl, _ = lambert(dome(S), w, N)
    d_front = front_hair(S)
    cast = (smoothstep(0.05, 0.03, d_front) * (y > L.hairline_top - 0.2).float()).unsqueeze(1)
    skin_lit = skin + (shadow - skin) * torch.maximum(1 - cel(ndl, 0.25), cast)
    img = toon_layer(img, S.head, skin_lit, line, T, w)
    blush = gauss(xa, y, L.eye_x + 0.01, L.eye_y + L.eye_ry_low + 0.04, 0.05, 0.018)
    img = over(img, rgb(1.0, 0.5, 0.55), 0.35 * blush)
    iris = (saturate(L.iris, 0.9) * 1.15).clamp(0, 1)
    img = toon_eyes(img, L, S, iris, w, ((-0.35, -0.45, 0.38), (0.3, 0.45, 0.16)), 0.6)
    ey = y - L.eye_y
    lash = line_coverage(S.eyes, 2.6 * T, w) * smoothstep(0.25 * L.eye_ry, -0.05 * L.eye_ry, ey)
    img = over(img, rgb(0.12, 0.08, 0.1), lash)
    lower = smoothstep(0.2 * L.eye_ry, 0.6 * L.eye_ry, ey)
    img = over(img, line, 0.7 * line_coverage(S.eyes, 0.7 * T, w) * lower)
    img = over(img, hair * 0.4, coverage(S.brows, w))
    img = over(img, line, 0.6 * line_coverage(S.nose_arc, 0.8 * T, w))
    img = over(img, skin * rgb(0.95, 0.62, 0.62), 0.6 * coverage(S.lips, w))
    img = over(img, line * 0.8, line_coverage(S.mouth_line, 0.9 * T, w))
    tex, _, r = hair_strands(L, S, N.hair_seed)
    ndl_h, _ = lambert(hair_height(L, S), w, N)
    ring = line_coverage(r - 0.45 * L.hair_ry, 0.035, w) * (0.6 + 0.4 * tex)
    hair_fill = hair * (0.75 + 0.25 * cel(ndl_h, 0.4))
    hair_fill = hair_fill + (1 - hair_fill) * 0.55 * ring.unsqueeze(1)
    return toon_layer(img, d_front, hair_fill, hair * 0.35, T, w)


def anime_fringe(L: FaceLayout, x: Tensor, N: Nuisance) -> Tensor:
    """Sharp spikes along the fringe."""
    t = fract(x / 0.075 + (N.hair_seed % 11).float() / 11.0)
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
