"""The one stylisation path (gallery.stylize_pairs): every Fig. 2 method, pair indices, batched LSO."""

from __future__ import annotations

import pytest
import torch

import hrinv_nb
from hrinv_nb.blending import mix
from hrinv_nb.errors import HrinvError
from hrinv_nb.gallery import gallery_from_samples, lso_initial_variables, pair_indices, stylize, stylize_pairs
from hrinv_nb.losses import perceptual_loss


@pytest.fixture(scope="module")
def codes(gens):
    """2 content codes with their images (scaled into [-1, 1]) and 3 style codes."""
    G_s, G_t = gens
    with torch.no_grad():
        w_s = G_s.mapping(torch.randn(2, G_s.z_dim, generator=torch.Generator().manual_seed(2)), None)
        contents = G_s.synthesis(w_s, noise_mode="const") / 20
        w_t = G_t.mapping(torch.randn(3, G_t.z_dim, generator=torch.Generator().manual_seed(3)), None)
    return w_s, contents, w_t


def _render(m):
    with torch.no_grad():
        return m.G_m.synthesis(m.w_m, noise_mode="const")


def test_pair_indices_content_major():
    ci, si = pair_indices(2, 3)
    assert ci.tolist() == [0, 0, 0, 1, 1, 1] and si.tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(HrinvError):
        pair_indices(0, 3)


@pytest.mark.parametrize("method", ["layer_swap", "swap_g_and_w", "lerp"])
def test_mixing_methods_match_a_single_mix(gens, codes, method):
    G_s, G_t = gens
    w_s, _, w_t = codes
    out = stylize_pairs(G_s, G_t, w_s, w_t, method, batch_size=4, progress=False)  # 6 pairs: batches of 4 and 2
    assert len(out) == 6 and out.images.shape == (6, 3, 64, 64) and out.lso is None
    assert out.content_index.tolist() == [0, 0, 0, 1, 1, 1] and out.style_index.tolist() == [0, 1, 2, 0, 1, 2]
    assert out.images is out.mixed and out.w is out.w_mixed
    single = mix(method, G_s, G_t, w_s[1:2], w_t[2:3])
    assert out.schedule == single.gamma
    torch.testing.assert_close(out.w[5:6], single.w_m)
    torch.testing.assert_close(out.images[5:6], _render(single), atol=1e-4, rtol=1e-5)
    style_change = float((out.images[3] - out.images[5]).abs().max())  # pairs (1, 0) and (1, 2), in different batches
    assert (style_change < 1e-3) == (method == "layer_swap"), (
        f"only layer swapping ignores the style code ({style_change})"
    )


def test_swap_res_and_gamma_reach_the_mix(gens, codes):
    G_s, G_t = gens
    w_s, _, w_t = codes
    out = stylize_pairs(G_s, G_t, w_s, w_t, "swap_g_and_w", swap_res=16, progress=False)
    assert out.schedule == {4: 0.0, 8: 0.0, 16: 1.0, 32: 1.0, 64: 1.0}
    assert torch.equal(out.w[:, 4:], w_t[out.style_index][:, 4:]) and torch.equal(
        out.w[:, :4], w_s[out.content_index][:, :4]
    )
    lerp = stylize_pairs(G_s, G_t, w_s, w_t, "lerp", gamma=0.0, progress=False)
    torch.testing.assert_close(lerp.w, w_s[lerp.content_index])


def test_lerp_lso_batches_equal_single_runs(gens, codes):
    G_s, G_t = gens
    w_s, contents, w_t = codes
    # a large init_scale: a pair started from another pair's initial offset would land far from its single run
    kw = {
        "num_steps": 4,
        "loss": perceptual_loss("mse"),
        "seed": 3,
        "rows": (1, 2),
        "reg_weight": 1e-3,
        "init_scale": 0.5,
    }
    whole = stylize_pairs(
        G_s, G_t, w_s, w_t, "lerp_lso", contents=contents, lso_kwargs=kw, batch_size=6, progress=False
    )
    # one batch of all pairs is exactly one lso call on the mixed codes
    m = mix("lerp", G_s, G_t, w_s[whole.content_index], w_t[whole.style_index])
    ref = hrinv_nb.lso(m.G_m, m.w_m, contents[whole.content_index], progress=False, **kw)
    assert (
        torch.equal(whole.w, ref.w)
        and torch.equal(whole.images, ref.image)
        and torch.equal(whole.mixed, ref.mixed_image)
    )
    assert torch.equal(whole.w_mixed, m.w_m)
    # any batching gives every pair the result of its own single run, up to float summation order (which
    # Adam's normalisation lifts to ~1e-4 on the few elements whose gradient is nearly zero)
    for lso_batch in (1, 4):
        part = stylize_pairs(
            G_s,
            G_t,
            w_s,
            w_t,
            "lerp_lso",
            contents=contents,
            lso_kwargs=kw,
            batch_size=6,
            lso_batch_size=lso_batch,
            progress=False,
        )
        torch.testing.assert_close(part.w, whole.w, atol=1e-3, rtol=0)
        torch.testing.assert_close(part.images, whole.images, atol=1e-2, rtol=1e-3)
    init = lso_initial_variables(6, G_s.w_dim, kw)
    alone = hrinv_nb.lso(m.G_m, m.w_m[4:5], contents[1:2], init=init[4:5], progress=False, **kw)
    torch.testing.assert_close(whole.w[4:5], alone.w, atol=1e-3, rtol=0)
    other_start = hrinv_nb.lso(m.G_m, m.w_m[4:5], contents[1:2], init=init[0:1], progress=False, **kw)
    assert (other_start.w - alone.w).abs().max() > 1e-2, "the test must tell the initial offsets apart"
    # LSO moves only the selected rows, and the pairs differ from their mix there
    changed = (whole.w - whole.w_mixed).abs().amax(dim=2) > 0
    assert changed[:, 1:3].all() and not changed[:, [0] + list(range(3, G_s.num_ws))].any()
    assert not torch.equal(whole.images, whole.mixed)
    assert len(whole.lso_results) == 6 and torch.equal(whole.lso_results[4].w, whole.w[4:5])
    assert len(whole.lso.history["loss"]) == 4


