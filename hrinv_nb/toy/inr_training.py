"""Training of the toy Style-INR model (issue 13, item 6): a canvas :class:`~hrinv_nb.inr.StyleINRGenerator`.

:func:`train_toy_inr` starts from G_s (mapping, blocks and noise strengths copied, a fresh INR head
attached, ``canvas=True``) and trains the synthesis blocks and the head, the mapping frozen, on a mix of

* **square** batches at G_s's resolution R: distillation, ``G_inr(w, n) ≈ G_s(w, n)`` with the same w
  and the same per-sample noise maps of every layer, so that the square output reproduces G_s;
* **wide** batches (R x 3R/2, R x 2R, R x 3R by default): ``G_inr(w, n)`` at that shape against the
  photo render of the same z at that size, its texture maps (``fine``, ``grain``, ``coarse``) being
  the generator's noise maps of the canvas at :func:`hrinv_nb.toy.world.texture_noise_layers` (the
  other layers get fresh canvas-sized noise), as in the paired training of G_s. The wide outputs then
  become scenes of the toy world: the face with more background and shoulders.

The loss is L1 in pixels. Everything runs on ``device`` in batches (no per-sample Python loop, no
host sync per step: losses are accumulated on the device and read every ``log_every`` steps); it
stops after ``steps`` steps or when ``time_budget_s`` of wall-clock time is spent.

Renders are the expensive part (on an H200 a photo render of 16 samples at 128 x 384 takes ~0.35 s,
far more than a training step), so by default (``wide_pool``) the wide targets are rendered once
into a pool on the device, shape after shape in chunks, until ``wide_pool`` samples per shape or
``pool_fraction`` of the time budget; the wide steps then draw batches from the pool (with fresh
noise in the layers that are not texture maps). ``wide_pool=0`` renders every wide batch afresh.

**Resume.** With ``work_dir`` the run saves ``work_dir/state.pt`` atomically every ``checkpoint_every``
steps and at the end, and a later call with the same ``work_dir`` continues from it: the synthesis
weights, Adam's state, the RNG state, the step, the elapsed seconds, the loss log and the running
sums, so that a run paused and resumed is bit for bit the uninterrupted one (given a deterministic
``render_fn`` and device). The pool is too large to store; it is drawn from the training generator
before the first step, so a resume re-seeds that generator, renders the pool again at exactly the
saved per-shape sizes (the first call's budget decided them; they never grow later) and then
restores the saved generator state. The time budget counts training time: the first call's pool
rendering counts (as in an unsaved run), a resume's re-rendering does not. The settings that shape
what is trained (seed, batch, shapes, learning rates, pool, G_s itself, ...) must match the saved
ones (:class:`ValueError` otherwise); ``steps`` and ``time_budget_s`` are stopping rules and may change.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..files import atomic_write
from ..inr import StyleINRGenerator, attach_inr_head
from ..networks import Generator
from ..torch_files import load_torch_file

# render_fn(z [B, z_dim], (H, W), texture maps {"fine", "grain", "coarse"}) -> images [B, 3, H, W] in [-1, 1]
RenderFn = Callable[[torch.Tensor, tuple[int, int], dict[str, torch.Tensor]], torch.Tensor]
Shape = tuple[int, int]

# Config keys that may differ on resume: they say when to stop, not what is trained.
STOPPING_RULES = ("steps", "time_budget_s")
KINDS = ("square", "wide")
STATE_KEYS = frozenset(
    ("config", "step", "seconds", "synthesis", "opt", "rng", "pool_sizes", "n_wide", "sums", "counts", "last", "log")
)


def photo_render_fn(z: torch.Tensor, size: tuple[int, int], noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """The toy world's photo render of ``z`` at ``size`` with the texture maps ``noise`` (on z's device)."""
    from .render import render
    from .world import factors_from_z

    identity, nuisance = factors_from_z(z)
    # large chunks on a GPU (the default chunk is one 128 x 384 sample at a time), as world.paired_batch does
    chunk = 1 << 22 if z.device.type == "cuda" else 1 << 18
    return render(identity, nuisance, style="photo", size=size, noise=noise, chunk_pixels=chunk)


def default_wide_shapes(resolution: int) -> tuple[tuple[int, int], ...]:
    """R x 3R/2, R x 2R and R x 3R (canvas widths 6, 8 and 12 at b4)."""
    return ((resolution, resolution * 3 // 2), (resolution, resolution * 2), (resolution, resolution * 3))


@contextlib.contextmanager
def _noise_assigned(G: Generator, noise: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily make ``noise`` ([B,1,r,r] by buffer name) the constant noise maps of a plain ``G``."""
    layers = {f"{n}.noise_const": m for n, m in G.synthesis.named_modules() if "noise_const" in m._buffers}
    assert set(noise) == set(layers), (sorted(noise), sorted(layers))
    saved = {name: m._buffers["noise_const"] for name, m in layers.items()}
    try:
        for name, m in layers.items():
            assert noise[name].shape[-2:] == saved[name].shape[-2:], (name, tuple(noise[name].shape))
            m._buffers["noise_const"] = noise[name]
        yield
    finally:
        for name, m in layers.items():
            m._buffers["noise_const"] = saved[name]


