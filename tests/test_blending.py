"""Blending (Eq. 6, 7), layer swapping and the Fig. 2 mixing methods on the parity generator."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY

import hrinv_nb
from hrinv_nb.blending import (
    blend_generators,
    blend_latents,
    layer_swap,
    method_schedule,
    mix,
    mixed_generator,
    paper_gamma,
    row_blocks,
    swap_schedule,
)
from hrinv_nb.errors import HrinvError


@pytest.fixture(scope="module")
def pair():
    G_s = hrinv_nb.load_networks(TINY).G
    G_t = copy.deepcopy(G_s)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in G_t.synthesis.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
        for p in G_t.mapping.parameters():
            p.add_(1.0)  # a different mapping must never leak into the blend
    return G_s, G_t


def _sd(G):
    return {k: v.clone() for k, v in G.state_dict().items()}


def test_gamma_zero_and_one_reproduce_inputs_exactly(pair):
    G_s, G_t = pair
    before_s, before_t = _sd(G_s), _sd(G_t)
    g0, g1 = blend_generators(G_s, G_t, 0.0), blend_generators(G_s, G_t, 1.0)
    for k, v in G_s.synthesis.state_dict().items():
        assert torch.equal(g0.synthesis.state_dict()[k], v)
        assert torch.equal(g1.synthesis.state_dict()[k], G_t.synthesis.state_dict()[k])
    for k, v in G_s.mapping.state_dict().items():
        assert torch.equal(g1.mapping.state_dict()[k], v), "the mapping must come from G_s"
    assert all(torch.equal(before_s[k], v) for k, v in G_s.state_dict().items()), "G_s was modified"
    assert all(torch.equal(before_t[k], v) for k, v in G_t.state_dict().items()), "G_t was modified"


def test_per_block_lerp_values(pair):
    G_s, G_t = pair
    G_m = blend_generators(G_s, G_t, {4: 0.25, 64: 0.5})
    s, t, m = G_s.synthesis.state_dict(), G_t.synthesis.state_dict(), G_m.synthesis.state_dict()
    torch.testing.assert_close(
        m["b4.conv1.weight"], s["b4.conv1.weight"] + 0.25 * (t["b4.conv1.weight"] - s["b4.conv1.weight"])
    )
    torch.testing.assert_close(m["b64.torgb.weight"], 0.5 * (s["b64.torgb.weight"] + t["b64.torgb.weight"]))
    assert torch.equal(m["b8.conv0.weight"], s["b8.conv0.weight"])  # unspecified blocks: γ = 0
    with pytest.raises(ValueError):
        blend_generators(G_s, G_t, {128: 0.5})


def test_layer_swap_equals_lerp_with_step_schedule(pair):
    G_s, G_t = pair
    swapped = layer_swap(G_s, G_t, swap_res=16)
    stepped = blend_generators(G_s, G_t, {4: 0.0, 8: 0.0, 16: 1.0, 32: 1.0, 64: 1.0})
    for k, v in swapped.state_dict().items():
        assert torch.equal(v, stepped.state_dict()[k])
    toonify = swap_schedule(G_s, 16, high_from_target=False)
    assert toonify == {4: 1.0, 8: 1.0, 16: 0.0, 32: 0.0, 64: 0.0}
    smooth = swap_schedule(G_s, 16, blend_width=0.5)
    assert smooth[4] < smooth[8] < smooth[16] == 0.5 < smooth[32] < smooth[64]


def test_paper_gamma_scaled_to_resolution(pair):
    G_s, _ = pair
    assert paper_gamma(G_s) == {4: 0.2, 8: 0.2, 16: 0.2, 32: 0.7, 64: 0.7}
    g1024 = SimpleNamespace(synthesis=SimpleNamespace(block_resolutions=[2**i for i in range(2, 11)]))
    sched = paper_gamma(g1024)
    assert [r for r, g in sched.items() if g == 0.2] == [4, 8, 16, 32, 64]
    assert [r for r, g in sched.items() if g == 0.7] == [128, 256, 512, 1024]


def test_blend_latents_pairs_rows_with_blocks():
    assert row_blocks(18, [2**i for i in range(2, 11)])[:4] == [4, 4, 8, 8]
    assert row_blocks(10, [4, 8, 16, 32, 64]) == [4, 4, 8, 8, 16, 16, 32, 32, 64, 64]
    w_s, w_t = torch.zeros(1, 10, 3), torch.ones(1, 10, 3)
    w_m = blend_latents(w_s, w_t, {8: 1.0, 64: 0.5})
    assert w_m[0, :, 0].tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0.5, 0.5]
    default = blend_latents(w_s, w_t)
    assert default[0, :, 0].tolist() == pytest.approx([0.2] * 6 + [0.7] * 4)
    assert torch.equal(blend_latents(w_s, w_t, 0.3), torch.full((1, 10, 3), 0.3))


def test_mixing_methods_by_name(pair):
    G_s, G_t = pair
    w_s = G_s.mapping(torch.randn(1, 128, generator=torch.Generator().manual_seed(0)), None)
    w_t = G_s.mapping(torch.randn(1, 128, generator=torch.Generator().manual_seed(1)), None)
    a = mix("layer_swap", G_s, G_t, w_s, w_t)
    assert torch.equal(a.w_m, w_s) and set(a.gamma.values()) <= {0.0, 1.0}
    b = mix("swap_g_and_w", G_s, G_t, w_s, w_t)
    assert torch.equal(b.w_m[:, -2:], w_t[:, -2:]) and torch.equal(b.w_m[:, :2], w_s[:, :2])
    c = mix("lerp", G_s, G_t, w_s, w_t)
    torch.testing.assert_close(c.w_m, blend_latents(w_s, w_t))
    with pytest.raises(HrinvError):
        mix("nonsense", G_s, G_t, w_s, w_t)
    with pytest.raises(HrinvError):
        mix("lerp", G_s, G_t, w_s, None)


def test_method_schedules_and_mixed_generator(pair):
    G_s, G_t = pair
    assert method_schedule(G_s, "layer_swap") == method_schedule(G_s, "swap_g_and_w") == swap_schedule(G_s, 32)
    assert method_schedule(G_s, "swap_g_and_w", swap_res=8) == {4: 0.0, 8: 1.0, 16: 1.0, 32: 1.0, 64: 1.0}
    assert method_schedule(G_s, "lerp") == method_schedule(G_s, "lerp_lso") == paper_gamma(G_s)
    assert method_schedule(G_s, "lerp", gamma=0.5) == {r: 0.5 for r in (4, 8, 16, 32, 64)}
    with pytest.raises(HrinvError):
        method_schedule(G_s, "lerp+lso")
    G_m, sched = mixed_generator(G_s, G_t, "lerp", gamma={64: 1.0})
    assert sched == {4: 0.0, 8: 0.0, 16: 0.0, 32: 0.0, 64: 1.0}
    m = mix("lerp", G_s, G_t, torch.zeros(1, 10, 128), torch.zeros(1, 10, 128), gamma={64: 1.0})
    for (k, a), b in zip(G_m.state_dict().items(), m.G_m.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(G_m.synthesis.b64.conv0.weight, G_t.synthesis.b64.conv0.weight)
    assert torch.equal(G_m.synthesis.b32.conv0.weight, G_s.synthesis.b32.conv0.weight)
