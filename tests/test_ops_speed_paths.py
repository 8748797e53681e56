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


# --- derived weights of frozen networks, oneDNN's matrix product, Winograd 3x3 convolutions ------------------


def test_frozen_derived_is_reused_until_the_tensor_changes():
    """One computation per unchanged tensor; in-place writes, optimiser steps and .to() invalidate it."""
    calls = []

    def make(t):
        calls.append(1)
        return t * 2

    w = torch.nn.Parameter(torch.randn(3, 4), requires_grad=False)
    a = ops.frozen_derived(w, "x2", make)
    assert ops.frozen_derived(w, "x2", make) is a and len(calls) == 1
    assert ops.frozen_derived(w, "other", make) is not a and len(calls) == 2  # tags are separate
    with torch.no_grad():
        w.copy_(torch.ones(3, 4))  # as load_state_dict does
    assert torch.equal(ops.frozen_derived(w, "x2", make), torch.full((3, 4), 2.0)) and len(calls) == 3
    w.requires_grad_(True)
    torch.optim.SGD([w], lr=1.0).step() if w.grad is not None else None
    w.grad = torch.ones(3, 4)
    torch.optim.SGD([w], lr=1.0).step()  # an optimiser step bumps the version counter
    w.requires_grad_(False)
    assert torch.equal(ops.frozen_derived(w, "x2", make), torch.zeros(3, 4)) and len(calls) == 4
    d = w.detach().to(torch.float64)
    assert ops.frozen_derived(d, "x2", make).dtype == torch.float64
    with torch.no_grad():
        w.data.fill_(5.0)  # bypasses the version counter: documented, needs clear_derived()
    assert torch.equal(ops.frozen_derived(w, "x2", make), torch.zeros(3, 4))
    ops.clear_derived()
    assert torch.equal(ops.frozen_derived(w, "x2", make), torch.full((3, 4), 10.0))


def test_derive_computes_for_tracked_tensors_and_while_compiling(monkeypatch):
    calls = []

    def make(t):
        calls.append(1)
        return t * 2

    w = torch.randn(3)
    ops.derive(w, "x2", make), ops.derive(w, "x2", make)
    assert len(calls) == 1  # frozen: cached
    ops.derive(w.clone().requires_grad_(True), "x2", make)
    assert len(calls) == 2
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    ops.derive(w, "x2", make)
    assert len(calls) == 3


def test_frozen_derived_refuses_tracked_tensors_and_copies_views():
    w = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(AssertionError, match="tracked by autograd"):
        ops.frozen_derived(w, "t", lambda t: t * 2)
    with torch.no_grad():  # untracked here: allowed
        ops.frozen_derived(w, "t", lambda t: t * 2)
    import gc
    import weakref

    t = torch.randn(1, 4)
    value = ops.frozen_derived(t, "t", lambda t: t.t().contiguous())  # [1,4].t() is contiguous: a view
    assert not value._is_view() and torch.equal(value, t.t())
    ref = weakref.ref(t)
    del t
    gc.collect()
    assert ref() is None  # the cached copy does not keep the weight alive


