"""The main job: run every numbered notebook through papermill, in order (``make figures``).

    python -m hrinv_nb.mainjob                       # all notebooks, default parameters
    python -m hrinv_nb.mainjob --only 01 -p num_steps 50 -p device cuda
    python -m hrinv_nb.mainjob --list

Executed copies go to ``runs/<timestamp>/`` (not committed); figures are written by the notebooks
to ``figures/``. The command exits non-zero, naming the notebook, when any notebook fails. While no
notebook exists yet, it renders a sample grid of the parity-fixture generator instead.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
FIGURES = REPO / "figures"
RUNS = REPO / "runs"
FIXTURE = REPO / "tests" / "fixtures" / "stylegan2_ada_tiny.safetensors"


def list_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """Numbered notebooks ``NN_name.ipynb`` in ``folder``, sorted by number."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.is_file())


def parse_value(text: str) -> object:
    """Parse a ``-p`` value as a Python literal when possible (``50``, ``0.1``, ``True``), else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def fixture_sample_grid(out: Path, n: int = 8, seed: int = 0) -> Path:
    """Render ``n`` samples of the tiny parity-fixture generator into a PNG grid (per-image normalised)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from .checkpoints import load_networks

    G = load_networks(FIXTURE).G
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        img = G(z, None, noise_mode="const")
    assert img.shape == (n, 3, G.img_resolution, G.img_resolution)
    lo = img.amin(dim=(1, 2, 3), keepdim=True)
    hi = img.amax(dim=(1, 2, 3), keepdim=True)
    img = ((img - lo) / (hi - lo + 1e-8)).permute(0, 2, 3, 1).numpy()
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 2.0))
    for i, ax in enumerate(axes):
        ax.imshow(img[i])
        ax.set_title(f"z seed {seed}/{i}", fontsize=7)
        ax.axis("off")
    fig.suptitle("Parity-fixture generator (random perturbed weights, each image min-max normalised)", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def run_notebooks(notebooks: list[Path], parameters: dict[str, object], run_dir: Path) -> list[str]:
    """Execute ``notebooks`` with papermill into ``run_dir``; return the names of those that failed."""
    import papermill as pm

    run_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for i, nb in enumerate(notebooks, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(notebooks)}] {nb.name} ...", flush=True)
        try:
            pm.execute_notebook(
                str(nb), str(run_dir / nb.name), parameters=parameters, cwd=str(nb.parent),
                progress_bar=False, kernel_name="python3",
            )
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
            failed.append(nb.name)
            print(f"[{i}/{len(notebooks)}] FAILED {nb.name}: {type(e).__name__}: {str(e)[:2000]}", flush=True)
            continue
        print(f"[{i}/{len(notebooks)}] {nb.name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], help="run only notebooks whose name starts with this")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--run-dir", type=Path, default=None, help="where executed copies go (default runs/<time>)")
    parser.add_argument("--list", action="store_true", help="list the notebooks and exit")
    args = parser.parse_args(argv)

    notebooks = list_notebooks()
    if args.only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(o) for o in args.only)]
        if not notebooks:
            print(f"no notebook matches {args.only}; available: {[nb.name for nb in list_notebooks()]}")
            return 2
    if args.list:
        print("\n".join(nb.name for nb in notebooks) or "(no notebooks yet)")
        return 0
    if not notebooks:
        out = fixture_sample_grid(FIGURES / "00_fixture_samples.png")
        print(f"no notebooks yet: wrote the fixture generator's sample grid to {out.relative_to(REPO)}")
        return 0
    parameters = {name: parse_value(value) for name, value in args.parameter}
    run_dir = args.run_dir or RUNS / time.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    failed = run_notebooks(notebooks, parameters, run_dir)
    print(f"ran {len(notebooks)} notebook(s) in {time.perf_counter() - t0:.0f} s; executed copies in {run_dir}")
    if failed:
        print(f"FAILED notebooks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
