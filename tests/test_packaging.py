"""Packaging: every third-party import is declared (an extra's only lazily), constraints.txt pins
everything with ``==`` and agrees with the Makefile, pyproject and environment.yml, the torch floor
covers the APIs the code uses, the console script is declared. Fast; no network."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hrinv_nb"
CONSTRAINTS = ROOT / "constraints.txt"

# Import names that differ from their distribution's name.
IMPORT_TO_DIST = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "cv2": "opencv-python",
    "dlib": "dlib-bin",
    "torch_fidelity": "torch-fidelity",
    "IPython": "ipython",
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _core() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in _pyproject()["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def _extras() -> dict[str, dict[str, Requirement]]:
    out = {}
    for extra, reqs in _pyproject()["project"]["optional-dependencies"].items():
        out[extra] = {canonicalize_name(Requirement(r).name): Requirement(r) for r in reqs}
    return out


def _dist(module: str) -> str:
    top = module.split(".")[0]
    return canonicalize_name(IMPORT_TO_DIST.get(top, top))


def _third_party_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(top-level module, line, lazy) for every absolute import of a non-stdlib module in ``path``;
    lazy = inside a function, or under ``if TYPE_CHECKING:`` (never run on import)."""
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, True)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), lazy)
            else:
                names = []
                if isinstance(child, ast.Import):
                    names = [alias.name for alias in child.names]
                elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                    names = [child.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("hrinv_nb", "__future__"):
                        out.append((top, child.lineno, lazy))
                visit(child, lazy)

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return out


def _package_imports() -> list[tuple[str, str, int, bool]]:
    return [
        (str(path.relative_to(ROOT)), module, line, lazy)
        for path in sorted(PACKAGE.rglob("*.py"))
        for module, line, lazy in _third_party_imports(path)
    ]


def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in CONSTRAINTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert m, f"constraints.txt: {raw!r} is not pinned as name==version"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = m.group(2)
    return pins


def _makefile_var(name: str) -> str:
    m = re.search(rf"^{name}\s*:?=\s*(\S+)\s*$", (ROOT / "Makefile").read_text(), re.M)
    assert m, f"Makefile defines no {name}"
    return m.group(1)


# --- imports ---------------------------------------------------------------------------------------------------


def test_the_import_scan_sees_top_level_lazy_and_type_checking_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\nimport PIL.Image\nfrom . import sibling\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import dlib\n"
        "try:\n    import yaml\nexcept ImportError:\n    yaml = None\n"
        "def f():\n    import torch_fidelity\n    from skimage.metrics import x\n"
        "class C:\n    def g(self):\n        import papermill\n"
    )
    found = {(m, lazy) for m, _, lazy in _third_party_imports(probe)}
    assert found == {
        ("PIL", False),
        ("dlib", True),
        ("yaml", False),
        ("torch_fidelity", True),
        ("skimage", True),
        ("papermill", True),
    }
    assert [_dist(m) for m in ("PIL.Image", "dlib", "torch_fidelity", "skimage", "numpy")] == [
        "pillow",
        "dlib-bin",
        "torch-fidelity",
        "scikit-image",
        "numpy",
    ]


def test_the_scan_finds_the_package_imports():
    modules = {m for _, m, _, _ in _package_imports()}
    assert {"torch", "numpy", "scipy", "PIL", "torch_fidelity"} <= modules


def test_every_third_party_import_is_declared():
    declared = set(_core()).union(*(set(reqs) for reqs in _extras().values()))
    missing = sorted(
        {
            f"{module} ({_dist(module)}), {where}:{line}"
            for where, module, line, _ in _package_imports()
            if _dist(module) not in declared
        }
    )
    assert not missing, "imported but declared neither in [project.dependencies] nor in an extra: " + "; ".join(missing)


def test_imports_of_an_extras_module_are_lazy():
    core = set(_core())
    eager = [
        f"{where}:{line} imports {module} ({_dist(module)}, an extra) at module level"
        for where, module, line, lazy in _package_imports()
        if _dist(module) not in core and not lazy
    ]
    assert not eager, "; ".join(eager)


def test_install_hints_in_the_package_name_real_extras():
    extras = set(_extras())
    hints = {
        (path.relative_to(ROOT).as_posix(), extra.strip())
        for path in PACKAGE.rglob("*.py")
        for group in re.findall(r"hrinv_nb\[([A-Za-z0-9_,\s-]+)\]", path.read_text())
        for extra in group.split(",")
    }
    assert ("hrinv_nb/fid.py", "fid") in hints
    assert all(extra in extras for _, extra in hints), sorted(h for h in hints if h[1] not in extras)


# --- pins and floors -------------------------------------------------------------------------------------------