def synthesis_with_noise(G: Generator, ws: torch.Tensor, noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """``G.synthesis(ws)`` of a plain generator with per-sample noise maps ``noise`` ([B,1,r,r] per layer)."""
    with _noise_assigned(G, noise):
        return G.synthesis(ws, noise_mode="const")


def _draw_noise(shapes: dict[str, tuple[int, int]], batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        name: torch.randn([batch, 1, h, w], generator=generator, device=generator.device)
        for name, (h, w) in shapes.items()
    }


def _psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over samples of the PSNR (dB) of [-1, 1] images, peak-to-peak 2 (as 8-bit PSNR, unquantised)."""
    mse = (a.float() - b.float()).square().mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return float((10 * torch.log10(4.0 / mse)).mean())


# fmt: off
def train_toy_inr(
    G_s: Generator, *, device: torch.device | str, steps: int, time_budget_s: float | None, seed: int = 0,
    batch: int = 16, wide_shapes: Sequence[tuple[int, int]] | None = None, square_fraction: float = 0.5,
    lr: float = 2e-3, head_lr: float = 1e-2, render_fn: RenderFn | None = None,
    inr_net_kwargs: dict | None = None, log_every: int = 100, eval_samples: int = 16, progress: bool = False,
    wide_pool: int = 1024, pool_fraction: float = 0.35, render_batch: int = 64, allow_tf32: bool = True,
    lr_rampdown: float = 0.3, work_dir: str | os.PathLike | None = None, checkpoint_every: int = 50,
    pause_at: int | None = None,
) -> tuple[StyleINRGenerator, dict]:
    # fmt: on
    """Train the toy canvas Style-INR model from ``G_s`` (see the module docstring); returns (G_inr, record).

    ``render_fn(z, (H, W), texture_maps)``: the wide targets (default :func:`photo_render_fn`).
    ``square_fraction``: share of the steps that are square distillation batches; the other steps
    cycle through ``wide_shapes``. ``record``: steps done, seconds, per-kind mean L1 over the last
    ``log_every`` steps of each kind, a loss log, and at the end the PSNR (dB) of the square output
    against G_s and of each wide shape against its render, on ``eval_samples`` fresh samples.
    ``wide_pool``/``pool_fraction``/``render_batch``: the pool of wide targets (see the module
    docstring). ``lr_rampdown``: both learning rates decay (cosine) to 0 over this final fraction of
    whichever of ``steps`` and ``time_budget_s`` is further along. ``allow_tf32``: TF32 matmuls and convolutions on CUDA during training (restored after).
    ``work_dir``/``checkpoint_every``: save and resume a state (see the module docstring); without
    ``work_dir`` nothing is written. ``pause_at``: stop once this many steps are done in all (resumed
    ones included) while the schedule still spans ``steps``, so that a run paused at k and resumed is
    the uninterrupted one; stopping with ``steps=k`` instead would ramp the learning rates down by k.
    ``record["steps"]``/``["seconds"]`` count all calls; ``record["resumed_from"]`` is the step this
    call started at and ``record["pool_seconds"]`` its pool rendering (or re-rendering).
    G_inr comes back on the CPU, in eval mode, without gradients.
    """
    assert steps >= 0 and batch >= 1 and 0 < square_fraction <= 1, (steps, batch, square_fraction)
    assert checkpoint_every >= 1 and (pause_at is None or pause_at >= 0), (checkpoint_every, pause_at)
    from .world import texture_noise_layers

    device = torch.device(device)
    render_fn = render_fn or photo_render_fn
    R = G_s.img_resolution
    wide = tuple((int(h), int(w)) for h, w in (wide_shapes or default_wide_shapes(R)))
    teacher = copy.deepcopy(G_s).to(device).eval().requires_grad_(False)
    G = attach_inr_head(teacher, inr_net_kwargs=inr_net_kwargs, seed=seed, canvas=True).to(device).eval()
    synth = G.synthesis
    synth.requires_grad_(True)
    head = list(synth.inr_net.parameters())
    head_ids = {id(p) for p in head}
    blocks = [p for p in synth.parameters() if id(p) not in head_ids]
    opt = torch.optim.Adam(
        [{"params": blocks, "lr": lr}, {"params": head, "lr": head_lr}], betas=(0.9, 0.99), eps=1e-8
    )
    texture = texture_noise_layers(R)
    square_shapes = synth.noise_shapes((R, R))
    wide_noise_shapes = {s: synth.noise_shapes(s) for s in wide}
    for s, shapes in wide_noise_shapes.items():  # the renderer's map shapes: fine, grain (H, W), coarse (H/2, W/2)
        assert shapes[f"{texture['fine']}.noise_const"] == s, (s, shapes)
        assert shapes[f"{texture['coarse']}.noise_const"] == (math.ceil(s[0] / 2), math.ceil(s[1] / 2)), (s, shapes)

    config = {
        "seed": seed, "batch": batch, "steps": steps, "time_budget_s": time_budget_s,
        "square_fraction": square_fraction, "wide_shapes": [list(s) for s in wide], "lr": lr, "head_lr": head_lr,
        "lr_rampdown": lr_rampdown, "wide_pool": wide_pool, "pool_fraction": pool_fraction,
        "render_batch": render_batch, "inr_net_kwargs": inr_net_kwargs, "device_type": device.type,
        "G_s_sha256": module_fingerprint(G_s),
    }  # fmt: skip
    state_path = None if work_dir is None else Path(work_dir) / "state.pt"
    saved = load_inr_state(state_path, config) if state_path is not None and state_path.exists() else None
    base_lrs = [lr, head_lr]  # taken here: after a resume the optimiser's groups hold the saved, decayed rates
    loop, seconds_before = _LoopState.fresh(device), 0.0
    if saved is not None:
        synth.load_state_dict(saved["synthesis"])
        opt.load_state_dict(saved["opt"])  # loaded on the CPU: Adam moves its moments to the parameters' device
        loop, seconds_before = _LoopState.from_state(saved, device), float(saved["seconds"])
    start = loop.step
    end = steps if pause_at is None else min(steps, pause_at)

    gen = torch.Generator(device=device).manual_seed(seed)
    t0 = time.perf_counter()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if device.type == "cuda" and allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        if saved is None:
            pool_budget = None if time_budget_s is None else pool_fraction * time_budget_s
            pool = _render_pool(G.z_dim, wide, wide_noise_shapes, texture, render_fn, wide_pool, render_batch,
                                pool_budget, gen) if wide_pool > 0 and steps > 0 else {}  # fmt: skip
            pool_sizes = {s: int(p[0].shape[0]) for s, p in pool.items()}
        else:
            # the same draws from the same seed at the saved sizes, then the generator as it was saved
            pool_sizes = {(int(h), int(w)): int(n) for h, w, n in saved["pool_sizes"]}
            trains = start < end and (time_budget_s is None or seconds_before < time_budget_s)
            pool = _render_pool(G.z_dim, wide, wide_noise_shapes, texture, render_fn, pool_sizes, render_batch,
                                None, gen) if pool_sizes and trains else {}  # fmt: skip
            gen.set_state(saved["rng"].cpu())
        pool_seconds = time.perf_counter() - t0
        if saved is not None:
            t0 = time.perf_counter()  # a resume's re-rendering is not training time

        def elapsed() -> float:
            return seconds_before + (time.perf_counter() - t0)

        def checkpoint(state: _LoopState) -> None:
            if state_path is None:
                return
            data = state.to_state() | {
                "config": config, "seconds": elapsed(), "synthesis": synth.state_dict(), "opt": opt.state_dict(),
                "rng": gen.get_state(), "pool_sizes": [[h, w, n] for (h, w), n in pool_sizes.items()],
            }  # fmt: skip
            atomic_write(state_path, lambda tmp: torch.save(data, tmp))

        _train_loop(G, teacher, opt, base_lrs, gen, loop, end, steps, time_budget_s, elapsed, batch,
                    square_fraction, wide, square_shapes, wide_noise_shapes, texture, render_fn, pool, log_every,
                    progress, lr_rampdown, checkpoint, checkpoint_every)  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = elapsed()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    G.requires_grad_(False)
    evaluation = _evaluate(G, teacher, wide, texture, render_fn, eval_samples, seed + 1) if eval_samples else {}
    record = {
        "steps": loop.step,
        "resumed_from": start,
        "seconds": round(seconds, 2),
        "pool_seconds": round(pool_seconds, 2),
        "pool_sizes": {f"{h}x{w}": n for (h, w), n in pool_sizes.items()},
        "batch": batch,
        "device": str(device),
        "seed": seed,
        "square_fraction": square_fraction,
        "wide_shapes": [list(s) for s in wide],
        "lr": lr,
        "head_lr": head_lr,
        "final_l1": {f"{k}_l1": v for k, v in loop.last.items()},
        "eval": evaluation,
        "log": loop.log,
    }
    return G.cpu().eval(), record


def module_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes, bytes): a resume must start from the same G_s."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_inr_state(path: str | os.PathLike, config: dict[str, Any]) -> dict[str, Any]:
    """The state saved by :func:`train_toy_inr` at ``path`` (weights-only loading, on the CPU), checked
    against the call's ``config``: a :class:`ValueError` names the keys that differ, except the stopping rules."""
    state = load_torch_file(path, map_location="cpu")
    if not isinstance(state, dict) or not STATE_KEYS.issubset(state) or not isinstance(state["config"], dict):
        raise CheckpointError(f"{path}: not a toy INR training state")
    keys = (set(state["config"]) | set(config)) - set(STOPPING_RULES)
    differ = sorted(k for k in keys if state["config"].get(k) != config.get(k))
    if differ:
        detail = "; ".join(f"{k}: saved {state['config'].get(k)!r}, now {config.get(k)!r}" for k in differ)
        raise ValueError(
            f"{path} was saved with other settings ({', '.join(differ)}): {detail}. Resuming would mix two runs; "
            "call with the saved settings, or remove that state to start afresh."
        )
    return state


@dataclass
class _LoopState:
    """What the optimisation loop carries from step to step besides the networks, the optimiser and the RNG."""

    sums: dict[str, torch.Tensor]  # loss sums on the device since the last log entry, per kind
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    step: int = 0
    n_wide: int = 0  # wide steps so far: the next wide shape is wide[n_wide % len(wide)]
    last: dict[str, float] = field(default_factory=dict)  # the latest logged mean L1 per kind
    log: list[dict] = field(default_factory=list)

    @staticmethod
    def fresh(device: torch.device) -> _LoopState:
        return _LoopState(sums={k: torch.zeros([], device=device) for k in KINDS})

    @staticmethod
    def from_state(state: dict[str, Any], device: torch.device) -> _LoopState:
        return _LoopState(
            sums={k: state["sums"][k].to(device) for k in KINDS},
            counts={k: int(state["counts"][k]) for k in KINDS},
            step=int(state["step"]),
            n_wide=int(state["n_wide"]),
            last={k: float(v) for k, v in state["last"].items()},
            log=list(state["log"]),
        )

    def to_state(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts), "step": self.step, "n_wide": self.n_wide,
                "last": dict(self.last), "log": list(self.log)}  # fmt: skip


