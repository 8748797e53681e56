"""Low-level ops of StyleGAN2-ADA in plain PyTorch: FIR resampling, biased activation, modulated conv.

These follow the semantics of NVIDIA's *reference* (non-CUDA) ops in ``torch_utils/ops``:
``upfirdn2d`` (upsample, pad, FIR filter, downsample), ``bias_act`` (bias, activation, gain,
clamp), ``conv2d_resample`` (a convolution fused with FIR up/down-sampling) and the modulated
convolution of the synthesis layers. They are written to be fast on a CPU: every resampling is
one (transposed) convolution with the fewest possible padded pixels, the demodulation is one small
matrix product, per-channel scalings reduce their gradients with one einsum, 1x1 convolutions are
matrix products (oneDNN's on a CPU, see :func:`linear`), channels-last inputs (D's, on a CPU) stay
channels-last, and what a frozen network derives from its weights on every call (a scaled or transposed
copy) is computed once (:func:`frozen_derived`). With a frozen weight, wide 3x3 channels-last layers run
by Winograd F(2x2, 3x3) (:func:`use_winograd`), and input gradients are forward convolutions
(:func:`frozen_conv3x3`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

Padding = tuple[int, int, int, int]  # (x0, x1, y0, y1), NVIDIA's order

SQRT2 = math.sqrt(2.0)

# oneDNN's matrix product for float32 on a CPU (see linear); False takes torch's default (MKL's) everywhere.
ONEDNN_LINEAR_ON_CPU = True

_DERIVED: WeakIdKeyDictionary = WeakIdKeyDictionary()  # tensor -> {tag: (state of the tensor, derived tensor)}


def on_plain_cpu(x: torch.Tensor) -> bool:
    """Whether ``x`` is on a CPU outside autocast and outside ``torch.compile``'s tracing: the custom CPU
    paths below (oneDNN products, Winograd, forward-convolution gradients) run there only. Under autocast
    their backward would see mixed dtypes; a compiled graph should hold plain ops, not cached tensors."""
    return x.device.type == "cpu" and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()


def is_tracked(t: torch.Tensor) -> bool:
    """Whether autograd records operations on ``t`` here (grad mode on and ``t`` requiring grad)."""
    return torch.is_grad_enabled() and t.requires_grad


def frozen_derived(t: torch.Tensor, tag: Hashable, make: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``make(t)``, computed once per tensor ``t`` and ``tag`` and reused while ``t`` is unchanged.

    For what a frozen network derives from its weights on every call (an equalised-lr scaled copy in
    another memory format, a transposed copy): a 512x512x3x3 weight costs 0.6 ms to scale on a CPU, ~5%
    of a 64² discriminator's forward. The value is recomputed whenever ``t``'s storage, layout or version
    counter changes, i.e. after every in-place write through PyTorch (``copy_``, ``load_state_dict``, an
    optimiser step) and every ``.to()``; a write through ``t.data`` bypasses the version counter, so it needs
    :func:`clear_derived` afterwards. ``t`` must not be tracked by autograd (:func:`is_tracked`): the value
    carries no gradient. A view returned by ``make`` is stored as a copy (a view would keep ``t`` alive).
    """
    assert not is_tracked(t), "frozen_derived: the tensor is tracked by autograd; derive it on every call instead"
    if t.is_inference():  # no version counter to watch
        with torch.no_grad():
            return make(t)
    state = (t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape), t.stride())
    entries = _DERIVED.get(t)
    if entries is None:
        entries = _DERIVED[t] = {}
    hit = entries.get(tag)
    if hit is not None and hit[0] == state:
        return hit[1]
    with torch.no_grad():
        value = make(t)
    if value._is_view():  # a view (t.t() of a contiguous [1, I], say) would keep t, the weak key, alive
        value = value.clone()
    entries[tag] = (state, value)
    return value


