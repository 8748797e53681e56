"""Fail fast: hrinv_nb.notebook.assets resolves every asset first and raises one error listing all that
are missing; the notebooks' paper presets stop in their configuration cell with that error."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
from pathlib import Path

import pytest
import yaml

from hrinv_nb.errors import HrinvError
from hrinv_nb.notebook import assets as A
from hrinv_nb.notebook import mainjob
from hrinv_nb.notebook.assets import MissingAssetsError, Need, resolve_assets
from hrinv_nb.notebook.config import ParameterError, asset_path

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "notebooks" / "params" / "paper"
VAR = re.compile(r"\$\{?(HRINV_[A-Z0-9_]+)\}?")


@pytest.fixture
def no_hrinv_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("HRINV_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _images(folder: Path, names: list[str]) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / name)
    return folder


# ----------------------------------------------------------------------------------------------
# resolve_assets


def test_every_missing_item_is_listed_in_one_error(tmp_path, no_hrinv_env):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    no_hrinv_env.setenv("HRINV_CELEBAHQ_DIR", str(empty))
    present = tmp_path / "vgg.pth"
    present.write_bytes(b"x")
    needs = {
        "G_s_path": Need("$HRINV_FFHQ_PKL", "the source generator G_s"),
        "vgg_weights": Need(str(present), "VGG16 weights"),
        "G_t_path": Need(str(tmp_path / "nowhere" / "cartoon.pkl"), "the target generator G_t"),
        "content_dir": Need("$HRINV_CELEBAHQ_DIR", "content photos", kind="dir", min_images=3),
    }
    with pytest.raises(MissingAssetsError) as info:
        resolve_assets(needs, notebook="07_cross_domain_mixing")
    err = info.value
    assert isinstance(err, HrinvError) and isinstance(err, FileNotFoundError)
    assert len(err.problems) == 3, err.problems
    text = str(err)
    assert text.startswith("07_cross_domain_mixing: 3 assets missing")
    unset, missing_file, empty_dir = err.problems
    # the unset variable: parameter, variable, what file goes there, where to put it
    assert unset.startswith("G_s_path = '$HRINV_FFHQ_PKL'")
    assert "HRINV_FFHQ_PKL is not set" in unset
    assert "ffhq-res1024-mirror-stylegan2-noaug.pkl" in unset
    assert "set HRINV_FFHQ_PKL=/path/to/it" in unset and str(A.PRETRAINED) in unset
    # a path that is not there
    assert missing_file.startswith("G_t_path = ") and "file not found" in missing_file
    assert str(tmp_path / "nowhere" / "cartoon.pkl") in missing_file
    # a folder without images: its variable, its value, the count and the documentation
    assert empty_dir.startswith("content_dir = '$HRINV_CELEBAHQ_DIR'")
    assert f"HRINV_CELEBAHQ_DIR={str(empty)!r}" in empty_dir
    assert "holds 0 images" in empty_dir and "needs 3" in empty_dir and "0.jpg" in empty_dir
    assert "Pointing the presets at the data sets" in empty_dir
    assert "vgg_weights" not in text  # the present file is not listed


def test_unset_variable_vs_missing_file_vs_missing_or_wrong_folder(tmp_path, no_hrinv_env):
    def problem(need: Need) -> str:
        with pytest.raises(MissingAssetsError) as info:
            resolve_assets({"p": need})
        (line,) = info.value.problems
        return line

    assert "the environment variable HRINV_VGG16_WEIGHTS is not set" in problem(Need("$HRINV_VGG16_WEIGHTS", "VGG"))
    no_hrinv_env.setenv("HRINV_VGG16_WEIGHTS", "")  # set but empty counts as unset
    assert "is not set" in problem(Need("${HRINV_VGG16_WEIGHTS}", "VGG"))
    no_hrinv_env.setenv("HRINV_VGG16_WEIGHTS", str(tmp_path / "vgg.pth"))
    line = problem(Need("$HRINV_VGG16_WEIGHTS", "VGG"))
    assert "file not found" in line and "is not set" not in line and "vgg16-397923af.pth" in line
    assert "folder not found" in problem(Need(str(tmp_path / "gone"), "photos", kind="dir"))
    (tmp_path / "a.png").write_bytes(b"")
    assert "is a file, not a folder" in problem(Need(str(tmp_path / "a.png"), "photos", kind="dir"))
    assert "is a folder, not a file" in problem(Need(str(tmp_path), "weights"))
    _images(tmp_path / "two", ["0.jpg", "1.jpg"])
    assert "holds 2 images" in problem(Need(str(tmp_path / "two"), "photos", kind="dir", min_images=5))
    assert "no path given" in problem(Need("", "weights"))
    assert "embedded toy asset" in problem(Need("", "G", toy="no_such_asset.safetensors"))


def test_variable_expansion_and_paths(tmp_path, no_hrinv_env):
    weights = tmp_path / "model_ir_se50.pth"
    weights.write_bytes(b"x")
    photos = _images(tmp_path / "celebahq", ["0.jpg", "1.jpg", "2.jpg"])
    no_hrinv_env.setenv("HRINV_ARCFACE_WEIGHTS", str(weights))
    no_hrinv_env.setenv("HRINV_CELEBAHQ_DIR", str(photos))
    got = resolve_assets(
        {
            "a": Need("$HRINV_ARCFACE_WEIGHTS", "ArcFace"),
            "b": Need("${HRINV_ARCFACE_WEIGHTS}", "ArcFace"),
            "c": Need(str(weights), "ArcFace"),
            "d": Need("$HRINV_CELEBAHQ_DIR", "photos", kind="dir", min_images=3),
            "e": Need("data/G_s.safetensors", "G_s"),  # relative to the repository
            "f": Need("", "G_s", toy="G_s.safetensors"),
        }
    )
    assert got["a"] == got["b"] == got["c"] == weights
    assert got["d"] == photos
    assert got["e"] == got["f"] == REPO / "data" / "G_s.safetensors"
    assert got.reasons == {} and got.unavailable == {}


def test_optional_assets_resolve_to_none_with_a_reason(tmp_path, no_hrinv_env):
    present = tmp_path / "vgg16-397923af.pth"
    present.write_bytes(b"x")

    def fallback() -> Path:
        raise FileNotFoundError("not in the torch hub cache either")

    got = resolve_assets(
        {
            "lpips_weights": Need("$HRINV_TORCHVISION_VGG16", "LPIPS", optional=True),
            "inception": Need(str(tmp_path / "gone.pth"), "Inception", optional=True),
            "lpips_default": Need("", "LPIPS", optional=True, fallback=fallback),
            "found": Need(str(present), "LPIPS", optional=True),
            "id_embedder": Need("none", "ArcFace", off=("none",)),
            "content_image": Need("", "content photo", empty="a held-out render"),
        }
    )
    assert got["lpips_weights"] is None and got["inception"] is None and got["lpips_default"] is None
    assert got["found"] == present
    assert set(got.unavailable) == {"lpips_weights", "inception", "lpips_default"}
    assert "HRINV_TORCHVISION_VGG16 is not set" in got.note("lpips_weights")
    assert got.note("lpips_weights").startswith("unavailable: ")
    assert "file not found" in got.unavailable["inception"]
    assert "torch hub cache" in got.note("lpips_default")
    assert got["id_embedder"] is None and got.note("id_embedder") == "switched off (id_embedder='none')"
    assert got["content_image"] is None and got.note("content_image") == "not given: a held-out render"
    assert "id_embedder" not in got.unavailable
    lines = got.summary().splitlines()
    assert len(lines) == 6 and lines[3] == f"found: {present}"


def test_a_fallback_locator_gives_the_default_path(tmp_path):
    path = tmp_path / "w.pth"
    got = resolve_assets({"w": Need("", "weights", fallback=lambda: path)})
    assert got["w"] == path


def test_need_checks_its_own_fields():
    with pytest.raises(HrinvError):
        Need(None, "x")  # type: ignore[arg-type]
    with pytest.raises(HrinvError):
        Need("", "x", kind="folder")  # type: ignore[arg-type]
    with pytest.raises(HrinvError):
        Need("", "x", kind="dir", min_images=0)
    with pytest.raises(HrinvError):
        resolve_assets({"x": "/some/path"})  # type: ignore[dict-item]


def test_the_error_pickles_and_is_caught_as_file_not_found(no_hrinv_env):
    try:
        resolve_assets({"a": Need("$HRINV_FFHQ_PKL", "G")}, notebook="nb")
    except FileNotFoundError as err:  # what a notebook's older except clauses catch
        again = pickle.loads(pickle.dumps(err))
        assert isinstance(again, MissingAssetsError) and str(again) == str(err) and again.problems == err.problems
    else:
        pytest.fail("no error")


def test_asset_path_is_the_same_resolution(tmp_path, no_hrinv_env):
    with pytest.raises(MissingAssetsError, match="HRINV_ARCFACE_WEIGHTS is not set"):
        asset_path("$HRINV_ARCFACE_WEIGHTS", what="ArcFace weights")
    with pytest.raises(ParameterError):
        asset_path("", what="ArcFace weights")
    assert asset_path("", "vgg16_toy.safetensors") == REPO / "data" / "vgg16_toy.safetensors"
    f = tmp_path / "x.pth"
    f.write_bytes(b"")
    no_hrinv_env.setenv("HRINV_VGG16_WEIGHTS", str(f))
    assert asset_path("$HRINV_VGG16_WEIGHTS") == f


def test_image_files_in_numeric_order(tmp_path):
    names = ["10.jpg", "2.jpg", "1.png", "0.jpg", "100.JPG", "11.webp", "a.txt", ".hidden.jpg"]
    _images(tmp_path, [n for n in names if n.lower().endswith((".jpg", ".png", ".webp"))])
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "sub.jpg").mkdir()  # a folder with an image-like name is not an image
    assert [p.name for p in A.image_files(tmp_path)] == ["0.jpg", "1.png", "2.jpg", "10.jpg", "11.webp", "100.JPG"]


def test_world_of_and_work_folder(tmp_path):
    toy = REPO / "data" / "G_s.safetensors"
    assert A.world_of(toy, REPO / "data" / "G_t_cartoon.safetensors") == "the toy world"
    assert A.world_of(tmp_path / "ffhq.pkl") == "real weights"
    assert A.world_of(toy, tmp_path / "cartoon.pkl") == "toy and real weights"
    assert A.work_folder("", "02_x") is None
    # one folder given to several notebooks: each works in its own sub-folder
    assert A.work_folder(str(tmp_path / "w"), "02_x") == tmp_path / "w" / "02_x" and (tmp_path / "w" / "02_x").is_dir()
    assert A.work_folder(str(tmp_path / "w"), "11_y") == tmp_path / "w" / "11_y"


def test_the_auto_work_folder_is_keyed_by_the_parameters(monkeypatch, tmp_path):
    monkeypatch.setattr(A, "REPO", tmp_path)
    params = {"num_steps": 1000, "seed": 0, "work_dir": "auto", "figures_dir": "", "threads": 0}
    one = A.work_folder("auto", "02_x", params)
    assert one.is_dir() and one.parent == tmp_path / "runs" / "work" / "02_x"
    # a rerun with the same parameters finds the same folder (where to write figures or how many threads
    # do not change the results); other parameters get their own folder
    assert A.work_folder("auto", "02_x", {**params, "figures_dir": "/elsewhere", "threads": 4}) == one
    assert A.work_folder("auto", "02_x", {**params, "num_steps": 999}) != one


# ----------------------------------------------------------------------------------------------
# One vocabulary: every variable of the paper presets is described here and in the README


def _paper_variables() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(PAPER.glob("*.yaml")):
        for var in VAR.findall(path.read_text()):
            found.setdefault(var, set()).add(path.stem[:2])
    return found


def test_every_paper_variable_is_described_and_in_the_readme():
    readme = (REPO / "README.md").read_text()
    variables = _paper_variables()
    assert len(variables) >= 15
    for var, notebooks in variables.items():
        assert var in A.VARIABLES, f"{var} (notebooks {sorted(notebooks)}) has no description in assets.VARIABLES"
        assert re.search(rf"^\|[^\n]*`{var}`", readme, re.M), f"{var} is not in a README table row"
    # one variable per data set: the CelebA-HQ folder is HRINV_CELEBAHQ_DIR everywhere
    assert "HRINV_CONTENT_DIR" not in variables


# ----------------------------------------------------------------------------------------------
# The notebooks: the configuration cell checks every asset of the paper preset


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _config_cell(path: Path) -> tuple[int, str]:
    code = [(i, _source(c)) for i, c in enumerate(_cells(path)) if c["cell_type"] == "code"]
    return code[1]  # the cell after the parameters cell (test_notebooks: it calls build_config)


def _key(node: ast.expr) -> str:
    """A Need's parameter name: a string key, or the name before ``[`` of an f-string key (``G_t_paths[{k}]``)."""
    if isinstance(node, ast.JoinedStr):
        return ast.literal_eval(node.values[0]).split("[")[0]
    return ast.literal_eval(node).split("[")[0]


