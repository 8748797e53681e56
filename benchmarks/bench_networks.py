"""Benchmark the StyleGAN2-ADA networks on the CPU (and the GPU when present), optionally side by side with NVIDIA's.

Prints the median wall time of ``G.synthesis`` forward (no grad), ``G.synthesis`` forward+backward
w.r.t. a W+ code (``noise_mode='const'``), and ``D`` forward, for batch 1, at 64² and 256² with FFHQ widths
(optionally 1024², the FFHQ configuration, with ``--full``).

    python benchmarks/bench_networks.py [--threads 2] [--repeats 10] [--full] [--device cpu|cuda]
        [--nvidia-repo PATH]

With ``--nvidia-repo PATH`` (a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch; it is imported
from that path, nothing is copied), NVIDIA's ``training.networks`` Generator and Discriminator are built
with the same configuration, NVIDIA's weights are loaded into ours (the state_dict names are identical;
no key may be missing or unexpected) and the outputs are checked to agree within 1e-5 before anything is
timed. The candidates are then timed interleaved (A, B, C, A, B, C, ...) so that drift in the machine's
load hits all alike: NVIDIA with ``fused_modconv=True``, NVIDIA with ``fused_modconv=False`` and ours
(its default, which is non-fused under autograd) for ``G.synthesis``; NVIDIA and ours for ``D``. On a CPU
NVIDIA's code runs its reference ops (its custom CUDA plugins are only used for CUDA tensors). The
last column is hrinv_nb's time over the best NVIDIA time in the row.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from hrinv_nb.networks import Discriminator, Generator

CONFIGS = {
    "64²": dict(res=64, base=32768, cmax=512, z=512, map_layers=8),
    "256²": dict(res=256, base=32768, cmax=512, z=512, map_layers=8),
    "1024²": dict(res=1024, base=32768, cmax=512, z=512, map_layers=8),
}
CONFIG_NOTES = {
    "64²": "FFHQ widths: z/w 512, channel_base 32768, channel_max 512",
    "256²": "FFHQ widths: z/w 512, channel_base 32768, channel_max 512",
    "1024²": "FFHQ config: z/w 512, channel_base 32768, channel_max 512",
}
COLUMNS = ("NVIDIA fused", "NVIDIA non-fused", "hrinv_nb")
PARITY_ATOL = 1e-5


def g_kwargs(cfg: dict) -> dict[str, Any]:
    """Constructor arguments of the generator, identical for NVIDIA's class and ours."""
    return dict(
        z_dim=cfg["z"],
        c_dim=0,
        w_dim=cfg["z"],
        img_resolution=cfg["res"],
        img_channels=3,
        mapping_kwargs={"num_layers": cfg["map_layers"]},
        synthesis_kwargs={
            "channel_base": cfg["base"],
            "channel_max": cfg["cmax"],
            "num_fp16_res": 0,
            "conv_clamp": 256,
        },
    )


def d_kwargs(cfg: dict) -> dict[str, Any]:
    """Constructor arguments of the discriminator, identical for NVIDIA's class and ours."""
    return dict(
        c_dim=0,
        img_resolution=cfg["res"],
        img_channels=3,
        channel_base=cfg["base"],
        channel_max=cfg["cmax"],
        num_fp16_res=0,
        conv_clamp=256,
        epilogue_kwargs={"mbstd_group_size": 4},
    )


