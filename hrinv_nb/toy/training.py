"""A small, resumable StyleGAN2 training loop (train from scratch, or fine-tune with the mapping frozen).

Losses follow StyleGAN2-ADA: non-saturating logistic loss, lazy R1 on reals, optional path-length
regularisation (off by default), an EMA generator ``G_ema``, and optional ADA-free augmentation
(fixed probability) of everything D sees. Because the toy world renders *paired* data
(z -> parameters -> image), an optional reconstruction term pulls G(z) towards the render of z on
an area-downsampled grid: it fixes the layout quickly, while the adversarial term is left to make
the fine detail look real. Every result is a genuine StyleGAN2: W is the mapping network's image of z.

``train(...)`` saves a checkpoint (networks, optimiser and RNG states) atomically every
``checkpoint_every`` steps and resumes from it, so an interruption loses at most that many steps.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checkpoints import save_networks
from ..errors import CheckpointError
from ..files import atomic_write
from ..networks import Discriminator, Generator
from ..torch_files import load_torch_file

# data_fn(batch_size, generator) -> (z or None, real images [B,C,R,R] in [-1,1])
DataFn = Callable[[int, torch.Generator], tuple[torch.Tensor | None, torch.Tensor]]


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train` (StyleGAN2 defaults scaled for 64² toy models)."""

    steps: int = 1000
    batch: int = 16
    lr_g: float = 0.0025
    lr_d: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 0.2
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    ema_kimg: float = 2.0
    ema_rampup: float | None = 0.05
    style_mixing_prob: float = 0.0
    recon_weight: float = 0.0
    recon_size: int = 16
    adv_weight: float = 1.0
    augment_p: float = 0.0
    freeze_mapping: bool = False
    checkpoint_every: int = 100
    seed: int = 0
    # Reconstruction-dominant recipes (defaults keep plain StyleGAN2 behaviour):
    g_betas: tuple[float, float] | None = None  # Adam betas of G (None: ``betas``)
    mapping_lr_mult: float = 1.0  # extra lr factor for the mapping network's parameters
    lr_rampdown: float = 0.0  # final fraction of the steps over which both lrs decay (cosine) to 0


