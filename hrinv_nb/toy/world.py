"""The embedded toy world's generators: configuration, paired data and the training recipes.

A latent z is tied to a render by a fixed, documented map: z is normalised exactly as the mapping
network normalises it (unit mean square), and its first ``N_IDENTITY + N_NUISANCE`` coordinates go
through the normal CDF to factors in [-1, 1] (identity first, then nuisance). The remaining
coordinates are free. ``G_s`` is trained on photo renders of those factors, each ``G_t`` is
fine-tuned from ``G_s`` on renders of the *same* factors in a target style with the mapping frozen,
so one w gives the same identity in every style.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..networks import Discriminator, Generator
from ..ops import normalize_2nd_moment
from ..torch_files import load_torch_file
from .render import N_IDENTITY, N_NUISANCE, STYLES, render

TOY_RESOLUTION = 64
TOY_Z_DIM = 64
TOY_W_DIM = 128
N_FACTORS = N_IDENTITY + N_NUISANCE

TOY_G_KWARGS = dict(
    z_dim=TOY_Z_DIM,
    c_dim=0,
    w_dim=TOY_W_DIM,
    img_resolution=TOY_RESOLUTION,
    img_channels=3,
    mapping_kwargs={"num_layers": 4, "lr_multiplier": 0.1},  # 0.01 in FFHQ: too slow for a toy budget
    synthesis_kwargs={"channel_base": 2048, "channel_max": 64, "num_fp16_res": 0, "conv_clamp": 256},
)
TOY_D_KWARGS = dict(
    c_dim=0,
    img_resolution=TOY_RESOLUTION,
    img_channels=3,
    architecture="resnet",
    channel_base=2048,
    channel_max=64,
    num_fp16_res=0,
    conv_clamp=256,
    epilogue_kwargs={"mbstd_group_size": 4},
)
TARGET_STYLES = tuple(s for s in STYLES if s != "photo")


def new_toy_networks(seed: int) -> tuple[Generator, Discriminator]:
    """Freshly initialised toy G and D (64², num_ws 10), from an explicit seed."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        G, D = Generator(**TOY_G_KWARGS), Discriminator(**TOY_D_KWARGS)
    finally:
        torch.random.set_rng_state(state)
    assert G.num_ws == 10
    return G, D


def factors_from_z(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Identity [B, N_IDENTITY] and nuisance [B, N_NUISANCE] factors in [-1, 1] for latents z [B, z_dim]."""
    assert z.ndim == 2 and z.shape[1] >= N_FACTORS, f"z must be [B, >= {N_FACTORS}], got {tuple(z.shape)}"
    u = torch.special.ndtr(normalize_2nd_moment(z.float())[:, :N_FACTORS]) * 2 - 1
    return u[:, :N_IDENTITY], u[:, N_IDENTITY:]


def render_z(
    z: torch.Tensor, style: str = "photo", size: tuple[int, int] = (TOY_RESOLUTION, TOY_RESOLUTION)
) -> torch.Tensor:
    """The render that latent ``z`` stands for, in ``style``: [B, 3, H, W] in [-1, 1]."""
    identity, nuisance = factors_from_z(z)
    return render(identity, nuisance, style=style, size=size)


@dataclass
class PairedDataset:
    """A cached set of (z, render) pairs; ``sample`` draws a batch with a torch.Generator."""

    z: torch.Tensor
    images: torch.Tensor

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, self.z.shape[0], [batch], generator=generator)
        return self.z[idx], self.images[idx].float()


def paired_dataset(
    n: int, style: str, seed: int, cache: str | os.PathLike | None = None, chunk: int = 256, progress: bool = True
) -> PairedDataset:
    """Render ``n`` (z, image) pairs in ``style`` from ``seed``; cache them to ``cache`` (fp16) if given."""
    from tqdm.auto import tqdm

    if cache is not None and Path(cache).exists():
        blob = load_torch_file(cache, map_location=None)
        if blob["z"].shape[0] == n and blob["style"] == style and int(blob["seed"]) == seed:
            return PairedDataset(blob["z"], blob["images"])
    z = torch.randn([n, TOY_Z_DIM], generator=torch.Generator().manual_seed(seed))
    images = torch.empty([n, 3, TOY_RESOLUTION, TOY_RESOLUTION], dtype=torch.float16)
    for i in tqdm(range(0, n, chunk), desc=f"render {style}", disable=not progress):
        images[i : i + chunk] = render_z(z[i : i + chunk], style).half()
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"z": z, "images": images, "style": style, "seed": seed}, cache)
    return PairedDataset(z, images)


def steps_for_kimg(kimg: float, batch: int) -> int:
    """Number of optimisation steps that show ``kimg`` thousand images at ``batch``."""
    return int(math.ceil(kimg * 1000 / batch))


def sample_grid(
    generators: dict[str, Generator],
    n: int = 8,
    seed: int = 0,
    path: str | os.PathLike | None = None,
    with_renders: bool = True,
    truncation_psi: float = 1.0,
) -> torch.Tensor:
    """Rows: each generator's samples for the same z per column (plus, optionally, the renders of z).

    Returns the grid as [rows, n, 3, R, R] in [-1, 1]; saves a labelled PNG to ``path`` if given.
    """
    z = torch.randn([n, TOY_Z_DIM], generator=torch.Generator().manual_seed(seed))
    rows, labels = [], []
    for name, G in generators.items():
        with torch.no_grad():
            img = G(z.to(next(G.parameters()).device), None, truncation_psi=truncation_psi, noise_mode="const")
        rows.append(img.cpu().clamp(-1, 1))
        labels.append(name)
        style = name.removeprefix("G_t_") if name.startswith("G_t_") else "photo"
        if with_renders and style in STYLES:
            rows.append(render_z(z, style, size=tuple(img.shape[-2:])))
            labels.append(f"render ({style})")
    grid = torch.stack(rows)
    if path is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(rows), 1, figsize=(n * 0.9, len(rows) * 1.0))
        axes = [axes] if len(rows) == 1 else axes
        for ax, row, label in zip(axes, grid, labels):
            strip = torch.cat(list(row), dim=2)  # [3, R, n*R]
            ax.imshow(((strip.permute(1, 2, 0) + 1) / 2).numpy())
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return grid


def load_state_generator(state_path: str | os.PathLike, key: str = "G_ema") -> Generator:
    """The toy generator stored in a resumable training state (to look at training in progress).

    The state is read with ``torch.load(weights_only=True)`` after the checks of
    :func:`hrinv_nb.torch_files.load_torch_file`: nothing in the file is executed, and a bad file
    raises :class:`~hrinv_nb.errors.CheckpointError` naming it.
    """
    state = load_torch_file(state_path, map_location="cpu")
    if not isinstance(state, dict) or not isinstance(state.get(key), dict):
        raise CheckpointError(f"{state_path}: not a training state with a {key!r} state dict")
    G, _ = new_toy_networks(0)
    try:
        G.load_state_dict(state[key])
    except (RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{state_path}: {key!r} does not fit the toy generator: {err}") from err
    return G.eval().requires_grad_(False)
