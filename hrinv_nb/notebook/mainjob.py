"""The main job: run every numbered notebook through papermill, in order (``make figures``).

    python -m hrinv_nb.notebook.mainjob                       # all notebooks, default parameters
    python -m hrinv_nb.notebook.mainjob --only 01 -p num_steps 50 -p device cuda
    python -m hrinv_nb.notebook.mainjob --only 03_w_vs_noise --only 07   # numbers (two digits) or full names
    python -m hrinv_nb.notebook.mainjob --preset paper --only 02   # notebooks/params/paper/02_*.yaml
    python -m hrinv_nb.notebook.mainjob --prepare-smoke build/nbsmoke  # smoke copies for nbval (make test)
    python -m hrinv_nb.notebook.mainjob --list

Executed copies go to ``runs/<timestamp>/`` (not committed); figures are written by the notebooks
to ``figures/`` in the default run (and with ``--preset paper``), and to ``runs/<timestamp>/figures/``
with any other preset (``teach``: every notebook in about a minute for a class), so that only the
default run replaces the committed figures. Each executed copy's title cell says which preset and
parameters it ran with, and its links to the committed figures point at ``figures/`` from where the
copy lies. The command exits non-zero, naming the notebook, when any notebook fails (1) or
the run is interrupted by Ctrl-C (130) or SIGTERM (143); ``runs/<timestamp>/summary.json`` then
says ``"status": "interrupted"`` and names the notebook in flight. While no notebook exists yet, it
renders a sample grid of the parity-fixture generator instead.

Notebooks are the files ``NN_name.ipynb`` (exactly; a JupyterLab ``03_x-Copy1.ipynb`` is ignored).
``--only`` takes a notebook's two-digit number (``01``) or its full name (``01_downsampling_artifacts``,
``.ipynb`` optional); an empty or unmatched ``--only`` is an error listing the valid names.

Nothing given on the command line or in a parameter file runs as code: every ``-p`` name and YAML key
must be a parameter that the notebook's ``parameters`` cell declares, every value a plain literal
(str, int, float, bool, None, lists / str-keyed dicts of those, checked against the default's type),
and ``--preset`` a plain folder name under ``notebooks/params/``. All of it is checked for every
selected notebook before the first one runs.

Parameter files: ``notebooks/params/<preset>/<notebook>.yaml`` (papermill ``-f`` files). The
``smoke`` preset holds the small values that ``make test`` runs under nbval; ``teach`` the values
for a class (each notebook in at most a minute on 2 cores, its mechanism still visible); ``paper`` the
paper's settings and real-asset paths (``$VAR`` values name environment variables).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import signal
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HrinvError
from ..files import atomic_write
from . import config

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
FIGURES = REPO / "figures"
RUNS = REPO / "runs"
FIXTURE = REPO / "tests" / "fixtures" / "stylegan2_ada_tiny.safetensors"
PARAMS = NOTEBOOKS / "params"
CELL_TIMEOUT_S = 1800  # a cell that runs longer fails the notebook instead of hanging the main job
NOTEBOOK_FILE = re.compile(r"\d\d_[a-z0-9_]+\.ipynb")
PRESET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
# Presets whose figures go to figures/ like the default run's (real-weight runs replace the toy figures).
COMMITTED_FIGURE_PRESETS = ("paper",)


class SelectionError(HrinvError):
    """A ``--only`` or ``--preset`` that names nothing valid; the message lists the valid names."""


class Interrupted(BaseException):
    """The main job was stopped by a signal (Ctrl-C or SIGTERM); ``signal`` names it."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal = signal_name


def list_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """Numbered notebooks named exactly ``NN_name.ipynb`` in ``folder``, sorted by number."""
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_FILE.fullmatch(p.name) and p.is_file())


def select_notebooks(notebooks: Sequence[Path], only: Iterable[str]) -> list[Path]:
    """The notebooks named by ``only``: two-digit numbers (``01``) or full stems / file names, matched exactly.

    An empty selector, or one that matches nothing, raises :class:`SelectionError` listing the valid names.
    """
    valid = ", ".join(nb.stem for nb in notebooks) or "(none)"
    chosen: set[Path] = set()
    for sel in only:
        sel = sel.strip()
        if re.fullmatch(r"\d\d", sel):
            hits = [nb for nb in notebooks if nb.name[:2] == sel]
        elif sel:
            hits = [nb for nb in notebooks if sel in (nb.stem, nb.name)]
        else:
            raise SelectionError(f"--only got an empty name; give a two-digit number or a full name of: {valid}")
        if not hits:
            raise SelectionError(
                f"no notebook matches --only {sel!r}; give a two-digit number or a full name of: {valid}"
            )
        chosen.update(hits)
    return [nb for nb in notebooks if nb in chosen]