def _render_pool(
    z_dim: int,
    wide: Sequence[tuple[int, int]],
    noise_shapes: dict[tuple[int, int], dict[str, tuple[int, int]]],
    texture: dict[str, str],
    render_fn: RenderFn,
    size: int | dict[Shape, int],
    chunk: int,
    budget_s: float | None,
    gen: torch.Generator,
) -> dict[tuple[int, int], tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]]:
    """Per wide shape: (z [N, z_dim], texture maps {key: [N,1,h,w]}, renders [N,3,H,W]), N ≤ ``size``,
    rendered round-robin over the shapes in chunks until ``size`` each or ``budget_s`` seconds.

    ``size`` may be per shape (a resume's saved sizes, with ``budget_s=None``): the chunks, and so the
    draws from ``gen``, are then those of the run that stopped at these sizes."""
    t0, device = time.perf_counter(), gen.device
    target = size if isinstance(size, dict) else dict.fromkeys(wide, size)
    parts: dict[tuple[int, int], list] = {s: [] for s in wide}
    counts = dict.fromkeys(wide, 0)
    while any(counts[s] < target.get(s, 0) for s in wide):
        if parts[wide[0]] and budget_s is not None and time.perf_counter() - t0 >= budget_s:
            break
        for s in wide:
            n = min(chunk, target.get(s, 0) - counts[s])
            if n <= 0:
                continue
            z = torch.randn([n, z_dim], generator=gen, device=device)
            maps = {
                key: torch.randn([n, 1, *noise_shapes[s][f"{layer}.noise_const"]], generator=gen, device=device)
                for key, layer in texture.items()
            }
            with torch.no_grad():
                img = render_fn(z, s, maps).to(device, torch.float32)
            assert img.shape == (n, 3, *s), (tuple(img.shape), s)
            parts[s].append((z, maps, img))
            counts[s] += n
    return {
        s: (
            torch.cat([p[0] for p in ps]),
            {key: torch.cat([p[1][key] for p in ps]) for key in texture},
            torch.cat([p[2] for p in ps]),
        )
        for s, ps in parts.items()
        if ps
    }


