"""StyleGAN2-ADA generator and discriminator in plain PyTorch, at parity with NVIDIA's code.

Constructor arguments, ``state_dict()`` names and forward semantics are those of
``NVlabs/stylegan2-ada-pytorch`` ``training/networks.py``: parameters are stored raw and the
equalised-learning-rate gains are applied at run time, so NVIDIA weights load with ``strict=True``.
Everything runs in float32 unless ``use_fp16`` blocks are enabled on a GPU.

Public API: ``Generator.mapping(z, c, truncation_psi, truncation_cutoff) -> ws``,
``Generator.synthesis(ws, noise_mode) -> img``, ``Generator(z, c, ...)``, ``Generator.num_ws``,
``Discriminator(img, c) -> logits`` and :func:`discriminator_features`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .ops import (
    bias_act,
    conv2d_resample,
    derive,
    downsample2d,
    is_channels_last,
    modulated_conv2d,
    normalize_2nd_moment,
    prefer_fused,
    setup_filter,
    upsample2d,
)

DEFAULT_FILTER = (1, 3, 3, 1)
# D runs in channels-last memory on a CPU (see DiscriminatorBlock.forward); False keeps NCHW throughout.
D_CHANNELS_LAST_ON_CPU = True
NOISE_MODES = ("const", "random", "none")


def init_kwargs_from(arguments: dict[str, Any]) -> dict[str, Any]:
    """A network's ``init_kwargs`` (what checkpoints store to rebuild it) from its constructor's ``locals()``,
    taken before any other local is bound: every argument but ``self``, in signature order, with each
    ``*_kwargs`` dict copied (``None`` -> ``{}``)."""
    return {
        k: dict(v or {}) if k.endswith("_kwargs") else v for k, v in arguments.items() if k not in ("self", "__class__")
    }


class FullyConnectedLayer(nn.Module):
    """Equalised-lr dense layer: ``weight * lr_multiplier / sqrt(in)`` and ``bias * lr_multiplier``."""

    # fmt: off
    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
    # fmt: on
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 2 and x.shape[1] == self.in_features, f"got {tuple(x.shape)}, in={self.in_features}"
        if x.shape[0] < self.out_features:  # scale the (smaller) input rather than the weight: same product
            x, w = x * self.weight_gain, self.weight.to(x.dtype)
        else:
            w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        # torch's BLAS, not ops.linear: over D's epilogue (K = 16·C) oneDNN's sum strays 1.5x further from
        # a float64 reference than MKL's, past NVIDIA's parity tolerance, and at batch 1 it is no faster.
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalised-lr convolution with optional FIR up/down-sampling, bias, activation and clamp."""

    # fmt: off
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: tuple[float, ...] | list[float] = DEFAULT_FILTER, conv_clamp: float | None = None,
                 channels_last: bool = False, trainable: bool = True) -> None:
    # fmt: on
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = math.sqrt(2) if activation in ("lrelu", "relu") else 1.0
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        b = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(b) if b is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", b)

    def _scaled_weight(self, scale: float, x: torch.Tensor) -> torch.Tensor:
        """``weight * scale`` in ``x``'s dtype and memory format (oneDNN reorders a weight whose layout differs
        from its input's on every call), computed once while the weight is frozen and unchanged."""
        fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format

        def scaled(w: torch.Tensor) -> torch.Tensor:
            return (w * scale).to(dtype=x.dtype, memory_format=fmt)

        return derive(self.weight, ("scaled", scale, x.dtype, fmt), scaled)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        # The activation gain is folded into the (tiny) weight and bias, the bias is added by the
        # convolution, and the activation and clamp run in place on its output (act(g·z) = g·act(z), g > 0).
        act_gain = self.act_gain * gain
        assert act_gain > 0, f"gain must be positive, got {gain}"
        w = self._scaled_weight(self.weight_gain * act_gain, x)
        b = (self.bias * act_gain).to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(
            x,
            w,
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=(self.up == 1),
            bias=b,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, None, act=self.activation, gain=1.0, clamp=clamp, inplace=True)


