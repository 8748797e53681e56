"""The toy world's training loop: paired regression with shared noise, a discriminator critic, EMA, resume.

The renderer gives *paired* data: a latent z stands for one render, and the render's stochastic
detail is drawn from noise maps that the generator receives as its own noise inputs (see
:mod:`hrinv_nb.toy.world`). A batch is ``(z, real, noise)``; the generator is run on exactly those
per-sample noise maps and pulled towards the render by an L1 term at full resolution. With the
texture drawn from the same maps, the regression has one sharp answer, so no adversarial term is
needed for sharpness (``adv_weight`` adds StyleGAN2's non-saturating term if wanted).

The discriminator is trained alongside as a critic of renders against the generator's samples
(logistic loss, lazy R1), so the D shipped with G_s has learned image features (notebook 04 reads
them). Everything is a genuine StyleGAN2: W is the mapping network's image of z.

``train(...)`` stops after ``cfg.steps`` steps or when ``cfg.time_budget_s`` of wall-clock time is
spent, whichever comes first; the learning rate ramps down (cosine) over the last ``lr_rampdown``
of whichever of the two is further along. With ``out_dir`` it saves a resumable state atomically
every ``checkpoint_every`` steps and at the end, so an interruption loses at most that many steps.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checkpoints import save_networks
from ..errors import CheckpointError
from ..files import atomic_write
from ..networks import Discriminator, Generator, noise_buffers
from ..torch_files import load_torch_file

NoiseMaps = dict[str, torch.Tensor]
# data_fn(batch_size, generator) -> (z [B, z_dim], real [B,C,R,R] in [-1,1], per-sample noise maps or None)
DataFn = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor, NoiseMaps | None]]


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train`."""

    steps: int = 1000
    batch: int = 16
    lr_g: float = 0.002
    lr_d: float = 0.002
    g_betas: tuple[float, float] = (0.9, 0.99)  # momentum suits the regression
    d_betas: tuple[float, float] = (0.0, 0.99)  # StyleGAN2's
    recon_weight: float = 1.0  # L1 between G(z, n) and the paired render, full resolution
    lap_weight: float = 0.0  # + this × Laplacian-pyramid L1 (band-wise, each band a mean; see laplacian_l1)
    lap_levels: int = 4  # band-pass levels of that pyramid (plus the low-pass residual)
    adv_weight: float = 0.0  # StyleGAN2's non-saturating G loss (0: D is a critic only)
    train_d: bool = True
    r1_gamma: float = 0.1  # NVIDIA's heuristic 0.0002·R²/batch at 128², batch 32
    r1_interval: int = 16
    augment_p: float = 0.0  # probability of each augmentation of what D sees
    ema_kimg: float = 0.5
    ema_rampup: float | None = 0.05
    freeze_mapping: bool = False
    mapping_lr_mult: float = 1.0
    lr_rampdown: float = 0.3  # final fraction of the run over which both lrs decay (cosine) to 0
    time_budget_s: float | None = None
    checkpoint_every: int = 100
    log_every: int = 25
    seed: int = 0


