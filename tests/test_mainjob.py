"""The main job's command line: listing, parameter parsing, the fixture-grid fallback."""

from __future__ import annotations

from pathlib import Path

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
    assert "no notebook matches" in capsys.readouterr().out
