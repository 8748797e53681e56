"""The notebook suite's structure: a literate order, a ``parameters`` cell, parameter files, a figure.

Execution itself is tested by nbval in ``make test`` (smoke parameters, build/nbsmoke); these tests
read the committed notebooks without running them.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from hrinv_nb.notebook import mainjob
from hrinv_nb.notebook.config import COMMON, read_parameters_cell, validate_parameters

NOTEBOOKS = mainjob.list_notebooks()
IDS = [nb.stem for nb in NOTEBOOKS]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _parameters(nb: nbformat.NotebookNode) -> dict[str, object]:
    cell = _code_cells(nb)[0]
    values = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), (
            f"the parameters cell must hold plain assignments only, found: {ast.unparse(node)}"
        )
        values[node.targets[0].id] = ast.literal_eval(node.value)  # plain values only
    return values


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1
    numbers = [nb.name.split("_", 1)[0] for nb in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), f"duplicate notebook numbers: {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_literate_order(path: Path):
    nb = _read(path)
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with the paper's claim"
    claim = nb.cells[0].source
    assert re.search(r"(Fig\.|Table)\s*[IVX\d]", claim), "the opening cell must name the paper's figure or table"
    assert ">" in claim, "the paper's claim is quoted (a '>' block)"
    first_code = _code_cells(nb)[0]
    assert "parameters" in first_code.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    assert "build_config(" in _code_cells(nb)[1].source, "the cell after the parameters validates them (build_config)"
    assert nb.cells[-2].cell_type == "markdown" and "onclusion" in nb.cells[-2].source, "a conclusion, then exercises"
    exercises = nb.cells[-1].source
    assert nb.cells[-1].cell_type == "markdown" and exercises.startswith("## Exercises"), "it ends with exercises"
    items = re.findall(r"^\d+\. ", exercises, flags=re.M)
    assert 2 <= len(items) <= 3, f"two or three exercises, found {len(items)}"
    params = _parameters(nb)
    named = set(re.findall(r"`(\w+) = ", exercises)) | set(re.findall(r" -p (\w+) ", exercises))
    assert named and named <= set(params), f"exercises name parameters the notebook lacks: {named - set(params)}"
    assert "**Presets.**" in claim and f"--preset teach --only {path.name[:2]}" in claim, "the title names the presets"


def _build_config_call(nb: nbformat.NotebookNode) -> ast.Call:
    calls = [
        n
        for n in ast.walk(ast.parse(_code_cells(nb)[1].source))
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "build_config"
    ]
    assert len(calls) == 1, "the validation cell calls build_config once"
    return calls[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameters_cell_plain_and_complete(path: Path):
    nb = _read(path)
    params = _parameters(nb)
    assert params == read_parameters_cell(path), "build_config reads the same parameters cell"
    assert set(COMMON) <= set(params), f"missing common parameters: {set(COMMON) - set(params)}"
    assert params["preset"] == "toy", "defaults run the embedded toy world"
    assert params["device"] == "auto"
    call = _build_config_call(nb)
    assert [ast.literal_eval(a) if isinstance(a, ast.Constant) else ast.unparse(a) for a in call.args] == [
        path.stem,
        "globals()",
    ]
    allow_zero: tuple[str, ...] = ()
    for kw in call.keywords:  # types come from the defaults; explicit ones only where a default cannot tell
        if kw.arg == "allow_zero":
            allow_zero = tuple(ast.literal_eval(kw.value))
            assert set(allow_zero) <= set(params)
            continue
        assert kw.arg in params, f"build_config names {kw.arg}, which the parameters cell does not define"
        assert params[kw.arg] is None, f"{kw.arg}: its default already gives the type, do not re-declare it"
    validate_parameters(path.stem, params, params, allow_zero=allow_zero)  # the defaults pass their own checks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameter_files(path: Path):
    params = _parameters(_read(path))
    for preset in ("smoke", "paper"):
        values = mainjob.preset_parameters(path, preset)
        unknown = set(values) - set(params)
        assert not unknown, f"{preset} YAML sets parameters the notebook does not have: {unknown}"
        call = _build_config_call(_read(path))
        allow_zero = [ast.literal_eval(kw.value) for kw in call.keywords if kw.arg == "allow_zero"]
        validate_parameters(path.stem, params, {**params, **values}, allow_zero=allow_zero[0] if allow_zero else ())
    assert mainjob.preset_parameters(path, "paper").get("preset") == "paper"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_writes_and_shows_its_figure(path: Path):
    nb = _read(path)
    code = "\n".join(c.source for c in _code_cells(nb))
    assert "report.save_figure(" in code, "the notebook must save its figure with report.save_figure"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert f"../figures/{path.stem}.png" in markdown, (
        "the markdown shows the committed figure (readable without running)"
    )
    assert (mainjob.FIGURES / f"{path.stem}.png").is_file(), "run `make figures` and commit the figure"
    assert (mainjob.FIGURES / f"{path.stem}.json").is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_private_paths_and_stripped(path: Path):
    nb = _read(path)
    code = "\n".join(c.source for c in _code_cells(nb))
    assert "sys.path" not in code and "PYTHONPATH" not in code, "no sys.path tricks: the package is installed"
    assert not re.search(r"(from|import)\s+(tests|\.)", code), "no imports from tests/ or relative paths"
    assert not re.search(r"hrinv_nb(\.\w+)*\._\w", code), "no private (underscore) names of hrinv_nb"
    assert not re.search(r"from hrinv_nb(\.\w+)* import [^\n]*\b_\w", code), "no private (underscore) imports"
    for cell in _code_cells(nb):
        assert not cell.get("outputs") and cell.get("execution_count") is None, "commit notebooks stripped (make strip)"


# The notebook metadata JupyterLab 4 writes when it opens a notebook on the kernel `make setup` installs
# (`python3`, "Python 3 (hrinv-nb)"). Committed as is, so opening a notebook leaves `git status` clean;
# `make strip` keeps it. language_info.version is the venv's Python: one with another version rewrites it.
KERNELSPEC = {"display_name": "Python 3 (hrinv-nb)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_metadata_is_what_jupyterlab_writes(path: Path):
    text = path.read_text()
    meta = json.loads(text)["metadata"]
    assert set(meta) == {"kernelspec", "language_info"}, f"notebook metadata: {sorted(meta)}"
    assert meta["kernelspec"] == KERNELSPEC
    info = dict(meta["language_info"])
    version = info.pop("version", None)
    assert info == LANGUAGE_INFO
    assert isinstance(version, str) and re.fullmatch(r"3\.\d+\.\d+", version), version
    nb = nbformat.reads(text, as_version=4)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    assert nbformat.writes(nb) + "\n" == text, "saved as Jupyter saves it (indent 1, sorted keys, final newline)"
    for cell in nb.cells:
        assert set(cell.metadata) <= {"tags", "lines_to_next_cell"}, f"cell {cell.id}: {sorted(cell.metadata)}"


def test_notebooks_agree_on_the_python_version():
    versions = {json.loads(p.read_text())["metadata"]["language_info"]["version"] for p in NOTEBOOKS}
    assert len(versions) == 1, f"language_info.version differs between notebooks: {sorted(versions)}"


def test_make_strip_restores_the_committed_file(tmp_path: Path):
    """`make strip` on an executed copy (outputs, counts, widget state) gives back the committed bytes."""
    pytest.importorskip("nbstripout")
    recipe = re.search(r"^strip:\n\t(.+)$", (mainjob.REPO / "Makefile").read_text(), re.M)
    assert recipe and "notebooks/*.ipynb" in recipe.group(1), "Makefile: no `strip` recipe over notebooks/*.ipynb"
    committed = mainjob.NOTEBOOKS / "03_w_vs_noise.ipynb"
    nb = json.loads(committed.read_text())
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = i + 1
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["run\n"]}]
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    executed = tmp_path / committed.name
    executed.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    command = recipe.group(1).replace("$(PY)", shlex.quote(sys.executable))
    subprocess.run(shlex.split(command.replace("notebooks/*.ipynb", shlex.quote(str(executed)))), check=True)
    assert executed.read_text() == committed.read_text()


def test_paper_preset_yaml_is_valid_yaml():
    for path in (mainjob.PARAMS / "paper").glob("*.yaml"):
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_every_paper_preset_variable_is_in_the_readme():
    """One vocabulary: every $HRINV_* variable a paper preset names is listed in the README (and nowhere
    does the same data set go by two names: the README table lists one variable per file or data set)."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    used = set()
    for yaml_file in sorted((Path(__file__).resolve().parents[1] / "notebooks" / "params" / "paper").glob("*.yaml")):
        used |= set(re.findall(r"\$(HRINV_[A-Z0-9_]+)", yaml_file.read_text()))
    assert used, "the paper presets name no variables"
    missing = sorted(v for v in used if f"`{v}`" not in readme)
    assert not missing, f"variables of the paper presets missing from the README: {missing}"