@dataclass
class TrainResult:
    """Networks after training, the logged history, total seconds and steps (all runs together)."""

    G: Generator
    D: Discriminator
    G_ema: Generator
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def augment(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Differentiable augmentation of what D sees: flips, translation, brightness/contrast/saturation.

    Each transform is applied per sample with probability ``p`` (``p == 0`` returns ``x``); the
    random draws come from ``generator`` on its own device.
    """
    assert x.ndim == 4, f"expected [B,C,H,W], got {tuple(x.shape)}"
    if p <= 0:
        return x
    b, dev = x.shape[0], generator.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(list(shape), generator=generator, device=dev).to(x)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(list(shape), generator=generator, device=dev).to(x)

    def coin() -> torch.Tensor:
        return (rand(b, 1, 1, 1) < p).to(x)

    x = torch.where(coin() > 0, x.flip(3), x)
    shift = (rand(b, 2) * 2 - 1) * 0.125 * coin().reshape(b, 1)
    theta = torch.zeros([b, 2, 3], dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    x = x + randn(b, 1, 1, 1) * 0.2 * coin()
    contrast = torch.where(coin() > 0, torch.exp2(randn(b, 1, 1, 1) * 0.5), torch.ones_like(x[:, :1, :1, :1]))
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - mean) * contrast + mean
    sat = torch.where(coin() > 0, torch.exp2(randn(b, 1, 1, 1)), torch.ones_like(x[:, :1, :1, :1]))
    gray = x.mean(dim=1, keepdim=True)
    return (x - gray) * sat + gray


def laplacian_l1(fake: torch.Tensor, real: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Mean L1 distance between the Laplacian pyramids of two image batches, summed over the bands.

    Each band (``levels`` band-passes from the finest, then the low-pass residual) counts as a mean,
    so an error in the fine detail weighs as much as one in the colours. A plain pixel L1 is
    dominated by the low frequencies and a regression learns fine detail last; Bojanowski et al.
    (2018, "Optimizing the latent space of generative networks") train generators with this loss
    ("Lap1") for sharper images than a pixel loss gives.
    """
    assert fake.shape == real.shape and fake.ndim == 4, (tuple(fake.shape), tuple(real.shape))
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=fake.device, dtype=fake.dtype)
    kernel = (kernel[:, None] * kernel[None, :] / 256).expand(fake.shape[1], 1, 5, 5)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, [2, 2, 2, 2], mode="reflect"), kernel, groups=x.shape[1])

    diff = fake - real  # the pyramid is linear: bands of the difference = difference of the bands
    total = diff.new_zeros([])
    for _ in range(levels):
        if min(diff.shape[-2:]) < 8:
            break
        low = blur(diff)
        total = total + (diff - low).abs().mean()
        diff = low[..., ::2, ::2]
    return total + diff.abs().mean()


@contextlib.contextmanager
def batch_noise(G: Generator, noise: NoiseMaps | None) -> Iterator[None]:
    """Give ``G.synthesis`` per-sample noise maps ({buffer name: [B,1,h,w]}) for the duration of the block.

    Inside, ``G.synthesis(ws, noise_mode="const")`` uses them (each map is broadcast over channels,
    one map per sample); G's own constant maps are restored afterwards, also on error.
    """
    if not noise:
        yield
        return
    current = noise_buffers(G)
    unknown = sorted(set(noise) - set(current))
    if unknown:
        raise KeyError(f"unknown noise buffers {unknown}; expected names among {sorted(current)}")
    saved = {}
    try:
        for name, value in noise.items():
            assert value.ndim == 4 and value.shape[1] == 1, f"{name}: expected [B,1,h,w], got {tuple(value.shape)}"
            module = G.synthesis.get_submodule(name.rpartition(".")[0])
            saved[name] = module._buffers["noise_const"]
            module._buffers["noise_const"] = value
        yield
    finally:
        for name, value in saved.items():
            G.synthesis.get_submodule(name.rpartition(".")[0])._buffers["noise_const"] = value


def synthesize_with_noise(G: Generator, ws: torch.Tensor, noise: NoiseMaps | None) -> torch.Tensor:
    """G.synthesis(ws) on per-sample noise maps (``None``: fresh random noise in every layer)."""
    if noise is None:
        return G.synthesis(ws, noise_mode="random")
    with batch_noise(G, noise):
        return G.synthesis(ws, noise_mode="const")


def _lr_scale(progress: float, rampdown: float) -> float:
    """Cosine ramp-down of the learning rate over the final ``rampdown`` fraction of the run."""
    if rampdown <= 0:
        return 1.0
    t = (progress - (1 - rampdown)) / rampdown
    return 0.5 + 0.5 * math.cos(math.pi * min(max(t, 0.0), 1.0))


