"""Figures and their numbers: ``figures/NN_name.png`` with ``figures/NN_name.json`` beside it.

A notebook ends with one :func:`save_figure` call. The JSON holds the measured numbers, the paper
claims checked (each held / not held with its numbers), the parameters, the seed, the package
version, the device and the software versions, so a figure can always be traced to its run.
Paper claims are *recorded*, never asserted: a claim that fails in the toy world is a result.

The pair is written as one unit: the PNG is rendered in memory, the JSON records its SHA-256
(``figure_sha256``), both are written to temporaries and flushed, and only then renamed, the JSON
first. A reader therefore sees the old pair, the new pair, or (after a kill between the two renames)
a new JSON beside the old PNG -- which :func:`check_figure` and :func:`load_record` detect by the hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FileFormatError
from ..files import atomic_write_all
from ..plain_data import to_plain
from .config import NotebookConfig

_OUTCOME_TEXT = {
    "held": "held",
    "not held": "NOT held",
    "inconclusive": "inconclusive",
    "control passes": "control passes",
}


@dataclass(frozen=True)
class Claim:
    """One paper claim checked in our setting: what the paper says, what we measured, and whether it held.

    The optional fields are the record of a pre-registered test (built by
    :func:`hrinv_nb.studies.verdict.claim_from_test`): the prediction written before the run, the
    control (or why there is none), the measured effects as ``{mean, sem, n, n_clusters, units}``, the
    smallest detectable effect, the paper's effect, whether that was detectable, and the four-valued
    outcome. Claims built from the first four fields alone keep the three-valued verdict.
    """

    name: str
    paper: str
    ours: str
    held: bool | None  # None: not testable here (say why in ``ours``), inconclusive, or the control passes
    prediction: str | None = None
    control: str | None = None
    effect: dict[str, Any] | None = None
    control_effect: dict[str, Any] | None = None
    mde: float | None = None
    paper_effect: float | None = None
    detectable: bool | None = None
    outcome: str | None = None  # "held", "not held", "inconclusive" or "control passes"

    def __post_init__(self) -> None:
        assert self.outcome is None or self.outcome in _OUTCOME_TEXT, f"unknown outcome {self.outcome!r}"
        if self.outcome is not None:  # ``held`` must say the same as the outcome
            expected = {"held": True, "not held": False}.get(self.outcome)
            assert self.held is expected, f"{self.name}: held={self.held} contradicts outcome {self.outcome!r}"

    @property
    def verdict(self) -> str:
        if self.outcome is not None:
            return _OUTCOME_TEXT[self.outcome]
        return {True: "held", False: "NOT held", None: "not testable"}[self.held]


def _json_leaf(value: Any) -> Any:
    """JSON-able form of a value :func:`to_plain` leaves: tensors and arrays as lists, NaN/inf as strings."""
    if isinstance(value, torch.Tensor):
        return to_plain(value.detach().cpu().tolist(), _json_leaf)
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist(), _json_leaf)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Claim):  # walked again: its effects may hold NaN standard errors
        return to_plain({**asdict(value), "verdict": value.verdict}, _json_leaf)
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-able copy of ``value`` (tensors and numpy → lists/floats, NaN/inf → strings, paths → str)."""
    return to_plain(value, _json_leaf)


def figure_paths(cfg: NotebookConfig) -> tuple[Path, Path]:
    """``(png, json)`` paths of the notebook's figure in its figures folder."""
    return cfg.figures_dir / f"{cfg.notebook}.png", cfg.figures_dir / f"{cfg.notebook}.json"


def save_figure(
    fig: Any,
    cfg: NotebookConfig,
    numbers: Mapping[str, Any],
    claims: Sequence[Claim] = (),
    *,
    dpi: int = 110,
) -> tuple[Path, Path]:
    """Write ``fig`` (matplotlib) to ``<figures_dir>/<notebook>.png`` and its record to ``.json``; return both paths.

    Both files are replaced together (see the module docstring); the record carries the PNG's SHA-256.
    """
    from .. import __version__

    png, js = figure_paths(cfg)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    png_bytes = buffer.getvalue()
    record = {
        "notebook": cfg.notebook,
        "figure": png.name,
        "figure_sha256": hashlib.sha256(png_bytes).hexdigest(),
        "numbers": _plain(numbers),
        "claims": [_plain(c) for c in claims],
        "parameters": _plain(cfg.as_dict()),
        "seed": cfg.values["seed"],
        "device": str(cfg.device),
        "device_name": torch.cuda.get_device_name(cfg.device)
        if cfg.device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "hrinv_nb": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    record["wall_seconds"] = round(time.perf_counter() - cfg.started, 1)  # since build_config
    text = json.dumps(record, indent=2) + "\n"
    # JSON first: after a kill between the renames the new record names a hash the old PNG lacks.
    atomic_write_all(
        [(js, lambda tmp: Path(tmp).write_text(text)), (png, lambda tmp: Path(tmp).write_bytes(png_bytes))]
    )
    return png, js


def check_figure(png: Path, js: Path) -> dict[str, Any]:
    """The record ``js`` after checking that ``png`` is the figure it describes (by SHA-256).

    Raises :class:`~hrinv_nb.errors.FileFormatError` on a mismatched pair (a save interrupted between
    its two renames); records written before the hash was recorded are returned unchecked.
    """
    record = json.loads(js.read_text())
    expected = record.get("figure_sha256")
    if expected is not None:
        actual = hashlib.sha256(png.read_bytes()).hexdigest() if png.is_file() else "missing"
        if actual != expected:
            raise FileFormatError(
                f"{png} does not match its record {js} (sha256 {actual[:12]} != {expected[:12]}): the last save was "
                f"interrupted; run the notebook again"
            )
    return record


def load_record(cfg: NotebookConfig) -> dict[str, Any]:
    """Read back the JSON record written by :func:`save_figure`, checked against its PNG."""
    return check_figure(*figure_paths(cfg))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".3g") -> str:
    """A GitHub-markdown table; floats formatted with ``floatfmt``, ``None`` shown as '–'."""

    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def show_table(header: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".3g") -> None:
    """Display a markdown table once (in a notebook; printed as plain text elsewhere).

    Returns None, so a cell ending with this call does not echo the table's text as ``Out[n]``; use
    :func:`markdown_table` for the text itself.
    """
    text = markdown_table(header, rows, floatfmt)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks extra
        get_ipython = None
    if get_ipython is None or get_ipython() is None:  # a plain script: the text, not an object's repr
        print(text)
        return
    display(Markdown(text))


def claims_table(claims: Sequence[Claim]) -> None:
    """Display the checked claims (paper vs ours vs verdict) once; returns None (text: :func:`claims_markdown`)."""
    show_table(["claim", "paper", "ours", "verdict"], _claim_rows(claims))


def claims_markdown(claims: Sequence[Claim]) -> str:
    """The markdown text of :func:`claims_table`."""
    return markdown_table(["claim", "paper", "ours", "verdict"], _claim_rows(claims))


def _claim_rows(claims: Sequence[Claim]) -> list[list[str]]:
    """One ``[name, paper, ours, verdict]`` row per claim."""
    return [[c.name, c.paper, c.ours, c.verdict] for c in claims]