def frozen(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return net.eval().requires_grad_(False).to(device)


def build(cfg: dict, device: torch.device) -> tuple[Generator, Discriminator]:
    """Random-weight G and D of the given configuration, in eval mode, parameters frozen."""
    return frozen(Generator(**g_kwargs(cfg)), device), frozen(Discriminator(**d_kwargs(cfg)), device)


def import_nvidia(repo: str) -> ModuleType:
    """NVIDIA's ``training.networks`` imported from the checkout at ``repo`` (put first on sys.path)."""
    root = Path(repo).expanduser().resolve()
    needed = [root / "training" / "networks.py", root / "torch_utils" / "ops" / "upfirdn2d.py", root / "dnnlib"]
    missing = [str(p.relative_to(root)) for p in needed if not p.exists()]
    if not root.is_dir() or missing:
        sys.exit(
            f"--nvidia-repo {repo}: not a checkout of NVIDIA's stylegan2-ada-pytorch "
            f"({'no such directory' if not root.is_dir() else 'missing ' + ', '.join(missing)})"
        )
    for name in ("training", "torch_utils", "dnnlib"):
        mod = sys.modules.get(name)
        mod_file = getattr(mod, "__file__", None)
        if mod is not None and (mod_file is None or not Path(mod_file).resolve().is_relative_to(root)):
            sys.exit(f"--nvidia-repo {repo}: a module named {name!r} is already imported from {mod_file}")
    sys.path.insert(0, str(root))
    try:
        import training.networks as nvidia_networks
    except Exception as exc:  # report exactly what fails on this torch version
        sys.exit(f"--nvidia-repo {repo}: importing training.networks failed: {type(exc).__name__}: {exc}")
    return nvidia_networks


def build_pair(
    nv: ModuleType, cfg: dict, device: torch.device
) -> tuple[torch.nn.Module, torch.nn.Module, Generator, Discriminator]:
    """NVIDIA's G and D with random weights, and ours carrying the same weights (strict, names identical)."""
    torch.manual_seed(0)
    nv_g = frozen(nv.Generator(**g_kwargs(cfg)), device)
    nv_d = frozen(nv.Discriminator(**d_kwargs(cfg)), device)
    g, d = build(cfg, device)
    for name, ours, theirs in (("G", g, nv_g), ("D", d, nv_d)):
        result = ours.load_state_dict(theirs.state_dict(), strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise AssertionError(
                f"{name}: NVIDIA's state_dict does not match ours: missing {result.missing_keys}, "
                f"unexpected {result.unexpected_keys}"
            )
    return nv_g, nv_d, g, d


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a.double() - b.double()).abs().max().item()


def check_parity(nv_g, nv_d, g, d, ws: torch.Tensor, img: torch.Tensor) -> str:
    """Assert that our outputs agree with NVIDIA's within max(PARITY_ATOL, NVIDIA fused vs non-fused); describe it.

    Ours (default, i.e. fused without autograd, as NVIDIA's eval default) is compared with NVIDIA's fused
    synthesis, ours forced non-fused with NVIDIA's non-fused one (the two paths differ from each other by
    float32 rounding, about 1e-5 at 256², in NVIDIA's code as in ours), and D with D.
    """
    with torch.no_grad():
        nv_fused = nv_g.synthesis(ws, noise_mode="const", fused_modconv=True)
        nv_unfused = nv_g.synthesis(ws, noise_mode="const", fused_modconv=False)
        diffs = {
            "synthesis vs NVIDIA fused": max_abs_diff(g.synthesis(ws, noise_mode="const"), nv_fused),
            "non-fused synthesis vs NVIDIA non-fused": max_abs_diff(
                g.synthesis(ws, noise_mode="const", fused_modconv=False), nv_unfused
            ),
            "D": max_abs_diff(d(img, None), nv_d(img, None)),
        }
        fused_vs_unfused = max_abs_diff(nv_fused, nv_unfused)
    # No further from NVIDIA than NVIDIA's own two paths are from each other (float32 rounding grows
    # with the resolution: 1.4e-5 at 256²), and never more than PARITY_ATOL below that.
    tol = max(PARITY_ATOL, fused_vs_unfused)
    bad = {k: v for k, v in diffs.items() if not v <= tol}
    if bad:
        raise AssertionError(f"outputs differ from NVIDIA's by more than {tol:.1e}: {bad}")
    return ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()) + f" (NVIDIA fused vs non-fused {fused_vs_unfused:.1e})"


