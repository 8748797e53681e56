"""hrinv_nb.notebook.coverage: the README's coverage table from the notebooks' JSON records."""

from __future__ import annotations

import json

import pytest

from hrinv_nb.notebook import coverage


def _record(tmp_path, name, claims):
    (tmp_path / f"{name}.json").write_text(
        json.dumps({"claims": claims, "written": "2026-11-28T01:00", "wall_seconds": 5})
    )


def test_table_counts_the_verdicts_of_numbered_records(tmp_path):
    _record(tmp_path, "01_a", [{"name": "x", "verdict": "held"}, {"name": "y", "verdict": "NOT held"}])
    _record(tmp_path, "02_b", [{"name": "z", "held": None, "outcome": "inconclusive"}])
    (tmp_path / "toy_world.json").write_text("{}")  # not a notebook record
    table = coverage.coverage_table(coverage.load_records(tmp_path))
    lines = table.splitlines()
    assert len(lines) == 4 and "[`01_a`](notebooks/01_a.ipynb)" in lines[2]
    assert "1 held, 1 not held" in lines[2] and "x: **held**" in lines[2] and "1 inconclusive" in lines[3]


def test_write_replaces_only_between_the_markers(tmp_path):
    _record(tmp_path, "01_a", [{"name": "x", "verdict": "held"}])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{coverage.START}\nold table\n{coverage.END}\noutro\n")
    assert coverage.main(["--figures", str(tmp_path), "--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text and "x: **held**" in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="coverage:start"):
        coverage.main(["--figures", str(tmp_path), "--write", str(readme)])


def test_titles_come_from_the_notebooks_first_heading(tmp_path):
    _record(tmp_path, "01_a", [{"name": "x", "verdict": "held"}])
    nb = {"cells": [{"cell_type": "markdown", "source": ["# 01 · Artifacts (Fig. 1)\n", "text"]}]}
    (tmp_path / "01_a.ipynb").write_text(json.dumps(nb))
    table = coverage.coverage_table(coverage.load_records(tmp_path), tmp_path)
    assert "[`01_a`](notebooks/01_a.ipynb): Artifacts (Fig. 1) |" in table


def test_verdict_lists_group_claims_and_give_reasons(tmp_path):
    _record(tmp_path, "01_a", [{"name": "x", "verdict": "held"}, {"name": "y", "held": False, "outcome": "not held"}])
    _record(tmp_path, "02_b", [{"name": "z", "held": None, "outcome": "control passes"}])
    records = coverage.load_records(tmp_path)
    reasons = {"01_a": {"y": "the toy VGG sees no texture."}}
    text = coverage.verdict_lists(records, reasons)
    assert text.index("**Held** (1)") < text.index("**Not held** (1)") < text.index("**Not testable here")
    assert "- **01** x (*held*)\n" in text and "- **01** y (*not held*): the toy VGG sees no texture." in text
    assert "- **02** z (*control passes*): *(no reason written yet)*" in text
    assert coverage.missing_reasons(records, reasons) == ["02_b: z"]


def test_check_fails_on_a_stale_readme_and_write_fixes_it(tmp_path, capsys):
    _record(tmp_path, "01_a", [{"name": "y", "held": False, "outcome": "not held"}])
    reasons = tmp_path / "reasons.yaml"
    reasons.write_text("01_a:\n  y: because.\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"{coverage.START}\n{coverage.END}\n{coverage.VERDICTS_START}\nold\n{coverage.VERDICTS_END}\n")
    args = ["--figures", str(tmp_path), "--reasons", str(reasons)]
    assert coverage.main([*args, "--check", str(readme)]) == 1
    assert coverage.main([*args, "--write", str(readme)]) == 0
    assert "- **01** y (*not held*): because." in readme.read_text()
    assert coverage.main([*args, "--check", str(readme)]) == 0
    reasons.write_text("- not a mapping\n")
    with pytest.raises(ValueError, match="mapping"):
        coverage.main([*args, "--check", str(readme)])


def test_the_committed_readme_agrees_with_the_committed_records(capsys):
    """The README's coverage table and verdict lists are what figures/*.json and claim_reasons.yaml say,
    and every claim that did not hold has its sentence of why."""
    assert coverage.main(["--check", str(coverage.REPO / "README.md")]) == 0, capsys.readouterr().out
    missing = coverage.missing_reasons(coverage.load_records(coverage.REPO / "figures"), coverage.load_reasons())
    assert not missing, f"claims without a reason in {coverage.REASONS}: {missing}"
