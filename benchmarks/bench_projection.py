"""Cost of one HRInversion projection step: wall time and peak memory (spec §2.1 "Memory", Table I).

One step = G.synthesis forward + vgg16_conv loss + 50·MSE + backward + Adam step + noise
normalisation, exactly as ``hrinv_nb.project`` runs it (timed between consecutive callbacks).
Generators are randomly initialised with the FFHQ widths (channel_base 32768, channel_max 512,
z/w 512, fp32) at each resolution; the VGG16 trunk is random (the cost does not depend on the weights).
Each configuration runs in its own subprocess, so the peak RSS reported is per configuration. The
generator and the timing come from ``hrinv_nb.studies.cost`` (shared with notebook 06, Table I).

Usage::

    python benchmarks/bench_projection.py            # 64², 256², 1024²; full and 256-downsampled input
    python benchmarks/bench_projection.py --quick    # 64² and 256² only, fewer steps
    python benchmarks/bench_projection.py --threads 1 --resolutions 1024
    python benchmarks/bench_projection.py --toy --steps 10   # the embedded 128² toy world, as the notebooks run it

On a CPU the 1024² step must stay below 8 GiB of peak RSS; on a GPU the peak is
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RSS_LIMIT_1024_GIB = 8.0


def run_worker(
    resolution: int,
    downsample: int,
    device: str,
    steps: int,
    threads: int,
    vgg_channels_last: bool = False,
    toy: bool = False,
) -> dict:
    """Build G and the loss, run ``steps`` projection steps, and measure them (``hrinv_nb.studies.cost`` does the work)."""
    import torch

    from hrinv_nb.losses import LAMBDA_TABLES, perceptual_loss
    from hrinv_nb.studies import cost

    if threads > 0:
        torch.set_num_threads(threads)
    if toy:  # the embedded world's G_s and toy VGG16, exactly as the notebooks run them (notebook 06)
        G, loss = cost.build_networks("toy", resolution, device, "inversion")
        resolution, downsample = G.img_resolution, -1
    else:
        G = cost.ffhq_generator(resolution, seed=0, device=device)
        table = "256" if downsample > 0 else "1024"
        loss = perceptual_loss(
            "vgg16_conv_random", downsample_size=downsample, lambdas=LAMBDA_TABLES["vgg16_conv"][table], device=device
        )
    if vgg_channels_last:  # the VGG16 trunk and its input in channels-last memory format (oneDNN's native layout)
        from bench_gpu import speed_up_loss

        speed_up_loss(loss, bf16=False, channels_last=True)
    target = torch.rand(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(1)).to(device) * 2 - 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = cost.current_rss_bytes()
    timing = cost.time_inversion(G, loss, target, steps=steps, total_steps=steps, w_avg_samples=1000)
    result = {
        "device": device,
        "resolution": resolution,
        "loss_input": f"{downsample}²" if downsample > 0 else "full",
        "vgg_channels_last": vgg_channels_last,
        "assets": "toy" if toy else "ffhq widths, random",
        "threads": torch.get_num_threads(),
        "steps_timed": timing["steps_timed"],
        "step_s": timing["step_s"] if timing["steps_timed"] else None,  # step 0 also includes the setup
        "first_step_s": timing["first_step_s"],
        "rss_before_gib": rss_before / 2**30,
        "peak_rss_gib": cost.peak_rss_bytes() / 2**30,
    }
    if device.startswith("cuda"):
        result["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["device_name"] = torch.cuda.get_device_name()
    return result


def _spawn(
    resolution: int, downsample: int, device: str, steps: int, threads: int, vgg_channels_last: bool, toy: bool = False
) -> dict:
    """Run one configuration in a fresh interpreter and parse its JSON line."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--resolutions",
        str(resolution),
        "--downsample",
        str(downsample),
        "--device",
        device,
        "--steps",
        str(steps),
        "--threads",
        str(threads),
        *(["--vgg-channels-last"] if vgg_channels_last else []),
        *(["--toy"] if toy else []),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {
            "device": device,
            "resolution": resolution,
            "loss_input": downsample,
            "error": proc.stderr.strip()[-500:],
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _format(row: dict) -> str:
    if "error" in row:
        return f"{row['device']:>5} {row['resolution']:>5} {row['loss_input']!s:>6}  ERROR: {row['error']}"
    gpu = f"  peak_cuda={row['peak_cuda_gib']:.2f} GiB" if "peak_cuda_gib" in row else ""
    step = f"{row['step_s']:.3f}" if row["step_s"] is not None else "n/a"
    return (
        f"{row['device']:>5} {row['resolution']:>5} {row['loss_input']:>6} threads={row['threads']} "
        f"step={step} s (n={row['steps_timed']}, first {row['first_step_s']:.2f} s) "
        f"rss_before={row['rss_before_gib']:.2f} GiB peak_rss={row['peak_rss_gib']:.2f} GiB{gpu}"
        + (" (VGG channels-last)" if row.get("vgg_channels_last") else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64² and 256² only, 2 steps")
    parser.add_argument("--resolutions", type=int, nargs="+", default=None)
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (cpu, plus cuda when present)")
    parser.add_argument("--steps", type=int, default=None, help="projection steps per configuration (>= 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--vgg-channels-last", action="store_true", help="run the VGG16 loss in channels-last format")
    parser.add_argument(
        "--toy", action="store_true", help="the embedded toy G_s and VGG16 (data/), full-size loss input"
    )
    parser.add_argument("--downsample", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(
            json.dumps(
                run_worker(
                    args.resolutions[0],
                    args.downsample,
                    args.device,
                    args.steps,
                    args.threads,
                    args.vgg_channels_last,
                    args.toy,
                )
            )
        )
        return 0

    import torch

    resolutions = args.resolutions or ([64, 256] if args.quick else [64, 256, 1024])
    steps = args.steps or (2 if args.quick else 3)
    devices = (
        ["cpu", "cuda"]
        if args.device == "auto" and torch.cuda.is_available()
        else (["cpu"] if args.device == "auto" else [args.device])
    )
    print(f"one projection step (G fwd + vgg16_conv + 50·MSE + backward + Adam); torch {torch.__version__}", flush=True)
    failed = False
    for device in devices:
        if args.toy:
            row = _spawn(0, -1, device, steps, args.threads, args.vgg_channels_last, toy=True)
            print(_format(row), flush=True)
            failed = failed or "error" in row
            continue
        for resolution in resolutions:
            for downsample in (-1, 256):
                row = _spawn(resolution, downsample, device, steps, args.threads, args.vgg_channels_last)
                print(_format(row), flush=True)
                if "error" in row:
                    failed = True
                elif device == "cpu" and resolution == 1024 and row["peak_rss_gib"] > RSS_LIMIT_1024_GIB:
                    print(f"  !! peak RSS above the {RSS_LIMIT_1024_GIB} GiB budget", flush=True)
                    failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