def parse_value(text: str) -> object:
    """Parse a ``-p`` value as a Python literal when possible (``50``, ``0.1``, ``True``), else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def available_presets(params: Path = PARAMS) -> list[str]:
    """The preset folders under ``notebooks/params/``."""
    return (
        sorted(p.name for p in params.iterdir() if p.is_dir() and PRESET_NAME.fullmatch(p.name))
        if params.is_dir()
        else []
    )


def preset_folder(preset: str, params: Path = PARAMS) -> Path:
    """``notebooks/params/<preset>/`` for a plain preset name (no separators, no ``..``), else :class:`SelectionError`."""
    valid = available_presets(params)
    if not PRESET_NAME.fullmatch(preset) or preset not in valid:
        raise SelectionError(f"--preset {preset!r} is not a preset; valid presets (folders of {params}): {valid}")
    return params / preset


def preset_parameters(notebook: Path, preset: str | None) -> dict[str, object]:
    """The parameters of ``notebooks/params/<preset>/<notebook stem>.yaml`` (empty for no preset)."""
    if not preset:
        return {}
    import yaml

    path = preset_folder(preset) / f"{notebook.stem}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no {preset!r} parameter file for {notebook.name}: expected {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    return values


def check_parameters(notebook: Path, parameters: Mapping[Any, Any], origin: str = "-p") -> dict[str, object]:
    """``parameters`` if every name is a parameter declared by ``notebook``'s parameters cell and every value fits.

    Names must be identifiers (not keywords) that the parameters cell assigns; values plain
    literals of the default's type (see :mod:`hrinv_nb.notebook.config`). Raises
    :class:`~hrinv_nb.notebook.config.ParameterError` naming ``origin`` (``-p``, a YAML file).
    """
    defaults = config.read_parameters_cell(notebook)
    for name in parameters:
        if not config.is_parameter_name(name):
            raise config.ParameterError(f"{origin}: {name!r} is not a parameter name (an identifier, not a keyword)")
        if name not in defaults:
            raise config.ParameterError(
                f"{origin}: {notebook.stem} has no parameter {name!r}; it takes {sorted(defaults)}"
            )
    values = {name: config.check_plain(name, value) for name, value in parameters.items()}
    allow_zero, declared = config.build_config_options(notebook)  # the notebook's own rules
    config.validate_parameters(
        notebook.stem,
        defaults,
        {**defaults, **values},
        allow_zero=allow_zero,
        declared={name: object for name in declared},
    )
    return values


def notebook_parameters(notebook: Path, preset: str | None, parameters: Mapping[str, object]) -> dict[str, object]:
    """The checked parameters for one notebook: its preset YAML values, overridden by ``parameters`` (``-p``)."""
    from_yaml = check_parameters(
        notebook, preset_parameters(notebook, preset), f"--preset {preset} ({notebook.stem}.yaml)"
    )
    return {**from_yaml, **check_parameters(notebook, parameters)}


def prepare_smoke(out_dir: Path, notebooks: list[Path] | None = None) -> list[Path]:
    """Write papermill-prepared copies of the notebooks with their smoke parameters into ``out_dir``.

    The copies carry an injected-parameters cell (smoke values, figures under ``out_dir/figures``)
    and are what nbval executes in ``make test``; the committed figures are never touched.
    """
    import papermill as pm

    notebooks = list_notebooks() if notebooks is None else notebooks
    figures = str((out_dir / "figures").resolve())
    all_params = {nb: {**notebook_parameters(nb, "smoke", {}), "figures_dir": figures} for nb in notebooks}
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.ipynb"):
        old.unlink()
    written = []
    for nb, params in all_params.items():
        dest = out_dir / nb.name
        pm.execute_notebook(
            str(nb),
            str(dest),
            parameters=params,
            prepare_only=True,
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
        )
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


@dataclass
class _RunLog:
    """A run of notebooks as ``run_dir/summary.json`` records it: what runs, with what, how long, what failed."""

    run_dir: Path
    preset: str | None
    parameters: Mapping[str, object]
    notebooks: Sequence[Path]
    times: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def summary(
        self, status: str, running: str | None = None, interrupted: Mapping[str, object] | None = None
    ) -> dict[str, object]:
        """The summary with ``status`` (running | ok | failed | interrupted) and the notebook in flight."""
        in_flight = running or (interrupted or {}).get("notebook")
        return {
            "status": status,  # running | ok | failed | interrupted
            "preset": self.preset,
            "parameters": dict(self.parameters),
            "notebooks": [nb.name for nb in self.notebooks],
            "running": running,
            "completed": [name for name in self.times if name not in self.failed and name != in_flight],
            "failed": list(self.failed),
            "interrupted": dict(interrupted) if interrupted else None,
            "seconds": dict(self.times),
        }

    def write(self, status: str, running: str | None = None, interrupted: Mapping[str, object] | None = None) -> Path:
        """Rewrite ``run_dir/summary.json`` (:meth:`summary`)."""
        return write_summary(self.run_dir, self.summary(status, running, interrupted))

    def record_interrupt(self, nb: Path, t0: float, err: BaseException) -> None:
        """Time ``nb`` (started at ``t0``), write the summary as interrupted by ``err``'s signal, say so on stderr."""
        self.times[nb.name] = round(time.perf_counter() - t0, 1)
        sig = getattr(err, "signal", "SIGINT")
        self.write("interrupted", interrupted={"notebook": nb.name, "signal": sig})
        print(
            f"INTERRUPTED ({sig}) during {nb.name}; summary in {self.run_dir / 'summary.json'}",
            file=sys.stderr,
            flush=True,
        )


