"""The main job: run every numbered notebook through papermill, in order (``make figures``).

    python -m hrinv_nb.notebook.mainjob                       # all notebooks, default parameters
    python -m hrinv_nb.notebook.mainjob --only 01 -p num_steps 50 -p device cuda
    python -m hrinv_nb.notebook.mainjob --preset paper --only 02   # notebooks/params/paper/02_*.yaml
    python -m hrinv_nb.notebook.mainjob --prepare-smoke build/nbsmoke  # smoke copies for nbval (make test)
    python -m hrinv_nb.notebook.mainjob --list

Executed copies go to ``runs/<timestamp>/`` (not committed); figures are written by the notebooks
to ``figures/``. The command exits non-zero, naming the notebook, when any notebook fails. While no
notebook exists yet, it renders a sample grid of the parity-fixture generator instead.

Parameter files: ``notebooks/params/<preset>/<notebook>.yaml`` (papermill ``-f`` files). The
``smoke`` preset holds the small values that ``make test`` runs under nbval; ``paper`` holds the
paper's settings and real-asset paths (``$VAR`` values name environment variables).
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
FIGURES = REPO / "figures"
RUNS = REPO / "runs"
FIXTURE = REPO / "tests" / "fixtures" / "stylegan2_ada_tiny.safetensors"
PARAMS = NOTEBOOKS / "params"
CELL_TIMEOUT_S = 1800  # a cell that runs longer fails the notebook instead of hanging the main job


def list_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """Numbered notebooks ``NN_name.ipynb`` in ``folder``, sorted by number."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.is_file())


def parse_value(text: str) -> object:
    """Parse a ``-p`` value as a Python literal when possible (``50``, ``0.1``, ``True``), else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def preset_parameters(notebook: Path, preset: str | None) -> dict[str, object]:
    """The parameters of ``notebooks/params/<preset>/<notebook stem>.yaml`` (empty for no preset)."""
    if not preset:
        return {}
    import yaml

    path = PARAMS / preset / f"{notebook.stem}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no {preset!r} parameter file for {notebook.name}: expected {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    return values


def prepare_smoke(out_dir: Path, notebooks: list[Path] | None = None) -> list[Path]:
    """Write papermill-prepared copies of the notebooks with their smoke parameters into ``out_dir``.

    The copies carry an injected-parameters cell (smoke values, figures under ``out_dir/figures``)
    and are what nbval executes in ``make test``; the committed figures are never touched.
    """
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.ipynb"):
        old.unlink()
    written = []
    for nb in notebooks if notebooks is not None else list_notebooks():
        params = {**preset_parameters(nb, "smoke"), "figures_dir": str((out_dir / "figures").resolve())}
        dest = out_dir / nb.name
        pm.execute_notebook(str(nb), str(dest), parameters=params, prepare_only=True, kernel_name="python3",
                            progress_bar=False, log_output=False)
        written.append(dest)
    return written


def fixture_sample_grid(out: Path, n: int = 8, seed: int = 0) -> Path:
    """Render ``n`` samples of the tiny parity-fixture generator into a PNG grid (per-image normalised)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ..checkpoints import load_networks

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


def run_notebooks(notebooks: list[Path], parameters: dict[str, object], run_dir: Path,
                  preset: str | None = None) -> list[str]:
    """Execute ``notebooks`` with papermill into ``run_dir``; return the names of those that failed.

    ``parameters`` (from ``-p``) override the preset's YAML values. A summary of times and failures
    is written to ``run_dir/summary.json``.
    """
    import json

    import papermill as pm

    run_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    times: dict[str, float] = {}
    for i, nb in enumerate(notebooks, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(notebooks)}] {nb.name} ...", flush=True)
        try:
            params = {**preset_parameters(nb, preset), **parameters}
            pm.execute_notebook(
                str(nb), str(run_dir / nb.name), parameters=params, cwd=str(nb.parent),
                progress_bar=True, kernel_name="python3", execution_timeout=CELL_TIMEOUT_S,
            )
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
            failed.append(nb.name)
            print(f"[{i}/{len(notebooks)}] FAILED {nb.name}: {type(e).__name__}: {str(e)[:2000]}", flush=True)
            continue
        finally:
            times[nb.name] = round(time.perf_counter() - t0, 1)
            summary = {"preset": preset, "parameters": parameters, "seconds": times, "failed": failed}
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"[{i}/{len(notebooks)}] {nb.name} done in {times[nb.name]:.0f} s", flush=True)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], help="run only notebooks whose name starts with this")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--run-dir", type=Path, default=None, help="where executed copies go (default runs/<time>)")
    parser.add_argument("--preset", default=None, help="read notebooks/params/<preset>/<notebook>.yaml (e.g. paper)")
    parser.add_argument("--prepare-smoke", type=Path, default=None, metavar="DIR",
                        help="write smoke-parameter copies for nbval into DIR and exit")
    parser.add_argument("--list", action="store_true", help="list the notebooks and exit")
    args = parser.parse_args(argv)

    notebooks = list_notebooks()
    if args.only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(o) for o in args.only)]
        if not notebooks:
            print(f"no notebook matches {args.only}; available: {[nb.name for nb in list_notebooks()]}")
            return 2
    if args.prepare_smoke is not None:
        written = prepare_smoke(args.prepare_smoke, notebooks)
        print(f"prepared {len(written)} smoke notebook(s) in {args.prepare_smoke}")
        return 0
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
    failed = run_notebooks(notebooks, parameters, run_dir, preset=args.preset)
    print(f"ran {len(notebooks)} notebook(s) in {time.perf_counter() - t0:.0f} s; executed copies in {run_dir}")
    if failed:
        print(f"FAILED notebooks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