def _dict_entries(node: ast.Dict) -> dict[str, ast.expr]:
    """``{parameter: Need(...)}`` of a dict display, ``**{... for ...}`` comprehensions included."""
    out = {}
    for k, v in zip(node.keys, node.values):
        if k is None and isinstance(v, ast.DictComp):
            out[_key(v.key)] = v.value
        elif k is None and isinstance(v, ast.Dict):
            out.update(_dict_entries(v))
        else:
            out[_key(k)] = v
    return out


def _needs(source: str) -> dict[str, ast.expr] | None:
    """The ``{parameter: Need(...)}`` that the resolve_assets call in ``source`` gets (None without one):
    a dict display, or a name assigned one in the same cell."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "resolve_assets":
            (arg,) = node.args
            if isinstance(arg, ast.Name):
                assigned = [
                    n.value
                    for n in ast.walk(tree)
                    if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == arg.id for t in n.targets)
                ]
                assert len(assigned) == 1, f"{arg.id} is assigned {len(assigned)} times"
                arg = assigned[0]
            assert isinstance(arg, ast.Dict), "resolve_assets gets a dict display of Needs"
            return _dict_entries(arg)
    return None


def _optional(call: ast.expr) -> bool:
    keywords = call.keywords if isinstance(call, ast.Call) else []
    return any(kw.arg == "optional" and ast.literal_eval(kw.value) is True for kw in keywords)


NOTEBOOKS = mainjob.list_notebooks()
# Notebooks whose configuration cell does not call resolve_assets yet (another change converts them).
NOT_YET: set[str] = set()


def test_every_notebook_with_assets_checks_them_in_its_configuration_cell():
    without = {nb.stem for nb in NOTEBOOKS if _needs(_config_cell(nb)[1]) is None}
    assert without <= NOT_YET | {"06_cost_table"}, f"no resolve_assets in the configuration cell: {without - NOT_YET}"
    assert not VAR.search((PAPER / "06_cost_table.yaml").read_text()), "06 takes no files"


def _paper_asset_parameters(nb: Path) -> dict[str, str]:
    values = yaml.safe_load((PAPER / f"{nb.stem}.yaml").read_text())
    out = {}
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and VAR.search(v) for v in items):
            out[name] = value
    return out


CHECKED = [nb for nb in NOTEBOOKS if nb.stem not in NOT_YET | {"06_cost_table"}]


@pytest.mark.parametrize("nb", CHECKED, ids=[nb.stem for nb in CHECKED])
def test_the_paper_preset_stops_in_the_configuration_cell(nb, no_hrinv_env, tmp_path):
    """Run the parameters cell, the paper preset's values and the configuration cell with no HRINV_* set:
    MissingAssetsError lists every required variable of the preset (the optional metrics excepted)."""
    _, config_source = _config_cell(nb)
    needs = _needs(config_source)
    asset_params = _paper_asset_parameters(nb)
    assert set(asset_params) <= set(needs), (
        f"paper-preset assets not checked up front: {set(asset_params) - set(needs)}"
    )
    namespace: dict = {"__builtins__": __builtins__}
    exec(_source(_cells(nb)[next(i for i, c in enumerate(_cells(nb)) if c["cell_type"] == "code")]), namespace)
    preset = yaml.safe_load((PAPER / f"{nb.stem}.yaml").read_text())
    namespace.update(preset)
    namespace["figures_dir"] = str(tmp_path)
    with pytest.raises(MissingAssetsError) as info:
        exec(config_source, namespace)
    text = str(info.value)
    optional = {name for name, call in needs.items() if _optional(call)}
    for name, value in asset_params.items():
        for var in VAR.findall(json.dumps(value)):
            if name in optional:
                assert f"{name} = " not in text, f"{name} is optional: reported unavailable, not an error"
            else:
                assert f"{var} is not set" in text, f"{nb.stem}: {name} ({var}) not listed:\n{text}"
    assert "cfg" in namespace, "build_config ran before the assets were checked"


def test_a_paper_notebook_run_stops_there_through_papermill(no_hrinv_env, tmp_path):
    """The real thing, once: notebook 11's paper preset through papermill stops in its configuration cell
    with every required variable listed, and no later cell runs."""
    pm = pytest.importorskip("papermill")
    nb = mainjob.NOTEBOOKS / "11_lso_scatter.ipynb"
    params = {**mainjob.notebook_parameters(nb, "paper", {}), "figures_dir": str(tmp_path / "figures")}
    out = tmp_path / nb.name
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(
            str(nb), str(out), parameters=params, cwd=str(nb.parent), kernel_name="python3", progress_bar=False
        )
    assert info.value.ename == "MissingAssetsError"
    for var in ("HRINV_FFHQ_PKL", "HRINV_G_T_CARTOON_PKL", "HRINV_VGG16_WEIGHTS", "HRINV_ARCFACE_WEIGHTS"):
        assert f"{var} is not set" in info.value.evalue
    assert "HRINV_CELEBAHQ_DIR is not set" in info.value.evalue
    assert "lpips_weights = " not in info.value.evalue  # optional: unavailable, not missing
    executed = json.loads(out.read_text())["cells"]
    code = [c for c in executed if c["cell_type"] == "code"]
    injected = [c for c in code if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
    after_config = code[code.index(injected[0]) + 2 :]  # parameters, injected, configuration, then the rest
    assert after_config and all(c.get("execution_count") is None for c in after_config)