def test_conv_takes_the_frozen_path_only_for_a_frozen_weight_under_autograd(monkeypatch):
    """ops._conv routes a 3x3 stride-1 convolution with a frozen weight and an input needing its gradient
    through frozen_conv3x3; a tracked weight (training) keeps autograd's convolution and its weight gradient."""
    calls = []
    real = ops.frozen_conv3x3
    monkeypatch.setattr(ops, "frozen_conv3x3", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    w = torch.randn(5, 4, 3, 3)
    ops._conv(x, w, padding=(1, 1)).sum().backward()
    assert len(calls) == 1
    wt = w.clone().requires_grad_(True)
    ops._conv(x, wt, padding=(1, 1)).sum().backward()
    assert len(calls) == 1 and wt.grad is not None
    with torch.no_grad():
        ops._conv(x, w, padding=(1, 1))
    assert len(calls) == 1


def test_networks_follow_weights_loaded_after_a_forward():
    """G and D cache derived weights; loading other weights (load_state_dict) must change their outputs."""
    from conftest import TINY

    import hrinv_nb

    nets, other = hrinv_nb.load_networks(TINY), hrinv_nb.load_networks(TINY)
    gen = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for p in other.G.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        for p in other.D.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    ws = torch.randn(1, nets.G.num_ws, nets.G.w_dim, generator=gen)
    img = torch.randn(1, 3, nets.D.img_resolution, nets.D.img_resolution, generator=gen)
    with torch.no_grad():
        before = nets.G.synthesis(ws, noise_mode="const"), nets.D(img, None)
        nets.G.load_state_dict(other.G.state_dict())
        nets.D.load_state_dict(other.D.state_dict())
        after = nets.G.synthesis(ws, noise_mode="const"), nets.D(img, None)
        expected = other.G.synthesis(ws, noise_mode="const"), other.D(img, None)
    for a, b, e in zip(before, after, expected):
        assert (a - e).abs().max() > 1e-3
        torch.testing.assert_close(b, e, atol=0, rtol=0)


needs_onednn = pytest.mark.skipif(ops._onednn_linear_op() is None, reason="this torch build has no oneDNN linear op")


@needs_onednn
@pytest.mark.parametrize("shape", [(1, 512), (37, 64), (2, 5, 48)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_f_linear_with_gradients(shape, with_bias):
    gen = torch.Generator().manual_seed(13)
    x0 = torch.randn(*shape, generator=gen)
    w = torch.randn(24, shape[-1], generator=gen) / shape[-1] ** 0.5
    b0 = torch.randn(24, generator=gen) if with_bias else None
    gy = torch.randn(*shape[:-1], 24, generator=gen)

    def run(fn):
        x = x0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True) if b0 is not None else None
        y = fn(x, w, b)
        y.backward(gy)
        return [y, x.grad] + ([b.grad] if b is not None else [])

    for a, r in zip(run(ops.linear), run(F.linear)):
        torch.testing.assert_close(a, r, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(ops.linear(x0, w, b0), F.linear(x0, w, b0), atol=1e-5, rtol=1e-5)


@needs_onednn
def test_linear_double_backward_and_fallbacks(monkeypatch):
    """create_graph=True differentiates the backward (R1 through D's 1x1 layers); float64, a tracked weight
    and ONEDNN_LINEAR_ON_CPU=False take F.linear."""
    gen = torch.Generator().manual_seed(14)
    x0, w = torch.randn(6, 10, generator=gen), torch.randn(4, 10, generator=gen)

    def r1(fn):
        x = x0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(x, w).square().sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), x)
        return g, gg

    for a, r in zip(r1(ops.linear), r1(F.linear)):
        torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-5)
    x64, w64 = x0.double(), w.double()
    assert torch.equal(ops.linear(x64, w64), F.linear(x64, w64))
    wt = w.clone().requires_grad_(True)
    assert torch.equal(ops.linear(x0, wt), F.linear(x0, wt))
    monkeypatch.setattr(ops, "ONEDNN_LINEAR_ON_CPU", False)
    assert torch.equal(ops.linear(x0, w), F.linear(x0, w))


def _conv_f64(x, w, b):
    return F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=1)


@needs_onednn
@pytest.mark.parametrize("batch,in_ch,out_ch,h,w", [(1, 8, 12, 6, 10), (3, 16, 8, 16, 4), (2, 5, 5, 2, 2)])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_winograd_conv3x3_matches_conv2d(batch, in_ch, out_ch, h, w, channels_last, with_bias):
    """Values within float32 rounding of a float64 direct convolution, in the input's memory format."""
    gen = torch.Generator().manual_seed(15)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, in_ch, h, w, generator=gen).contiguous(memory_format=fmt)
    wt = torch.randn(out_ch, in_ch, 3, 3, generator=gen) / (9 * in_ch) ** 0.5
    b = torch.randn(out_ch, generator=gen) if with_bias else None
    y = ops.frozen_conv3x3(x, wt, b, winograd=True)
    ref = _conv_f64(x, wt, b)
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert ops.is_channels_last(y) == (channels_last and h * w > 1) or y.is_contiguous(memory_format=fmt)
    err = (y.double() - ref).abs().max().item()
    direct = (F.conv2d(x, wt, b, padding=1).double() - ref).abs().max().item()
    assert err <= max(4 * direct, 1e-6), f"Winograd {err:.2e} vs direct {direct:.2e}"


@needs_onednn
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("winograd", [True, False])
def test_frozen_conv3x3_gradients_and_double_backward(channels_last, winograd):
    """The input and bias gradients (a forward convolution, Winograd or direct, by the flipped, transposed
    kernel) and an R1-style double backward agree with F.conv2d's."""
    gen = torch.Generator().manual_seed(16)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x0 = torch.randn(2, 6, 8, 12, generator=gen).contiguous(memory_format=fmt)
    wt = torch.randn(10, 6, 3, 3, generator=gen) / 7
    b0 = torch.randn(10, generator=gen)
    gy = torch.randn(2, 10, 8, 12, generator=gen)

    def run(conv):
        x, b = x0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        y = conv(x, wt, b)
        gx, gb = torch.autograd.grad((y * gy).sum(), [x, b])
        x2 = x0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(conv(x2, wt, None).square().sum(), x2, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), x2)
        return y, gx, gb, g, gg

    got = run(lambda x, w, b: ops.frozen_conv3x3(x, w, b, winograd=winograd))
    ref = run(lambda x, w, b: F.conv2d(x, w, b, padding=1))
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, atol=2e-5 * r.abs().max().item(), rtol=1e-5)


