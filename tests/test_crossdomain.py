"""Helpers of the cross-domain notebooks: content inversion, masked residuals, Gram style distance."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY

import hrinv_nb
from hrinv_nb.losses import perceptual_loss
from hrinv_nb.studies import cross_domain as cd


def test_masked_residual_and_dilation():
    a = torch.zeros(2, 3, 8, 8)
    b = torch.zeros(2, 3, 8, 8)
    b[0, :, 0, 0] = 1.0  # one background pixel differs in sample 0
    b[1, :, 4, 4] = 2.0  # one head pixel differs in sample 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 3:6, 3:6] = 1.0
    bg = cd.masked_residual(a, b, 1 - mask)
    fg = cd.masked_residual(a, b, mask)
    assert bg[0] == pytest.approx(1 / 55) and bg[1] == 0
    assert fg[0] == 0 and fg[1] == pytest.approx(2 / 9)
    grown = cd.dilate_mask(mask, 1)
    assert grown.sum() == 25 and torch.equal(cd.dilate_mask(mask, 0), mask)
    with pytest.raises(AssertionError):
        cd.masked_residual(a, b, torch.zeros(1, 1, 8, 8))


def test_gram_style_distance_ignores_position_sees_colour():
    trunk_dist = cd.GramStyleDistance(None, layers=(2, 7), seed=0)  # a random trunk is enough here
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    rolled = torch.roll(img, shifts=(0, 16), dims=(2, 3))  # same texture, moved
    recoloured = img * torch.tensor([1.0, 0.2, 0.2]).view(1, 3, 1, 1)
    d_same = trunk_dist(img, img)
    d_roll = trunk_dist(img, rolled)
    d_col = trunk_dist(torch.cat([img, img]), recoloured)
    assert d_same.shape == (1,) and d_same.item() == pytest.approx(0.0, abs=1e-9)
    assert d_col.shape == (2,) and d_roll.item() < 0.1 * d_col[0].item()
    assert cd.pixel_mse(img, rolled).item() > 0.1


def test_invert_contents_shapes_and_reduces_loss():
    G = hrinv_nb.load_networks(TINY).G
    with torch.no_grad():
        targets = (
            G.synthesis(
                G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), None), noise_mode="const"
            )
            / 20
        )
    inv = cd.invert_contents(G, targets, loss=perceptual_loss("mse"), num_steps=5, progress=False)
    assert inv.w.shape == (2, G.num_ws, G.w_dim) and inv.images.shape == targets.shape
    assert torch.isfinite(inv.images).all()


def test_load_contents_and_masks(tmp_path):
    imgs, masks, label = cd.load_contents("", 2, 48, seed=1000)
    assert imgs.shape == (2, 3, 48, 48) and masks.shape == (2, 1, 48, 48) and "1000" in label
    assert 0.05 < masks.mean() < 0.8 and imgs.min() >= -1 and imgs.max() <= 1
    hrinv_nb.save_image(imgs[0:1], tmp_path / "a.png")
    hrinv_nb.save_image(imgs[1:2], tmp_path / "b.png")
    loaded, emask, _ = cd.load_contents(str(tmp_path), 2, 48, seed=0)
    assert loaded.shape == (2, 3, 48, 48) and (loaded - imgs).abs().max() < 0.05
    assert emask.shape == (2, 1, 48, 48) and emask[0, 0, 24, 24] == 1 and emask[0, 0, 0, 0] == 0
    with pytest.raises(FileNotFoundError):
        cd.load_contents(str(tmp_path), 3, 48, seed=0)
    assert cd.identity_embedder("none") is None


def test_lso_measures_shapes():
    from hrinv_nb.lso import LSOResult

    g = torch.Generator().manual_seed(0)
    mixed = torch.rand(2, 3, 40, 40, generator=g) * 2 - 1
    img = mixed.clone()
    img[1] += 0.1
    res = LSOResult(
        w=torch.zeros(2, 10, 4), image=img, mixed_image=mixed, offset=torch.ones(2, 5, 4), rows=(0, 1, 2, 3, 4)
    )
    embed = lambda x: torch.nn.functional.normalize(x.mean(dim=(2, 3)), dim=1)
    m = cd.lso_measures(res, mixed, embed=embed, gram=cd.GramStyleDistance(None, layers=(2,), seed=0))
    assert m["mse_to_mixed"][0] == 0 and m["mse_to_mixed"][1] == pytest.approx(0.01, rel=1e-4)
    assert m["gram_to_mixed"][0] == pytest.approx(0, abs=1e-9) and m["gram_to_mixed"][1] > 0
    assert m["id_before"] == pytest.approx([0, 0], abs=1e-6) and m["offset_norm"] == pytest.approx([20**0.5] * 2)
    s = cd.summarise(m)
    assert s["mse_to_mixed"] == pytest.approx(0.005, rel=1e-4)


def test_load_contents_takes_the_first_images_in_numeric_order(tmp_path):
    """CelebA-HQ-like names 0.jpg ... : "the first 3" are 0, 1, 2 (a text sort would take 0, 1, 10)."""
    from PIL import Image

    for i in (0, 1, 2, 10, 11, 100):
        Image.new("RGB", (48, 48), (i, 0, 0)).save(tmp_path / f"{i}.png")
    imgs, _, _ = cd.load_contents(str(tmp_path), 3, 48, seed=0)
    reds = ((imgs[:, 0, 0, 0] + 1) * 127.5).round().tolist()
    assert reds == [0.0, 1.0, 2.0]


def test_other_content_index_never_picks_the_own_content():
    ci = torch.tensor([0, 0, 1, 1, 2, 2])
    other = cd.other_content_index(ci, 3)
    assert other.tolist() == [1, 1, 2, 2, 0, 0] and (other != ci).all()
    with pytest.raises(AssertionError):
        cd.other_content_index(ci, 3, shift=3)  # every content onto itself
    with pytest.raises(AssertionError):
        cd.other_content_index(torch.zeros(2, dtype=torch.long), 1)


def test_identity_gain_sign_and_range():
    def embed(img):  # a toy embedding: the mean colour, unit-normed
        v = img.mean(dim=(2, 3)) + 2.0
        return v / v.norm(dim=1, keepdim=True)

    ref = torch.zeros(2, 3, 8, 8)
    ref[:, 0] = 1.0
    far = torch.zeros(2, 3, 8, 8)
    far[:, 2] = 1.0
    near = 0.9 * ref + 0.1 * far
    gain = cd.identity_gain(embed, ref, far, near)
    assert gain.shape == (2,) and (gain > 0).all() and (gain <= 4).all()
    assert torch.allclose(cd.identity_gain(embed, ref, near, near), torch.zeros(2))
    assert (cd.identity_gain(embed, ref, near, far) < 0).all()


def test_style_gap_share_zero_for_the_mix_and_one_for_the_content():
    gram = cd.GramStyleDistance(None, layers=(2, 7), seed=0)
    g = torch.Generator().manual_seed(3)
    content = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    mixed = (content * torch.tensor([1.0, 0.3, 0.3]).view(1, 3, 1, 1)).clamp(-1, 1)
    assert torch.allclose(cd.style_gap_share(gram, mixed, mixed, content), torch.zeros(2))
    assert torch.allclose(cd.style_gap_share(gram, content, mixed, content), torch.ones(2))
    half = 0.5 * (content + mixed)
    share = cd.style_gap_share(gram, half, mixed, content)
    assert ((share > 0) & (share < 1)).all()


def test_scaled_gamma_halves_the_paper_schedule():
    from hrinv_nb.blending import paper_gamma

    G = hrinv_nb.load_networks(TINY).G
    full = paper_gamma(G)
    assert cd.scaled_gamma(G, 1.0) == pytest.approx(full)
    half = cd.scaled_gamma(G, 0.5)
    assert half.keys() == full.keys() and all(half[r] == pytest.approx(full[r] / 2) for r in full)
    with pytest.raises(AssertionError):
        cd.scaled_gamma(G, 1.5)


def test_region_change_splits_background_and_head():
    a = torch.zeros(1, 3, 8, 8)
    b = torch.zeros(1, 3, 8, 8)
    b[..., :2, :] = 1.0  # the top two rows change: background only
    background = torch.zeros(1, 1, 8, 8)
    background[..., :4, :] = 1.0
    out = cd.region_change(b, a, background)
    assert out["background"].item() == pytest.approx(0.5) and out["head"].item() == 0
    assert out["background_share"].item() == pytest.approx(1.0)
