"""GPU benchmark of the paper's Table I: a 1000-step HRInversion at 1024², LSO for 50 steps, one generation.

    PYTHONPATH=. python3 benchmarks/bench_gpu.py --out bench_gpu.json [--budget-s 170]
    PYTHONPATH=. python3 benchmarks/bench_gpu.py --device cpu --resolution 64 --steps 3   # smoke test

Networks: a StyleGAN2 generator with NVIDIA's FFHQ config (z/w 512, channel_base 32768, channel_max 512,
conv_clamp 256, num_fp16_res 4: the blocks that NVIDIA runs in fp16, 128² and up, are the "high-res
blocks" below) and timm's VGG16 trunk, both with random weights from fixed seeds (the cost does not depend
on the weights). The target is G's own image of a random w (const noise). Every inversion runs the
package's :func:`hrinv_nb.project` (``project_batch`` for batches) with ``perceptual_loss('vgg16_conv')``
at full resolution (the λ table "1024") + 50·MSE, W+, noise maps optimised, so the real code path is timed
(w statistics, target features, the final image included). LSO runs :func:`hrinv_nb.lso` (d_h loss).

Variants (each an option of this script's setup, never a change of the package's defaults):

* ``fp32``: today's behaviour (PyTorch's default TF32 settings are recorded in the JSON);
* ``bf16 VGG + CL``: the VGG16 loss under bf16 autocast, channels-last, ``cudnn.benchmark``;
* ``bf16 VGG + G hi-res + CL``: also the high-res generator blocks (128² and up) under bf16 autocast
  (bf16, not NVIDIA's fp16: the gradients of this loss are ~1e-8, below fp16's range);
* the same with several independent images per batch (time per image);
* ``bf16 VGG + CL`` alone (does the generator's bf16 matter?);
* ``bf16 VGG + CL`` with ``torch.compile`` of the fp32 ``G.synthesis`` (only when enough budget is left;
  CUDA only; the hook-based bf16 of the G blocks does not trace).

Each variant's final reconstruction is compared with fp32's: PSNR against the target within 0.1 dB.
A variant that does not fit the remaining budget runs fewer steps and its 1000-step time is extrapolated
(marked; its PSNR is then not comparable and not checked). ``--budget-s`` bounds the whole script,
warm-ups and compilation included: variants that no longer fit are skipped, and a watchdog stops the
process at the budget. The JSON is rewritten (atomically) after every measurement.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

PAPER_V100 = {
    "inversion": (138.0, 5.89),
    "lso": (8.0, 5.38),
    "generation": (0.032, 0.78),
}  # Table I: seconds, GB on one V100
GOALS_H100 = {"inversion": 45.0, "lso": 3.0}  # seconds
PSNR_TOLERANCE_DB = 0.1


@dataclass(frozen=True)
class Variant:
    """One speed configuration of an inversion (or LSO) run."""

    name: str
    vgg_bf16: bool = False
    g_bf16: bool = False
    channels_last: bool = False
    batch: int = 1
    compile_g: bool = False


def inversion_variants(batch: int) -> list[Variant]:
    """The inversion variants, in the order they run (the most useful first).

    fp32 is the goal's reference. On the H200 run of 2026-11-28 the bf16 variants were no faster at batch 1
    (a step is bound by kernel launches, not arithmetic) and the compiled one, then last, did not fit the
    budget; so ``torch.compile`` of G, which removes launches, now runs second, in fp32.
    """
    fast = dict(vgg_bf16=True, g_bf16=True, channels_last=True)
    return [
        Variant("fp32"),
        Variant("fp32 + compile(G)", compile_g=True),
        Variant("bf16 VGG + G hi-res + CL", **fast),
        Variant(f"bf16 VGG + G hi-res + CL, batch {batch}", batch=batch, **fast),
        Variant("bf16 VGG + CL", vgg_bf16=True, channels_last=True),
    ]


# ----------------------------------------------------------------------------------------------
# Results: incremental JSON and a table


class OutOfTime(Exception):
    """Raised from the step callback when a run reaches its share of the budget."""


class Recorder:
    """Rows of results; the JSON is rewritten atomically after every row, the table printed."""

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out, self.meta, self.rows = out, meta, []
        self.lock = threading.Lock()
        self.write()

    def add(self, row: dict[str, Any]) -> None:
        """Record ``row``, write the JSON and print the row."""
        with self.lock:
            self.rows.append(row)
        self.write()
        print(format_row(row), flush=True)

    def write(self, **extra: Any) -> None:
        """Write ``{'meta', 'rows'}`` (plus ``extra``) to the output file atomically."""
        with self.lock:
            data = {"meta": {**self.meta, **extra}, "rows": self.rows}
            self.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.out.with_name(self.out.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=1, default=str))
            os.replace(tmp, self.out)

    def table(self) -> str:
        """The Markdown table of all rows."""
        lines = [TABLE_HEADER, TABLE_RULE]
        lines += [format_row(r) for r in self.rows]
        return "\n".join(lines)


TABLE_HEADER = "| task | variant | steps | time | time / image | peak memory | PSNR | ΔPSNR vs fp32 | paper (V100) |"
TABLE_RULE = "|" + " --- |" * 9


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.1f} ms"


def format_row(row: dict[str, Any]) -> str:
    """One Markdown table row."""
    if row.get("skipped"):
        return f"| {row['task']} | {row['variant']} | | skipped: {row['skipped']} | | | | | |"
    steps = str(row.get("steps_reported", ""))
    if row.get("extrapolated"):
        steps = f"{row['steps_reported']} (extrapolated from {row['steps_run']})"
    peak = row.get("peak_gb")
    psnr = row.get("psnr_db")
    delta = row.get("psnr_delta_db")
    ok = row.get("psnr_ok")
    paper = PAPER_V100.get(row["task"])
    cells = [
        row["task"],
        row["variant"],
        steps,
        _fmt_time(row.get("time_s")),
        _fmt_time(row.get("time_per_image_s")),
        f"{peak:.2f} GB" if peak is not None else "",
        f"{psnr:.2f} dB" if psnr is not None else "",
        (f"{delta:+.3f} dB" + (" ok" if ok else " FAIL")) if delta is not None else "",
        f"{_fmt_time(paper[0])}, {paper[1]:.2f} GB" if paper else "",
    ]
    return "| " + " | ".join(cells) + " |"


# ----------------------------------------------------------------------------------------------
# Speed options applied from outside the package (its defaults stay fp32)


def autocast_blocks(G: nn.Module, device_type: str) -> None:
    """Run the synthesis blocks NVIDIA marks ``use_fp16`` (the high-res ones) under bf16 autocast.

    Forward pre/post hooks, so they survive the deep copy the projector makes of ``G``.
    """
    contexts: list[Any] = []

    def enter(_module: nn.Module, _args: Any) -> None:
        ctx = torch.autocast(device_type, dtype=torch.bfloat16)
        ctx.__enter__()
        contexts.append(ctx)

    def leave(_module: nn.Module, _args: Any, _output: Any) -> None:
        contexts.pop().__exit__(None, None, None)

    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{res}")
        if block.use_fp16:
            block.register_forward_pre_hook(enter)
            block.register_forward_hook(leave)


def speed_up_loss(loss: nn.Module, bf16: bool, channels_last: bool) -> None:
    """Compute the loss's features under bf16 autocast and/or in channels-last memory format (in place)."""
    original = loss.features
    if channels_last:
        loss.backbone.to(memory_format=torch.channels_last)

    def features(img: torch.Tensor) -> dict[Any, torch.Tensor]:
        x = img.contiguous(memory_format=torch.channels_last) if channels_last else img
        with torch.autocast(img.device.type, dtype=torch.bfloat16, enabled=bf16):
            return original(x)

    loss.features = features


