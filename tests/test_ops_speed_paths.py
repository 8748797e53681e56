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
    assert not expected_fused  # every 3x3 layer takes the non-fused path under autograd
    for a, b_, c in zip(auto, fused, plain):
        torch.testing.assert_close(a, b_ if expected_fused else c, atol=0, rtol=0)
        torch.testing.assert_close(b_, c, atol=1e-9, rtol=1e-9)


def test_prefer_fused_never_for_batches():
    assert ops.prefer_fused(512, 3, 1, 1) and ops.prefer_fused(32, 4, 1, 1)  # toRGB(A)
    assert not ops.prefer_fused(32, 32, 3, 1) and not ops.prefer_fused(512, 512, 3, 1)
    assert not ops.prefer_fused(512, 3, 1, 2)


@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_synthesis_gradients_of_the_auto_path_match_the_non_fused_path(noise_mode):
    """W+ and noise-map gradients of the parity generator (mixed fused / non-fused layers) under autograd."""
    from conftest import TINY

    import hrinv_nb

    G = hrinv_nb.load_networks(TINY).G.eval().requires_grad_(False)
    layers = [
        m
        for m in G.synthesis.modules()
        if isinstance(m, (hrinv_nb.networks.SynthesisLayer, hrinv_nb.networks.ToRGBLayer))
    ]
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


def _reference_modulated_conv2d(x, weight, styles, noise, up, f, demodulate, flip_weight, gain):
    """NVIDIA's non-fused formulation: x * styles, convolution, * rsqrt(sum (w*s)^2), * gain, + noise."""
    n = x.shape[0]
    y = ops.conv2d_resample(x * styles.reshape(n, -1, 1, 1), weight, f=f, up=up, padding=weight.shape[-1] // 2,
                            flip_weight=flip_weight)  # fmt: skip
    if demodulate:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
        y = y * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, -1, 1, 1)
    return y * gain + noise


