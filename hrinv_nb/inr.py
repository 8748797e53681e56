"""Style-INR-GAN: a StyleGAN2 generator with an implicit-neural-representation head.

The head ``synthesis.inr_net`` reads the feature map ``x`` of the last synthesis block (C channels
at R²), samples it bilinearly (``grid_sample``, ``align_corners=False``) at the pixel centres of any
output shape (H, W), appends the coordinates (row, col) and maps each point through a 3-layer MLP
of equalised-lr layers (lrelu, lrelu, linear) to RGB. A non-square output is an anisotropic stretch
of the square feature field, exactly as in the paper's model. The torgb images are discarded
(``return_ori_out=True`` returns the skip image too), so the last W+ row has no effect on the output.

The output shape is set per call (``shape=(H, W)``) or with ``G.synthesis.shape``.

**Canvas mode** (``canvas=True``, opt-in, off by default, stored in the generator's ``init_kwargs``):
for the toy Style-INR model, whose non-square outputs must be *scenes* (the face at the height of
the image, more background and shoulders at the sides, as the toy renderer's wide renders are)
rather than stretched faces. For an output (H, W) of aspect a = W/H ≥ 1 the synthesis blocks run on
a canvas whose b4 input is 4 x cw, cw = 4 + 2·ceil((4a − 4)/2) (the smallest even width ≥ 4a, so the
canvas is symmetric about the learned const and always covers the output: cw = 4a for the training
shapes 128 x {128, 192, 256, 320, 384}); every block then works at r x (r·cw/4). The b4 input is
the learned 4x4 const *replicate-padded* by (cw − 4)/2 columns on each side. Replicate padding was
chosen over a learned wider const because it adds no parameter (a canvas model has exactly the
state-dict names and shapes of the plain one, so any snapshot can run either way), it is defined for
every aspect ratio (no maximum width), and the horizontal position the side content needs is
available anyway, from the zero padding of the 3x3 convolutions at the canvas borders and from the
head's coordinate input. Every layer's noise follows its feature map's real shape: ``random`` draws
[B,1,h,w]; ``const`` uses a buffer of the canvas shape when one is assigned (the projector does),
otherwise the square buffer at the centre of a deterministic canvas-sized draw; ``noise=`` passes
maps per layer. The head samples the field at (H, W) with per-axis coordinates: columns at physical
positions (in units of half the image height) c·W/H, c the pixel centres in (−1, 1), read from a
field that spans ±cw/4: no stretch, and the MLP's column coordinate is that physical position, so
the face keeps the coordinates it has in the square. A tall output (a < 1) is the centre crop of the
square field (the renderer scales the face to H and crops the sides). At a = 1 every path is the
plain one, bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .networks import FullyConnectedLayer, Generator, SynthesisNetwork


def pixel_centres(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Pixel-centre coordinates of an axis of length ``n`` in (−1, 1): −1 + 1/n + 2k/n."""
    return -1 + 1 / n + 2 * torch.arange(n, dtype=torch.float32, device=device) / n