def derive(t: torch.Tensor, tag: Hashable, make: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``make(t)``: cached by :func:`frozen_derived` where autograd does not track ``t``, else computed (and
    always computed while ``torch.compile`` traces, so that the compiled graph holds the computation)."""
    if is_tracked(t) or torch.compiler.is_compiling():
        return make(t)
    return frozen_derived(t, tag, make)


def clear_derived() -> None:
    """Forget every tensor cached by :func:`frozen_derived` (needed only after writes through ``.data``)."""
    _DERIVED.clear()


@functools.cache
def _onednn_linear_op() -> Callable[..., torch.Tensor] | None:
    """oneDNN's fused linear op where this torch build has it and it computes a small product exactly."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        op = torch.ops.mkldnn._linear_pointwise
        a, b = torch.arange(6.0).reshape(2, 3), torch.arange(12.0).reshape(4, 3)
        exact = torch.equal(op(a, b, torch.ones(4), "none", [], ""), a @ b.t() + 1)
    except (AttributeError, RuntimeError):
        return None
    return op if exact else None


@dataclass(frozen=True)
class FrozenMap:
    """A linear map ``x -> apply(x, w, bias)`` by a weight autograd does not track, with its adjoint.

    ``adjoint(gy, w)`` computes the input gradient with the map's own fast forward kernels (its derived
    weights cached by :func:`frozen_derived`); ``adjoint_graph(gy, w)`` the same with differentiable torch
    ops, for a double backward (``create_graph=True``, as R1 needs); ``channel_dim`` is the dimension the
    bias runs along.
    """

    apply: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
    adjoint: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    adjoint_graph: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    channel_dim: int


class _FrozenMapFunction(torch.autograd.Function):
    """Autograd for a :class:`FrozenMap`: differentiable w.r.t. the input and the bias."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, fmap: FrozenMap) -> torch.Tensor:
        ctx.save_for_backward(w)
        ctx.fmap = fmap
        return fmap.apply(x, w, bias)

    @staticmethod
    def backward(ctx, gy: torch.Tensor) -> tuple[torch.Tensor | None, None, torch.Tensor | None, None]:
        (w,) = ctx.saved_tensors
        fmap = ctx.fmap
        gx = gb = None
        if ctx.needs_input_grad[0]:
            gx = fmap.adjoint_graph(gy, w) if torch.is_grad_enabled() else fmap.adjoint(gy, w)
        if ctx.needs_input_grad[2]:
            gb = gy.sum(dim=[d for d in range(gy.ndim) if d != fmap.channel_dim % gy.ndim])
        return gx, None, gb, None


def apply_frozen(fmap: FrozenMap, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``fmap.apply(x, w, bias)``, through autograd only where a gradient for ``x`` or ``bias`` is wanted."""
    assert not is_tracked(w), "a FrozenMap needs a weight autograd does not track (it caches kernels derived from it)"
    if (torch.is_grad_enabled() and x.requires_grad) or (bias is not None and is_tracked(bias)):
        return _FrozenMapFunction.apply(x, w, bias, fmap)
    return fmap.apply(x, w, bias)


def _onednn_linear_map(op: Callable[..., torch.Tensor]) -> FrozenMap:
    return FrozenMap(
        apply=lambda x, w, b: op(x, w, b, "none", [], ""),
        adjoint=lambda gy, w: op(gy, frozen_derived(w, "t", lambda t: t.t().contiguous()), None, "none", [], ""),
        adjoint_graph=lambda gy, w: gy @ w,
        channel_dim=-1,
    )


def linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w.T + bias`` for ``x`` [..., I], ``w`` [O, I] (``F.linear``'s semantics).

    On a CPU, for float32 and a weight autograd does not track, the product runs in oneDNN rather than
    torch's default BLAS: measured 2.2x faster (forward and backward) on an AMD EPYC, where MKL takes its
    AVX2 code path and oneDNN its AVX-512 one (``benchmarks/bench_networks.py``); the two agree to float32
    rounding. Set ``ONEDNN_LINEAR_ON_CPU = False`` to keep torch's default.
    """
    assert w.ndim == 2 and x.shape[-1] == w.shape[1], f"x {tuple(x.shape)} vs w {tuple(w.shape)}"
    op = None
    if ONEDNN_LINEAR_ON_CPU and on_plain_cpu(x) and x.dtype == w.dtype == torch.float32 and not is_tracked(w):
        op = _onednn_linear_op()
    if op is None or (bias is not None and bias.dtype != torch.float32):
        return F.linear(x, w, bias)
    return apply_frozen(_onednn_linear_map(op), x, w, bias)


def setup_filter(taps: list[float] | torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Return the 2-D FIR filter used by StyleGAN2: the outer product of ``taps``, summing to one."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    assert f.ndim in (1, 2), f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}"
    if f.ndim == 1:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    return f


def _parse_padding(padding: int | tuple[int, ...] | list[int]) -> Padding:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    assert len(padding) == 4, f"padding must have 1, 2 or 4 entries, got {padding}"
    return tuple(int(p) for p in padding)  # type: ignore[return-value]


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: int | tuple[int, ...] = 0,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with the FIR filter ``f``, then downsample.

    ``f`` is a 2-D filter (or ``None`` for identity); ``padding`` is (x0, x1, y0, y1) and may be
    negative (cropping). The filter is applied as a true convolution, like NVIDIA's op.
    """
    assert x.ndim == 4, f"expected [N,C,H,W], got {tuple(x.shape)}"
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    conv_pad = (0, 0)
    if px0 == px1 >= 0 and py0 == py1 >= 0:  # symmetric: the convolution pads (no padded copy of x)
        conv_pad = (py0, px0)
    else:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip(list(range(f.ndim)))
    weight = f[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, stride=down, padding=conv_pad, groups=c)  # stride: only kept pixels are filtered


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, gain: float = 1.0) -> torch.Tensor:
    """FIR upsampling by ``up`` (NVIDIA ``upsample2d`` with zero extra padding)."""
    fh, fw = f.shape
    p = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=p, gain=gain * up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2, gain: float = 1.0) -> torch.Tensor:
    """FIR downsampling by ``down`` (NVIDIA ``downsample2d`` with zero extra padding)."""
    fh, fw = f.shape
    p = ((fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2)
    return upfirdn2d(x, f, down=down, padding=p, gain=gain)


class _BiasAct(torch.autograd.Function):
    """``clamp(act(x + b) * gain)`` in one allocation; backward from the saved output alone.

    The forward computes ``gain*x + gain*b`` (one pass), then the activation and the clamp in place
    (lrelu and relu commute with a positive gain). The backward masks with the output: the slope where
    ``y <= 0`` and zero where ``|y| >= clamp`` (aten's ``leaky_relu_backward`` / ``hardtanh_backward``,
    which are themselves differentiable, so double backward, e.g. an R1 penalty, works).
    """

    @staticmethod
    def forward(ctx, x, b, slope, gain, clamp, inplace):  # type: ignore[override]
        if inplace:
            if b is not None:
                y = torch.add(b.reshape([1, -1] + [1] * (x.ndim - 2)).to(x.dtype) * gain, x, alpha=gain, out=x)
            else:
                y = x if gain == 1.0 else x.mul_(gain)
            ctx.mark_dirty(x)
        elif b is not None:
            y = torch.add(b.reshape([1, -1] + [1] * (x.ndim - 2)).to(x.dtype) * gain, x, alpha=gain)
        else:
            y = x * gain
        if slope != 1.0:
            F.leaky_relu_(y, slope)
        if clamp is not None and y.device.type == "cpu":
            # On a CPU one read (min and max) tells whether the clamp binds anywhere; where it does not
            # (the usual case), the clamp pass and its backward mask are skipped. (On a GPU the check
            # would synchronise, so the clamp always runs there.)
            # (aminmax copies a non-contiguous tensor: read a channels-last one through its NHWC view)
            dense = y.permute(0, 2, 3, 1) if is_channels_last(y) else y
            lo, hi = torch.aminmax(dense)
            if -clamp < float(lo) and float(hi) < clamp:
                clamp = None
        if clamp is not None:
            y.clamp_(-clamp, clamp)
        ctx.slope, ctx.gain, ctx.clamp = slope, gain, clamp
        ctx.b_shape = None if b is None else b.shape
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        g = grad
        if ctx.clamp is not None:
            g = torch.ops.aten.hardtanh_backward(g, y, -ctx.clamp, ctx.clamp)
        if ctx.slope != 1.0:
            g = torch.ops.aten.leaky_relu_backward(g, y, ctx.slope, True)
        if ctx.gain != 1.0:
            g = g * ctx.gain
        gx = g if ctx.needs_input_grad[0] else None
        gb = None
        if ctx.b_shape is not None and ctx.needs_input_grad[1]:
            gb = g.sum(dim=[d for d in range(g.ndim) if d != 1]).reshape(ctx.b_shape)
        return gx, gb, None, None, None, None


class _ScaleChannels(torch.autograd.Function):
    """``x * s[:, :, None, None] (+ add)``, with the reduction for ``s``'s gradient done by one einsum.

    Autograd's own product saves the same tensors but reduces ``s``'s gradient as a full-size product
    followed by a sum (two passes and a temporary); an einsum contracts it directly (about 10x faster on a
    CPU at 256²). The backward is made of differentiable ops, so double backward works.
    """

    @staticmethod
    def forward(ctx, x, s, add):  # type: ignore[override]
        s4 = s.reshape(*s.shape, 1, 1).to(x.dtype)
        y = torch.addcmul(add.to(x.dtype), x, s4) if add is not None else x * s4
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, s)
        ctx.add_shape = None if add is None else add.shape
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, s = ctx.saved_tensors
        gx = grad * s.reshape(*s.shape, 1, 1).to(grad.dtype) if ctx.needs_input_grad[0] else None
        gs = torch.einsum("nchw,nchw->nc", grad, x).to(s.dtype) if ctx.needs_input_grad[1] else None
        gadd = grad.sum_to_size(ctx.add_shape) if ctx.add_shape is not None and ctx.needs_input_grad[2] else None
        return gx, gs, gadd