# fmt: off
def _train_loop(
    G: StyleINRGenerator, teacher: Generator, opt: torch.optim.Optimizer, base_lrs: Sequence[float],
    gen: torch.Generator, loop: _LoopState, end: int, steps: int, time_budget_s: float | None,
    elapsed: Callable[[], float], batch: int, square_fraction: float, wide: Sequence[tuple[int, int]],
    square_shapes: dict[str, tuple[int, int]], wide_noise_shapes: dict, texture: dict[str, str], render_fn: RenderFn,
    pool: dict, log_every: int, progress: bool, lr_rampdown: float, checkpoint: Callable[[_LoopState], None],
    checkpoint_every: int,
) -> None:
    # fmt: on
    """The optimisation steps of :func:`train_toy_inr` from ``loop.step`` to ``end`` (the schedule spans
    ``steps``), updating G, ``opt``, ``gen`` and ``loop`` in place; ``checkpoint(loop)`` every
    ``checkpoint_every`` steps and after the last step of the call."""
    device, synth, R = gen.device, G.synthesis, G.img_resolution
    sums, counts, last, log = loop.sums, loop.counts, loop.last, loop.log
    start = loop.step
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc="toy INR")
    for step in range(start, end):
        if time_budget_s is not None and elapsed() >= time_budget_s:
            break
        t = step / steps if time_budget_s is None else max(step / steps, elapsed() / time_budget_s)
        decay = 1.0 if lr_rampdown <= 0 or t < 1 - lr_rampdown else 0.5 * (1 + math.cos(math.pi * (t - 1 + lr_rampdown) / lr_rampdown))
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = base * decay
        z = torch.randn([batch, G.z_dim], generator=gen, device=device)
        if math.floor((step + 1) * square_fraction) > math.floor(step * square_fraction):
            kind, shape = "square", (R, R)
            noise = _draw_noise(square_shapes, batch, gen)
            with torch.no_grad():
                ws = G.mapping(z, None)
                target = synthesis_with_noise(teacher, ws, noise)
        else:
            kind, shape = "wide", wide[loop.n_wide % len(wide)]
            loop.n_wide += 1
            noise = _draw_noise(wide_noise_shapes[shape], batch, gen)
            if shape in pool:
                pz, pmaps, pimg = pool[shape]
                idx = torch.randint(0, pz.shape[0], [batch], generator=gen, device=device)
                z, target = pz[idx], pimg[idx]
                noise.update({f"{layer}.noise_const": pmaps[key][idx] for key, layer in texture.items()})
            else:
                maps = {key: noise[f"{layer}.noise_const"] for key, layer in texture.items()}
                with torch.no_grad():
                    target = render_fn(z, shape, maps).to(device, torch.float32)
            with torch.no_grad():
                ws = G.mapping(z, None)
        assert target.shape == (batch, 3, *shape), (tuple(target.shape), shape)
        out = synth(ws, shape=shape, noise=noise)
        loss = (out - target).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums[kind] += loss.detach()
        counts[kind] += 1
        loop.step = done = step + 1
        if done % log_every == 0 or done == steps:
            entry = {"step": done, "seconds": round(elapsed(), 2)}
            for k in sums:
                if counts[k]:
                    last[k] = float(sums[k]) / counts[k]  # one host sync per log_every steps
                    entry[f"{k}_l1"] = last[k]
                    sums[k].zero_()
                    counts[k] = 0
            log.append(entry)
            if bar is not None:
                bar.set_postfix({k: f"{v:.4f}" for k, v in last.items()})
        if done % checkpoint_every == 0:
            checkpoint(loop)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if loop.step > start and loop.step % checkpoint_every:  # a call that trained nothing leaves the state as it is
        checkpoint(loop)
    # the partial means of the steps since the last log entry (saved above as sums, not in ``last``)
    for k in sums:
        if counts[k]:
            last[k] = float(sums[k]) / counts[k]