def _optimisers(G: Generator, D: Discriminator, cfg: TrainConfig) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G (mapping and synthesis groups) and for D, with StyleGAN2's lazy-R1 correction of D's."""
    mapping_ids = {id(p) for p in G.mapping.parameters()}
    groups = [
        {"params": [p for p in G.parameters() if p.requires_grad and id(p) not in mapping_ids], "lr": cfg.lr_g},
        {"params": [p for p in G.mapping.parameters() if p.requires_grad], "lr": cfg.lr_g * cfg.mapping_lr_mult},
    ]
    groups = [g | {"lr0": g["lr"]} for g in groups if g["params"]]
    opt_g = torch.optim.Adam(groups, lr=cfg.lr_g, betas=cfg.g_betas)
    ratio = cfg.r1_interval / (cfg.r1_interval + 1) if cfg.r1_gamma > 0 else 1.0
    lr_d = cfg.lr_d * ratio
    opt_d = torch.optim.Adam(
        [{"params": list(D.parameters()), "lr": lr_d, "lr0": lr_d}], lr=lr_d, betas=tuple(b**ratio for b in cfg.d_betas)
    )
    return opt_g, opt_d


def _d_step(
    G: Generator,
    D: Discriminator,
    fake: torch.Tensor,
    real: torch.Tensor,
    opt_d: torch.optim.Adam,
    cfg: TrainConfig,
    step: int,
    gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """One logistic D step on detached fakes and reals, plus lazy R1 every ``r1_interval`` steps."""
    D.requires_grad_(True)
    d_fake = D(augment(fake.detach(), cfg.augment_p, gen), None)
    d_real = D(augment(real, cfg.augment_p, gen), None)
    loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    log = {"d": loss_d.detach(), "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}
    if cfg.r1_gamma > 0 and step % cfg.r1_interval == 0:
        real_r1 = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(augment(real_r1, cfg.augment_p, gen), None).sum(), real_r1, create_graph=True)
        loss_r1 = grad.square().sum([1, 2, 3]).mean() * (cfg.r1_gamma / 2) * cfg.r1_interval
        opt_d.zero_grad(set_to_none=True)
        loss_r1.backward()
        opt_d.step()
        log["d_r1"] = loss_r1.detach()
    return log


def _ema_update(G_ema: Generator, G: Generator, cfg: TrainConfig, step: int) -> None:
    """G_ema ← lerp(G, G_ema, β) with StyleGAN2's half-life of ``ema_kimg`` (optionally ramped up)."""
    ema_nimg = cfg.ema_kimg * 1000
    if cfg.ema_rampup is not None:
        ema_nimg = min(ema_nimg, (step + 1) * cfg.batch * cfg.ema_rampup)
    beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)