def scale_channels(x: torch.Tensor, s: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
    """``x * s[:, :, None, None] + add``: a per-sample, per-channel scale of ``x`` [N,C,H,W] by ``s`` [N,C]
    (the style modulation and the demodulation of the non-fused modulated convolution), plus an optional
    term that broadcasts to ``x`` (the noise)."""
    assert x.ndim == 4 and s.shape == x.shape[:2], f"x {tuple(x.shape)}, s {tuple(s.shape)}"
    return _ScaleChannels.apply(x, s, add)


_SLOPES = {"linear": (1.0, 1.0), "lrelu": (0.2, SQRT2), "relu": (0.0, SQRT2)}  # act -> (slope, default gain)


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Add a per-channel bias, apply ``linear``, ``lrelu`` (slope 0.2) or ``relu``, scale by ``gain``, clamp.

    The default gain is 1 for ``linear`` and sqrt(2) for ``lrelu``/``relu``; ``clamp`` bounds |x|.
    One fused autograd function (a single output tensor, the only one saved for backward).
    ``inplace=True`` overwrites ``x`` (only for a fresh tensor that no autograd node saved, e.g. a conv output).
    """
    if act not in _SLOPES:
        raise ValueError(f"unsupported activation {act!r}; expected 'linear', 'lrelu' or 'relu'")
    if b is not None:
        assert b.ndim == 1 and b.shape[0] == x.shape[1], f"bias {tuple(b.shape)} vs x {tuple(x.shape)}"
    slope, default_gain = _SLOPES[act]
    g = default_gain if gain is None else float(gain)
    c = float(clamp) if clamp is not None and clamp >= 0 else None
    if g <= 0:  # the fused forward relies on act(g*z) = g*act(z), true for g > 0 only
        return bias_act_reference(x, b, act, gain, clamp)
    if inplace and b is None and slope == 1.0 and g == 1.0 and c is None:
        return x  # nothing to do
    return _BiasAct.apply(x, b, slope, g, c, inplace)


def bias_act_reference(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """:func:`bias_act` as a chain of plain torch ops (NVIDIA's reference order), for tests and gain <= 0."""
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2)).to(x.dtype)
    if act not in _SLOPES:
        raise ValueError(f"unsupported activation {act!r}; expected 'linear', 'lrelu' or 'relu'")
    slope, default_gain = _SLOPES[act]
    if slope != 1.0:
        x = F.leaky_relu(x, slope)
    g = default_gain if gain is None else float(gain)
    if g != 1:
        x = x * g
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def prefer_fused(in_channels: int, out_channels: int, kernel_size: int, batch: int) -> bool:
    """Whether the fused (modulated-weight) convolution is the cheaper one under autograd, on batch ``batch``.

    Batch 1 only (larger batches need a grouped convolution). The fused path pays a weight-gradient
    convolution, O·I·k² multiply-adds per pixel; the non-fused one a style and a demodulation pass over
    the activations, whose gradients :func:`scale_channels` reduces with one einsum each. Measured on a
    CPU (one layer, forward + backward, 2026-11-28): the non-fused path is 20-30% faster for every 3x3
    layer of a 1024² generator, 32 to 512 channels; the fused one 1.1-2.6x faster for the 1x1 toRGB
    layers (3 output channels, no demodulation), whose weight gradient is a 3-row matrix product.
    """
    return batch == 1 and kernel_size * kernel_size * out_channels <= FUSED_MAX_OUT