def test_constraints_pin_every_name_exactly():
    pins = _constraints()
    assert len(pins) > 50, "constraints.txt looks empty: regenerate it with `make lock`"
    header = CONSTRAINTS.read_text().splitlines()[0]
    assert header.startswith("#"), "constraints.txt starts with a header saying how it was made"
    assert "make lock" in CONSTRAINTS.read_text()


def test_constraints_cover_and_satisfy_every_declared_requirement():
    pins = _constraints()
    reqs = list(_core().values()) + [r for extra in _extras().values() for r in extra.values()]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is declared but not in constraints.txt: run `make lock`"
        assert Version(pins[name]) in req.specifier, f"constraints.txt pins {name}=={pins[name]}, pyproject wants {req}"


def test_torch_pins_equal_the_makefiles():
    pins = _constraints()
    torch_v, vision_v = _makefile_var("TORCH_VERSION"), _makefile_var("TORCHVISION_VERSION")
    assert pins["torch"] == torch_v
    assert pins["torchvision"] == vision_v
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION)" in makefile


def test_torch_floor_covers_the_apis_used():
    # nn.init.kaiming_normal_(..., generator=...) arrived in torch 2.2.
    spec = _core()["torch"].specifier
    floors = [Version(s.version) for s in spec if s.operator in (">=", ">")]
    assert floors and min(floors) >= Version("2.2"), f"torch {spec}: the floor must be at least 2.2"
    assert Version("2.1.2") not in spec
    assert Version(_makefile_var("TORCH_VERSION")) in spec
    assert Version(_makefile_var("TORCHVISION_VERSION")) in _core()["torchvision"].specifier


def test_environment_yml_pins_the_same_torch_and_uses_the_constraints():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lines = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert f"torch=={_makefile_var('TORCH_VERSION')}" in pip_lines
    assert f"torchvision=={_makefile_var('TORCHVISION_VERSION')}" in pip_lines
    assert "-c constraints.txt" in pip_lines
    assert f"-e .[{_makefile_var('EXTRAS')}]" in pip_lines
    torch_lines = [line for line in pip_lines if re.match(r"torch(vision)?\b", line)]
    assert all("==" in line for line in torch_lines), torch_lines
    assert not any("index-url" in line for line in pip_lines), "the torch pins must come from the pinned index"


# --- Makefile, CI, entry point ---------------------------------------------------------------------------------


def test_setup_installs_every_extra_with_the_constraints():
    extras = _makefile_var("EXTRAS").split(",")
    assert {"test", "dev", "align", "fid"} <= set(extras)
    browser = _makefile_var("BROWSER_EXTRA")  # installed by `make browser-check` only, pinned all the same
    assert browser not in extras, "the browser extra is not part of `make setup`"
    assert set(extras) | {browser} == set(_extras()), (
        "constraints.txt is made from exactly the extras `make lock` installs"
    )
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -e '.[$(EXTRAS),$(BROWSER_EXTRA)]'" in makefile
    assert re.search(r"^\$\(STAMP\):.*pyproject\.toml.*Makefile.*\$\(CONSTRAINTS\)", makefile, re.M)
    assert "pip install -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'" in makefile
    assert _makefile_var("CONSTRAINTS") == "constraints.txt"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_torch_index_picks_where_torch_comes_from(tmp_path):
    def dry_run(*args: str) -> list[str]:
        cmd = ["make", "-n", "-C", str(ROOT), "setup", f"VENV={tmp_path / 'venv'}", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return [line for line in out.splitlines() if "torch==" in line]

    torch_v, vision_v = _makefile_var("TORCH_VERSION"), _makefile_var("TORCHVISION_VERSION")
    (default,) = dry_run()
    assert default.endswith(f"pip install torch=={torch_v} torchvision=={vision_v}")
    (cpu,) = dry_run("TORCH_INDEX=http://cpu-wheels.invalid/whl/cpu")
    assert "--index-url http://cpu-wheels.invalid/whl/cpu" in cpu
    assert cpu.endswith(f"torch=={torch_v} torchvision=={vision_v}")


def test_ci_installs_the_system_deps_then_runs_exactly_make_test():
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    makes = [c for c in commands if c.startswith("make")]
    assert makes == ["make system-deps", "make test"]
    readme = (ROOT / "README.md").read_text()
    assert "make system-deps" in readme
    assert "make test" in readme


def test_console_script_is_declared():
    assert _pyproject()["project"]["scripts"]["hrinv"] == "hrinv_nb.cli:main"


def test_specifier_parsing_sanity():
    # The pins above are compared with packaging's rules: a local CPU build satisfies the plain pin.
    assert Version("2.14.1+cpu") in SpecifierSet("==2.14.1")
