"""The embedded toy world's generators: configuration, paired data and the training recipes.

A latent z is tied to a render by a fixed, documented map: z is normalised exactly as the mapping
network normalises it (unit mean square), and its first ``N_IDENTITY + N_NUISANCE`` coordinates go
through the normal CDF to factors in [-1, 1] (identity first, then nuisance). The remaining
coordinates are free. ``G_s`` is trained on photo renders of those factors, each ``G_t`` is
fine-tuned from ``G_s`` on renders of the *same* factors in a target style with the mapping frozen,
so one w gives the same identity in every style.

The renderer's stochastic detail (hair strands, skin pores, background grain) is drawn from three
texture noise maps (:data:`hrinv_nb.toy.render.TEXTURE_NOISE`). During training the *same* maps are
fed to three of the generator's noise inputs (:data:`TEXTURE_NOISE_LAYERS`), so the paired regression
has one sharp answer and the learned noise strengths carry the detail, as in a real FFHQ StyleGAN2
("stochastic variation", Karras et al. 2019, sec. 3.2). Every other noise input gets fresh noise that
the target does not depend on, so its learned strength stays small.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..networks import Discriminator, Generator, noise_buffers
from ..ops import normalize_2nd_moment
from ..torch_files import load_torch_file
from .render import N_IDENTITY, N_NUISANCE, STYLES, render

TOY_RESOLUTION = 128
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
    # b4..b64: 64 channels, b128: 32 (FFHQ 1024²: 512 down to 32); small enough for a 2-core CPU.
    synthesis_kwargs={"channel_base": 4096, "channel_max": 64, "num_fp16_res": 0, "conv_clamp": 256},
)
TOY_D_KWARGS = dict(
    c_dim=0,
    img_resolution=TOY_RESOLUTION,
    img_channels=3,
    architecture="resnet",
    channel_base=4096,
    channel_max=64,
    num_fp16_res=0,
    conv_clamp=256,
    epilogue_kwargs={"mbstd_group_size": 4},
)
TARGET_STYLES = tuple(s for s in STYLES if s != "photo")
TOY_NUM_WS = 12
# Which generator noise input carries each texture map of the renderer during training.
TEXTURE_NOISE_LAYERS: dict[str, str] = {"fine": "b128.conv1", "grain": "b128.conv0", "coarse": "b64.conv1"}


def new_toy_networks(seed: int) -> tuple[Generator, Discriminator]:
    """Freshly initialised toy G and D (128², num_ws 12), from an explicit seed."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        G, D = Generator(**TOY_G_KWARGS), Discriminator(**TOY_D_KWARGS)
    finally:
        torch.random.set_rng_state(state)
    assert G.num_ws == TOY_NUM_WS, G.num_ws
    return G, D


