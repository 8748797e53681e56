"""Style-INR-GAN: a StyleGAN2 generator with an implicit-neural-representation head.

The head ``synthesis.inr_net`` reads the feature map ``x`` of the last synthesis block (C channels
at R²), samples it bilinearly (``grid_sample``, ``align_corners=False``) at the pixel centres of any
output shape (H, W), appends the coordinates (row, col) and maps each point through a 3-layer MLP
of equalised-lr layers (lrelu, lrelu, linear) to RGB. A non-square output is an anisotropic stretch
of the square feature field, exactly as in the paper's model. The torgb images are discarded
(``return_ori_out=True`` returns the skip image too), so the last W+ row has no effect on the output.

The output shape is set per call (``shape=(H, W)``) or with ``G.synthesis.shape``.
"""

from __future__ import annotations

import copy
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

    def forward(self, x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == self.in_channels, f"features {tuple(x.shape)}"
        b = x.shape[0]
        h, w = int(shape[0]), int(shape[1])
        rows = pixel_centres(h, x.device)
        cols = pixel_centres(w, x.device)
        rr, cc = torch.meshgrid(rows, cols, indexing="ij")
        coords = torch.stack([rr, cc], dim=-1).reshape(1, h * w, 2)  # (row, col)
        out = []
        for start in range(0, h * w, self.max_points):
            c = coords[:, start : start + self.max_points]
            grid = c.flip(-1).unsqueeze(1).expand(b, 1, -1, 2)  # grid_sample wants (x=col, y=row)
            feat = F.grid_sample(x.float(), grid, mode="bilinear", align_corners=False)  # [B,C,1,P]
            feat = feat.squeeze(2).transpose(1, 2)  # [B,P,C]
            h_in = torch.cat([feat, c.expand(b, -1, 2)], dim=-1).reshape(-1, self.in_channels + 2)
            y = self.inr_fc_out(self.inr_fc_1(self.inr_fc_0(h_in)))
            out.append(y.reshape(b, -1, y.shape[-1]))
        img = torch.cat(out, dim=1).transpose(1, 2).reshape(b, -1, h, w)
        return img


class INRSynthesisNetwork(SynthesisNetwork):
    """StyleGAN2 synthesis blocks followed by :class:`INRNetwork` on the last block's features."""

    # fmt: off
    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, inr_net_kwargs: dict | None = None, **kwargs: Any
                ) -> None:
    # fmt: on
        super().__init__(w_dim, img_resolution, img_channels, **kwargs)
        last = getattr(self, f"b{img_resolution}")
        in_ch = last.conv1.weight.shape[0]
        self.inr_net = INRNetwork(in_ch, out_channels=img_channels, **(inr_net_kwargs or {}))
        self.shape: tuple[int, int] = (img_resolution, img_resolution)

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        shape: tuple[int, int] | None = None,
        return_ori_out: bool = False,
        **block_kwargs: Any,
    ):
        x, img = self.run_blocks(ws, noise_mode, **block_kwargs)
        out = self.inr_net(x, shape or self.shape)
        return (out, img) if return_ori_out else out


class StyleINRGenerator(Generator):
    """A :class:`Generator` whose synthesis ends in an INR head (``synthesis.inr_net.*``)."""

    # fmt: off
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, synthesis_kwargs: dict | None = None,
                 inr_net_kwargs: dict | None = None) -> None:
    # fmt: on
        super().__init__(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs)
        self.synthesis = INRSynthesisNetwork(
            w_dim, img_resolution, img_channels, inr_net_kwargs=inr_net_kwargs, **(synthesis_kwargs or {})
        )
        self.init_kwargs["inr_net_kwargs"] = dict(inr_net_kwargs or {})


def attach_inr_head(G: Generator, inr_net_kwargs: dict | None = None, seed: int = 0) -> StyleINRGenerator:
    """A :class:`StyleINRGenerator` with ``G``'s mapping and blocks (copied) and a fresh INR head."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        G_inr = StyleINRGenerator(**G.init_kwargs, inr_net_kwargs=inr_net_kwargs)
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