@dataclass
class TrainResult:
    """Networks after training, a per-step loss history and the total training seconds (all runs)."""

    G: Generator
    D: Discriminator
    G_ema: Generator
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def augment(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Differentiable ADA-free augmentation: flips, integer translation, brightness/contrast/saturation.

    Each transform is applied per sample with probability ``p`` (``p == 0`` returns ``x``).
    """
    assert x.ndim == 4, f"expected [B,C,H,W], got {tuple(x.shape)}"
    if p <= 0:
        return x
    b, _, h, w = x.shape

    def coin() -> torch.Tensor:
        return (torch.rand([b, 1, 1, 1], generator=generator) < p).to(x)

    x = torch.where(coin() > 0, x.flip(3), x)
    shift = (torch.rand([b, 2], generator=generator) * 2 - 1) * 0.125
    shift = shift * coin().reshape(b, 1)
    theta = torch.zeros([b, 2, 3], dtype=x.dtype)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, :, 2] = shift.to(x.dtype)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    brightness = (torch.randn([b, 1, 1, 1], generator=generator) * 0.2).to(x) * coin()
    x = x + brightness
    contrast = torch.exp2(torch.randn([b, 1, 1, 1], generator=generator) * 0.5).to(x)
    contrast = torch.where(coin() > 0, contrast, torch.ones_like(contrast))
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - mean) * contrast + mean
    sat = torch.exp2(torch.randn([b, 1, 1, 1], generator=generator)).to(x)
    sat = torch.where(coin() > 0, sat, torch.ones_like(sat))
    gray = x.mean(dim=1, keepdim=True)
    return (x - gray) * sat + gray


def _ws(G: Generator, z: torch.Tensor, cfg: TrainConfig, gen: torch.Generator, frozen: bool) -> torch.Tensor:
    if frozen:
        with torch.no_grad():
            ws = G.mapping(z, None, skip_w_avg_update=True)
    else:
        ws = G.mapping(z, None)
    if cfg.style_mixing_prob > 0 and torch.rand([], generator=gen).item() < cfg.style_mixing_prob:
        cutoff = int(torch.randint(1, ws.shape[1], [], generator=gen))
        z2 = torch.randn(z.shape, generator=gen).to(z)
        with torch.set_grad_enabled(not frozen):
            ws2 = G.mapping(z2, None, skip_w_avg_update=True)
        ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
    return ws


def train(
    G: Generator,
    D: Discriminator,
    data_fn: DataFn,
    cfg: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    G_ema: Generator | None = None,
    progress: bool = True,
    log_fn: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``G``/``D`` (in place) for ``cfg.steps`` steps; resume from ``out_dir/state.pt`` if present.

    With ``cfg.freeze_mapping`` the mapping network is excluded from the optimiser and run under
    no-grad (fine-tuning as in the paper's Sec. 7.3). ``out_dir`` receives ``state.pt`` (resumable)
    and, at the end, ``G_ema.safetensors`` and ``D.safetensors``-style files via :func:`save_networks`.
    """
    device = next(G.parameters()).device
    G.train().requires_grad_(True)
    D.train().requires_grad_(True)
    if G_ema is None:
        G_ema = copy.deepcopy(G)
    G_ema.eval().requires_grad_(False)
    if cfg.freeze_mapping:
        G.mapping.requires_grad_(False)
        G.mapping.eval()
    # Lazy regularisation: scale lr and betas as StyleGAN2 does for the regularised network.
    d_ratio = cfg.r1_interval / (cfg.r1_interval + 1)
    g_ratio = cfg.pl_interval / (cfg.pl_interval + 1) if cfg.pl_weight > 0 else 1.0
    g_lr = cfg.lr_g * g_ratio
    mapping_ids = {id(p) for p in G.mapping.parameters()}
    g_groups = [
        {
            "params": [p for p in G.parameters() if p.requires_grad and id(p) not in mapping_ids],
            "lr": g_lr,
            "lr0": g_lr,
        },
        {
            "params": [p for p in G.mapping.parameters() if p.requires_grad],
            "lr": g_lr * cfg.mapping_lr_mult,
            "lr0": g_lr * cfg.mapping_lr_mult,
        },
    ]
    g_groups = [g for g in g_groups if g["params"]]
    opt_g = torch.optim.Adam(g_groups, lr=g_lr, betas=tuple(b**g_ratio for b in (cfg.g_betas or cfg.betas)))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d * d_ratio, betas=tuple(b**d_ratio for b in cfg.betas))
    for group in opt_d.param_groups:
        group["lr0"] = group["lr"]
    gen = torch.Generator().manual_seed(cfg.seed)
    pl_mean = torch.zeros([], device=device)
    history: list[dict[str, float]] = []
    start = 0
    seconds_before = 0.0
    state_path = Path(out_dir) / "state.pt" if out_dir is not None else None
    if state_path is not None and state_path.exists():
        # weights_only=True (via load_torch_file): a state holds tensors, dicts, lists, tuples,
        # numbers and strings only (optimiser states are dicts, the config is stored as a dict).
        state = load_torch_file(state_path, map_location=device)
        if not isinstance(state, dict):
            raise CheckpointError(f"{state_path}: not a training state (a {type(state).__name__})")
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        G_ema.load_state_dict(state["G_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        gen.set_state(state["rng"])
        pl_mean = state["pl_mean"].to(device)
        history = state["history"]
        start = int(state["step"])
        seconds_before = float(state.get("seconds", 0.0))

    def save_state(step: int) -> None:
        if state_path is None:
            return
        state = dict(
            G=G.state_dict(),
            D=D.state_dict(),
            G_ema=G_ema.state_dict(),
            opt_g=opt_g.state_dict(),
            opt_d=opt_d.state_dict(),
            rng=gen.get_state(),
            pl_mean=pl_mean,
            history=history,
            step=step,
            config=asdict(cfg),
            seconds=seconds_before + time.perf_counter() - t0,
        )
        atomic_write(state_path, lambda tmp: torch.save(state, tmp))

    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc="train")
    for step in bar:
        if cfg.lr_rampdown > 0:
            t = (step / cfg.steps - (1 - cfg.lr_rampdown)) / cfg.lr_rampdown
            scale = 0.5 + 0.5 * math.cos(math.pi * min(max(t, 0.0), 1.0))
            for group in [*opt_g.param_groups, *opt_d.param_groups]:
                group["lr"] = group["lr0"] * scale
        # Per-layer random noise uses torch's global RNG: reseed it from ``gen`` so runs resume exactly.
        torch.manual_seed(int(torch.randint(0, 2**62, [], generator=gen)))
        z, real = data_fn(cfg.batch, gen)
        real = real.to(device)
        assert real.ndim == 4 and real.shape[0] == cfg.batch, f"data_fn returned {tuple(real.shape)}"
        z = (z if z is not None else torch.randn([cfg.batch, G.z_dim], generator=gen)).to(device)
        log: dict[str, float] = {}

        # ---- G step: adversarial + optional reconstruction (+ optional path length).
        D.requires_grad_(False)
        ws = _ws(G, z, cfg, gen, cfg.freeze_mapping)
        fake = G.synthesis(ws, noise_mode="random")
        loss_g = fake.new_zeros([])
        if cfg.adv_weight > 0:
            logits = D(augment(fake, cfg.augment_p, gen), None)
            loss_adv = F.softplus(-logits).mean()
            loss_g = loss_g + cfg.adv_weight * loss_adv
            log["g_adv"] = loss_adv.item()
        if cfg.recon_weight > 0:
            size = (cfg.recon_size, cfg.recon_size)
            loss_rec = (
                (F.interpolate(fake, size=size, mode="area") - F.interpolate(real, size=size, mode="area")).abs().mean()
            )
            loss_g = loss_g + cfg.recon_weight * loss_rec
            log["g_recon"] = loss_rec.item()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if cfg.pl_weight > 0 and step % cfg.pl_interval == 0:
            pl_batch = max(cfg.batch // 2, 1)
            ws = _ws(G, z[:pl_batch], cfg, gen, cfg.freeze_mapping).detach().requires_grad_(True)
            img = G.synthesis(ws, noise_mode="random")
            noise = torch.randn(img.shape, generator=gen).to(img) / math.sqrt(img.shape[2] * img.shape[3])
            (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()
            pl_mean = pl_mean.lerp(lengths.mean().detach(), cfg.pl_decay)
            loss_pl = (lengths - pl_mean).square().mean() * cfg.pl_weight * cfg.pl_interval
            opt_g.zero_grad(set_to_none=True)
            loss_pl.backward()
            opt_g.step()
            log["g_pl"] = loss_pl.item()
        D.requires_grad_(True)

        # ---- D step: logistic loss on fake and real, lazy R1 on reals.
        if cfg.adv_weight > 0:
            with torch.no_grad():
                fake = G.synthesis(_ws(G, z, cfg, gen, True), noise_mode="random")
            d_fake = D(augment(fake, cfg.augment_p, gen), None)
            d_real = D(augment(real, cfg.augment_p, gen), None)
            loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            log["d"] = loss_d.item()
            log["d_real"] = d_real.mean().item()
            log["d_fake"] = d_fake.mean().item()
            if cfg.r1_gamma > 0 and step % cfg.r1_interval == 0:
                real_r1 = real.detach().requires_grad_(True)
                logits = D(augment(real_r1, cfg.augment_p, gen), None)
                (grad,) = torch.autograd.grad(logits.sum(), real_r1, create_graph=True)
                loss_r1 = grad.square().sum([1, 2, 3]).mean() * (cfg.r1_gamma / 2) * cfg.r1_interval
                opt_d.zero_grad(set_to_none=True)
                loss_r1.backward()
                opt_d.step()
                log["d_r1"] = loss_r1.item()

        # ---- G_ema update.
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (step + 1) * cfg.batch * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)

        history.append({"step": float(step), **log})
        if log_fn is not None:
            log_fn(step, log)
        if progress:
            bar.set_postfix({k: f"{v:.3f}" for k, v in log.items() if k in ("g_adv", "g_recon", "d")})
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_state(step + 1)

    G.eval()
    D.eval()
    if out_dir is not None:
        save_networks(Path(out_dir) / "networks.safetensors", G=G_ema, D=D, meta={"train_config": asdict(cfg)})
    return TrainResult(G=G, D=D, G_ema=G_ema, history=history, seconds=seconds_before + time.perf_counter() - t0)


def finetune_copy(G_s: Generator, D_s: Discriminator) -> tuple[Generator, Discriminator]:
    """Deep copies of a source G/D to fine-tune (use with ``TrainConfig(freeze_mapping=True)``)."""
    return copy.deepcopy(G_s), copy.deepcopy(D_s)