def factors_from_z(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Identity [B, N_IDENTITY] and nuisance [B, N_NUISANCE] factors in [-1, 1] for latents z [B, z_dim]."""
    assert z.ndim == 2 and z.shape[1] >= N_FACTORS, f"z must be [B, >= {N_FACTORS}], got {tuple(z.shape)}"
    u = torch.special.ndtr(normalize_2nd_moment(z.float())[:, :N_FACTORS]) * 2 - 1
    return u[:, :N_IDENTITY], u[:, N_IDENTITY:]


def render_z(
    z: torch.Tensor,
    style: str = "photo",
    size: tuple[int, int] = (TOY_RESOLUTION, TOY_RESOLUTION),
    noise: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The render that latent ``z`` stands for, in ``style``: [B, 3, H, W] in [-1, 1].

    ``noise`` holds the texture maps (keys of :data:`hrinv_nb.toy.render.TEXTURE_NOISE`); ``None`` draws them from the
    nuisance factors, so the render is then a fixed function of z.
    """
    identity, nuisance = factors_from_z(z)
    return render(identity, nuisance, style=style, size=size, noise=noise)


def texture_noise_layers(resolution: int) -> dict[str, str]:
    """The generator layer whose noise input carries each texture map, for a ``resolution``² generator."""
    assert resolution >= 8 and resolution & (resolution - 1) == 0, resolution
    return {"fine": f"b{resolution}.conv1", "grain": f"b{resolution}.conv0", "coarse": f"b{resolution // 2}.conv1"}


def draw_generator_noise(G: Generator, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Fresh standard-normal maps [batch, 1, r, r] for every noise input of ``G`` (by buffer name),
    drawn with ``generator`` on its device."""
    return {
        name: torch.randn([batch, 1, *buf.shape[-2:]], generator=generator, device=generator.device)
        for name, buf in noise_buffers(G).items()
    }


def texture_noise_from(G: Generator, noise: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The renderer's texture maps (keys of :data:`hrinv_nb.toy.render.TEXTURE_NOISE`) among a generator's noise maps."""
    layers = texture_noise_layers(G.img_resolution)
    return {key: noise[f"{layer}.noise_const"] for key, layer in layers.items()}


def paired_batch(
    G: Generator, z: torch.Tensor, style: str, generator: torch.Generator, chunk_pixels: int = 1 << 22
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Renders of ``z`` in ``style`` at G's resolution and the per-sample noise maps G must receive.

    Every noise input of G gets fresh noise; the three of :func:`texture_noise_layers` are also the
    render's texture maps, so G(z, noise) has one exact target. Returns (images [B,3,R,R], noise).
    """
    noise = draw_generator_noise(G, z.shape[0], generator)
    identity, nuisance = factors_from_z(z)
    r = G.img_resolution
    real = render(
        identity, nuisance, style=style, size=(r, r), noise=texture_noise_from(G, noise), chunk_pixels=chunk_pixels
    )
    assert real.shape == (z.shape[0], 3, r, r), real.shape
    return real, noise


def paired_data_fn(G: Generator, style: str) -> Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]:
    """A :func:`hrinv_nb.toy.training.train` data function: fresh z, its render in ``style`` and the noise."""

    def data_fn(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        z = torch.randn([batch, G.z_dim], generator=generator, device=generator.device)
        real, noise = paired_batch(G, z, style, generator)
        return z, real, noise

    return data_fn


def pooled_data_fn(
    G: Generator, style: str, pool_size: int, fresh_per_call: int, chunk: int = 64
) -> Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]:
    """Like :func:`paired_data_fn`, but batches are drawn from a pool of ``pool_size`` paired renders.

    Rendering costs about 40% of a toy training step on a CPU and most of it on a GPU, so each call
    renders only ``fresh_per_call`` new samples into random pool slots and draws its batch from the
    pool (a sample is seen about ``batch / fresh_per_call`` times). Each pooled sample keeps its z,
    render and three texture maps together; the other noise inputs get fresh noise on every call
    (the render does not depend on them). The pool lives on the generator's device and is filled
    (in chunks of ``chunk``) on the first call, from the ``generator`` passed in: a resumed run
    refills it from its restored random state, so it sees fresh samples rather than the exact
    sequence an uninterrupted run would have seen.
    """
    assert pool_size >= 1 and 0 <= fresh_per_call <= pool_size, (pool_size, fresh_per_call)
    layers = texture_noise_layers(G.img_resolution)
    pool: dict[str, torch.Tensor] = {}

    def render_samples(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        parts: list[dict[str, torch.Tensor]] = []
        for start in range(0, n, chunk):
            b = min(chunk, n - start)
            z = torch.randn([b, G.z_dim], generator=generator, device=generator.device)
            real, noise = paired_batch(G, z, style, generator)
            parts.append({"z": z, "real": real} | {k: noise[f"{layer}.noise_const"] for k, layer in layers.items()})
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def data_fn(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        if not pool:
            pool.update(render_samples(pool_size, generator))
        elif fresh_per_call > 0:
            slots = torch.randperm(pool_size, generator=generator, device=generator.device)[:fresh_per_call]
            for k, v in render_samples(fresh_per_call, generator).items():
                pool[k][slots] = v
        idx = torch.randint(pool_size, [batch], generator=generator, device=generator.device)
        noise = draw_generator_noise(G, batch, generator)
        for k, layer in layers.items():
            noise[f"{layer}.noise_const"] = pool[k][idx]
        return pool["z"][idx], pool["real"][idx], noise

    return data_fn


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