class CompilingSynthesis(nn.Module):
    """Stand-in for ``G.synthesis`` whose calls go through ``torch.compile`` (compiled on first use)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.block_resolutions = inner.block_resolutions
        self.num_ws = inner.num_ws
        self._compiled: Callable[..., torch.Tensor] | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> CompilingSynthesis:
        return CompilingSynthesis(copy.deepcopy(self.inner, memo))

    def forward(self, ws: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self._compiled is None:
            self._compiled = torch.compile(self.inner)
        return self._compiled(ws, **kwargs)


def with_compiled_synthesis(G: nn.Module) -> nn.Module:
    """A copy of ``G`` whose ``synthesis`` is compiled with ``torch.compile`` on its first call."""
    G = copy.deepcopy(G)
    G.synthesis = CompilingSynthesis(G.synthesis)
    return G


# ----------------------------------------------------------------------------------------------
# Measurements


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = float((a.double() - b.double()).square().mean())
    return 10 * math.log10(4.0 / max(mse, 1e-20))


class Bench:
    """The networks, the target, the clock and the recorder of one benchmark run."""

    def __init__(self, args: argparse.Namespace, t0: float) -> None:
        from hrinv_nb.losses import vgg16_trunk
        from hrinv_nb.networks import Generator

        self.args, self.t0 = args, t0
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        torch.manual_seed(args.seed)
        G = Generator(
            z_dim=512,
            c_dim=0,
            w_dim=512,
            img_resolution=args.resolution,
            img_channels=3,
            mapping_kwargs={"num_layers": 8},
            synthesis_kwargs={
                "channel_base": args.channel_base,
                "channel_max": args.channel_max,
                "num_fp16_res": 4,
                "conv_clamp": 256,
            },
        )
        self.G = G.eval().requires_grad_(False).to(self.device)
        gen = torch.Generator().manual_seed(args.seed + 1)
        z = torch.randn([max(args.batch, 2), 512], generator=gen).to(self.device)
        with torch.no_grad():
            self.ws = self.G.mapping(z, None)  # row 0: the target of every variant; row 1: LSO's w_m
            self.targets = self.G.synthesis(self.ws, noise_mode="const").clamp(-1, 1)
        self.tmp = tempfile.TemporaryDirectory(prefix="bench_gpu_")
        self.vgg_path = Path(self.tmp.name) / "vgg16_random.safetensors"
        from safetensors.torch import save_file

        trunk = vgg16_trunk(28, seed=args.seed)
        save_file({k: v.contiguous() for k, v in trunk.state_dict().items()}, str(self.vgg_path))
        self.fp32_psnr: float | None = None

    # -- clock

    def remaining(self) -> float:
        """Seconds left of the budget."""
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        import gc

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 1e9 if self.cuda else None

    # -- networks of a variant

    def loss(self, name: str, variant: Variant) -> nn.Module:
        """``perceptual_loss(name)`` on the random VGG16 weights, with the variant's speed options."""
        from hrinv_nb.losses import perceptual_loss

        loss = perceptual_loss(name, weights=self.vgg_path, device=self.device)
        if variant.vgg_bf16 or variant.channels_last:
            speed_up_loss(loss, variant.vgg_bf16, variant.channels_last)
        return loss

    def generator(self, variant: Variant) -> nn.Module:
        """``G`` itself (fp32) or a copy with the variant's options."""
        torch.backends.cudnn.benchmark = variant != Variant("fp32")
        G = self.G
        if variant.g_bf16:
            G = copy.deepcopy(G)
            autocast_blocks(G, self.device.type)
        if variant.compile_g:
            G = with_compiled_synthesis(G)
        return G

    # -- tasks

    def generation(self, variant: Variant, repeats: int = 20) -> dict[str, Any]:
        """Median time and peak memory of one G(z) (mapping + synthesis, no grad, batch 1)."""
        G = self.generator(variant)
        z = torch.randn([1, 512], generator=torch.Generator().manual_seed(self.args.seed + 2)).to(self.device)
        times = []
        self.reset_peak()
        with torch.no_grad():
            for i in range(repeats + 3):
                self.sync()
                start = time.perf_counter()
                img = G(z, None, noise_mode="const")
                self.sync()
                if i >= 3:
                    times.append(time.perf_counter() - start)
        assert torch.isfinite(img).all()
        return {"task": "generation", "variant": variant.name, "steps_reported": 1, "repeats": repeats,
                "time_s": statistics.median(times), "peak_gb": self.peak_gb()}  # fmt: skip

    def _timed(
        self, run: Callable[[int, Callable[..., None]], Any], steps: int, deadline: float = math.inf
    ) -> tuple[Any, float, list[float], int]:
        """Run ``run(steps, callback)``: its result (None when stopped at ``deadline``), the seconds it took,
        the per-step seconds (from callback stamps) and the number of steps done."""
        stamps: list[float] = []

        def on_step(*_: Any) -> None:
            self.sync()
            stamps.append(time.perf_counter())
            if stamps[-1] > deadline and len(stamps) < steps:
                raise OutOfTime

        self.sync()
        start = time.perf_counter()
        try:
            result = run(steps, on_step)
        except OutOfTime:
            result = None
        self.sync()
        total = time.perf_counter() - start
        return result, total, [b - a for a, b in zip(stamps, stamps[1:])], len(stamps)

    def plan(self, step_s: float, want: int, reserve: float, setup_s: float) -> int:
        """Steps that fit in the budget after ``reserve`` seconds are kept for later measurements."""
        available = self.remaining() - reserve - setup_s - 2.0
        if want * step_s <= available:
            return want
        return max(0, int(available / step_s))

    def optimisation(
        self, task: str, variant: Variant, want: int, reserve: float, warm_steps: int = 3
    ) -> dict[str, Any]:
        """Warm up, then run ``want`` steps (fewer when the budget does not allow, extrapolated)."""
        from hrinv_nb.lso import lso
        from hrinv_nb.projector import project, project_batch

        row: dict[str, Any] = {"task": task, "variant": variant.name, "batch": variant.batch}
        if variant.compile_g and not self.cuda:
            return {**row, "skipped": "torch.compile is only tried on CUDA"}
        if self.remaining() - reserve < (40.0 if variant.compile_g else 5.0):
            return {**row, "skipped": f"budget ({self.remaining():.0f} s left)"}
        G = self.generator(variant)
        loss = self.loss("vgg16_conv" if task == "inversion" else "d_h", variant)
        # a batch holds B independent problems of the same target (own noise maps and ε each): its mean PSNR is
        # comparable with fp32's single run, and its spread shows the run-to-run scatter of the PSNR
        targets = self.targets[:1].expand(variant.batch, -1, -1, -1).contiguous()

        def run(steps: int, callback: Callable[..., None]) -> Any:
            if task == "lso":
                return lso(G, self.ws[1:2], targets, num_steps=steps, loss=loss, progress=False, callback=callback)
            options = dict(loss=loss, num_steps=steps, progress=False, callback=callback,
                           w_avg_samples=self.args.w_avg_samples)  # fmt: skip
            if variant.batch == 1:
                return project(G, targets, **options)
            return project_batch(G, targets, **options)

        self.reset_peak()
        warm_start = time.perf_counter()
        _, warm_total, warm_steps_s, _ = self._timed(run, warm_steps)
        row["warmup_s"] = time.perf_counter() - warm_start
        step_s = statistics.median(warm_steps_s) if warm_steps_s else warm_total
        setup_s = max(warm_total - step_s * warm_steps, 0.0) if not variant.compile_g else 3.0
        steps = self.plan(step_s, want, reserve, setup_s)
        if steps < min(want, 10):
            return {**row, "skipped": f"budget ({self.remaining():.0f} s left, ~{step_s * 1e3:.0f} ms/step)"}
        self.reset_peak()
        deadline = time.perf_counter() + self.remaining() - reserve - 1.0  # a run that overruns stops here
        result, total, step_times, done = self._timed(run, steps, deadline)
        step_med = statistics.median(step_times) if step_times else total / max(done, 1)
        time_s = total + (want - done) * step_med
        row.update(
            steps_run=done,
            steps_reported=want,
            extrapolated=done < want,
            step_ms=step_med * 1e3,
            time_s=time_s,
            time_per_image_s=time_s / variant.batch if variant.batch > 1 else None,
            peak_gb=self.peak_gb(),
        )
        if result is None:
            row["note"] = f"stopped after {done} of {steps} planned steps (budget)"
            return row
        images = result.image if task == "lso" else (result.image if variant.batch == 1 else result.images)
        if task == "inversion":
            values = [psnr(images[i : i + 1], self.targets[:1]) for i in range(variant.batch)]
            value = statistics.mean(values)
            row["psnr_db"] = value
            if variant.batch > 1:
                row["psnr_db_per_image"] = values
                row["psnr_db_std_of_batch"] = statistics.stdev(values)
            if variant == Variant("fp32") and done == want:
                self.fp32_psnr = value
            if variant != Variant("fp32") and self.fp32_psnr is not None and done == want:
                row["psnr_delta_db"] = value - self.fp32_psnr
                row["psnr_ok"] = abs(value - self.fp32_psnr) <= PSNR_TOLERANCE_DB
        torch.backends.cudnn.benchmark = False
        return row