def test_use_winograd_only_where_measured_faster(monkeypatch):
    """Channels-last float32 on a CPU, even sizes from WINOGRAD_MIN_SIZE, channels from WINOGRAD_MIN_CHANNELS,
    a frozen weight."""
    if ops._onednn_linear_op() is None:
        pytest.skip("no oneDNN linear op")
    cl = torch.channels_last
    x = torch.randn(1, 256, 16, 16).contiguous(memory_format=cl)
    w = torch.randn(256, 256, 3, 3)
    assert ops.use_winograd(x, w)
    assert not ops.use_winograd(x.contiguous(), w)  # NCHW (G's layers): direct
    assert not ops.use_winograd(x.double(), w.double())
    assert not ops.use_winograd(torch.randn(1, 256, 18, 17).contiguous(memory_format=cl), w)  # odd width
    assert not ops.use_winograd(torch.randn(1, 256, 8, 8).contiguous(memory_format=cl), w)  # too small
    assert not ops.use_winograd(torch.randn(1, 128, 16, 16).contiguous(memory_format=cl), w[:, :128])
    assert not ops.use_winograd(x, w.clone().requires_grad_(True))  # tracked: the weight's gradient is direct
    with torch.no_grad():
        assert ops.use_winograd(x, w.clone().requires_grad_(True))
    monkeypatch.setattr(ops, "WINOGRAD_ON_CPU", False)
    assert not ops.use_winograd(x, w)


@needs_onednn
@pytest.mark.parametrize("fixture", ["TINY", "EDGE"])
def test_discriminator_with_winograd_everywhere_keeps_nvidia_parity(monkeypatch, fixture):
    """Forcing the Winograd path into every 3x3 layer of the fixture discriminators keeps the logits within
    the parity tolerance of tests/test_networks.py; the image gradient and an R1-style double backward
    (frozen D) stay where the direct convolutions put them.

    The gradients are compared in norm: a pre-activation within float32 rounding of zero can land on the
    other side of the lrelu kink (one of 2M does in the tiny D: 1e-3 of the gradient's norm), while a wrong
    backward is off by O(1).
    """
    import conftest
    from safetensors.torch import load_file

    import hrinv_nb

    path = getattr(conftest, fixture)
    tensors = load_file(str(path))
    D = hrinv_nb.load_networks(path).D
    img0 = tensors["img_psi1_const" if fixture == "TINY" else "img_psi0.5_cutoff4_const"]

    def run():
        img = img0.clone().requires_grad_(True)
        logits = D(img, None)
        (g,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), img)
        return logits.detach(), g.detach(), gg

    direct = run()
    monkeypatch.setattr(ops, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(ops, "WINOGRAD_MIN_SIZE", 2)
    calls = []
    real = ops._winograd
    monkeypatch.setattr(ops, "_winograd", lambda *a: calls.append(1) or real(*a))
    logits, g, gg = run()
    assert calls, "the Winograd path was not taken"
    torch.testing.assert_close(logits, tensors["D_logits"], atol=2e-5, rtol=5e-6)
    for a, r in zip((g, gg), direct[1:]):
        assert ((a - r).norm() / r.norm()).item() < 1e-2


@pytest.mark.parametrize("transpose", [False, True])
def test_cpu_paths_step_aside_under_autocast(transpose):
    """Under CPU autocast (the bf16 variants of benchmarks/bench_gpu.py), a frozen-weight convolution
    under autograd takes autograd's own path: the custom backwards would meet bf16 gradients and float32
    weights."""
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    w = torch.randn(8, 8, 3, 3)
    kw = dict(stride=2, transpose=True) if transpose else dict(padding=(1, 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ops._conv(x, w, **kw)
        assert y.dtype == torch.bfloat16 and not ops.on_plain_cpu(x)
    y.float().square().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
    assert ops.on_plain_cpu(x)


def test_cpu_paths_step_aside_while_compiling(monkeypatch):
    """While torch.compile traces, ops._conv emits plain convolutions (no cached derived tensors)."""
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not ops.on_plain_cpu(x)
    calls = []
    monkeypatch.setattr(ops, "apply_frozen", lambda *a: calls.append(1))
    y = ops._conv(x, torch.randn(8, 8, 3, 3), padding=(1, 1))
    assert not calls and y.shape == (1, 8, 6, 6)


@needs_onednn
def test_linear_to_one_output_backward():
    """A weight [1, I] (a 1x1 layer to one channel): its transpose is a contiguous view, cached as a copy."""
    x = torch.randn(5, 8, requires_grad=True)
    w = torch.randn(1, 8)
    ops.linear(x, w).sum().backward()
    torch.testing.assert_close(x.grad, w.expand(5, 8), atol=1e-6, rtol=1e-6)
