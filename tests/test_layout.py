"""The package's layering: the method modules at the top of hrinv_nb/ never import the study helpers,
the toy world or the notebook machinery (those build on the method, not the other way round)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hrinv_nb"
LOWER_LAYERS = ("studies", "toy", "notebook")


def _imported_modules(path: Path) -> list[str]:
    """Absolute dotted names that each import statement of ``path`` may load (lazy imports included):
    the module itself and, for ``from M import n``, also ``M.n`` (n may be a submodule)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level <= 1, f"{path.name}: import reaches above hrinv_nb"
            base = node.module or "" if node.level == 0 else "hrinv_nb" + (f".{node.module}" if node.module else "")
            out += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return out


def _forbidden(name: str) -> bool:
    return any(name == f"hrinv_nb.{layer}" or name.startswith(f"hrinv_nb.{layer}.") for layer in LOWER_LAYERS)


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_method_modules_do_not_import_studies_toy_or_notebook(path):
    bad = [name for name in _imported_modules(path) if _forbidden(name)]
    assert not bad, f"{path.name} imports {bad}"


def test_the_check_sees_relative_absolute_and_lazy_imports(tmp_path):
    probe = tmp_path / "probe.py"
    lines = [
        "from .studies.w_vs_noise import x",
        "from . import toy",
        "import hrinv_nb.notebook.report",
        "from hrinv_nb import studies",
        "def f():\n    from .notebook import config",
    ]
    for line in lines:
        probe.write_text(line + "\n")
        assert any(_forbidden(name) for name in _imported_modules(probe)), line
    probe.write_text("from . import metrics\nfrom .networks import Generator\nimport torch\n")
    assert not any(_forbidden(name) for name in _imported_modules(probe))