def test_lso_batches_with_directions_and_a_pair_subset(gens, codes):
    G_s, G_t = gens
    w_s, contents, w_t = codes
    dirs = torch.linalg.qr(torch.randn(G_s.w_dim, 3, generator=torch.Generator().manual_seed(0)))[0].T
    kw = {"num_steps": 3, "loss": perceptual_loss("mse"), "directions": dirs, "init_scale": 0.1}
    pairs = (torch.tensor([1, 0, 1]), torch.tensor([2, 2, 0]))
    a = stylize_pairs(G_s, G_t, w_s, w_t, "lerp_lso", pairs=pairs, contents=contents, lso_kwargs=kw, progress=False)
    b = stylize_pairs(
        G_s, G_t, w_s, w_t, "lerp_lso", pairs=pairs, contents=contents, lso_kwargs=kw, lso_batch_size=1, progress=False
    )
    assert a.lso.offset.shape == (3, 5, G_s.w_dim) and a.content_index.tolist() == [1, 0, 1]
    torch.testing.assert_close(b.w, a.w, atol=1e-5, rtol=1e-5)
    off = a.lso.offset[:, 0]
    torch.testing.assert_close(off, off @ dirs.T @ dirs, atol=1e-5, rtol=1e-4)  # in the span of the directions
    plain = stylize_pairs(G_s, G_t, w_s, w_t, "lerp", progress=False)
    torch.testing.assert_close(a.mixed[0], plain.images[5], atol=1e-4, rtol=1e-5)  # pair (1, 2) is pair 5 of all


def test_lso_after_any_mixing_and_refusals(gens, codes):
    G_s, G_t = gens
    w_s, contents, w_t = codes
    kw = {"num_steps": 2, "loss": perceptual_loss("mse")}
    swap = stylize_pairs(
        G_s,
        G_t,
        w_s,
        w_t,
        "layer_swap",
        contents=contents,
        run_lso=True,
        lso_kwargs=kw,
        pairs=(torch.arange(2), torch.zeros(2, dtype=torch.long)),
        progress=False,
    )
    assert torch.equal(swap.w_mixed, w_s) and not torch.equal(swap.w, w_s) and swap.lso is not None
    with pytest.raises(HrinvError):
        stylize_pairs(G_s, G_t, w_s, w_t, "lerp_lso", progress=False)  # no content images
    with pytest.raises(HrinvError):
        stylize_pairs(G_s, G_t, w_s, w_t, "lerp_lso", contents=contents, run_lso=False, progress=False)
    with pytest.raises(HrinvError):
        stylize_pairs(G_s, G_t, w_s, w_t, "nonsense", progress=False)
    with pytest.raises(HrinvError):
        stylize_pairs(G_s, G_t, w_s, w_t, "lerp", pairs=(torch.tensor([2]), torch.tensor([0])), progress=False)
    with pytest.raises(HrinvError):
        stylize_pairs(
            G_s, G_t, w_s, w_t, "lerp_lso", contents=contents, lso_kwargs={**kw, "optimize_noise": True}, progress=False
        )


def test_gallery_stylize_is_stylize_pairs_for_one_content(gens, codes):
    G_s, G_t = gens
    w_s, contents, _ = codes
    gallery = gallery_from_samples(G_t, 5, seed=3)
    assert gallery.w.shape == (5, 10, 128) and len(gallery) == 5
    kw = {"num_steps": 3, "loss": perceptual_loss("mse")}
    judge = lambda a, b: float((a - b).square().mean())
    out = stylize(
        G_s,
        G_t,
        w_s[:1],
        gallery,
        method="lerp_lso",
        content=contents[:1],
        lso_kwargs=kw,
        judge=judge,
        lso_batch_size=2,
        progress=False,
    )
    ref = stylize_pairs(G_s, G_t, w_s[:1], gallery.w, "lerp_lso", contents=contents[:1], lso_kwargs=kw, progress=False)
    # Batches of 2, 2, 1 against one of 5: the same pairs, in a different float summation order (a batch of one
    # takes the fused toRGB). Adam's normalised step is at most about lr (0.05) per coordinate whatever the
    # gradient's size, so a near-zero gradient whose sign flips with that order moves a coordinate by up to
    # 2·lr per step (as in test_cli). Pairs mixed up or a wrong target would move nearly every coordinate.
    diff = (out.w - ref.w).abs().flatten()
    assert diff.max() <= 2 * 0.05 * kw["num_steps"]
    assert (diff > 1e-4).float().mean() < 0.1
    assert len(out.lso_results) == 5 and out.content_index.tolist() == [0] * 5
    assert all(isinstance(r.distances["content_vs_lso"], float) for r in out.lso_results)
    assert len(out.lso.distances["content_vs_mixed"]) == 5