def write_summary(run_dir: Path, summary: Mapping[str, object]) -> Path:
    """Write ``run_dir/summary.json`` atomically."""
    text = json.dumps(summary, indent=2, default=str) + "\n"
    return atomic_write(run_dir / "summary.json", lambda tmp: Path(tmp).write_text(text))


def _kernel_interrupted(err: BaseException) -> bool:
    """A papermill error whose cell died of KeyboardInterrupt (Ctrl-C reaches the kernel too)."""
    return getattr(err, "ename", None) == "KeyboardInterrupt"


def run_figures_dir(preset: str | None, run_dir: Path) -> str | None:
    """The default ``figures_dir`` of a run: ``run_dir/figures`` for a preset other than ``paper``; None (the
    notebook's own default, ``figures/``) otherwise. A ``figures_dir`` from the preset's YAML or ``-p`` wins."""
    if preset is None or preset in COMMITTED_FIGURE_PRESETS:
        return None
    return str((run_dir / "figures").resolve())


def annotate_copy(copy: Path, preset: str | None, parameters: Mapping[str, object], figures: Path) -> None:
    """Say in ``copy``'s title cell which preset and injected ``parameters`` it ran with and where its figure went, and
    point its links to the committed ``figures/`` folder (``../figures/`` in ``notebooks/``) at that
    folder as seen from the copy. Rewrites the copy atomically; a missing copy is left alone."""
    import os

    import nbformat

    if not copy.exists():
        return
    nb = nbformat.read(copy, as_version=4)
    committed = Path(os.path.relpath(FIGURES, copy.parent.resolve())).as_posix()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace("](../figures/", f"]({committed}/")
    shown = ", ".join(f"`{k}={v!r}`" for k, v in parameters.items() if k != "figures_dir") or "none"
    where = Path(os.path.relpath(figures, copy.parent.resolve())).as_posix()
    if preset:
        yaml = f"notebooks/params/{preset}/{copy.stem}.yaml"
        how = f"**This copy ran with the `{preset}` preset** (`{yaml}`, with any `-p` on top; parameters: {shown})"
    else:
        how = f"**This copy ran with the default parameters** (`make figures`; `-p` parameters: {shown})"
    note = (
        f"> {how}. Its figure and record were written to `{where}/` (relative to this copy). The tables and figures under the code"
        " cells are this run's; numbers quoted in the prose are those of the default run."
    )
    title = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if title is not None and note not in title.source:
        head, _, rest = title.source.partition("\n")
        title.source = f"{head}\n\n{note}\n{rest}"
    text = nbformat.writes(nb)
    atomic_write(copy, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def run_notebooks(
    notebooks: list[Path],
    parameters: dict[str, object],
    run_dir: Path,
    preset: str | None = None,
    cell_timeout: float | None = CELL_TIMEOUT_S,
) -> list[str]:
    """Execute ``notebooks`` with papermill into ``run_dir``; return the names of those that failed.

    ``parameters`` (from ``-p``) override the preset's YAML values; all are checked for every
    notebook before the first runs. ``run_dir/summary.json`` is rewritten before and after each
    notebook (status ``running`` with the notebook in flight, then ``ok`` or ``failed``). On Ctrl-C or
    SIGTERM (:class:`Interrupted`, :class:`KeyboardInterrupt`) it records ``status: interrupted``
    with the notebook in flight and the signal, then re-raises :class:`Interrupted`. ``cell_timeout``:
    seconds a single cell may run before its notebook fails (None: no limit, for runs at the paper's sizes).
    """
    import papermill as pm

    all_params = {nb: notebook_parameters(nb, preset, parameters) for nb in notebooks}
    figures_dir = run_figures_dir(preset, run_dir)
    if figures_dir is not None:
        all_params = {nb: {"figures_dir": figures_dir, **p} for nb, p in all_params.items()}
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _RunLog(run_dir, preset, parameters, notebooks)
    failed, times = log.failed, log.times
    for i, nb in enumerate(notebooks, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(notebooks)}] {nb.name} ...", flush=True)
        log.write("running", running=nb.name)
        try:
            pm.execute_notebook(
                str(nb),
                str(run_dir / nb.name),
                parameters=all_params[nb],
                cwd=str(nb.parent),
                progress_bar=True,
                kernel_name="python3",
                execution_timeout=cell_timeout,
            )
        except (KeyboardInterrupt, Interrupted) as err:
            log.record_interrupt(nb, t0, err)
            raise Interrupted(getattr(err, "signal", "SIGINT")) from err
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
            if _kernel_interrupted(e):
                log.record_interrupt(nb, t0, KeyboardInterrupt())
                raise Interrupted("SIGINT") from e
            failed.append(nb.name)
            print(f"[{i}/{len(notebooks)}] FAILED {nb.name}: {type(e).__name__}: {str(e)[:2000]}", flush=True)
        times[nb.name] = round(time.perf_counter() - t0, 1)
        used = Path(str(all_params[nb].get("figures_dir") or FIGURES))
        annotate_copy(run_dir / nb.name, preset, all_params[nb], used)
        status = "running" if i < len(notebooks) else ("failed" if failed else "ok")
        log.write(status)
        if nb.name not in failed:
            print(f"[{i}/{len(notebooks)}] {nb.name} done in {times[nb.name]:.0f} s", flush=True)
    return failed


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only this notebook: its two-digit number (01) or full name; repeatable",
    )
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--run-dir", type=Path, default=None, help="where executed copies go (default runs/<time>)")
    parser.add_argument(
        "--preset",
        default=None,
        help="read notebooks/params/<preset>/<notebook>.yaml (a folder name there, e.g. paper)",
    )
    parser.add_argument(
        "--prepare-smoke",
        type=Path,
        default=None,
        metavar="DIR",
        help="write smoke-parameter copies for nbval into DIR and exit",
    )
    parser.add_argument("--list", action="store_true", help="list the notebooks and exit")
    parser.add_argument(
        "--cell-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"a cell running longer fails its notebook (0: no limit; default: {CELL_TIMEOUT_S:g}, and no limit "
        "with --preset paper, whose single cells run for hours at the paper's sizes)",
    )
    args = parser.parse_args(argv)
    if args.cell_timeout is None:
        args.cell_timeout = 0.0 if args.preset == "paper" else CELL_TIMEOUT_S
    if args.cell_timeout < 0:
        parser.error(f"--cell-timeout must be >= 0 (0: no limit), got {args.cell_timeout}")

    notebooks = list_notebooks()
    parameters = {name: parse_value(value) for name, value in args.parameter}
    try:
        if args.only:
            notebooks = select_notebooks(notebooks, args.only)
        if args.preset is not None:
            preset_folder(args.preset)
        if args.prepare_smoke is not None:
            written = prepare_smoke(args.prepare_smoke, notebooks)
            print(f"prepared {len(written)} smoke notebook(s) in {args.prepare_smoke}")
            return 0
        for nb in notebooks:  # every parameter of every notebook, before the first one runs
            notebook_parameters(nb, args.preset, parameters)
        if args.list:
            print("\n".join(nb.name for nb in notebooks) or "(no notebooks yet)")
            return 0
        if not notebooks:
            out = fixture_sample_grid(FIGURES / "00_fixture_samples.png")
            print(f"no notebooks yet: wrote the fixture generator's sample grid to {out.relative_to(REPO)}")
            return 0
    except (HrinvError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = args.run_dir or RUNS / time.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        timeout = args.cell_timeout or None
        failed = run_notebooks(notebooks, parameters, run_dir, preset=args.preset, cell_timeout=timeout)
    except Interrupted as err:
        print(f"interrupted ({err.signal}); executed copies so far in {run_dir}", file=sys.stderr)
        return EXIT_CODES.get(err.signal, 1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"ran {len(notebooks)} notebook(s) in {time.perf_counter() - t0:.0f} s; executed copies in {run_dir}")
    if failed:
        print(f"FAILED notebooks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
