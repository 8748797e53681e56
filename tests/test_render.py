"""Tests of the procedural toy-face renderer (hrinv_nb.toy.render)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hrinv_nb.toy.render import (
    IDENTITY_FACTORS,
    N_IDENTITY,
    N_NUISANCE,
    NUISANCE_FACTORS,
    STYLES,
    TEXTURE_NOISE,
    draw_texture_noise,
    exaggerate_identity,
    render,
    render_contact_sheet,
    render_from_seed,
    sample_identity,
    sample_nuisance,
    texture_noise_shapes,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Many small renders: one intra-op thread avoids OpenMP overhead on a shared CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _batch(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return sample_identity(n, g), sample_nuisance(n, g)


def _noise(seed: int, n: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Independent standard-normal texture noise maps for ``n`` renders of ``size``."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(n, 1, *hw, generator=g) for k, hw in texture_noise_shapes(size).items()}


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Binomial 5x5 blur (sigma ~1 px), reflect padding."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = (k[:, None] * k[None]) / 256.0
    c = x.shape[1]
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k.expand(c, 1, 5, 5).contiguous(), groups=c)


def _hf_fraction(x: torch.Tensor) -> torch.Tensor:
    """Per image: fraction of luminance spectral energy above half Nyquist (|f| > 0.25 cyc/px)."""
    g = x.mean(1)
    g = g - g.mean((-2, -1), keepdim=True)
    p = torch.fft.fft2(g).abs() ** 2
    fy = torch.fft.fftfreq(g.shape[-2]).abs().view(-1, 1)
    fx = torch.fft.fftfreq(g.shape[-1]).abs().view(1, -1)
    hi = torch.maximum(fx, fy) > 0.25
    return p[:, hi].sum(-1) / p.sum((-2, -1))


# ----------------------------------------------------------------------------- API basics


def test_factor_tables() -> None:
    assert N_IDENTITY >= 12 and len(IDENTITY_FACTORS) == N_IDENTITY
    assert len(set(IDENTITY_FACTORS)) == N_IDENTITY
    assert len(NUISANCE_FACTORS) == N_NUISANCE
    assert STYLES == ("photo", "cartoon", "caricature", "anime")


def test_sampling_is_seeded_and_in_range() -> None:
    a_id, a_nu = _batch(0, 64)
    b_id, b_nu = _batch(0, 64)
    c_id, _ = _batch(1, 64)
    assert a_id.shape == (64, N_IDENTITY) and a_nu.shape == (64, N_NUISANCE)
    assert torch.equal(a_id, b_id) and torch.equal(a_nu, b_nu)
    assert not torch.equal(a_id, c_id)
    assert a_id.abs().max() <= 1.0 and a_nu.abs().max() <= 1.0


def test_render_is_deterministic() -> None:
    a = render_from_seed(5, 3, "photo", size=(64, 64))
    b = render_from_seed(5, 3, "photo", size=(64, 64))
    c = render_from_seed(6, 3, "photo", size=(64, 64))
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.05


@pytest.mark.parametrize("style", ["photo", "anime"])
def test_batch_independence(style: str) -> None:
    """A face renders the same alone or inside a batch (and across internal chunks), default noise included."""
    ident, nuis = _batch(2, 5)
    full = render(ident, nuis, style, (64, 64), chunk_pixels=2 * 128 * 128)
    single = render(ident[3:4], nuis[3:4], style, (64, 64))
    assert torch.allclose(full[3:4], single, atol=1e-5)


def test_render_from_seed_matches_manual_sampling() -> None:
    from hrinv_nb.toy.render import NUISANCE_STREAM

    ident = sample_identity(2, torch.Generator().manual_seed(9))
    nuis = sample_nuisance(2, torch.Generator().manual_seed(9 + NUISANCE_STREAM))
    assert torch.equal(render_from_seed(9, 2, "cartoon", size=(64, 64)), render(ident, nuis, "cartoon", (64, 64)))


def test_a_content_seed_names_the_same_faces_whatever_the_sample_size() -> None:
    few, many = render_from_seed(1000, 2, size=(32, 32)), render_from_seed(1000, 5, size=(32, 32))
    assert torch.equal(few, many[:2])
    assert not torch.equal(many[0], many[1])


def test_unknown_style_rejected() -> None:
    ident, nuis = _batch(0, 1)
    with pytest.raises(ValueError):
        render(ident, nuis, "oil-painting")


@pytest.mark.parametrize("size", [(64, 64), (32, 96), (64, 192), (128, 128), (40, 24)])
@pytest.mark.parametrize("style", STYLES)
def test_shapes_and_range(style: str, size: tuple[int, int]) -> None:
    ident, nuis = _batch(1, 2)
    img, mask = render(ident, nuis, style, size, return_mask=True)
    assert img.shape == (2, 3, *size) and img.dtype == torch.float32
    assert mask.shape == (2, 1, *size)
    assert torch.isfinite(img).all()
    assert img.min() >= -1.0 and img.max() <= 1.0
    assert img.std() > 0.1  # not a blank canvas


def test_non_square_extends_the_same_scene() -> None:
    """The centre 64x64 of a 64x192 render is the 64x64 render (same scene, more background)."""
    ident, nuis = _batch(4, 2)
    square = render(ident, nuis, "photo", (64, 64))
    wide = render(ident, nuis, "photo", (64, 192))
    centre = wide[..., 64:128]
    assert (centre - square)[..., 2:-2].abs().max() < 1e-4
    assert (wide[..., :64] - wide[..., 128:]).abs().mean() > 0.02  # sides are not copies


# ----------------------------------------------------------------------------- styles and factors


def test_styles_differ() -> None:
    ident, nuis = _batch(3, 4)
    imgs = {s: render(ident, nuis, s, (64, 64)) for s in STYLES}
    for i, a in enumerate(STYLES):
        for b in STYLES[i + 1 :]:
            assert (imgs[a] - imgs[b]).abs().mean() > 0.1, (a, b)


def test_caricature_exaggerates_identity() -> None:
    ident, _ = _batch(0, 16)
    ex = exaggerate_identity(ident)
    assert torch.allclose(ex, (ident * 1.9).clamp(-2, 2))
    assert ex.abs().max() <= 2.0


def _perturbed(base: torch.Tensor, k: int, step: float = 0.5) -> torch.Tensor:
    p = base.clone()
    p[0, k] += step if p[0, k] < 0.5 else -step
    return p


@pytest.mark.parametrize("style", STYLES)
def test_every_identity_factor_changes_the_image(style: str) -> None:
    g = torch.Generator().manual_seed(7)
    base = sample_identity(1, g) * 0.5
    nuis = sample_nuisance(1, g)
    ids = torch.cat([base] + [_perturbed(base, k) for k in range(N_IDENTITY)])
    noise = {k: v.expand(len(ids), -1, -1, -1) for k, v in _noise(0, 1, (64, 64)).items()}
    img = render(ids, nuis.expand(len(ids), -1), style, (64, 64), noise=noise)
    change = (img[1:] - img[:1]).abs().amax((1, 2, 3))
    floor = 0.04 if style == "photo" else 0.01
    weak = [IDENTITY_FACTORS[k] for k in range(N_IDENTITY) if change[k] < floor]
    assert not weak, f"factors with no visible effect in {style}: {weak}"


def test_every_nuisance_factor_changes_the_photo() -> None:
    """With the noise maps fixed (the default maps would change with any nuisance value)."""
    g = torch.Generator().manual_seed(8)
    ident = sample_identity(1, g)
    base = sample_nuisance(1, g)
    nus = torch.cat([base] + [_perturbed(base, k) for k in range(N_NUISANCE)])
    noise = {k: v.expand(len(nus), -1, -1, -1) for k, v in _noise(1, 1, (64, 64)).items()}
    img = render(ident.expand(len(nus), -1), nus, "photo", (64, 64), noise=noise)
    change = (img[1:] - img[:1]).abs().amax((1, 2, 3))
    assert (change > 0.04).all(), dict(zip(NUISANCE_FACTORS, change.tolist()))


def test_identity_recognisable_across_styles() -> None:
    """Same identity in another style is closer than another identity in that style.

    Measure: 8x8 area-downsampled RGB, centred by the style's mean over identities (so a
    style's global look -- paper, palette, line work -- cancels) and L2-normalised.
    Nuisances are shared by all faces so only identity varies within a style.
    """
    g = torch.Generator().manual_seed(11)
    n = 24
    ident = sample_identity(n, g)
    nuis = sample_nuisance(1, g).expand(n, -1)

    def feat(x: torch.Tensor) -> torch.Tensor:
        f = F.adaptive_avg_pool2d(x, 8).flatten(1)
        f = f - f.mean(0, keepdim=True)
        return f / f.norm(dim=1, keepdim=True)

    photo = feat(render(ident, nuis, "photo", (64, 64)))
    off = ~torch.eye(n, dtype=torch.bool)
    for style in STYLES[1:]:
        other = feat(render(ident, nuis, style, (64, 64)))
        same = (photo - other).norm(dim=1)
        between = torch.cdist(other, other)
        assert same.mean() < 0.6 * between[off].mean(), style
        assert (same[:, None] < between)[off].float().mean() > 0.9, style
        top1 = ((photo @ other.T).argmax(1) == torch.arange(n)).float().mean()
        assert top1 >= 0.5, (style, top1)  # chance is 1/24


# ----------------------------------------------------------------------------- detail and antialiasing


def test_photo_has_real_high_frequency_detail() -> None:
    ident, nuis = _batch(3, 16)
    photo = render(ident, nuis, "photo")
    frac = _hf_fraction(photo)
    assert frac.mean() > 0.03
    assert frac.mean() > 4.0 * _hf_fraction(_blur(photo)).mean()
    assert (frac > 2.0 * _hf_fraction(_blur(photo))).all()


def test_photo_texture_is_dense_cartoon_is_flat() -> None:
    """Fine detail (residual after a ~1 px blur) is everywhere in photo, only at outlines in cartoon.

    The median over pixels is used because cartoon outlines are concentrated high-frequency
    energy: its *total* spectral energy above half Nyquist is larger than photo's (lines
    are strong edges), but its typical pixel has no detail at all.
    """
    ident, nuis = _batch(3, 16)

    def median_detail(x: torch.Tensor) -> torch.Tensor:
        return ((x - _blur(x)) ** 2).mean(1).flatten(1).median(1).values

    photo = median_detail(render(ident, nuis, "photo"))
    cartoon = median_detail(render(ident, nuis, "cartoon"))
    assert photo.mean() > 10.0 * cartoon.mean()
    assert (photo > cartoon).all()


@pytest.mark.parametrize("style", STYLES)
def test_antialiasing(style: str) -> None:
    """A direct 64x64 render is close to a 256x256 render area-downsampled to 64x64,
    and much closer than point-sampling the 256x256 render (what an aliased renderer sees).
    The noise maps are zero: the texture is per output pixel, so it differs between sizes."""
    ident, nuis = _batch(5, 3)

    def zeros(size: tuple[int, int]) -> dict[str, torch.Tensor]:
        return {k: torch.zeros(3, 1, *hw) for k, hw in texture_noise_shapes(size).items()}

    direct = render(ident, nuis, style, (64, 64), noise=zeros((64, 64)))
    hi = render(ident, nuis, style, (256, 256), noise=zeros((256, 256)))
    reference = F.avg_pool2d(hi, 4)
    pointwise = hi[..., 1::4, 1::4]
    err = (direct - reference).abs().mean()
    assert err < 0.012
    assert err < 0.3 * (pointwise - reference).abs().mean()


def test_edges_have_intermediate_values() -> None:
    ident, nuis = _batch(6, 4)
    _, mask = render(ident, nuis, "cartoon", (64, 64), return_mask=True)
    partial = ((mask > 0.05) & (mask < 0.95)).float().sum((1, 2, 3))
    assert (partial >= 20).all()  # the head outline is a soft ramp, not a staircase


# ----------------------------------------------------------------------------- mask


@pytest.mark.parametrize("size", [(64, 64), (64, 192)])
def test_mask_covers_face_not_corners(size: tuple[int, int]) -> None:
    ident, nuis = _batch(12, 8)
    for style in ("photo", "anime"):
        _, mask = render(ident, nuis, style, size, return_mask=True)
        h, w = size
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        assert (mask[:, 0, int(0.42 * h), w // 2] > 0.99).all()  # between the eyes
        corners = mask[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
        assert (corners < 1e-3).all()
        assert ((mask > 0.5).float().mean((1, 2, 3)) < 0.5).all()


def test_contact_sheet(tmp_path) -> None:
    out = render_contact_sheet(tmp_path / "sheet.png", n_identities=3, upscale=1)
    assert out.dtype == torch.uint8 and out.shape[-1] == 3
    assert (tmp_path / "sheet.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- texture noise


def test_texture_noise_shapes_and_default_maps() -> None:
    assert TEXTURE_NOISE == ("fine", "grain", "coarse")
    assert texture_noise_shapes((128, 384)) == {"fine": (128, 384), "grain": (128, 384), "coarse": (64, 192)}
    assert texture_noise_shapes((33, 20))["coarse"] == (17, 10)
    _, nuis = _batch(0, 6)
    maps = draw_texture_noise(nuis, (64, 64))
    assert set(maps) == set(TEXTURE_NOISE)
    for k, (h, w) in texture_noise_shapes((64, 64)).items():
        assert maps[k].shape == (6, 1, h, w) and maps[k].dtype == torch.float32
    fine = maps["fine"]
    assert abs(fine.mean()) < 0.05 and abs(fine.std() - 1) < 0.05  # standard normal
    assert (fine[0] - fine[1]).abs().mean() > 0.5  # samples differ
    assert not torch.allclose(maps["fine"], maps["grain"])  # maps differ
    again = draw_texture_noise(nuis[2:3], (64, 64))
    assert all(torch.equal(again[k], maps[k][2:3]) for k in TEXTURE_NOISE)  # batch independent
    wide = draw_texture_noise(nuis, (64, 192))
    assert torch.equal(wide["fine"][..., 64:128], maps["fine"])  # keyed by offset from the centre
    assert torch.equal(wide["coarse"][..., 32:64], maps["coarse"])


def test_noise_is_used_and_validated() -> None:
    ident, nuis = _batch(3, 2)
    default = render(ident, nuis, "photo", (32, 32))
    assert torch.equal(default, render(ident, nuis, "photo", (32, 32), noise=draw_texture_noise(nuis, (32, 32))))
    with pytest.raises(AssertionError):
        render(ident, nuis, "photo", (32, 32), noise=_noise(0, 2, (64, 64)))  # wrong shapes


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [-1, 1], peak 1 after mapping to [0, 1]."""
    return -10 * torch.log10((((a - b) / 2) ** 2).mean((1, 2, 3)))


