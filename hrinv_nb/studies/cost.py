"""Cost of inversion, LSO and generation: wall time and peak memory, the two columns of Table I.

Each measurement runs in its own fresh interpreter (:func:`measure`, which runs
``python -m hrinv_nb.studies.cost --task ...``), so that the peak memory reported belongs to that task alone:

* on a CPU, the increase of the process's peak resident set size (``ru_maxrss``) over the resident
  size of the bare interpreter with torch imported (so it counts the networks and every activation);
* on CUDA, ``torch.cuda.max_memory_allocated`` (networks + activations), as the paper's GPU memory.

One inversion step is what :func:`hrinv_nb.project` runs (G.synthesis forward, VGG16-conv loss,
50·MSE, backward, Adam, noise normalisation); one LSO step is what :func:`hrinv_nb.lso` runs (d_h
loss). Steps are timed between consecutive callbacks, so the first step (which also pays for the
setup: w statistics, target features) is reported apart. A whole run of N steps is estimated as
``first + (N − 1) × median step`` and labelled extrapolated whenever fewer than N steps ran.

Two network sets: ``toy`` (the embedded 64² G_s and toy VGG16 from ``data/``) and ``ffhq``
(a randomly initialised generator with NVIDIA's FFHQ config: z/w 512, channel_base 32768,
channel_max 512, 8 mapping layers, fp32; and a random-weight VGG16). Random weights cost exactly
what trained ones cost, so they are fine for timing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..notebook.config import DATA

TASKS = ("inversion", "lso", "generation")
ASSETS = ("toy", "ffhq")
FFHQ_SYNTHESIS_KWARGS = {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 0, "conv_clamp": 256}


# ----------------------------------------------------------------------------------------------
# Memory


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----------------------------------------------------------------------------------------------
# Networks


def ffhq_generator(resolution: int = 1024, *, seed: int = 0, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A randomly initialised StyleGAN2-ADA generator with the FFHQ config at ``resolution`` (fp32)."""
    from ..networks import Generator

    torch.manual_seed(seed)
    G = Generator(
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=resolution,
        img_channels=3,
        mapping_kwargs={"num_layers": 8},
        synthesis_kwargs=dict(FFHQ_SYNTHESIS_KWARGS),
    )
    return G.eval().requires_grad_(False).to(device)


