"""Every notebook that measures identity takes ArcFace IR-SE-50 weights in its paper preset, through the one
resolver (hrinv_nb.studies.cross_domain.identity_embedder) that also reads the toy embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ARCFACE_VAR = "$HRINV_ARCFACE_WEIGHTS"


def _identity_notebooks() -> list[Path]:
    """Notebooks with an ``id_embedder`` parameter."""
    out = []
    for nb in sorted(NOTEBOOKS.glob("[0-9]*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        params = next(
            ("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), ""
        )
        if "id_embedder =" in params:
            out.append(nb)
    return out


def test_identity_notebooks_take_arcface_in_the_paper_preset():
    notebooks = _identity_notebooks()
    names = {nb.stem[:2] for nb in notebooks}
    assert {"00", "05", "07", "08", "09", "10", "11", "12"} <= names, names
    for nb in notebooks:
        preset = yaml.safe_load((NOTEBOOKS / "params" / "paper" / f"{nb.stem}.yaml").read_text(encoding="utf-8"))
        assert preset["id_embedder"] == ARCFACE_VAR, f"{nb.name}: paper preset id_embedder = {preset['id_embedder']!r}"
        code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text(encoding="utf-8"))["cells"])
        assert "identity_embedder(cfg.id_embedder" in code, f"{nb.name} must use the shared resolver"
        assert "load_id_embedder(" not in code, f"{nb.name} reads only the toy embedder's format"
    readme = (NOTEBOOKS.parent / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `HRINV_ARCFACE_WEIGHTS` |"))
    assert "00, 05, 07–12" in row, row


def test_resolver_reads_arcface_weights_from_a_variable(monkeypatch, arcface_weights):
    from hrinv_nb.studies.cross_domain import identity_embedder

    monkeypatch.setenv("HRINV_ARCFACE_WEIGHTS", str(arcface_weights))  # TreB1eN's key names, random weights
    embed = identity_embedder(ARCFACE_VAR)
    e = embed(torch.rand(2, 3, 48, 48) * 2 - 1)
    assert e.shape == (2, 512)
    monkeypatch.delenv("HRINV_ARCFACE_WEIGHTS")
    with pytest.raises(FileNotFoundError, match="HRINV_ARCFACE_WEIGHTS"):
        identity_embedder(ARCFACE_VAR)