def test_noise_changes_texture_not_the_face() -> None:
    """Two noise draws: visible, mostly high-frequency differences; the low-pass image agrees."""
    ident, nuis = _batch(21, 6)
    a = render(ident, nuis, "photo", noise=_noise(1, 6, (128, 128)))
    b = render(ident, nuis, "photo", noise=_noise(2, 6, (128, 128)))
    psnr = _psnr(a, b)
    assert (psnr > 18).all() and (psnr < 37).all(), psnr
    d = (a - b).mean(1)
    p = torch.fft.fft2(d - d.mean((-2, -1), keepdim=True)).abs() ** 2
    f = torch.sqrt(torch.fft.fftfreq(128).view(-1, 1) ** 2 + torch.fft.fftfreq(128).view(1, -1) ** 2)
    assert p[:, f > 0.125].sum() > 0.7 * p.sum()  # >70% of the change above 0.25x Nyquist
    la, lb = F.avg_pool2d(a, 8), F.avg_pool2d(b, 8)  # 16x16: identity, pose, colours
    assert (_psnr(la, lb) > 35).all(), _psnr(la, lb)
    assert (la - lb).abs().mean() < 0.1 * (la - la.roll(1, 0)).abs().mean()  # vs another face


@pytest.mark.parametrize("style", STYLES)
def test_noise_dependence_per_style(style: str) -> None:
    """photo uses every map; caricature only ``grain``; cartoon and anime none."""
    ident, nuis = _batch(4, 2)
    base = _noise(3, 2, (32, 32))
    ref = render(ident, nuis, style, (32, 32), noise=base)
    uses = {"photo": set(TEXTURE_NOISE), "caricature": {"grain"}}.get(style, set())
    for k in TEXTURE_NOISE:
        changed = dict(base, **{k: torch.randn(base[k].shape, generator=torch.Generator().manual_seed(9))})
        diff = (render(ident, nuis, style, (32, 32), noise=changed) - ref).abs().amax()
        assert (diff > 0.02) if k in uses else (diff == 0), (k, diff)