def build_networks(
    assets: str, resolution: int, device: str | torch.device, task: str = "inversion"
) -> tuple[torch.nn.Module, Any]:
    """``(G, loss)`` for ``task``: the VGG16-conv loss (inversion), d_h (LSO) or ``None`` (generation).

    ``assets`` = 'toy' (data/G_s and the toy VGG16; ``resolution`` is ignored) or 'ffhq' (random weights).
    """
    from ..checkpoints import load_networks
    from ..losses import D_H_DEFAULT_LAYERS, LAMBDA_TABLES, perceptual_loss

    if assets not in ASSETS:
        raise ValueError(f"assets must be one of {ASSETS}, got {assets!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if assets == "toy":
        G = load_networks(DATA / "G_s.safetensors", device=device).G.eval().requires_grad_(False)
    else:
        G = ffhq_generator(resolution, device=device)
    vgg = DATA / "vgg16_toy.safetensors" if assets == "toy" else None
    loss = None
    if task == "inversion":
        loss = perceptual_loss("vgg16_conv" if vgg else "vgg16_conv_random", weights=vgg, device=device)
    elif task == "lso":
        d_h = {k: v for k, v in LAMBDA_TABLES["d_h"]["default"].items() if k in D_H_DEFAULT_LAYERS}
        loss = perceptual_loss("d_h" if vgg else "vgg16_conv_random", weights=vgg, lambdas=d_h, device=device)
    return G, loss


# ----------------------------------------------------------------------------------------------
# Timing in this process


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_summary(start: float, stamps: Sequence[float], total_steps: int) -> dict[str, Any]:
    """First-step and median-step times from callback stamps, and the (extrapolated) run of ``total_steps``."""
    assert len(stamps) >= 1, "no step ran"
    step_times = [b - a for a, b in zip(stamps, stamps[1:])]
    first = stamps[0] - start
    step = statistics.median(step_times) if step_times else first
    run = first + (total_steps - 1) * step
    return {
        "steps_run": len(stamps),
        "steps_timed": len(step_times),
        "first_step_s": first,
        "step_s": step,
        "run_steps": total_steps,
        "run_s": run,
        "extrapolated": len(stamps) < total_steps,
    }


def time_inversion(
    G: torch.nn.Module,
    loss: Any,
    target: torch.Tensor,
    *,
    steps: int,
    total_steps: int = 1000,
    optimize_noise: bool = True,
    w_avg_samples: int = 10000,
) -> dict[str, Any]:
    """Run ``steps`` steps of :func:`hrinv_nb.project` and time them (see the module docstring)."""
    from ..projector import project

    assert steps >= 1 and target.ndim == 4, (steps, tuple(target.shape))
    device = target.device
    stamps: list[float] = []

    def on_step(step: int, w: torch.Tensor, image: torch.Tensor) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    _sync(device)
    start = time.perf_counter()
    project(
        G,
        target,
        loss=loss,
        num_steps=steps,
        optimize_noise=optimize_noise,
        w_avg_samples=w_avg_samples,
        progress=False,
        callback=on_step,
    )
    return _step_summary(start, stamps, total_steps)


def time_lso(
    G: torch.nn.Module, w: torch.Tensor, content: torch.Tensor, loss: Any, *, steps: int, total_steps: int = 50
) -> dict[str, Any]:
    """Run ``steps`` steps of :func:`hrinv_nb.lso` (rows 0–4) and time them."""
    from ..lso import lso

    device = content.device
    stamps: list[float] = []

    def on_step(step: int, *_: Any) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    _sync(device)
    start = time.perf_counter()
    lso(G, w, content, num_steps=steps, loss=loss, progress=False, callback=on_step)
    return _step_summary(start, stamps, total_steps)


def time_generation(G: torch.nn.Module, *, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """Median time of one G(z) forward (mapping + synthesis, no grad, batch 1) over ``repeats`` runs after a warm-up."""
    device = next(G.parameters()).device
    z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            _sync(device)
            t0 = time.perf_counter()
            img = G(z, None, noise_mode="const")
            _sync(device)
            if i > 0:  # the first call is a warm-up
                times.append(time.perf_counter() - t0)
    assert img.shape[-1] == G.img_resolution and torch.isfinite(img).all()
    return {
        "repeats": repeats,
        "step_s": statistics.median(times),
        "run_s": statistics.median(times),
        "run_steps": 1,
        "extrapolated": False,
    }


def reset_peak_rss() -> bool:
    """Release freed heap memory (``malloc_trim``) and reset the peak RSS (``/proc/self/clear_refs``); False if not possible."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


_WARM = False


def _warm_up(device: torch.device) -> None:
    """Once per process: one toy inversion step, so that the one-time costs of torch's runtime (thread
    pools, autograd engine, kernel caches, file loading code) are not counted as the first task's memory."""
    global _WARM
    if _WARM:
        return
    G, loss = build_networks("toy", 64, device, "inversion")
    target = torch.zeros(1, 3, G.img_resolution, G.img_resolution, device=device)
    time_inversion(G, loss, target, steps=1, total_steps=1, w_avg_samples=100)
    _WARM = True


def run_task(
    task: str,
    assets: str,
    resolution: int,
    *,
    steps: int,
    device: str = "cpu",
    threads: int = 0,
    total_steps: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build the networks and measure one ``task`` in *this* process; memory as in the module docstring.

    On a CPU the peak is only this task's when the process's peak RSS was reset just before
    (:func:`reset_peak_rss`, done here) or when the process is fresh.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    from .. import checkpoints, losses, lso, projector  # noqa: F401  (imported before the memory baseline)

    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    _warm_up(dev)
    reset_ok = reset_peak_rss()
    rss_base = current_rss_bytes()
    G, loss = build_networks(assets, resolution, dev, task)
    res = G.img_resolution
    gen = torch.Generator().manual_seed(seed)
    target = (torch.rand(1, 3, res, res, generator=gen) * 2 - 1).to(dev)
    if task == "inversion":
        row = time_inversion(G, loss, target, steps=steps, total_steps=total_steps or 1000)
    elif task == "lso":
        with torch.no_grad():
            w = G.mapping(torch.randn([1, G.z_dim], generator=gen).to(dev), None)
        row = time_lso(G, w, target, loss, steps=steps, total_steps=total_steps or 50)
    else:
        row = time_generation(G, repeats=steps, seed=seed)
    row.update(task=task, assets=assets, resolution=res, device=str(dev), threads=torch.get_num_threads())
    if dev.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        row["mem_kind"] = "torch.cuda.max_memory_allocated"
        row["device_name"] = torch.cuda.get_device_name(dev)
    else:
        row["peak_mem_gib"] = (peak_rss_bytes() - rss_base) / 2**30
        row["mem_kind"] = "peak RSS increase" + ("" if reset_ok else " (peak not resettable: process-wide)")
        row["peak_reset"] = reset_ok
    del G, loss, target
    return row


# ----------------------------------------------------------------------------------------------
# Tasks in a fresh interpreter


def measure(
    tasks: Sequence[dict[str, Any]],
    *,
    device: str = "cpu",
    threads: int = 0,
    seed: int = 0,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Run :func:`run_task` for each spec in ``tasks`` in one fresh ``python -m hrinv_nb.studies.cost`` process.

    Each spec holds ``task``, ``assets``, ``resolution``, ``steps`` and optionally ``total_steps``.
    Returns one row per spec; a failed or timed-out worker gives rows with ``error`` set.
    """
    for spec in tasks:
        assert spec["task"] in TASKS and spec["assets"] in ASSETS and spec["steps"] >= 1, spec
    cmd = [
        sys.executable,
        "-m",
        "hrinv_nb.studies.cost",
        "--device",
        device,
        "--threads",
        str(threads),
        "--seed",
        str(seed),
        "--specs",
        json.dumps(list(tasks)),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        stdout, err = proc.stdout, (proc.stderr.strip() if proc.returncode != 0 else "")
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = f"timed out after {timeout} s"
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    for spec in tasks[len(rows) :]:
        rows.append({**spec, "error": err[-800:] or "no result"})
    return rows


ROUND_LABELS = ("generation_a", "inversion_a", "lso", "inversion_b", "generation_b")
"""The five timed blocks of one round: each task once, and inversion and generation twice, so that the
ratio of the two copies of one task (the same work timed twice) is the do-nothing control of a cost ratio."""


def round_specs(assets: str, resolution: int, steps: int, round_index: int) -> list[dict[str, Any]]:
    """The :data:`ROUND_LABELS` blocks of round ``round_index`` as :func:`measure` specs, each with a ``label``.

    Every block runs ``steps + 1`` steps (inversion, LSO; the first pays for the setup and is not in the
    median) or ``steps`` timed forwards after a warm-up (generation). Odd rounds run the blocks in reverse
    order, so a drift of the machine's load over the run cancels between the ``_a`` and ``_b`` copies.
    """
    assert steps >= 2 and round_index >= 0, (steps, round_index)
    order = ROUND_LABELS if round_index % 2 == 0 else tuple(reversed(ROUND_LABELS))
    specs = []
    for label in order:
        task = label.split("_")[0]
        n = steps if task == "generation" else steps + 1
        specs.append({"task": task, "assets": assets, "resolution": resolution, "steps": n, "label": label})
    return specs


def measure_rounds(
    assets: str,
    resolution: int,
    *,
    rounds: int,
    steps: int,
    device: str = "cpu",
    threads: int = 0,
    seed: int = 0,
    timeout: float | None = None,
) -> list[dict[str, dict[str, Any]]]:
    """Repeated, interleaved cost measurements: ``rounds`` rounds of the :data:`ROUND_LABELS` blocks, all in
    one fresh process (:func:`measure`), each block with freshly built networks and a reset memory peak.

    Returns one dict per round, ``{label: row}`` (row as :func:`run_task`'s: ``step_s`` the median step,
    ``peak_mem_gib``). A round with a failed block is dropped (its error is printed by the caller from
    :func:`measure`'s rows if needed); the rounds that finished are returned.
    """
    assert rounds >= 2, f"at least two rounds give a standard error, got {rounds}"
    specs = [spec for r in range(rounds) for spec in round_specs(assets, resolution, steps, r)]
    rows = measure(specs, device=device, threads=threads, seed=seed, timeout=timeout)
    assert len(rows) == len(specs), (len(rows), len(specs))
    out = []
    per = len(ROUND_LABELS)
    for r in range(rounds):
        block = {spec["label"]: row for spec, row in zip(specs[r * per : (r + 1) * per], rows[r * per : (r + 1) * per])}
        if all("error" not in row for row in block.values()):
            out.append(block)
    return out


def round_log_ratios(
    rounds: Sequence[dict[str, dict[str, Any]]], num: str, den: str, key: str = "step_s"
) -> list[float]:
    """Per round, ``ln(row[num][key] / row[den][key])``; ``num`` / ``den`` are :data:`ROUND_LABELS`, or a task
    name (``"inversion"``, ``"generation"``) for the geometric mean of its two copies."""

    def value(block: dict[str, dict[str, Any]], label: str) -> float:
        if label in block:
            v = float(block[label][key])
            assert v > 0, f"{label} {key} = {v}: a log ratio needs positive values"
            return math.log(v)
        if f"{label}_a" not in block or f"{label}_b" not in block:
            raise KeyError(f"{label!r} is neither a block of the round nor a task measured twice: {sorted(block)}")
        return 0.5 * (value(block, f"{label}_a") + value(block, f"{label}_b"))

    return [value(b, num) - value(b, den) for b in rounds]


def paper_log_ratio(num: str, den: str, per: str = "step") -> float:
    """The paper's Table I ratio ``num / den`` as a natural log: per ``"step"`` (time of a whole run over its
    step count: inversion 138 ms, LSO 160 ms, generation 32 ms) or per ``"memory"`` (GPU memory in GB)."""
    assert per in ("step", "memory"), per
    steps = {"inversion": 1000, "lso": 50, "generation": 1}

    def value(task: str) -> float:
        ref = paper_cost(task)
        return ref["seconds"] / steps[task] if per == "step" else ref["gpu_mem_gb"]

    return math.log(value(num) / value(den))


def format_seconds(seconds: float) -> str:
    """'32 ms', '8.0 s', '2 m 18 s', '1 h 05 m' (the paper's style for Table I)."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(round(seconds % 60)):02d} s"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"
    return f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600):02d} h"


def training_records(data_dir: str | os.PathLike = DATA) -> dict[str, dict[str, Any]]:
    """Training time and length of each toy generator asset from its ``data/<asset>.json`` provenance record.

    ``seconds`` is the record's ``training_seconds`` (all phases together); ``kimg`` sums steps × batch
    over the record's distinct ``*_config`` phases (None when no phase states both).
    """
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(data_dir).glob("G_*.json")):
        record = json.loads(path.read_text())
        phases = {
            json.dumps(v, sort_keys=True): v for k, v in record.items() if k.endswith("_config") and isinstance(v, dict)
        }
        images = [p["steps"] * p["batch"] for p in phases.values() if p.get("steps") is not None and p.get("batch")]
        if record.get("images_seen") is not None:  # v2 records: budgeted runs state what they did
            images = [record["images_seen"]]
        out[path.stem] = {
            "seconds": float(record.get("training_seconds", 0.0)) + float(record.get("critic_seconds", 0.0)),
            "kimg": sum(images) / 1000 if images else None,
            "steps": record.get("steps_done", record.get("steps", record.get("train_config", {}).get("steps"))),
            "threads": record.get("threads"),
            "res": int(record.get("resolution", 64)),
            "device": record.get("device"),
            "status": record.get("status"),
            "command": record.get("command"),
        }
    return out


PAPER_TASK = {"inversion": "Inversion", "lso": "LSO", "generation": "Generation"}


def paper_cost(task: str) -> dict[str, Any]:
    """The paper's Table I row for ``task`` (one V100, 1024²): seconds, GPU memory in GB, length."""
    from ..notebook.paper import TABLE_I

    return dict(TABLE_I[PAPER_TASK[task]])


def cost_figure(series: dict[str, Sequence[dict[str, Any]]], *, title: str | None = None):
    """Bars of run time and peak memory per task (log scale), one bar per series label, plus the paper's V100 bars.

    ``series`` maps a label (e.g. 'ours 64² (toy)') to rows from :func:`measure`; rows with an
    ``error`` are skipped. Extrapolated run times are hatched.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(series) + ["paper 1024² (V100)"]
    x = np.arange(len(TASKS))
    width = 0.8 / len(labels)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for j, label in enumerate(labels):
        times, mems, hatches = [], [], []
        paper = label.startswith("paper")
        for task in TASKS:
            if paper:
                ref = paper_cost(task)
                times.append(ref["seconds"])
                mems.append(ref["gpu_mem_gb"] / 1.073741824)  # GB → GiB
                hatches.append("")
                continue
            row = next((r for r in series[label] if r.get("task") == task and "error" not in r), None)
            times.append(row["run_s"] if row else np.nan)
            mems.append(row["peak_mem_gib"] if row else np.nan)
            hatches.append("//" if row and row.get("extrapolated") else "")
        offset = (j - (len(labels) - 1) / 2) * width
        bars_style = dict(label=label, fill=not paper, edgecolor="k" if paper else None)
        bars = axes[0].bar(x + offset, times, width, **bars_style)
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        axes[1].bar(x + offset, mems, width, **bars_style)
    names = [
        f"{PAPER_TASK[t]}\n({paper_cost(t)['length']})" if t != "generation" else "Generation\n(1 image)" for t in TASKS
    ]
    for ax, ylabel in zip(axes, ("time of a whole run (s, log)\nhatched: extrapolated", "peak memory (GiB, log)")):
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels(names, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    axes[0].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def ratio_figure(comparisons: dict[str, tuple[Sequence[float], Sequence[float], float]], *, title: str | None = None):
    """Per-round log ratios, one column per comparison: the method's rounds (dots), its do-nothing control's
    rounds (crosses: the same task timed twice), both means ± 2 s.e., and the paper's Table I ratio (a bar).

    ``comparisons`` maps a label to ``(effect rounds, control rounds, paper log ratio)``.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 3.4))
    for i, (eff, ctl, paper_value) in enumerate(comparisons.values()):
        for offset, values, marker, colour, name in (
            (-0.15, eff, "o", "C0", "ours, per round"),
            (+0.15, ctl, "x", "C3", "control: the same task timed twice"),
        ):
            v = np.asarray(values, dtype=float)
            jitter = np.linspace(-0.05, 0.05, v.size) if v.size > 1 else np.zeros(1)
            ax.scatter(
                i + offset + jitter, v, s=12, marker=marker, color=colour, alpha=0.6, label=name if i == 0 else None
            )
            se = v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else float("nan")
            ax.errorbar(i + offset + 0.1, v.mean(), yerr=2 * se, color="k", capsize=3, marker="_", ms=10)
        ax.plot(
            [i - 0.3, i + 0.3],
            [paper_value] * 2,
            color="C2",
            lw=2,
            label="paper (Table I, V100 1024²)" if i == 0 else None,
        )
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xticks(range(len(comparisons)))
    ax.set_xticklabels(list(comparisons), fontsize=7)
    ax.set_ylabel("ln(ratio)  (0: equal cost)", fontsize=8)
    # Headroom above every point and paper bar for a one-row legend, so that it hides neither.
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.3 * (hi - lo))
    ax.legend(fontsize=7, loc="upper center", ncols=3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure cost tasks (Table I); one JSON line per task.")
    parser.add_argument("--task", choices=TASKS, help="one task (or use --specs)")
    parser.add_argument("--assets", choices=ASSETS, default="toy")
    parser.add_argument("--resolution", type=int, default=64, help="generator resolution for --assets ffhq")
    parser.add_argument("--steps", type=int, default=3, help="steps to run (generation: timed repeats)")
    parser.add_argument("--total-steps", type=int, default=None, help="steps of a whole run (1000 / 50)")
    parser.add_argument("--specs", default=None, help="a JSON list of task specs (see measure())")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.specs:
        specs = json.loads(args.specs)
    elif args.task:
        specs = [
            {
                "task": args.task,
                "assets": args.assets,
                "resolution": args.resolution,
                "steps": args.steps,
                "total_steps": args.total_steps,
            }
        ]
    else:
        parser.error("give --task or --specs")
    for spec in specs:
        row = run_task(
            spec["task"],
            spec["assets"],
            spec["resolution"],
            steps=spec["steps"],
            device=args.device,
            threads=args.threads,
            total_steps=spec.get("total_steps"),
            seed=args.seed,
        )
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
