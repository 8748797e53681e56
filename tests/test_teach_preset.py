"""The ``teach`` preset: one checked YAML per numbered notebook, each stating what it reduces and its cost.

Fast: reads the YAML files and the notebooks' parameters cells; executes no notebook.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hrinv_nb.notebook import config, mainjob

TEACH = mainjob.PARAMS / "teach"
NOTEBOOKS = mainjob.list_notebooks()
HEADER = re.compile(r"# Teach preset: .+ about \d+ s on 2 cores")


def teach_yaml(nb: Path) -> Path:
    return TEACH / f"{nb.stem}.yaml"


def test_teach_is_a_preset():
    assert "teach" in mainjob.available_presets()
    assert mainjob.preset_folder("teach") == TEACH


def test_every_teach_yaml_names_a_notebook():
    stems = {nb.stem for nb in NOTEBOOKS}
    strays = sorted(p.name for p in TEACH.glob("*.yaml") if p.stem not in stems)
    assert not strays, f"teach YAML files without a numbered notebook: {strays}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_teach_yaml_exists_and_is_accepted(nb: Path):
    assert teach_yaml(nb).is_file(), f"{nb.name} has no teach preset file"
    values = mainjob.notebook_parameters(nb, "teach", {})
    assert values == mainjob.preset_parameters(nb, "teach"), "the checked values are the YAML's own"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_teach_yaml_header(nb: Path):
    first = teach_yaml(nb).read_text().splitlines()[0]
    assert first.startswith("# Teach preset:"), f"{nb.stem}.yaml must start with '# Teach preset: ...'"
    assert HEADER.match(first), f"the header states what is reduced and its measured cost ('about N s'): {first!r}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_teach_yaml_leaves_threads_and_figures_alone(nb: Path):
    values = yaml.safe_load(teach_yaml(nb).read_text()) or {}
    assert "threads" not in values, "the teach run uses the user's default thread count"
    assert "figures_dir" not in values, "a teach run writes its figures under its run dir"


def _no_more_than(teach: object, default: object) -> bool:
    """Whether a teach value asks for no more work than the default: numbers ≤, lists elementwise ≤ or subsets."""
    if isinstance(teach, bool) or isinstance(default, bool):
        return True  # switches are not sizes
    if isinstance(teach, (int, float)) and isinstance(default, (int, float)):
        return teach <= default
    if isinstance(teach, list) and isinstance(default, list):
        if all(isinstance(v, (int, float)) for v in teach + default) and len(teach) == len(default):
            return all(t <= d for t, d in zip(teach, default, strict=True))
        return all(v in default for v in teach)
    return True


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_teach_values_are_no_bigger_than_defaults(nb: Path):
    defaults = config.read_parameters_cell(nb)
    for name, value in mainjob.preset_parameters(nb, "teach").items():
        assert _no_more_than(value, defaults[name]), f"{nb.stem}: teach {name}={value!r} exceeds {defaults[name]!r}"