# ----------------------------------------------------------------------------------------------
# Main


def machine(device: str) -> dict[str, Any]:
    """The machine, torch and (on CUDA) the GPU and its precision settings."""
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "device": device,
    }
    if device.startswith("cuda"):
        info.update(
            gpu=torch.cuda.get_device_name(),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_gpu.json"), help="JSON results (rewritten as it goes)")
    parser.add_argument("--budget-s", type=float, default=170.0, help="wall-clock bound of the whole script")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=1000, help="inversion steps")
    parser.add_argument("--lso-steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=4, help="images per batch of the batched variant")
    parser.add_argument("--channel-base", type=int, default=32768)
    parser.add_argument("--channel-max", type=int, default=512)
    parser.add_argument("--w-avg-samples", type=int, default=10000, help="samples of the projector's w statistics")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def start_watchdog(recorder: Recorder, budget_s: float, t0: float) -> threading.Timer:
    """Stop the process at the budget, whatever runs then (the JSON so far is already written)."""

    def stop() -> None:
        recorder.write(stopped_by_budget=True, wall_s=time.perf_counter() - t0)
        print(f"\nbudget of {budget_s:.0f} s reached: stopped\n" + recorder.table(), flush=True)
        os._exit(0)

    timer = threading.Timer(max(budget_s - (time.perf_counter() - t0) - 1.0, 0.0), stop)
    timer.daemon = True
    timer.start()
    return timer


def guarded(task: str, variant: Variant, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()``, or a row naming the error it raised (one failing variant does not end the run)."""
    try:
        return measure()
    except Exception as err:  # any failure of a variant is a result to report
        message = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
        print(f"{task} / {variant.name} failed: {message}", file=sys.stderr, flush=True)
        torch.backends.cudnn.benchmark = False
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"task": task, "variant": variant.name, "skipped": f"error ({message})", "error": message}


def process_age_s() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 where unavailable): the budget counts imports."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter() - (process_age_s() if argv is None else 0.0)
    args = parse_args(argv)
    meta = {**machine(args.device), "config": {k: str(v) for k, v in vars(args).items()},
            "paper_v100": PAPER_V100, "goals_h100_s": GOALS_H100}  # fmt: skip
    recorder = Recorder(args.out, meta)
    print(f"{meta['date']}: {meta.get('gpu', meta['cpu'])}, torch {torch.__version__}, device {args.device}")
    watchdog = start_watchdog(recorder, args.budget_s, t0)
    bench = Bench(args, t0)
    print(
        f"setup {time.perf_counter() - t0:.1f} s; budget {args.budget_s:.0f} s\n{TABLE_HEADER}\n{TABLE_RULE}",
        flush=True,
    )

    fp32 = Variant("fp32")
    fast = Variant("bf16 VGG + G hi-res + CL", vgg_bf16=True, g_bf16=True, channels_last=True)
    for variant in (fp32, fast):
        recorder.add(guarded("generation", variant, lambda v=variant: bench.generation(v)))
    for variant in (fp32, fast):
        reserve = 0.55 * bench.remaining()
        recorder.add(
            guarded("lso", variant, lambda v=variant, r=reserve: bench.optimisation("lso", v, args.lso_steps, r))
        )
    variants = inversion_variants(args.batch)
    reserves = [0.45, 0.3, 0.2, 0.0, 0.0]  # share of the remaining budget kept for the later variants
    for variant, share in zip(variants, reserves):
        reserve = share * bench.remaining()
        recorder.add(
            guarded(
                "inversion", variant, lambda v=variant, r=reserve: bench.optimisation("inversion", v, args.steps, r)
            )
        )

    watchdog.cancel()
    recorder.write(stopped_by_budget=False, wall_s=time.perf_counter() - t0)
    print(f"\n{meta.get('gpu', meta['cpu'])}; total {time.perf_counter() - t0:.1f} s\n" + recorder.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