class MappingNetwork(nn.Module):
    """z (and label c) -> w, broadcast to ``num_ws`` rows, with optional truncation."""

    # fmt: off
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None, activation: str = "lrelu",
                 lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995) -> None:
    # fmt: on
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        skip_w_avg_update: bool = False,
    ) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            assert z is not None and z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [B,{self.z_dim}]"
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            assert c is not None and c.ndim == 2 and c.shape[1] == self.c_dim, f"c must be [B,{self.c_dim}]"
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        assert x is not None, "mapping network with z_dim=0 and c_dim=0 has no input"
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            assert self.w_avg_beta is not None, "truncation needs the w_avg buffer"
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling), noise injection, bias, lrelu, clamp."""

    # fmt: off
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: tuple[float, ...] | list[float] = DEFAULT_FILTER, conv_clamp: float | None = None,
                 channels_last: bool = False) -> None:
    # fmt: on
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = math.sqrt(2) if activation in ("lrelu", "relu") else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool | None = True,
        gain: float = 1.0,
    ) -> torch.Tensor:
        assert noise_mode in NOISE_MODES, f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}"
        styles = self.affine(w)
        if fused_modconv is None:
            fused_modconv = prefer_fused(self.weight.shape[1], self.weight.shape[0], self.weight.shape[2], x.shape[0])
        # Non-fused: act(gain * (conv + noise + bias)) as act(gain*conv + gain*noise + gain*bias); the gain
        # scales the demodulation coefficients, the one-channel noise map and the bias, and the backward has
        # one full-size pass fewer. The fused path keeps NVIDIA's order (its outputs stay within 5e-6 of
        # NVIDIA's fused ones; folding moves them by about 1e-5 through the network's rounding).
        act_gain = 1.0 if fused_modconv else self.act_gain * gain
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, x.shape[2] * self.up, x.shape[3] * self.up], device=x.device) * (
                self.noise_strength * act_gain
            )
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * (self.noise_strength * act_gain)
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),
            fused_modconv=fused_modconv,
            gain=act_gain,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        # x is modulated_conv2d's fresh output, saved by no autograd node: the activation overwrites it
        bias = self.bias if act_gain == 1.0 else self.bias * act_gain
        gain_left = self.act_gain * gain / act_gain
        return bias_act(x, bias, act=self.activation, gain=gain_left, clamp=clamp, inplace=True)


class ToRGBLayer(nn.Module):
    """1x1 modulated convolution without demodulation, to image channels."""

    # fmt: off
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False) -> None:
    # fmt: on
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool | None = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: [const | conv0 (up)] -> conv1 -> torgb (skip)."""

    # fmt: off
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip",
                 resample_filter: tuple[float, ...] | list[float] = DEFAULT_FILTER, conv_clamp: float | None = None,
                 use_fp16: bool = False, fp16_channels_last: bool = False, **layer_kwargs: Any) -> None:
    # fmt: on
        super().__init__()
        assert architecture in ("orig", "skip", "resnet"), f"unknown architecture {architecture!r}"
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture, self.use_fp16 = (
            img_channels,
            is_last,
            architecture,
            use_fp16,
        )
        self.allow_fp16 = False  # float32 by default everywhere; see enable_fp16()
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, **layer_kwargs
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels, out_channels, kernel_size=1, bias=False, up=2, resample_filter=resample_filter
            )

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        **layer_kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_conv + self.num_torgb, self.w_dim), f"ws {tuple(ws.shape)}"
        w_iter = iter(ws.unbind(dim=1))
        use_fp16 = self.use_fp16 and self.allow_fp16 and not force_fp32 and ws.device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        if fused_modconv is None and (self.training or not torch.is_grad_enabled()):
            # NVIDIA's rule without autograd; under autograd in eval mode fused_modconv stays None: each layer
            # takes the cheaper of the two equivalent paths (ops.prefer_fused: non-fused convolutions, fused
            # toRGB); in training, non-fused.
            fused_modconv = (not self.training) and (dtype == torch.float32 or int(ws.shape[0]) == 1)
        if self.in_channels == 0:
            # A given x (Style-INR canvas: the const widened) replaces the learned 4x4 const.
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]) if x is None else x.to(dtype)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        else:
            assert x is not None and x.shape[1] == self.in_channels and min(x.shape[2:]) == self.resolution // 2
            x = x.to(dtype)
            if self.architecture == "resnet":
                y = self.skip(x, gain=math.sqrt(0.5))
                x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
                x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=math.sqrt(0.5), **layer_kwargs)
                x = y + x
            else:
                x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
                x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """Blocks b4 ... b{img_resolution}; ``forward(ws [B,num_ws,w_dim]) -> img [B,C,R,R]``."""

    # fmt: off
    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs: Any) -> None:
    # fmt: on
        super().__init__()
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0, "resolution must be a power of 2"
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(
                in_channels,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=(res >= fp16_resolution),
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def block_ws(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Split W+ rows per block: block k reads its convs' rows plus the next row for torgb."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), (
            f"ws must be [B,{self.num_ws},{self.w_dim}], got {tuple(ws.shape)}"
        )
        out, idx = [], 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            out.append(ws.narrow(1, idx, block.num_conv + block.num_torgb))
            idx += block.num_conv
        return out

    def run_blocks(
        self, ws: torch.Tensor, noise_mode: str = "random", **block_kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run b4 ... b{img_resolution}: the last block's features ``x`` and the image ``img``."""
        ws = ws.to(torch.float32)
        x = img = None
        for res, cur_ws in zip(self.block_resolutions, self.block_ws(ws)):
            x, img = getattr(self, f"b{res}")(x, img, cur_ws, noise_mode=noise_mode, **block_kwargs)
        return x, img

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", **block_kwargs: Any) -> torch.Tensor:
        return self.run_blocks(ws, noise_mode, **block_kwargs)[1]


class Generator(nn.Module):
    """StyleGAN2-ADA generator: ``mapping`` (z -> ws) followed by ``synthesis`` (ws -> img)."""

    # fmt: off
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict[str, Any] | None = None, synthesis_kwargs: dict[str, Any] | None = None) -> None:
    # fmt: on
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.init_kwargs = init_kwargs_from(locals())
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, num_ws=self.num_ws, **(mapping_kwargs or {}))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: [fromrgb] -> conv0 -> conv1 (down) [+ resnet skip]."""

    # fmt: off
    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 first_layer_idx: int, architecture: str = "resnet", activation: str = "lrelu",
                 resample_filter: tuple[float, ...] | list[float] = DEFAULT_FILTER, conv_clamp: float | None = None,
                 use_fp16: bool = False, fp16_channels_last: bool = False, freeze_layers: int = 0) -> None:
    # fmt: on
        super().__init__()
        assert architecture in ("orig", "skip", "resnet"), f"unknown architecture {architecture!r}"
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.allow_fp16 = False  # float32 by default everywhere; see enable_fp16()
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.num_layers = 0

        def trainable() -> bool:
            idx = first_layer_idx + self.num_layers
            self.num_layers += 1
            return idx >= freeze_layers

        common = dict(activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, trainable=trainable(), **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=trainable(), **common)
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            kernel_size=3,
            down=2,
            trainable=trainable(),
            resample_filter=resample_filter,
            **common,
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                down=2,
                trainable=trainable(),
                resample_filter=resample_filter,
            )

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, force_fp32: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = (x if x is not None else img).device
        use_fp16 = self.use_fp16 and self.allow_fp16 and not force_fp32 and device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        if x is not None:
            x = x.to(dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            assert img is not None and img.shape[1:] == (self.img_channels, self.resolution, self.resolution), (
                f"image must be [B,{self.img_channels},{self.resolution},{self.resolution}], got "
                f"{None if img is None else tuple(img.shape)}"
            )
            img = img.to(dtype)
            if self.in_channels == 0 and img.device.type == "cpu" and D_CHANNELS_LAST_ON_CPU:
                # oneDNN's convolutions, and above all its depthwise FIR filters, run 1.5-5x faster on a CPU
                # in channels-last memory; converting the 3-channel input once puts every later feature map
                # of D in that layout (the values are the same; discriminator_features returns contiguous).
                img = img.contiguous(memory_format=torch.channels_last)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class MinibatchStdLayer(nn.Module):
    """Append the per-group standard deviation of features (groups are samples i, i+n, i+2n, ...)."""

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        assert n % g == 0, f"batch size {n} must be divisible by the minibatch-std group size {g}"
        f = self.num_channels
        assert c % f == 0, f"channels {c} must be divisible by mbstd_num_channels {f}"
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """The final 4x4 stage: [fromrgb] -> minibatch-std -> conv -> fc -> out (-> label projection)."""

    # fmt: off
    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
                 activation: str = "lrelu", conv_clamp: float | None = None) -> None:
    # fmt: on
        super().__init__()
        self.in_channels, self.cmap_dim, self.resolution, self.architecture = (
            in_channels,
            cmap_dim,
            resolution,
            architecture,
        )
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None) -> torch.Tensor:
        assert x.shape[1:] == (self.in_channels, self.resolution, self.resolution), f"x {tuple(x.shape)}"
        x = x.to(torch.float32)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if cmap is not None:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """StyleGAN2-ADA discriminator: blocks b{R} ... b8, then the b4 epilogue; ``D(img, c) -> [B,1]``."""

    # fmt: off
    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = "resnet",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 0,
                 conv_clamp: float | None = None, cmap_dim: int | None = None,
                 block_kwargs: dict[str, Any] | None = None, mapping_kwargs: dict[str, Any] | None = None,
                 epilogue_kwargs: dict[str, Any] | None = None) -> None:
    # fmt: on
        super().__init__()
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0, "resolution must be a power of 2"
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.init_kwargs = init_kwargs_from(locals())
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(
                in_channels,
                channels[res],
                channels[res // 2],
                resolution=res,
                first_layer_idx=layer_idx,
                use_fp16=(res >= fp16_resolution),
                **(block_kwargs or {}),
                **common,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **(mapping_kwargs or {})
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}), **common
        )

    def _check_image(self, img: torch.Tensor) -> None:
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        assert img.ndim == 4 and tuple(img.shape[1:]) == expected, f"D expects [B,{expected}], got {tuple(img.shape)}"

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, **block_kwargs: Any) -> torch.Tensor:
        self._check_image(img)
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)


def discriminator_features(
    D: Discriminator, img: torch.Tensor, c: torch.Tensor | None = None, force_fp32: bool = True
) -> dict[int, torch.Tensor]:
    """Return the ``x`` output of every block ``D.b{r}`` (r = R ... 8), keyed by r, as float32.

    Block b{r} consumes r x r inputs and outputs features at (r/2) x (r/2). The label ``c`` does not
    influence these features (it only enters the final projection); it is accepted for symmetry.
    """
    D._check_image(img)
    feats: dict[int, torch.Tensor] = {}
    x = None
    for res in D.block_resolutions:
        x, img = getattr(D, f"b{res}")(x, img, force_fp32=force_fp32)
        feats[res] = x.to(torch.float32).contiguous()
    return feats


def enable_fp16(net: nn.Module, enabled: bool = True) -> nn.Module:
    """Opt in to NVIDIA's fp16 high-resolution blocks (those within ``num_fp16_res``) on CUDA devices.

    Off by default: everything runs in float32. On a CPU the blocks stay float32 regardless.
    """
    for module in net.modules():
        if hasattr(module, "allow_fp16"):
            module.allow_fp16 = bool(enabled)
    return net


def noise_buffers(G: Generator) -> dict[str, torch.Tensor]:
    """The constant noise maps of ``G.synthesis`` by buffer name (e.g. ``b8.conv0.noise_const``)."""
    return {name: buf for name, buf in G.synthesis.named_buffers() if "noise_const" in name}


def set_noise_buffers(G: Generator, noise: dict[str, torch.Tensor]) -> None:
    """Replace ``G``'s constant noise maps in place (names as in :func:`noise_buffers`)."""
    current = noise_buffers(G)
    unknown = sorted(set(noise) - set(current))
    if unknown:
        raise KeyError(f"unknown noise buffers {unknown}; expected names among {sorted(current)}")
    for name, value in noise.items():
        module_name, _, buf_name = name.rpartition(".")
        module = G.synthesis.get_submodule(module_name)
        assert value.shape == current[name].shape, f"{name}: shape {tuple(value.shape)} != {tuple(current[name].shape)}"
        module._buffers[buf_name] = value
