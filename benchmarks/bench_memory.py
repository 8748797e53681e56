"""Peak memory of the streamed runs at two numbers of items (issue 18: "peak memory depends on the batch
size, not on the number of images").

Three runs, each at a fixed batch size for two numbers of items, every measurement in a fresh
subprocess (so that its peak RSS is its own):

* ``projection`` -- :func:`hrinv_nb.projector.project_stream`: Eq. 1 (W+ and noise maps), the
  ``vgg16_conv`` loss at full size, N target images read from PNG files a batch at a time;
* ``lso`` -- :func:`hrinv_nb.gallery.stylize_pairs` (``lerp_lso``, streamed): N content codes × 1 style,
  LSO (Eq. 8) towards the content files;
* ``study`` -- notebook 12's main loop, :func:`hrinv_nb.studies.id_retrieval.run_study`: N contents,
  2 gallery styles, LSO on 1, one target style; ID retrieval (IR-SE-50) and a Fréchet distance (VGG16
  relu5_3) read back from disk.

The generators are StyleGAN2-ADA with NVIDIA's FFHQ widths (channel_base 32768, channel_max 512,
z/w 512, 8 mapping layers, fp32) built with random weights in the worker (``--resolution``, default
256²); the VGG16 trunk and the IR-SE-50 are random too (memory does not depend on the weights). The
worker reports its RSS after building the networks (``setup``), its peak RSS over the run, and on a
GPU ``torch.cuda.max_memory_allocated``. The summary gives, per run, the ratio of the peaks at the two
sizes: about 1 means peak memory does not grow with the number of items.

Usage::

    python benchmarks/bench_memory.py                          # 256², batch 2, N = 2 and 8, 1 step
    python benchmarks/bench_memory.py --items 4 16 --steps 2 --batch-size 4
    python benchmarks/bench_memory.py --device cuda --resolution 1024 --items 8 32
    python benchmarks/bench_memory.py --only projection --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = ("projection", "lso", "study")


def _images(folder: Path, n: int, resolution: int, seed: int) -> list[Path]:
    """``n`` smooth random images written one at a time as PNGs (never all in memory); their paths."""
    import torch
    import torch.nn.functional as F

    from hrinv_nb.images import save_image

    gen = torch.Generator().manual_seed(seed)
    paths = []
    for i in range(n):
        low = torch.rand([1, 3, 16, 16], generator=gen) * 1.6 - 0.8
        img = F.interpolate(low, size=(resolution, resolution), mode="bilinear", align_corners=False)
        paths.append(save_image(img, folder / f"{i}.png"))
    return paths


def _identity_space(device: str):
    """A random IR-SE-50 (ArcFace's network) as the identity space."""
    import torch

    from hrinv_nb.identity import IRSE50, arcface_embedder
    from hrinv_nb.studies.id_retrieval import FeatureSpace

    torch.manual_seed(3)
    model = IRSE50().eval().requires_grad_(False).to(device)
    return FeatureSpace("IR-SE-50 (random)", arcface_embedder(model), {"random": 3})


def _vgg_space(device: str):
    """Global-average-pooled relu5_3 of a random VGG16 trunk at 224² (the paper preset's Fréchet space)."""
    import torch
    import torch.nn.functional as F

    from hrinv_nb.losses import imagenet_normalise, vgg16_trunk
    from hrinv_nb.studies.id_retrieval import FeatureSpace

    trunk = vgg16_trunk(29, seed=4).to(device).eval().requires_grad_(False)

    def embed(img: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(img.to(device, torch.float32), size=(224, 224), mode="bilinear", antialias=True)
        return trunk(imagenet_normalise(x)).mean(dim=(2, 3)).cpu()

    return FeatureSpace("VGG16 relu5_3 (random)", embed, {"random": 4})


def run_worker(run: str, items: int, batch: int, steps: int, resolution: int, device: str, threads: int) -> dict:
    """One measurement: build the networks, run ``run`` on ``items`` items in batches of ``batch``, report memory."""
    import torch

    from hrinv_nb.gallery import stylize_pairs
    from hrinv_nb.losses import perceptual_loss
    from hrinv_nb.projector import project_stream
    from hrinv_nb.stream import ImageFiles
    from hrinv_nb.studies import cost
    from hrinv_nb.studies.id_retrieval import StudySettings, StyleInputs, run_study

    if threads > 0:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="hrinv-bench-memory-") as tmp:
        work = Path(tmp)
        targets = ImageFiles(_images(work / "in", items, resolution, seed=1), resolution)
        G_s = cost.ffhq_generator(resolution, seed=0, device=device)
        loss = perceptual_loss("vgg16_conv_random", device=device)
        d_h = perceptual_loss("vgg16_conv_random", lambdas={21: 2e-4, 28: 5e-4}, seed=1, device=device)  # d_h's layers
        G_t = cost.ffhq_generator(resolution, seed=2, device=device) if run != "projection" else None
        spaces = [_identity_space(device), _vgg_space(device)] if run == "study" else []
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        setup = cost.current_rss_bytes()
        t0 = time.perf_counter()
        if run == "projection":
            out = project_stream(
                G_s, targets, work / "out", batch_size=batch, loss=loss, num_steps=steps, w_avg_samples=1000,
                progress=False,
            )  # fmt: skip
            done = len(out)
        elif run == "lso":
            with torch.no_grad():
                z = torch.randn([items + 1, G_s.z_dim], generator=torch.Generator().manual_seed(5)).to(device)
                w_s, w_t = G_s.mapping(z[:items], None), G_t.mapping(z[items:], None)
            out = stylize_pairs(
                G_s, G_t, w_s, w_t, "lerp_lso", contents=targets, lso_batch_size=batch, out_dir=work / "out",
                lso_kwargs={"num_steps": steps, "loss": d_h, "reg_weight": 1e-3}, progress=False,
            )  # fmt: skip
            done = len(out)
        elif run == "study":
            reference = ImageFiles(_images(work / "ref", 4, resolution, seed=2), resolution)
            style = StyleInputs("style", lambda: G_t, "random", reference=reference)
            settings = StudySettings(
                n_styles=2, lso_styles=1, proj_steps=steps, lso_steps=steps, reg_weight=1e-3, projection_loss=loss,
                lso_loss=d_h, image_format="png",
            )  # fmt: skip
            out = run_study(
                G_s, targets, [style], spaces[0], spaces, settings, work / "out", batch_size=batch, read_batch=batch,
                progress=False,
            )  # fmt: skip
            done = len(out.projection)
        else:
            raise ValueError(f"unknown run {run!r}; one of {RUNS}")
        seconds = time.perf_counter() - t0
        assert done == items, (done, items)
        result = {
            "run": run,
            "items": items,
            "batch_size": batch,
            "steps": steps,
            "resolution": resolution,
            "device": device,
            "threads": torch.get_num_threads(),
            "seconds": round(seconds, 1),
            "setup_rss_gib": setup / 2**30,
            "peak_rss_gib": cost.peak_rss_bytes() / 2**30,
        }
        if device.startswith("cuda"):
            result["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
            result["device_name"] = torch.cuda.get_device_name()
        return result


def _spawn(run: str, items: int, args: argparse.Namespace) -> dict:
    """One measurement in a fresh interpreter (its own peak RSS); the parsed JSON line, or an error."""
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", run, "--items", str(items), str(items),
        "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--resolution", str(args.resolution),
        "--device", args.device, "--threads", str(args.threads),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"run": run, "items": items, "error": proc.stderr.strip()[-800:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _format(row: dict) -> str:
    if "error" in row:
        return f"{row['run']:>10} N={row['items']:<4} ERROR: {row['error']}"
    gpu = f"  peak CUDA {row['peak_cuda_gib']:.2f} GiB" if "peak_cuda_gib" in row else ""
    return (
        f"{row['run']:>10} N={row['items']:<4} batch {row['batch_size']}, {row['steps']} step(s), {row['resolution']}², "
        f"{row['device']}, {row['threads']} thread(s): peak RSS {row['peak_rss_gib']:.2f} GiB "
        f"(after setup {row['setup_rss_gib']:.2f} GiB, +{row['peak_rss_gib'] - row['setup_rss_gib']:.2f} GiB in the run)"
        f"{gpu}; {row['seconds']:.0f} s"
    )


def summary(rows: list[dict]) -> list[dict]:
    """Per run, the peak at the larger size over the peak at the smaller (and the same for the in-run growth)."""
    out = []
    for run in dict.fromkeys(r["run"] for r in rows):
        ok = sorted((r for r in rows if r["run"] == run and "error" not in r), key=lambda r: r["items"])
        if len(ok) < 2:
            continue
        small, large = ok[0], ok[-1]
        line = {
            "run": run,
            "items": [small["items"], large["items"]],
            "peak_rss_ratio": large["peak_rss_gib"] / small["peak_rss_gib"],
            "run_growth_gib": [r["peak_rss_gib"] - r["setup_rss_gib"] for r in (small, large)],
        }
        if "peak_cuda_gib" in small and "peak_cuda_gib" in large:
            line["peak_cuda_ratio"] = large["peak_cuda_gib"] / small["peak_cuda_gib"]
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs=2, default=[2, 8], metavar=("SMALL", "LARGE"))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1, help="projection / LSO steps (memory does not grow with them)")
    parser.add_argument("--resolution", type=int, default=256, help="generator resolution (FFHQ widths)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--only", choices=RUNS, action="append", help="run only this measurement (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the rows and the summary as JSON at the end")
    parser.add_argument("--worker", choices=RUNS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.items) < 1 or args.batch_size < 1 or args.steps < 1:
        parser.error("--items, --batch-size and --steps must be positive")
    if args.worker:
        items = args.items[0]
        print(
            json.dumps(
                run_worker(args.worker, items, args.batch_size, args.steps, args.resolution, args.device, args.threads)
            )
        )
        return 0
    import torch

    print(f"peak memory of the streamed runs, torch {torch.__version__}", flush=True)
    rows = []
    for run in args.only or RUNS:
        for items in sorted(args.items):
            row = _spawn(run, items, args)
            print(_format(row), flush=True)
            rows.append(row)
    lines = summary(rows)
    for line in lines:
        growth = " → ".join(f"{g:.2f}" for g in line["run_growth_gib"])
        cuda = f", CUDA peak ×{line['peak_cuda_ratio']:.2f}" if "peak_cuda_ratio" in line else ""
        print(
            f"{line['run']:>10}: N {line['items'][0]} → {line['items'][1]}: peak RSS ×{line['peak_rss_ratio']:.2f} "
            f"(in-run growth {growth} GiB){cuda}",
            flush=True,
        )
    if args.json:
        print(json.dumps({"rows": rows, "summary": lines}, indent=1))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