@pytest.mark.parametrize("batch,in_ch,out_ch,up", [(1, 8, 6, 1), (1, 8, 6, 2), (1, 200, 100, 1), (3, 8, 6, 2)])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("gain", [1.0, 1.7])
@pytest.mark.parametrize("fused", [None, True, False])
def test_modulated_conv2d_matches_nvidia_formulation(batch, in_ch, out_ch, up, demodulate, gain, fused):
    """Demodulation as one [N,I]@[I,O] product, the einsum reductions of scale_channels and the folded gain
    give NVIDIA's values and gradients (x, styles, noise) on every path."""
    gen = torch.Generator().manual_seed(7)
    x0 = torch.randn(batch, in_ch, 6, 6, generator=gen, dtype=torch.float64)
    weight = torch.randn(out_ch, in_ch, 3, 3, generator=gen, dtype=torch.float64)
    s0 = torch.randn(batch, in_ch, generator=gen, dtype=torch.float64)
    n0 = torch.randn(batch, 1, 6 * up, 6 * up, generator=gen, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()

    def run(fn, **kw):
        x, s, nz = (t.clone().requires_grad_(True) for t in (x0, s0, n0))
        y = fn(x, weight, s, nz, up, f, demodulate, up == 1, gain, **kw)
        y.square().sum().backward()
        return y.detach(), x.grad, s.grad, nz.grad

    def ours(x, weight, s, nz, up, f, demodulate, flip, gain, fused_modconv):
        return ops.modulated_conv2d(x, weight, s, noise=nz, up=up, padding=1, resample_filter=f,
                                    demodulate=demodulate, flip_weight=flip, fused_modconv=fused_modconv,
                                    gain=gain)  # fmt: skip

    for got, ref in zip(run(ours, fused_modconv=fused), run(_reference_modulated_conv2d)):
        torch.testing.assert_close(got, ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("add_shape", [None, (5, 6), (2, 1, 5, 6), (2, 3, 5, 6)])
def test_scale_channels_gradients_and_double_backward(add_shape):
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    inputs = (x, s)
    if add_shape is not None:
        inputs += (torch.randn(add_shape, generator=gen, dtype=torch.float64, requires_grad=True),)
    torch.testing.assert_close(ops.scale_channels(*inputs), x * s[:, :, None, None] + (inputs[2] if add_shape else 0))
    assert torch.autograd.gradcheck(ops.scale_channels, inputs)
    assert torch.autograd.gradgradcheck(ops.scale_channels, inputs)


@pytest.mark.parametrize("in_ch,channels_last", [(16, False), (16, True), (3, True), (3, False)])
def test_one_by_one_convolution_paths_match_conv2d(in_ch, channels_last):
    """The matrix-product 1x1 convolution (NCHW or channels-last in, same layout out) equals F.conv2d."""
    gen = torch.Generator().manual_seed(9)
    x0 = torch.randn(2, in_ch, 5, 7, generator=gen, dtype=torch.float64)
    w0 = torch.randn(4, in_ch, 1, 1, generator=gen, dtype=torch.float64)
    b = torch.randn(4, generator=gen, dtype=torch.float64)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def run(conv):
        x = x0.contiguous(memory_format=fmt).requires_grad_(True)
        w = w0.clone().requires_grad_(True)
        y = conv(x, w, b)
        y.backward(torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape))
        return y, x.grad, w.grad

    got, ref = run(lambda x, w, b: ops._conv(x, w, bias=b)), run(F.conv2d)
    assert got[0].is_contiguous(memory_format=fmt)
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("clamp", [0.5, 1e3])
def test_bias_act_clamp_that_never_binds_gives_the_reference(clamp):
    """On a CPU a clamp that no value reaches is skipped, forward and backward (1e3: never reached here)."""
    gen = torch.Generator().manual_seed(10)
    x0 = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    for fn in (ops.bias_act, ops.bias_act_reference):
        x = x0.clone().requires_grad_(True)
        y = fn(x * 1.0, None, act="lrelu", clamp=clamp)
        y.backward(torch.ones_like(y))
        if fn is ops.bias_act:
            got = (y.detach(), x.grad)
        else:
            torch.testing.assert_close(got[0], y.detach(), atol=1e-12, rtol=1e-12)
            torch.testing.assert_close(got[1], x.grad, atol=1e-12, rtol=1e-12)
    assert (got[1] == 0).any() == (clamp < 1)  # the binding clamp masks gradients; the other does not


def test_discriminator_channels_last_matches_nchw_with_r1(monkeypatch):
    """D in channels-last memory on a CPU (the default) gives the NCHW logits, features and R1 gradients."""
    from conftest import TINY

    import hrinv_nb
    from hrinv_nb import networks

    D = hrinv_nb.load_networks(TINY).D.requires_grad_(True)  # D computes in float32 whatever its weights
    img0 = torch.randn(2, 3, D.img_resolution, D.img_resolution, generator=torch.Generator().manual_seed(11))

    def run():
        img = img0.clone().requires_grad_(True)
        logits = D(img, None)
        (g,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
        (gw,) = torch.autograd.grad(g.square().sum(), D.b4.conv.weight)  # the R1 penalty's weight gradient
        feats = networks.discriminator_features(D, img0)
        return [logits.detach(), g.detach(), gw, *feats.values()], feats

    got, feats = run()
    assert all(f.is_contiguous() for f in feats.values())
    monkeypatch.setattr(networks, "D_CHANNELS_LAST_ON_CPU", False)
    ref, _ = run()
    for a, r in zip(got, ref):  # float32: the two layouts sum in different orders
        torch.testing.assert_close(a, r, atol=1e-5 * r.abs().max().item(), rtol=1e-5)


def test_synthesis_non_fused_forward_matches_fused():
    """The folded activation gain of the non-fused layers leaves G's image where the fused path puts it."""
    from conftest import TINY

    import hrinv_nb

    G = hrinv_nb.load_networks(TINY).G.eval()
    ws = torch.randn(2, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        fused = G.synthesis(ws, noise_mode="const", fused_modconv=True)
        plain = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    assert (fused - plain).abs().max().item() <= 1e-5 * fused.abs().max().item()