@pytest.mark.parametrize(("name", "field"), [("grain", (24, 6)), ("fine", (27, 19)), ("coarse", (12, 3))])
def test_noise_to_texture_is_local(name: str, field: tuple[int, int]) -> None:
    """An impulse in one map changes the image only within a few pixels (local, conv-learnable)."""
    ident, nuis = _batch(5, 1)
    base = _noise(4, 1, (48, 48))
    bumped = {k: v.clone() for k, v in base.items()}
    bumped[name][0, 0, field[0], field[1]] += 4.0
    d = render(ident, nuis, "photo", (48, 48), noise=bumped) - render(ident, nuis, "photo", (48, 48), noise=base)
    ys, xs = torch.nonzero(d.abs().amax((0, 1)) > 1e-4, as_tuple=True)
    assert ys.numel() > 0
    scale = 2 if name == "coarse" else 1
    cy, cx = scale * field[0] + 0.5 * (scale - 1), scale * field[1] + 0.5 * (scale - 1)
    reach = 6 if name == "coarse" else 2  # coarse: 7-pixel strand filter, steered along the strands
    assert (ys - cy).abs().max() <= reach and (xs - cx).abs().max() <= reach, (ys.tolist(), xs.tolist())


def test_texture_phases_are_smooth_in_the_factors() -> None:
    """No integer-seeded textures: a tiny change of a *_seed factor changes the image a little."""
    ident, nuis = _batch(6, 1)
    noise = _noise(5, 1, (64, 64))
    ref = render(ident, nuis, "photo", (64, 64), noise=noise)
    for name in ("background_seed", "hair_seed", "skin_seed"):
        k = NUISANCE_FACTORS.index(name)
        near = nuis.clone()
        near[0, k] += 1e-3
        for style in STYLES:
            a = render(ident, nuis, style, (64, 64), noise=noise) if style != "photo" else ref
            b = render(ident, near, style, (64, 64), noise=noise)
            assert (a - b).abs().amax() < 0.02, (name, style)


def test_renders_on_the_device_of_the_input() -> None:
    """Every tensor is created on the input's device: the meta device would reject a CPU tensor."""
    ident, nuis = _batch(7, 2)
    ident, nuis = ident.to("meta"), nuis.to("meta")
    for style in STYLES:
        img, mask = render(ident, nuis, style, (16, 24), return_mask=True)
        assert img.device.type == "meta" and img.shape == (2, 3, 16, 24) and mask.shape == (2, 1, 16, 24)
    assert draw_texture_noise(nuis, (16, 24))["coarse"].device.type == "meta"


def test_default_size_is_128() -> None:
    ident, nuis = _batch(8, 1)
    assert render(ident, nuis, "cartoon").shape == (1, 3, 128, 128)
