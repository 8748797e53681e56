"""The notebooks' own checks: injected names, types from the defaults, counts, and the figure pair.

The main job refuses bad names and values before anything runs (tests/test_mainjob.py); these tests
cover the second line, the validation cell (``build_config``), which also sees papermill runs made
without the main job, and the figure + record pair written by ``report.save_figure``.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hrinv_nb.notebook import config, mainjob, report
from hrinv_nb.notebook.config import ParameterError, build_config

NB09 = "09_lso_local_optimization"
NB09_ZERO = ("batch_size",)  # as 09 itself calls build_config (0: the memory-derived batch size)


def _namespace(notebook: str, **overrides) -> dict:
    """What the validation cell sees: the parameters cell's values, overrides, IPython's and the imports' names."""
    ns = dict(config.read_parameters_cell(mainjob.NOTEBOOKS / f"{notebook}.ipynb"))
    ns.update(
        {
            "In": ["", "preset = 'toy'"],
            "Out": {},
            "_": "",
            "_i": "",
            "_i1": "x",
            "_3": 1,
            "__name__": "__main__",
            "__builtins__": __builtins__,
            "get_ipython": print,
            "np": math,
            "build_config": build_config,
        }
    )
    ns.update(overrides)
    return ns


def test_parameter_error_is_a_package_error():
    from hrinv_nb.errors import HrinvError

    assert issubclass(ParameterError, HrinvError)


def test_minimal_call_infers_types(tmp_path: Path):
    cfg = build_config(
        NB09, _namespace(NB09, figures_dir=str(tmp_path), num_steps=7, reg_weight=2), allow_zero=NB09_ZERO
    )
    assert cfg.num_steps == 7 and cfg.reg_weight == 2.0 and isinstance(cfg.reg_weight, float)
    assert cfg.style == "cartoon" and cfg.figures_dir == tmp_path


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("lso_steps", -5, "lso_steps=-5 must be >= 1"),
        ("num_steps", 0, "num_steps=0 must be >= 1"),
        ("early_blocks", 0, "early_blocks=0 must be >= 1"),  # a count whatever its name
        ("seed", -1, "seed=-1 must be >= 0"),
        ("num_steps", True, "must be int"),
        ("num_steps", 2.0, "must be int"),
        ("reg_weight", float("nan"), "finite"),
        ("reg_weight", float("inf"), "finite"),
        ("style", 3, "must be str"),
        ("content_dir", ("a",), "plain literals"),
    ],
)
def test_bad_values_refused(name, value, message, tmp_path: Path):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace("[", r"\[")):
        build_config(NB09, _namespace(NB09, figures_dir=str(tmp_path), **{name: value}), allow_zero=NB09_ZERO)


def test_zero_only_where_declared(tmp_path: Path):
    ns = _namespace("08_lso_loss_layers", figures_dir=str(tmp_path), mask_dilation=0)
    with pytest.raises(ParameterError, match="mask_dilation=0 must be >= 1"):
        build_config("08_lso_loss_layers", ns, allow_zero=("batch_size",))
    with pytest.raises(ParameterError, match="batch_size=0 must be >= 1"):
        build_config("08_lso_loss_layers", ns, allow_zero=("mask_dilation",))
    assert build_config("08_lso_loss_layers", ns, allow_zero=("mask_dilation", "batch_size")).mask_dilation == 0
    assert (
        build_config(
            NB09, _namespace(NB09, figures_dir=str(tmp_path), threads=0, seed=0, style_seed=0), allow_zero=NB09_ZERO
        ).seed
        == 0
    )


def test_rules_on_synthetic_defaults():
    defaults = {
        "preset": "toy",
        "device": "auto",
        "seed": 0,
        "threads": 0,
        "figures_dir": "",
        "lr": 0.01,
        "batch": 4,
        "scales": [0.0, 1.0],
        "shapes": [[1, 2]],
        "flag": False,
        "weights": None,
        "any": [],
    }
    ok = config.validate_parameters(
        "x", defaults, {**defaults, "scales": [0, 1]}, declared={"weights": (str, type(None))}
    )
    assert ok["scales"] == [0.0, 1.0] and ok["lr"] == 0.01
    for bad, message in [
        ({"lr": float("nan")}, "finite"),
        ({"scales": [0.0, float("inf")]}, "finite"),
        ({"shapes": [[1, 2.5]]}, "must be int"),
        ({"flag": 1}, "must be bool"),
        ({"batch": 0}, ">= 1"),
        ({"weights": 3}, "must be str or None"),
        ({"any": [{1: 2}]}, "keys"),
    ]:
        with pytest.raises(ParameterError, match=message):
            config.validate_parameters("x", defaults, {**defaults, **bad}, declared={"weights": (str, type(None))})
    with pytest.raises(ParameterError, match="defaults to None"):
        config.validate_parameters("x", defaults, defaults)
    with pytest.raises(ParameterError, match="does not define"):
        config.validate_parameters("x", defaults, defaults, declared={"weights": str, "nope": int})