FUSED_MAX_OUT = 4  # k²·O up to which the fused path wins under autograd on a CPU: the 1x1 toRGB/toRGBA layers


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-D tensor is laid out channels-last (and not also plain contiguous, as a 1x1 map is)."""
    return x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


# --- Winograd F(2x2, 3x3) on a CPU ------------------------------------------------------------------------
# A 3x3 convolution computed on 4x4 input tiles overlapping by 2: each tile is transformed (Bᵀ d B, adds
# only), multiplied channel-wise by the transformed kernel (G g Gᵀ) in 16 independent matrix products
# [tiles, I] @ [I, O], and transformed back to a 2x2 output tile (Aᵀ m A, adds only): 16 multiply-adds
# per 4 outputs instead of 36 (Lavin & Gray, "Fast algorithms for convolutional neural networks", CVPR
# 2016). The products run in oneDNN (see linear); the transforms are strided adds.
WINOGRAD_ON_CPU = True
# Measured against oneDNN's direct convolution, one layer at batch 1, 2 threads, AMD EPYC (Zen 5),
# 2026-11-28: 0.79x the time at 512 channels and 64², 0.65x at 32², 0.75x at 16²; 0.83x at 256 channels
# and 128²; 1.4x (slower) at 128 channels and 256². Hence: at least 256 input and output channels.
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MIN_SIZE = 16  # height and width; below, the transformed weight (16/9 of the weight) dominates
_WINO_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def use_winograd(x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether a 3x3, stride-1, padding-1 convolution of ``x`` by ``w`` takes the Winograd path."""
    return (
        WINOGRAD_ON_CPU
        and on_plain_cpu(x)
        and is_channels_last(x)
        and x.dtype == w.dtype == torch.float32
        and w.shape[2:] == (3, 3)
        and min(w.shape[0], w.shape[1]) >= WINOGRAD_MIN_CHANNELS
        and x.shape[2] % 2 == 0
        and x.shape[3] % 2 == 0
        and min(x.shape[2], x.shape[3]) >= WINOGRAD_MIN_SIZE
        and not is_tracked(w)
        and _onednn_linear_op() is not None
    )