class INRNetwork(nn.Module):
    """Per-point MLP on [bilinearly sampled features, (row, col)] -> RGB."""

    def __init__(self, in_channels: int, hidden: int = 32, out_channels: int = 3, max_points: int = 65536) -> None:
        super().__init__()
        self.in_channels, self.max_points = in_channels, max_points
        self.inr_fc_0 = FullyConnectedLayer(in_channels + 2, hidden, activation="lrelu")
        self.inr_fc_1 = FullyConnectedLayer(hidden, hidden, activation="lrelu")
        self.inr_fc_out = FullyConnectedLayer(hidden, out_channels)

    def forward(self, x: torch.Tensor, shape: tuple[int, int], field_aspect: float | None = None) -> torch.Tensor:
        """RGB [B, out, H, W] from the field ``x`` [B, C, h, w].

        ``field_aspect=None``: the field spans the output whatever its shape (the paper's stretch).
        ``field_aspect=f``: the field spans ±f horizontally in units of its half height; the
        output's columns sit at c·W/H (c the pixel centres), which is also the MLP's column input.
        """
        assert x.ndim == 4 and x.shape[1] == self.in_channels, f"features {tuple(x.shape)}"
        b = x.shape[0]
        h, w = int(shape[0]), int(shape[1])
        rows = pixel_centres(h, x.device)
        cols = pixel_centres(w, x.device)
        grid_cols = cols
        if field_aspect is not None:
            assert abs(x.shape[3] / x.shape[2] - field_aspect) < 1e-6, (tuple(x.shape), field_aspect)
            cols = cols * (w / h)
            grid_cols = cols / field_aspect
            assert (1 - 1 / w) * w / h <= field_aspect, f"output {shape} is wider than the field {tuple(x.shape)}"
        rr, cc = torch.meshgrid(rows, cols, indexing="ij")
        coords = torch.stack([rr, cc], dim=-1).reshape(1, h * w, 2)  # (row, col)
        gcoords = coords
        if grid_cols is not cols:
            gcoords = torch.stack(torch.meshgrid(rows, grid_cols, indexing="ij"), dim=-1).reshape(1, h * w, 2)
        out = []
        for start in range(0, h * w, self.max_points):
            c = coords[:, start : start + self.max_points]
            g = gcoords[:, start : start + self.max_points]
            grid = g.flip(-1).unsqueeze(1).expand(b, 1, -1, 2)  # grid_sample wants (x=col, y=row)
            feat = F.grid_sample(x.float(), grid, mode="bilinear", align_corners=False)  # [B,C,1,P]
            feat = feat.squeeze(2).transpose(1, 2)  # [B,P,C]
            h_in = torch.cat([feat, c.expand(b, -1, 2)], dim=-1).reshape(-1, self.in_channels + 2)
            y = self.inr_fc_out(self.inr_fc_1(self.inr_fc_0(h_in)))
            out.append(y.reshape(b, -1, y.shape[-1]))
        img = torch.cat(out, dim=1).transpose(1, 2).reshape(b, -1, h, w)
        return img


CANVAS_NOISE_SEED = 0x1A55  # seeds the side columns of canvas-sized const noise (deterministic)