def _evaluate(
    G: StyleINRGenerator,
    teacher: Generator,
    wide: Sequence[tuple[int, int]],
    texture: dict[str, str],
    render_fn: RenderFn,
    n: int,
    seed: int,
) -> dict[str, float]:
    """PSNR (dB) of the square output against G_s (same w, same noise) and of each wide shape against its render."""
    device = next(G.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    R = G.img_resolution
    out: dict[str, float] = {}
    with torch.no_grad():
        z = torch.randn([n, G.z_dim], generator=gen, device=device)
        ws = G.mapping(z, None)
        noise = _draw_noise(G.synthesis.noise_shapes((R, R)), n, gen)
        out[f"square_{R}x{R}_psnr_vs_G_s"] = _psnr_db(G.synthesis(ws, shape=(R, R), noise=noise),
                                                      synthesis_with_noise(teacher, ws, noise))
        for shape in wide:
            noise = _draw_noise(G.synthesis.noise_shapes(shape), n, gen)
            maps = {key: noise[f"{layer}.noise_const"] for key, layer in texture.items()}
            target = render_fn(z, shape, maps).to(device, torch.float32)
            out[f"wide_{shape[0]}x{shape[1]}_psnr_vs_render"] = _psnr_db(G.synthesis(ws, shape=shape, noise=noise),
                                                                          target)
    return out
