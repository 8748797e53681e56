"""Benchmark the StyleGAN2-ADA networks on the CPU (and the GPU when present).

Prints the median wall time of ``G.synthesis`` forward, ``G.synthesis`` forward+backward w.r.t. a
W+ code, and ``D`` forward, for batch 1, at the tiny parity-fixture configuration and at a 256²
configuration with FFHQ channel widths (optionally 1024² with ``--full``).

    python benchmarks/bench_networks.py [--threads 2] [--repeats 10] [--full] [--device cpu|cuda]

NVIDIA's reference ops on a 2-core machine (fixture README): tiny 19 ms / 38 ms / 15 ms;
256² 0.86 s / 2.4 s / 0.83 s; 1024² 2.9 s / 10.1 s / 3.1 s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from hrinv_nb.networks import Discriminator, Generator

CONFIGS = {
    "tiny 64²": dict(res=64, base=4096, cmax=128, z=128, map_layers=8),
    "256² (FFHQ widths)": dict(res=256, base=32768, cmax=512, z=512, map_layers=8),
    "1024² (FFHQ config)": dict(res=1024, base=32768, cmax=512, z=512, map_layers=8),
}


def build(cfg: dict, device: torch.device) -> tuple[Generator, Discriminator]:
    """Random-weight G and D of the given configuration, in eval mode, parameters frozen."""
    g = Generator(
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
    d = Discriminator(
        c_dim=0,
        img_resolution=cfg["res"],
        img_channels=3,
        channel_base=cfg["base"],
        channel_max=cfg["cmax"],
        conv_clamp=256,
        epilogue_kwargs={"mbstd_group_size": 4},
    )
    for net in (g, d):
        net.eval().requires_grad_(False).to(device)
    return g, d


def median_time(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--full", action="store_true", help="also run the 1024² FFHQ configuration")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} batch=1")
    print(f"{'config':<22}{'G fwd':>12}{'G fwd+bwd':>12}{'D fwd':>12}")
    for name, cfg in CONFIGS.items():
        if cfg["res"] == 1024 and not args.full:
            continue
        g, d = build(cfg, device)
        gen = torch.Generator().manual_seed(0)
        ws = g.mapping(torch.randn([1, g.z_dim], generator=gen).to(device), None)
        img = torch.randn([1, 3, cfg["res"], cfg["res"]], generator=gen).to(device)
        repeats = args.repeats if cfg["res"] <= 256 else max(3, args.repeats // 3)

        def fwd(g=g, ws=ws) -> None:
            with torch.no_grad():
                g.synthesis(ws, noise_mode="const")

        def fwd_bwd(g=g, ws=ws) -> None:
            w = ws.detach().clone().requires_grad_(True)
            g.synthesis(w, noise_mode="const").square().sum().backward()

        def d_fwd(d=d, img=img) -> None:
            with torch.no_grad():
                d(img, None)

        t = [median_time(f, repeats, device) for f in (fwd, fwd_bwd, d_fwd)]
        print(f"{name:<22}" + "".join(f"{x * 1e3:>10.1f}ms" for x in t), flush=True)


if __name__ == "__main__":
    main()