def canvas_columns(shape: tuple[int, int]) -> int:
    """Width cw of the b4 canvas for an output (H, W): the smallest even cw ≥ max(4, 4·W/H)."""
    h, w = int(shape[0]), int(shape[1])
    assert h > 0 and w > 0, shape
    return 4 + 2 * (-(-max(0, 4 * w - 4 * h) // (2 * h)))


def _buffer_name(key: str) -> str:
    return key if key.endswith(".noise_const") else f"{key}.noise_const"


class INRSynthesisNetwork(SynthesisNetwork):
    """StyleGAN2 synthesis blocks followed by :class:`INRNetwork` on the last block's features.

    ``canvas=True``: the blocks run on a canvas with the output's aspect (see the module docstring).
    """

    # fmt: off
    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, inr_net_kwargs: dict | None = None,
                 canvas: bool = False, **kwargs: Any) -> None:
    # fmt: on
        super().__init__(w_dim, img_resolution, img_channels, **kwargs)
        last = getattr(self, f"b{img_resolution}")
        in_ch = last.conv1.weight.shape[0]
        self.inr_net = INRNetwork(in_ch, out_channels=img_channels, **(inr_net_kwargs or {}))
        self.shape: tuple[int, int] = (img_resolution, img_resolution)
        self.canvas = bool(canvas)

    def noise_layers(self) -> dict[str, nn.Module]:
        """The layers with a noise input, by buffer name (``b8.conv0.noise_const``), in synthesis order."""
        return {
            f"{name}.noise_const": m for name, m in self.named_modules() if "noise_const" in getattr(m, "_buffers", {})
        }

    def noise_shapes(self, shape: tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        """(h, w) of every layer's noise map for an output ``shape`` (canvas-sized in canvas mode)."""
        cw = canvas_columns(shape or self.shape) if self.canvas else 4
        return {name: (m.resolution, m.resolution * cw // 4) for name, m in self.noise_layers().items()}

    def canvas_const(self, cw: int, batch: int) -> torch.Tensor:
        """The b4 input [batch, C, 4, cw]: the learned const replicate-padded by (cw − 4)/2 columns a side."""
        const = self.b4.const
        assert cw >= const.shape[2] and (cw - const.shape[2]) % 2 == 0, (cw, tuple(const.shape))
        pad = (cw - const.shape[2]) // 2
        return F.pad(const.unsqueeze(0), (pad, pad, 0, 0), mode="replicate").repeat([batch, 1, 1, 1])

    def _canvas_noise(
        self, ws: torch.Tensor, noise_mode: str, shape: tuple[int, int], noise: dict[str, torch.Tensor] | None
    ) -> dict[str, torch.Tensor]:
        """A noise map of the canvas shape for every layer (``noise`` first, then ``noise_mode``)."""
        given = {_buffer_name(k): v for k, v in (noise or {}).items()}
        shapes = self.noise_shapes(shape)
        unknown = sorted(set(given) - set(shapes))
        if unknown:
            raise KeyError(f"unknown noise layers {unknown}; expected names among {sorted(shapes)}")
        b, maps = ws.shape[0], {}
        for idx, (name, module) in enumerate(self.noise_layers().items()):
            h, w = shapes[name]
            if name in given:
                n = given[name].to(ws.device, torch.float32)
                n = n[None, None] if n.ndim == 2 else n
                assert n.ndim == 4 and n.shape[0] in (1, b) and n.shape[1:] == (1, h, w), (
                    f"noise {name}: expected [{b} or 1, 1, {h}, {w}] or [{h}, {w}], got {tuple(given[name].shape)}"
                )
            elif noise_mode == "random":
                n = torch.randn([b, 1, h, w], device=ws.device)
            elif noise_mode == "none":
                n = torch.zeros([1, 1, h, w], device=ws.device)
            else:
                n = canvas_const_noise(module.noise_const, (h, w), CANVAS_NOISE_SEED + 1000 * idx + w)
            maps[name] = n
        return maps

    @contextlib.contextmanager
    def _assigned_noise(self, maps: dict[str, torch.Tensor]) -> Iterator[None]:
        layers = self.noise_layers()
        saved = {name: layers[name]._buffers["noise_const"] for name in maps}
        try:
            for name, value in maps.items():
                layers[name]._buffers["noise_const"] = value
            yield
        finally:
            for name, value in saved.items():
                layers[name]._buffers["noise_const"] = value

    def run_canvas(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        shape: tuple[int, int] | None = None,
        noise: dict[str, torch.Tensor] | None = None,
        **block_kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, float | None]:
        """The blocks on the canvas of ``shape``: (features, skip image, field aspect for the head).

        ``noise``: maps by layer (``b128.conv1`` or its buffer name) of the canvas shape, [B|1,1,h,w]
        or [h,w]; the other layers follow ``noise_mode``. Without ``canvas``: the plain blocks (square
        maps) and aspect None (the head stretches).
        """
        shape = tuple(int(v) for v in (shape or self.shape))
        cw = canvas_columns(shape) if self.canvas else 4
        if noise is None and cw == 4:
            x, img = self.run_blocks(ws, noise_mode, **block_kwargs)
        else:
            ws = ws.to(torch.float32)
            maps = self._canvas_noise(ws, noise_mode, shape, noise)
            x = self.canvas_const(cw, ws.shape[0]) if cw != 4 else None
            img = None
            with self._assigned_noise(maps):
                for res, cur_ws in zip(self.block_resolutions, self.block_ws(ws)):
                    x, img = getattr(self, f"b{res}")(x, img, cur_ws, noise_mode="const", **block_kwargs)
        return x, img, (cw / 4 if self.canvas else None)

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        shape: tuple[int, int] | None = None,
        return_ori_out: bool = False,
        noise: dict[str, torch.Tensor] | None = None,
        **block_kwargs: Any,
    ):
        shape = shape or self.shape
        x, img, aspect = self.run_canvas(ws, noise_mode, shape, noise, **block_kwargs)
        out = self.inr_net(x, shape, field_aspect=aspect)
        return (out, img) if return_ori_out else out


def canvas_const_noise(buf: torch.Tensor, shape: tuple[int, int], seed: int) -> torch.Tensor:
    """``buf`` ([..., r, r]) widened to [..., r, w]: itself in the centre columns, a seeded N(0, 1) draw
    (the same for every call with this ``seed``) at the sides. Returns ``buf`` when it already fits."""
    h, w = int(shape[0]), int(shape[1])
    if tuple(buf.shape[-2:]) == (h, w):
        return buf
    bh, bw = buf.shape[-2:]
    assert bh == h and w > bw and (w - bw) % 2 == 0, f"cannot widen a {tuple(buf.shape)} noise map to {shape}"
    side = torch.randn([h, w], generator=torch.Generator().manual_seed(seed)).to(buf.device, buf.dtype)
    out = side.expand(*buf.shape[:-2], h, w).clone()
    off = (w - bw) // 2
    out[..., off : off + bw] = buf
    return out


class StyleINRGenerator(Generator):
    """A :class:`Generator` whose synthesis ends in an INR head (``synthesis.inr_net.*``).

    ``canvas=True`` opts in to the canvas synthesis (non-square outputs are scenes, not stretches).
    """

    # fmt: off
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, synthesis_kwargs: dict | None = None,
                 inr_net_kwargs: dict | None = None, canvas: bool = False) -> None:
    # fmt: on
        super().__init__(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs)
        self.synthesis = INRSynthesisNetwork(
            w_dim, img_resolution, img_channels, inr_net_kwargs=inr_net_kwargs, canvas=canvas,
            **(synthesis_kwargs or {})
        )
        self.init_kwargs["inr_net_kwargs"] = dict(inr_net_kwargs or {})
        if canvas:  # recorded only when on, so plain models keep their init_kwargs (and files) unchanged
            self.init_kwargs["canvas"] = True


def attach_inr_head(
    G: Generator, inr_net_kwargs: dict | None = None, seed: int = 0, canvas: bool = False
) -> StyleINRGenerator:
    """A :class:`StyleINRGenerator` with ``G``'s mapping and blocks (copied) and a fresh INR head."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        G_inr = StyleINRGenerator(**G.init_kwargs, inr_net_kwargs=inr_net_kwargs, canvas=canvas)
    finally:
        torch.random.set_rng_state(state)
    missing, unexpected = G_inr.load_state_dict(copy.deepcopy(G.state_dict()), strict=False)
    assert not unexpected and all(k.startswith("synthesis.inr_net.") for k in missing), (missing, unexpected)
    return G_inr.eval().requires_grad_(False).to(next(G.parameters()).device)


def with_shape(G: StyleINRGenerator, shape: tuple[int, int]) -> StyleINRGenerator:
    """A shallow-configured deep copy of ``G`` whose synthesis renders (H, W) by default."""
    assert isinstance(G.synthesis, INRSynthesisNetwork), "with_shape needs a Style-INR generator"
    G2 = copy.deepcopy(G)
    G2.synthesis.shape = (int(shape[0]), int(shape[1]))
    return G2


def train_inr_head(
    G: StyleINRGenerator,
    steps: int = 500,
    batch: int = 8,
    lr: float = 2e-3,
    seed: int = 0,
    sizes: tuple[tuple[int, int], ...] = ((64, 64), (48, 96), (96, 96), (32, 96), (128, 128)),
    progress: bool = True,
) -> list[float]:
    """Fit the INR head of ``G`` (mapping and blocks frozen) to the StyleGAN2 skip image.

    At the native resolution the target is the skip image itself; at other shapes it is the skip
    image resized (bilinear, antialiased), i.e. the head learns to render the same picture at any
    size and aspect ratio. Returns the per-step L1 losses.
    """
    from tqdm.auto import tqdm

    synth = G.synthesis
    assert isinstance(synth, INRSynthesisNetwork)
    G.requires_grad_(False)
    synth.inr_net.requires_grad_(True)
    opt = torch.optim.Adam(synth.inr_net.parameters(), lr=lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    losses = []
    for step in tqdm(range(steps), disable=not progress, desc="INR head"):
        z = torch.randn([batch, G.z_dim], generator=gen).to(device)
        with torch.no_grad():
            ws = G.mapping(z, None)
            x = img = None
            for res, cur_ws in zip(synth.block_resolutions, synth.block_ws(ws)):
                x, img = getattr(synth, f"b{res}")(x, img, cur_ws, noise_mode="const")
        shape = sizes[step % len(sizes)]
        target = (
            img
            if tuple(img.shape[-2:]) == tuple(shape)
            else F.interpolate(img, size=shape, mode="bilinear", align_corners=False, antialias=True)
        )
        out = synth.inr_net(x, shape)
        loss = (out - target).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    G.requires_grad_(False)
    return losses