def winograd_weight(w: torch.Tensor) -> torch.Tensor:
    """[O, I, 3, 3] -> [16, O, I]: G·g·Gᵀ of every kernel g, entry 4a+b of the 4x4 result first (in float64)."""
    assert w.ndim == 4 and w.shape[2:] == (3, 3), f"expected a 3x3 kernel [O,I,3,3], got {tuple(w.shape)}"
    g = torch.tensor(_WINO_G, dtype=torch.float64, device=w.device)
    u = torch.einsum("ai,oxij,bj->abox", g, w.double(), g)
    return u.reshape(16, w.shape[0], w.shape[1]).to(w.dtype).contiguous()


def _winograd(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv2d(x, w, bias, padding=1)`` from ``u = winograd_weight(w)``; ``x`` [N,I,H,W] with H, W even.

    Computes in channels-last memory (an NCHW ``x`` is converted, and so is the result)."""
    n, c, h, w = x.shape
    o = u.shape[1]
    assert u.shape == (16, o, c) and h % 2 == 0 and w % 2 == 0, f"x {tuple(x.shape)}, u {tuple(u.shape)}"
    op = _onednn_linear_op()
    th, tw = h // 2, w // 2
    was_cl = is_channels_last(x)
    p = F.pad(x.contiguous(memory_format=torch.channels_last), (1, 1, 1, 1)).permute(0, 2, 3, 1)  # [N,H+2,W+2,C]
    # Input transform Bᵀ d B, Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]: rows, then columns.
    r = [p[:, i : i + 2 * th : 2] for i in range(4)]
    rows = (r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3])
    v = x.new_empty([16, n, th, tw, c])
    for a, t in enumerate(rows):
        d = [t[:, :, j : j + 2 * tw : 2] for j in range(4)]
        torch.sub(d[0], d[2], out=v[4 * a])
        torch.add(d[1], d[2], out=v[4 * a + 1])
        torch.sub(d[2], d[1], out=v[4 * a + 2])
        torch.sub(d[1], d[3], out=v[4 * a + 3])
    v = v.view(16, n * th * tw, c)
    # 16 products [tiles, I] @ [I, O]; the bias enters at entry (1, 1), which Aᵀ m A adds to all four outputs.
    m = [op(v[k], u[k], bias if k == 5 else None, "none", [], "").view(n, th, tw, o) for k in range(16)]
    # Output transform Aᵀ m A, Aᵀ = [[1,1,1,0],[0,1,-1,-1]]: rows, then columns, into interleaved 2x2 tiles.
    y = torch.empty([n, o, h, w], dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    tiles = y.permute(0, 2, 3, 1).view(n, th, 2, tw, 2, o)  # y is returned itself, not a view (autograd)
    for ro in range(2):
        s = [m[b] + m[4 + b] + m[8 + b] if ro == 0 else m[4 + b] - m[8 + b] - m[12 + b] for b in range(4)]
        torch.add(s[0], s[1], out=tiles[:, :, ro, :, 0]).add_(s[2])
        torch.sub(s[1], s[2], out=tiles[:, :, ro, :, 1]).sub_(s[3])
    return y if was_cl else y.contiguous()


def _frozen_conv3x3(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, winograd: bool) -> torch.Tensor:
    """``conv2d(x, w, bias, padding=1)``, by Winograd (its transformed kernel cached) or directly."""
    if winograd:
        return _winograd(x, frozen_derived(w, "winograd", winograd_weight), bias)
    return F.conv2d(x, w, bias, padding=1)


def _flipped_transposed(w: torch.Tensor) -> torch.Tensor:
    """The kernel whose convolution is the input gradient of a convolution by ``w``, in ``w``'s layout."""
    fmt = torch.channels_last if is_channels_last(w) else torch.contiguous_format
    return w.flip([2, 3]).transpose(0, 1).contiguous(memory_format=fmt)


def _conv3x3_map(winograd: bool) -> FrozenMap:
    """A 3x3, stride-1, padding-1 convolution; its input gradient is the forward convolution of the output
    gradient by the flipped, transposed kernel (cached), Winograd or direct like the forward. On a CPU
    oneDNN's forward kernel beats its backward-data one (G's fwd+bwd: -5% at 256², 2026-11-28)."""
    return FrozenMap(
        apply=lambda x, w, b: _frozen_conv3x3(x, w, b, winograd),
        adjoint=lambda gy, w: _frozen_conv3x3(
            gy, frozen_derived(w, "flipped-transposed", _flipped_transposed), None, winograd
        ),
        adjoint_graph=lambda gy, w: F.conv2d(gy, w.flip([2, 3]).transpose(0, 1), padding=1),
        channel_dim=1,
    )


def _conv_transpose_map(stride: int, padding: tuple[int, int]) -> FrozenMap:
    """A transposed convolution (no bias); its input gradient is the strided forward convolution called
    directly: autograd's numbers (bit-identical) in 0.63x-0.93x the time on a CPU, where autograd's path adds a
    copy of the gradient (512 channels, 32² -> 65²: 16 ms against 26 ms; 2 threads, 2026-11-28)."""

    def adjoint(gy: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(gy, w, stride=stride, padding=padding)

    return FrozenMap(
        apply=lambda x, w, b: F.conv_transpose2d(x, w, b, stride=stride, padding=padding),
        adjoint=adjoint,
        adjoint_graph=adjoint,
        channel_dim=1,
    )


def frozen_conv3x3(
    x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, winograd: bool = False
) -> torch.Tensor:
    """``F.conv2d(x, w, bias, padding=1)`` for a 3x3 ``w`` that autograd does not track.

    ``winograd=True`` computes it by Winograd F(2x2, 3x3) (see :func:`use_winograd`), which agrees with the
    direct convolution to float32 rounding (closer to a float64 reference than oneDNN's channels-last direct
    convolution in our measurements); the transformed kernel is cached while ``w`` is unchanged. Under
    autograd the input gradient is a forward convolution too (:func:`_conv3x3_map`), differentiable
    twice (the double backward is direct).
    """
    assert x.ndim == 4 and w.shape[1] == x.shape[1] and w.shape[2:] == (3, 3), f"x {tuple(x.shape)}, w {tuple(w.shape)}"
    return apply_frozen(_conv3x3_map(winograd), x, w, bias)


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain (transposed) convolution; ``flip_weight=False`` flips the kernel (true convolution)."""
    if not flip_weight:
        w = derive(w, "flipped", lambda t: t.flip([2, 3]))
    channels_last = is_channels_last(x)
    one_by_one = w.shape[2:] == (1, 1) and not transpose and stride == 1 and padding == (0, 0) and groups == 1
    if one_by_one and (w.shape[1] >= 8 or channels_last):
        # A 1x1 convolution is a batched matrix product over channels: BLAS forward and backward, 1.5-2x
        # faster on a CPU than the im2col path of a 1x1 kernel (toRGB, D's skip layers) from 128² up
        # (benchmarks/bench_networks.py). Not for a few NCHW input channels (fromRGB), where oneDNN wins.
        n, i, h, wd = x.shape
        if not channels_last:
            w2 = w.reshape(1, w.shape[0], i).expand(n, -1, -1)
            y = torch.bmm(w2, x.reshape(n, i, h * wd)).reshape(n, -1, h, wd)
        else:  # channels-last in, channels-last out: [NHW,I] @ [I,O]
            b = bias.to(x.dtype) if bias is not None else None
            y = linear(x.permute(0, 2, 3, 1).reshape(n * h * wd, i), w.reshape(w.shape[0], i), b)
            return y.reshape(n, h, wd, -1).permute(0, 3, 1, 2)
        return y if bias is None else y + bias.reshape(1, -1, 1, 1).to(y.dtype)
    if transpose:
        frozen = not is_tracked(w) and torch.is_grad_enabled() and x.requires_grad
        if frozen and groups == 1 and bias is None and on_plain_cpu(x):
            return apply_frozen(_conv_transpose_map(stride, padding), x, w)
        return F.conv_transpose2d(x, w, bias, stride=stride, padding=padding, groups=groups)
    if stride == 1 and padding == (1, 1) and groups == 1 and w.shape[2:] == (3, 3) and on_plain_cpu(x):
        winograd = use_winograd(x, w)
        if winograd or (torch.is_grad_enabled() and x.requires_grad and not is_tracked(w)):
            return frozen_conv3x3(x, w, bias, winograd=winograd)
    return F.conv2d(x, w, bias, stride=stride, padding=padding, groups=groups)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """2-D convolution with optional FIR up/down-sampling, NVIDIA ``conv2d_resample`` semantics.

    ``bias`` (per output channel) is added by the last convolution where it comes last, else at the end.
    """
    assert x.ndim == 4 and w.ndim == 4, f"x {tuple(x.shape)}, w {tuple(w.shape)}"
    assert up == 1 or down == 1, "up- and down-sampling at once is not used by StyleGAN2"
    out_ch, in_ch_per_group, kh, kw = w.shape
    fh, fw = f.shape if f is not None else (1, 1)
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    if kw == 1 and kh == 1 and down > 1:
        x = upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1))
        return _conv(x, w, groups=groups, flip_weight=flip_weight, bias=bias)
    if up > 1 and bias is not None:
        x = conv2d_resample(x, w, f, up, down, padding, groups, flip_weight)
        return x + bias.reshape(1, -1, 1, 1).to(x.dtype)
    if kw == 1 and kh == 1 and up > 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=(px0, px1, py0, py1), gain=up * up)
    if down > 1:
        x = upfirdn2d(x, f, padding=(px0, px1, py0, py1))
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight, bias=bias)
    if up > 1:
        if groups == 1:  # oneDNN's transposed convolution is ~5% faster on a contiguous weight
            w = derive(w, "transposed", lambda t: t.transpose(0, 1).contiguous())
        else:
            w = w.reshape(groups, out_ch // groups, in_ch_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_ch_per_group, out_ch // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=(pyt, pxt), groups=groups, transpose=True, flip_weight=not flip_weight)
        return upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=(py0, px0), groups=groups, flip_weight=flip_weight, bias=bias)
    x = upfirdn2d(x, None, padding=(px0, px1, py0, py1))
    return _conv(x, w, groups=groups, flip_weight=flip_weight, bias=bias)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool | None = True,
    gain: float = 1.0,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution: scale input channels by ``styles``, demodulate, add noise.

    ``x`` [N,I,H,W], ``weight`` [O,I,k,k], ``styles`` [N,I]; ``noise`` broadcasts to [N,O,H',W'].
    The fused path runs one grouped convolution for the whole batch; ``fused_modconv=None`` takes the
    path that :func:`prefer_fused` expects to be cheaper (the two agree to float32 rounding).
    ``gain`` scales the convolution's output before the noise is added; it costs nothing where it can be
    folded into the demodulation coefficients or the modulated weight (a layer passes its activation gain
    here, and its noise and bias pre-scaled, so that no full-size pass applies the gain).
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    assert x.ndim == 4 and x.shape[1] == in_ch, f"x {tuple(x.shape)} vs weight {tuple(weight.shape)}"
    assert styles.shape == (n, in_ch), f"styles {tuple(styles.shape)}, expected {(n, in_ch)}"
    if fused_modconv is None:
        fused_modconv = prefer_fused(in_ch, out_ch, kh, n)

    if x.dtype == torch.float16 and demodulate:  # pre-normalise to avoid fp16 overflow (NVIDIA)
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    dcoefs = None
    if demodulate:
        # sum_{i,k} (W[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 (sum_k W[o,i,k]^2): one [N,I] @ [I,O] product instead of
        # a modulated copy of the weight per sample and its reductions (in backward too); NVIDIA's code
        # computes the same sum in the other order, so the two agree to float32 rounding.
        wsq = derive(weight, "squared-norms", lambda w: w.square().sum(dim=[2, 3]).t().contiguous())  # [I,O]
        dcoefs = (styles.square() @ wsq + 1e-8).rsqrt()  # [N,O]

    if dcoefs is not None and gain != 1.0:
        dcoefs = dcoefs * gain
    if not fused_modconv:
        x = scale_channels(x, styles.to(x.dtype))
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
        if dcoefs is not None:
            return scale_channels(x, dcoefs.to(x.dtype), noise)  # demodulation and noise in one pass
        if gain != 1.0:
            x = x * gain
        return _add_noise(x, noise)

    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N,O,I,k,k]
    if dcoefs is not None:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    elif gain != 1.0:
        w = w * gain
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=n, flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    return _add_noise(x, noise)


def _add_noise(x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """``x + noise``, in place where the sum has ``x``'s shape (``x`` is a fresh convolution output that no
    autograd node saved, so overwriting it is safe and saves an allocation)."""
    if noise is None:
        return x
    if torch.broadcast_shapes(x.shape, noise.shape) == x.shape:
        return x.add_(noise.to(x.dtype))
    return x + noise.to(x.dtype)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit mean square along ``dim`` (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