def interleaved_medians(fns: dict[str, Callable[[], None]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each function, run round-robin (one warm-up round, then ``repeats`` timed rounds)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for round_idx in range(repeats + 1):
        for key, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_idx > 0:
                times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def synthesis_fns(g: torch.nn.Module, ws: torch.Tensor, **kwargs: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """(forward without grad, forward+backward w.r.t. the W+ code) of ``g.synthesis``."""

    def fwd() -> None:
        with torch.no_grad():
            g.synthesis(ws, noise_mode="const", **kwargs)

    def fwd_bwd() -> None:
        w = ws.detach().clone().requires_grad_(True)
        g.synthesis(w, noise_mode="const", **kwargs).square().sum().backward()

    return fwd, fwd_bwd


def d_fn(d: torch.nn.Module, img: torch.Tensor) -> Callable[[], None]:
    def fwd() -> None:
        with torch.no_grad():
            d(img, None)

    return fwd


def fmt(t: float | None) -> str:
    if t is None:
        return ""
    return f"{t:.2f} s" if t >= 0.1 else f"{t * 1e3:.1f} ms"


def machine_line(device: torch.device) -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    line = f"{model}, {os.cpu_count()} cores ({usable} usable), torch {torch.__version__}, torch threads {torch.get_num_threads()}"
    if device.type == "cuda":
        line += f", {torch.cuda.get_device_name(device)}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (torch.set_num_threads)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per row (1024²: a third, at least 3)")
    parser.add_argument("--full", action="store_true", help="also run the 1024² FFHQ configuration")
    parser.add_argument("--only", nargs="+", choices=[c.rstrip("²") for c in CONFIGS], help="run only these sizes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nvidia-repo", metavar="PATH", help="checkout of NVIDIA's stylegan2-ada-pytorch to compare")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    nv = import_nvidia(args.nvidia_repo) if args.nvidia_repo else None
    columns = COLUMNS if nv is not None else COLUMNS[-1:]

    print(f"{datetime.date.today().isoformat()}, device {device}: {machine_line(device)}; batch 1")
    print(f"median of {args.repeats} interleaved repeats ({max(3, args.repeats // 3)} at 1024²), after one warm-up")
    if nv is not None:
        print(f"NVIDIA's networks from {Path(args.nvidia_repo).resolve()}")
    header = "| | " + " | ".join(columns) + (" | hrinv / NVIDIA's best |" if nv is not None else " |")
    table = [header, "|" + " --- |" * (header.count("|") - 1)]
    print(flush=True)
    for name, cfg in CONFIGS.items():
        if args.only and str(cfg["res"]) not in args.only:
            continue
        if cfg["res"] == 1024 and not args.full and not args.only:
            continue
        repeats = args.repeats if cfg["res"] <= 256 else max(3, args.repeats // 3)
        gen = torch.Generator().manual_seed(1)
        z = torch.randn([1, cfg["z"]], generator=gen).to(device)
        img = torch.randn([1, 3, cfg["res"], cfg["res"]], generator=gen).to(device)
        if nv is not None:
            nv_g, nv_d, g, d = build_pair(nv, cfg, device)
            with torch.no_grad():
                ws = nv_g.mapping(z, None)
            parity = check_parity(nv_g, nv_d, g, d, ws, img)
            print(f"{name} ({CONFIG_NOTES[name]}): weights loaded strictly; max |diff|: {parity}", flush=True)
        else:
            g, d = build(cfg, device)
            with torch.no_grad():
                ws = g.mapping(z, None)
            print(f"{name} ({CONFIG_NOTES[name]})", flush=True)
        fns: dict[tuple[str, str], Callable[[], None]] = {}
        rows = {
            f"G.synthesis fwd (no grad), {name}": 0,
            f"G.synthesis fwd+bwd w.r.t. W+, {name}": 1,
        }
        for row, idx in rows.items():
            fns[(row, "hrinv_nb")] = synthesis_fns(g, ws)[idx]
            if nv is not None:
                fns[(row, "NVIDIA fused")] = synthesis_fns(nv_g, ws, fused_modconv=True)[idx]
                fns[(row, "NVIDIA non-fused")] = synthesis_fns(nv_g, ws, fused_modconv=False)[idx]
        d_row = f"D fwd, {name}"
        fns[(d_row, "hrinv_nb")] = d_fn(d, img)
        if nv is not None:
            fns[(d_row, "NVIDIA fused")] = d_fn(nv_d, img)  # D has no fused/non-fused variants
        medians = interleaved_medians(fns, repeats, device)
        for row in [*rows, d_row]:
            cells = [medians.get((row, col)) for col in columns]
            line = f"| {row} | " + " | ".join(fmt(c) for c in cells) + " |"
            if nv is not None:
                best = min(t for t in cells[:-1] if t is not None)
                line += f" {cells[-1] / best:.2f} |"
            table.append(line)
            print(line, flush=True)
    print()
    print("\n".join(table))


if __name__ == "__main__":
    main()
