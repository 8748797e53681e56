"""The CPU speed paths of hrinv_nb.ops agree with the plain reference formulation, values and gradients.

Fused bias/activation (in place or not, double backward for R1), strided FIR downsampling and
convolution-side padding, the bias added by the convolution, and the per-layer choice between the
fused and non-fused modulated convolution (``fused_modconv=None``) under autograd.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hrinv_nb import ops


def _reference_upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad: tuple[int, int, int, int]):
    """Zero insertion, explicit pad/crop, full-resolution depthwise filter, then subsampling."""
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = pad
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    weight = f.flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, groups=c)[:, :, ::down, ::down]


@pytest.mark.parametrize("act", ["linear", "lrelu", "relu"])
@pytest.mark.parametrize("clamp", [None, 0.5])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("inplace", [False, True])
def test_bias_act_matches_reference_values_and_gradients(act, clamp, with_bias, inplace):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 5, 7, 6, generator=gen, dtype=torch.float64)
    b0 = torch.randn(5, generator=gen, dtype=torch.float64) if with_bias else None
    grad = torch.randn(2, 5, 7, 6, generator=gen, dtype=torch.float64)

    def run(fn, **kw):
        x = x0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True) if b0 is not None else None
        y = fn(x * 1.0, b, act=act, gain=0.7, clamp=clamp, **kw)  # x * 1.0: a fresh non-leaf, as a conv output
        y.backward(grad)
        return y.detach(), x.grad, None if b is None else b.grad

    got, ref = run(ops.bias_act, inplace=inplace), run(ops.bias_act_reference)
    for a, r in zip(got, ref):
        if r is not None:
            torch.testing.assert_close(a, r, atol=1e-12, rtol=1e-12)


def test_bias_act_double_backward_as_in_r1():
    """The gradient penalty differentiates through the backward of the fused function."""
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 4, 5, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 4, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=gen, dtype=torch.float64)

    def penalty(fn):
        x = x0.clone().requires_grad_(True)
        y = fn(F.conv2d(x, w, padding=1), b, act="lrelu", clamp=2.0)
        (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        (gw,) = torch.autograd.grad(g.square().sum(), w)
        return gw

    torch.testing.assert_close(penalty(ops.bias_act), penalty(ops.bias_act_reference), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize(
    "up,down,pad",
    [(1, 2, (1, 1, 1, 1)), (1, 2, (2, 2, 2, 2)), (2, 1, (2, 1, 2, 1)), (1, 1, (1, 1, 1, 1)), (1, 2, (-1, 0, 1, 1))],
)
def test_upfirdn2d_strided_and_conv_padding_paths(up, down, pad):
    x = torch.randn(1, 3, 9, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    torch.testing.assert_close(
        ops.upfirdn2d(x, f, up=up, down=down, padding=pad), _reference_upfirdn2d(x, f, up, down, pad)
    )


@pytest.mark.parametrize("up,down,k", [(1, 1, 3), (1, 2, 3), (1, 2, 1), (2, 1, 3), (2, 1, 1)])
def test_conv2d_resample_bias_equals_bias_added_after(up, down, k):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 4, k, k, generator=gen, dtype=torch.float64)
    b = torch.randn(5, generator=gen, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    kw = dict(f=f, up=up, down=down, padding=k // 2, flip_weight=(up == 1))
    got = ops.conv2d_resample(x, w, bias=b, **kw)
    torch.testing.assert_close(got, ops.conv2d_resample(x, w, **kw) + b.reshape(1, -1, 1, 1))


@pytest.mark.parametrize("in_ch,out_ch,up", [(8, 6, 1), (8, 6, 2), (200, 100, 1)])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_auto_path_matches_both_paths_with_gradients(in_ch, out_ch, up, demodulate):
    gen = torch.Generator().manual_seed(4)
    x0 = torch.randn(1, in_ch, 6, 6, generator=gen, dtype=torch.float64)
    weight = torch.randn(out_ch, in_ch, 3, 3, generator=gen, dtype=torch.float64)
    s0 = torch.randn(1, in_ch, generator=gen, dtype=torch.float64)
    noise = torch.randn(6 * up, 6 * up, generator=gen, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()

    def run(fused):
        x, s = x0.clone().requires_grad_(True), s0.clone().requires_grad_(True)
        y = ops.modulated_conv2d(x, weight, s, noise=noise, up=up, padding=1, resample_filter=f,
                                 demodulate=demodulate, flip_weight=(up == 1), fused_modconv=fused)  # fmt: skip
        y.square().sum().backward()
        return y.detach(), x.grad, s.grad

    auto, fused, plain = run(None), run(True), run(False)
    expected_fused = ops.prefer_fused(in_ch, out_ch, 3, 1)
    assert expected_fused == (in_ch * out_ch <= 128 * 64)
    for a, b_, c in zip(auto, fused, plain):
        torch.testing.assert_close(a, b_ if expected_fused else c, atol=0, rtol=0)
        torch.testing.assert_close(b_, c, atol=1e-9, rtol=1e-9)


def test_prefer_fused_never_for_batches():
    assert ops.prefer_fused(32, 32, 3, 1) and ops.prefer_fused(512, 3, 1, 1)
    assert not ops.prefer_fused(32, 32, 3, 2) and not ops.prefer_fused(512, 512, 3, 1)


@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_synthesis_gradients_of_the_auto_path_match_the_non_fused_path(noise_mode):
    """W+ and noise-map gradients of the parity generator (mixed fused / non-fused layers) under autograd."""
    from conftest import TINY

    import hrinv_nb

    G = hrinv_nb.load_networks(TINY).G.eval().requires_grad_(False)
    layers = [m for m in G.synthesis.modules() if isinstance(m, hrinv_nb.networks.SynthesisLayer)]
    kinds = {ops.prefer_fused(m.weight.shape[1], m.weight.shape[0], m.weight.shape[2], 1) for m in layers}
    assert kinds == {True, False}  # the test covers both paths in one network
    ws0 = torch.randn(1, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(5))
    noise = {
        name: torch.randn(buf.shape, generator=torch.Generator().manual_seed(6))
        for name, buf in hrinv_nb.noise_buffers(G).items()
    }

    def grads(fused):
        ws = ws0.clone().requires_grad_(True)
        maps = {k: v.clone().requires_grad_(True) for k, v in noise.items()}
        hrinv_nb.set_noise_buffers(G, maps)
        G.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused).square().sum().backward()
        return [ws.grad] + ([maps[k].grad for k in sorted(maps)] if noise_mode == "const" else [])

    for auto, plain in zip(grads(None), grads(False)):
        scale = plain.abs().max().item()
        assert (auto - plain).abs().max().item() <= 1e-5 * scale
