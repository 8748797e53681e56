"""The cross-domain notebooks (07–13) share one protocol: their parameter defaults equal
``hrinv_nb.studies.protocol``'s constants, and λ_reg comes from ``default_reg_weight``."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from hrinv_nb.lso import resolution_reg_weight
from hrinv_nb.studies import protocol

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CROSS_DOMAIN = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if p.name[:2] in {f"{n:02d}" for n in range(7, 14)})

# parameter name -> the protocol constant its default must equal
EXPECTED = {
    "num_steps": protocol.PROJECTION_STEPS,
    "proj_steps": protocol.PROJECTION_STEPS,
    "lso_steps": protocol.LSO_STEPS,
    "content_seed": protocol.CONTENT_SEED,
    "style_seed": protocol.STYLE_SEED,
}


def _parameters(path: Path) -> dict[str, object]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    values = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_the_cross_domain_notebooks_are_there():
    assert [p.name[:2] for p in CROSS_DOMAIN] == ["07", "08", "09", "10", "11", "12", "13"]


@pytest.mark.parametrize("path", CROSS_DOMAIN, ids=[p.stem[:2] for p in CROSS_DOMAIN])
def test_defaults_follow_the_protocol(path: Path):
    params = _parameters(path)
    checked = {k: v for k, v in params.items() if k in EXPECTED}
    assert "lso_steps" in checked and "content_seed" in checked, f"{path.name}: no protocol parameters found"
    assert {"num_steps", "proj_steps"} & set(checked), f"{path.name}: no projection steps parameter"
    wrong = {k: (v, EXPECTED[k]) for k, v in checked.items() if v != EXPECTED[k]}
    assert not wrong, f"{path.name}: parameter defaults differ from hrinv_nb.studies.protocol (got, protocol): {wrong}"
    assert params.get("reg_weight", -1.0) < 0, f"{path.name}: reg_weight's default must defer to the protocol"


@pytest.mark.parametrize("path", CROSS_DOMAIN, ids=[p.stem[:2] for p in CROSS_DOMAIN])
def test_reg_weight_comes_from_the_protocol(path: Path):
    code = "".join(
        "".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"
    )
    assert "default_reg_weight(" in code, f"{path.name}: λ_reg must come from protocol.default_reg_weight"
    assert "resolution_reg_weight(" not in code, f"{path.name}: a second rule for λ_reg"


def test_default_reg_weight():
    assert protocol.default_reg_weight("the toy world", 128) == protocol.TOY_REG_WEIGHT
    assert protocol.default_reg_weight("real weights", 1024) == pytest.approx(0.01)
    assert protocol.default_reg_weight("real weights", 256) == pytest.approx(resolution_reg_weight(256))
    # a mix of toy and real generators is not the toy world: the real VGG's scale decides
    assert protocol.default_reg_weight("toy and real weights", 1024) == pytest.approx(0.01)
