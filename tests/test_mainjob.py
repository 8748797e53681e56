"""The main job's command line: listing and selection, parameter checks, presets, the summary, the fixture grid."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from hrinv_nb.notebook import mainjob


def test_parse_value():
    assert mainjob.parse_value("50") == 50
    assert mainjob.parse_value("0.1") == 0.1
    assert mainjob.parse_value("True") is True
    assert mainjob.parse_value("cuda") == "cuda"
    assert mainjob.parse_value("[1, 2]") == [1, 2]


def test_list_notebooks_sorted(tmp_path: Path):
    for name in ("10_b.ipynb", "02_a.ipynb", "notes.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in mainjob.list_notebooks(tmp_path)] == ["02_a.ipynb", "10_b.ipynb"]


def test_fixture_grid(tmp_path: Path):
    out = mainjob.fixture_sample_grid(tmp_path / "grid.png", n=3)
    assert out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_only_exits_nonzero(capsys):
    assert mainjob.main(["--only", "99_nonexistent"]) == 2
    assert "no notebook matches" in capsys.readouterr().err


# --- notebook selection -------------------------------------------------------------------------


def test_list_notebooks_only_exact_names(tmp_path: Path):
    for name in ("03_w_vs_noise.ipynb", "03_w_vs_noise-Copy1.ipynb", "04_A.ipynb", "05_x.ipynb.bak", "6_y.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in mainjob.list_notebooks(tmp_path)] == ["03_w_vs_noise.ipynb"]


def test_select_two_digits_or_full_names():
    nbs = mainjob.list_notebooks()
    assert [p.stem for p in mainjob.select_notebooks(nbs, ["01"])] == ["01_downsampling_artifacts"]
    assert [
        p.stem for p in mainjob.select_notebooks(nbs, ["03_w_vs_noise", "01", "01_downsampling_artifacts.ipynb"])
    ] == ["01_downsampling_artifacts", "03_w_vs_noise"]
    for bad in ("", "1", "0", "01_down", "w_vs_noise", "100"):
        with pytest.raises(mainjob.SelectionError, match="00_quickstart"):  # the error lists the valid names
            mainjob.select_notebooks(nbs, [bad])


@pytest.mark.parametrize("only", ["", "1"])
def test_bad_only_is_an_error(only: str, capsys):
    assert mainjob.main(["--only", only, "--list"]) == 2
    err = capsys.readouterr().err
    assert "14_style_inr_nonsquare" in err, "the error lists the valid names"


# --- parameters and presets: names and values never run as code ----------------------------------


@pytest.fixture
def no_papermill(monkeypatch):
    """Fail the test if a notebook would be executed."""
    import papermill

    calls = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: calls.append((a, k)))
    return calls


EVIL = "__import__('pathlib').Path('MARKER').touch()#"


def test_code_as_parameter_name_is_refused(tmp_path: Path, no_papermill, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = mainjob.main(["--only", "06", "-p", EVIL, "1", "--run-dir", str(tmp_path / "run")])
    assert rc == 2 and no_papermill == [] and not (tmp_path / "MARKER").exists()
    assert "not a parameter name" in capsys.readouterr().err


def test_code_as_preset_key_is_refused(tmp_path: Path, no_papermill, monkeypatch):
    params = tmp_path / "params"
    (params / "evil").mkdir(parents=True)
    (params / "evil" / "06_cost_table.yaml").write_text(f'"{EVIL}": 1\n')
    monkeypatch.setattr(mainjob, "PARAMS", params)
    monkeypatch.setattr(mainjob.preset_folder, "__defaults__", (params,))
    monkeypatch.setattr(mainjob.available_presets, "__defaults__", (params,))
    monkeypatch.chdir(tmp_path)
    assert mainjob.main(["--only", "06", "--preset", "evil", "--run-dir", str(tmp_path / "run")]) == 2
    assert no_papermill == [] and not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("preset", ["../../../somewhere", "paper/../smoke", "/etc", "..", "nope", ""])
def test_preset_is_a_plain_folder_name(preset: str, tmp_path: Path, no_papermill, capsys):
    assert mainjob.main(["--only", "06", "--preset", preset, "--run-dir", str(tmp_path / "run")]) == 2
    assert no_papermill == []
    assert "['paper', 'smoke', 'teach']" in capsys.readouterr().err, "the error lists the valid presets"


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("lso_steps", "-5", "lso_steps=-5 must be >= 1"),
        ("num_steps", "0", "num_steps=0 must be >= 1"),
        ("reg_weight", "float('nan')", "must be float"),  # not a literal: stays a string
        ("reg_weight", "1e999", "finite"),
        ("num_steps", "2.5", "must be int"),
        ("num_steps", "{1, 2}", "plain literals"),
        ("style", "b'x'", "plain literals"),
        ("class", "1", "not a parameter name"),
        ("lr", "0.1", "has no parameter 'lr'"),
    ],
)
def test_bad_parameters_are_refused_before_running(name, value, message, tmp_path, no_papermill, capsys):
    assert mainjob.main(["--only", "09", "-p", name, value, "--run-dir", str(tmp_path / "run")]) == 2
    assert no_papermill == []
    assert message in capsys.readouterr().err


def test_good_parameters_reach_papermill(tmp_path: Path, no_papermill):
    assert (
        mainjob.main(
            ["--only", "06", "--preset", "smoke", "-p", "hires_resolution", "0", "--run-dir", str(tmp_path / "run")]
        )
        == 0
    )
    ((args, kwargs),) = no_papermill
    assert kwargs["parameters"]["hires_resolution"] == 0 and kwargs["parameters"]["toy_lso_steps"] == 2


def test_cell_timeout_is_a_parameter(tmp_path: Path, no_papermill):
    """The per-cell limit defaults to CELL_TIMEOUT_S, can be raised, and 0 switches it off (paper-size runs)."""
    base = ["--only", "06", "--preset", "smoke", "--run-dir", str(tmp_path / "run")]
    assert mainjob.main(base) == 0
    assert mainjob.main([*base, "--cell-timeout", "86400"]) == 0
    assert mainjob.main([*base, "--cell-timeout", "0"]) == 0
    timeouts = [kwargs["execution_timeout"] for _args, kwargs in no_papermill]
    assert timeouts == [mainjob.CELL_TIMEOUT_S, 86400, None]
    with pytest.raises(SystemExit):
        mainjob.main([*base, "--cell-timeout", "-1"])


def test_paper_preset_has_no_cell_limit_by_default(tmp_path: Path, no_papermill):
    """At the paper's sizes single cells run for hours: the paper preset runs without a per-cell limit
    unless one is given."""
    base = ["--only", "06", "--preset", "paper", "--run-dir", str(tmp_path / "run")]
    assert mainjob.main(base) == 0
    assert mainjob.main([*base, "--cell-timeout", "600"]) == 0
    timeouts = [kwargs["execution_timeout"] for _args, kwargs in no_papermill]
    assert timeouts == [None, 600]


# --- interruption ----------------------------------------------------------------------------------


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_ctrl_c_is_recorded_as_interrupted(tmp_path: Path, monkeypatch):
    import papermill

    nbs = mainjob.list_notebooks()[:3]
    seen = []

    def fake(src, dest, **kwargs):
        seen.append(Path(src).name)
        assert _summary(tmp_path)["running"] == Path(src).name, "summary names the notebook in flight"
        if len(seen) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", fake)
    with pytest.raises(BaseException) as info:
        mainjob.run_notebooks(nbs, {}, tmp_path)
    assert not isinstance(info.value, Exception), "an interrupt is not swallowed as a notebook failure"
    summary = _summary(tmp_path)
    assert summary["status"] == "interrupted"
    assert summary["interrupted"] == {"notebook": nbs[1].name, "signal": "SIGINT"}
    assert summary["completed"] == [nbs[0].name] and summary["failed"] == []
    assert seen == [nbs[0].name, nbs[1].name], "nothing runs after the interrupt"


def test_sigterm_exits_nonzero_with_interrupted_summary(tmp_path: Path, monkeypatch):
    import papermill

    def fake(src, dest, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("SIGTERM did not interrupt the run")

    def unhandled(signum, frame):
        raise AssertionError("the main job does not handle SIGTERM")

    monkeypatch.setattr(papermill, "execute_notebook", fake)
    before = signal.signal(signal.SIGTERM, unhandled)  # instead of dying, fail the test if main does not handle it
    try:
        rc = mainjob.main(["--only", "06", "--only", "07", "--run-dir", str(tmp_path)])
        assert signal.getsignal(signal.SIGTERM) is unhandled, "the previous SIGTERM handler is restored"
    finally:
        signal.signal(signal.SIGTERM, before)
    assert rc == 143
    summary = _summary(tmp_path)
    assert summary["status"] == "interrupted"
    assert summary["interrupted"] == {"notebook": "06_cost_table.ipynb", "signal": "SIGTERM"}


def test_kernel_keyboard_interrupt_counts_as_interrupt(tmp_path: Path, monkeypatch):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def fake(src, dest, **kwargs):
        raise PapermillExecutionError(3, 1, "KeyboardInterrupt", "KeyboardInterrupt", "", [])

    monkeypatch.setattr(papermill, "execute_notebook", fake)
    assert mainjob.main(["--only", "06", "--run-dir", str(tmp_path)]) == 130
    assert _summary(tmp_path)["interrupted"]["notebook"] == "06_cost_table.ipynb"


def test_finished_summary(tmp_path: Path, no_papermill):
    assert mainjob.main(["--only", "06", "--only", "00", "--run-dir", str(tmp_path)]) == 0
    summary = _summary(tmp_path)
    assert summary["status"] == "ok" and summary["interrupted"] is None and summary["running"] is None
    assert summary["completed"] == ["00_quickstart.ipynb", "06_cost_table.ipynb"]


def _copying_papermill(monkeypatch):
    """A papermill stand-in that writes the source notebook as the executed copy and records the parameters."""
    import shutil

    import papermill

    calls = []

    def fake(src, dest, **kwargs):
        calls.append(kwargs["parameters"])
        shutil.copyfile(src, dest)

    monkeypatch.setattr(papermill, "execute_notebook", fake)
    return calls


def test_a_preset_run_writes_its_figures_in_the_run_and_says_so_in_the_title(tmp_path: Path, monkeypatch):
    import nbformat

    calls = _copying_papermill(monkeypatch)
    assert mainjob.main(["--preset", "smoke", "--only", "03", "--run-dir", str(tmp_path)]) == 0
    assert calls[0]["figures_dir"] == str((tmp_path / "figures").resolve()), "never the committed figures/"
    copy = nbformat.read(tmp_path / "03_w_vs_noise.ipynb", as_version=4)
    title = copy.cells[0].source
    assert title.startswith("# 03 ") and "ran with the `smoke` preset" in title
    assert "notebooks/params/smoke/03_w_vs_noise.yaml" in title and "`num_steps=20`" in title
    links = [c.source for c in copy.cells if c.cell_type == "markdown" and "figures/03_w_vs_noise.png" in c.source]
    assert links and all("](../figures/" not in s for s in links), "links are rewritten for the copy's folder"
    target = os.path.relpath(mainjob.FIGURES / "03_w_vs_noise.png", tmp_path.resolve())
    assert f"]({target})" in links[0] and (tmp_path / target).exists(), "the link reaches the committed figure"


def test_the_default_run_writes_the_committed_figures(tmp_path: Path, monkeypatch):
    import nbformat

    calls = _copying_papermill(monkeypatch)
    assert mainjob.main(["--only", "03", "-p", "num_steps", "7", "--run-dir", str(tmp_path)]) == 0
    assert "figures_dir" not in calls[0]
    title = nbformat.read(tmp_path / "03_w_vs_noise.ipynb", as_version=4).cells[0].source
    assert "ran with the default parameters" in title and "`num_steps=7`" in title
    calls.clear()
    given = str(tmp_path / "mine")
    assert (
        mainjob.main(["--preset", "smoke", "--only", "03", "-p", "figures_dir", given, "--run-dir", str(tmp_path)]) == 0
    )
    assert calls[0]["figures_dir"] == given, "an explicit figures_dir wins"