def train(
    G: Generator,
    D: Discriminator,
    data_fn: DataFn,
    cfg: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    G_ema: Generator | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``G``/``D`` in place; resume from ``out_dir/state.pt`` if present (see the module docstring).

    ``data_fn(batch, generator)`` gives ``(z, real, noise)`` on G's device; ``generator`` is a
    ``torch.Generator`` on that device, seeded from ``cfg.seed`` and saved in the state, so a resumed
    run draws what an uninterrupted one would. With ``cfg.freeze_mapping`` the mapping network is
    not optimised and runs under no-grad (fine-tuning with the mapping frozen, as the authors did).
    """
    device = next(G.parameters()).device
    G.train().requires_grad_(True)
    D.train().requires_grad_(True)
    if G_ema is None:
        G_ema = copy.deepcopy(G)
    G_ema.eval().requires_grad_(False)
    if cfg.freeze_mapping:
        G.mapping.requires_grad_(False).eval()
    opt_g, opt_d = _optimisers(G, D, cfg)
    gen = torch.Generator(device).manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    start, seconds_before = 0, 0.0
    state_path = Path(out_dir) / "state.pt" if out_dir is not None else None
    if state_path is not None and state_path.exists():
        # weights_only loading (load_torch_file): the state holds tensors, dicts, lists and numbers only.
        state = load_torch_file(state_path, map_location=device)
        if not isinstance(state, dict) or "G" not in state:
            raise CheckpointError(f"{state_path}: not a training state")
        for net, key in ((G, "G"), (D, "D"), (G_ema, "G_ema")):
            net.load_state_dict(state[key])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        gen.set_state(state["rng"].cpu())
        history, start, seconds_before = state["history"], int(state["step"]), float(state["seconds"])

    t0 = time.perf_counter()

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - t0

    def save_state(step: int) -> None:
        if state_path is None:
            return
        state = dict(G=G.state_dict(), D=D.state_dict(), G_ema=G_ema.state_dict(), opt_g=opt_g.state_dict())
        state |= dict(opt_d=opt_d.state_dict(), rng=gen.get_state(), history=history, step=step)
        state |= dict(config=asdict(cfg), seconds=elapsed())
        atomic_write(state_path, lambda tmp: torch.save(state, tmp))

    pending: dict[str, list[torch.Tensor]] = {}
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc="train")
    step = start
    for step in bar:
        if cfg.time_budget_s is not None and elapsed() >= cfg.time_budget_s:
            break
        done = step / cfg.steps
        if cfg.time_budget_s is not None:
            done = max(done, elapsed() / cfg.time_budget_s)
        scale = _lr_scale(done, cfg.lr_rampdown)
        for group in [*opt_g.param_groups, *opt_d.param_groups]:
            group["lr"] = group["lr0"] * scale

        z, real, noise = data_fn(cfg.batch, gen)
        assert real.ndim == 4 and real.shape[0] == cfg.batch == z.shape[0], f"data_fn gave {tuple(real.shape)}"
        D.requires_grad_(False)
        train_g = cfg.recon_weight > 0 or cfg.lap_weight > 0 or cfg.adv_weight > 0  # all 0: D-only (critic), G frozen
        with torch.set_grad_enabled(train_g):
            with torch.set_grad_enabled(train_g and not cfg.freeze_mapping):
                ws = G.mapping(z, None, skip_w_avg_update=cfg.freeze_mapping or not train_g)
            fake = synthesize_with_noise(G, ws, noise)
        log: dict[str, torch.Tensor] = {}
        if train_g:
            loss_g = fake.new_zeros([])
            if cfg.recon_weight > 0:
                log["g_recon"] = (fake - real).abs().mean()
                loss_g = loss_g + cfg.recon_weight * log["g_recon"]
            if cfg.lap_weight > 0:
                log["g_lap"] = laplacian_l1(fake, real, cfg.lap_levels)
                loss_g = loss_g + cfg.lap_weight * log["g_lap"]
            if cfg.adv_weight > 0:
                log["g_adv"] = F.softplus(-D(augment(fake, cfg.augment_p, gen), None)).mean()
                loss_g = loss_g + cfg.adv_weight * log["g_adv"]
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        if cfg.train_d:
            log |= _d_step(G, D, fake, real, opt_d, cfg, step, gen)
        if train_g:
            _ema_update(G_ema, G, cfg, step)

        for k, v in log.items():  # no host sync per step: tensors are read every log_every steps
            pending.setdefault(k, []).append(v.detach().float())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            entry = {"step": float(step + 1), "seconds": round(elapsed(), 2)}
            entry |= {k: float(torch.stack(v).mean()) for k, v in pending.items()}
            history.append(entry)
            pending.clear()
            if progress:
                bar.set_postfix({k: f"{v:.4f}" for k, v in entry.items() if k in ("g_recon", "d")})
        if (step + 1) % cfg.checkpoint_every == 0:
            save_state(step + 1)
    else:
        step = cfg.steps
    steps_done = max(step, start)
    save_state(steps_done)
    G.eval()
    D.eval()
    if out_dir is not None:
        meta = {"train_config": asdict(cfg), "steps_done": steps_done}
        save_networks(Path(out_dir) / "networks.safetensors", G=G_ema, D=D, meta=meta)
    return TrainResult(G=G, D=D, G_ema=G_ema, history=history, seconds=elapsed(), steps=steps_done)


def finetune_copy(G_s: Generator, D_s: Discriminator) -> tuple[Generator, Discriminator]:
    """Deep copies of a source G/D to fine-tune (use with ``TrainConfig(freeze_mapping=True)``)."""
    return copy.deepcopy(G_s), copy.deepcopy(D_s)