@pytest.mark.parametrize("name", ["_evil", "__evil__", "_i_x", "evil"])
def test_unknown_injected_names_refused(name: str, tmp_path: Path):
    with pytest.raises(ParameterError, match=f"unknown parameter.*{name}"):
        build_config(NB09, _namespace(NB09, figures_dir=str(tmp_path), **{name: 1}), allow_zero=NB09_ZERO)


@pytest.mark.parametrize(
    "injected",
    [
        "# Parameters\n__import__('pathlib').Path('MARKER').touch()# = 1\n",  # binds no name
        "# Parameters\nnum_steps = 3\nimport os\n",
        "# Parameters\n_hidden = 1\n",
        "# Parameters\nnum_steps = float('nan')\n",
    ],
)
def test_injected_cell_must_be_plain_assignments(injected: str, tmp_path: Path):
    ns = _namespace(NB09, figures_dir=str(tmp_path))
    ns["In"] = ["", "seed = 0", injected, "cfg = build_config(...)"]
    with pytest.raises(ParameterError, match="injected"):
        build_config(NB09, ns, allow_zero=NB09_ZERO)
    ns["In"][2] = '# Parameters\nnum_steps = 3\nstyle = "anime"\n'
    build_config(NB09, ns, allow_zero=NB09_ZERO)


def test_notebook_name_is_checked():
    for bad in ("../09_lso_local_optimization", "9_x", "09_nope"):
        with pytest.raises(ParameterError):
            config.notebook_file(bad)


def test_papermill_injected_code_fails_the_notebook(tmp_path: Path):
    """End to end: a statement papermill injects as a "name" no longer lets the notebook finish."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    marker = tmp_path / "MARKER"
    evil = f"__import__('pathlib').Path({str(marker)!r}).touch()#"
    with pytest.raises(PapermillExecutionError, match="injected"):
        pm.execute_notebook(
            str(mainjob.NOTEBOOKS / "06_cost_table.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={evil: 1, "figures_dir": str(tmp_path)},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(tmp_path),
        )
    # The injected cell itself runs before any check can (papermill's design); the main job refuses such names.
    assert marker.exists()


# --- the figure and its record -------------------------------------------------------------------


def _cfg(tmp_path: Path) -> config.NotebookConfig:
    import torch

    return config.NotebookConfig(
        notebook="06_cost_table", values={"seed": 0, "device": "cpu"}, device=torch.device("cpu"), figures_dir=tmp_path
    )


def _fig(value: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, value])
    return fig


def test_save_figure_pair_carries_hash(tmp_path: Path):
    cfg = _cfg(tmp_path)
    png, js = report.save_figure(_fig(1.0), cfg, {"x": 1})
    assert report.load_record(cfg)["numbers"] == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [js.name, png.name]
    record = json.loads(js.read_text())
    old_png = png.read_bytes()
    report.save_figure(_fig(2.0), cfg, {"x": 2})
    assert png.read_bytes() != old_png
    png.write_bytes(old_png)  # what a kill between the renames leaves: new JSON, old PNG
    with pytest.raises(Exception, match="does not match"):
        report.load_record(cfg)
    assert record["figure_sha256"]


_KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from hrinv_nb import files
    from hrinv_nb.notebook import report
    from hrinv_nb.notebook.config import build_config
    sys.path.insert(0, sys.argv[2])
    from test_notebook_security import _cfg, _fig

    real = os.replace
    def replace_then_die(src, dst):  # the first of the two files lands, then the process is killed
        real(src, dst)
        os.kill(os.getpid(), signal.SIGKILL)
    files.os.replace = replace_then_die
    report.save_figure(_fig(3.0), _cfg(Path(sys.argv[1])), {"x": 3})
    """
)


def test_kill_between_png_and_json_is_detectable(tmp_path: Path):
    cfg = _cfg(tmp_path)
    report.save_figure(_fig(1.0), cfg, {"x": 1})
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(tmp_path), str(Path(__file__).parent)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(list(tmp_path.glob(".06_cost_table.*.tmp"))) == 1, "the second file's temporary is left behind"
    with pytest.raises(Exception, match="does not match"):  # the mixed pair is never taken for a consistent one
        report.load_record(cfg)
    report.save_figure(_fig(4.0), cfg, {"x": 4})  # the next save repairs the pair and removes the leftover
    assert report.load_record(cfg)["numbers"] == {"x": 4}
    assert not list(tmp_path.glob(".*.tmp"))
