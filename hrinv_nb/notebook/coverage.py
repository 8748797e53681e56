"""The README's paper-coverage table, generated from the notebooks' ``figures/NN_name.json`` records.

    python -m hrinv_nb.notebook.coverage                 # print the table
    python -m hrinv_nb.notebook.coverage --write README.md   # replace the table between the markers

Each numbered notebook's JSON lists its claims with their verdicts (``held``, ``NOT held``,
``inconclusive``, ...); the table gives, per notebook, the counts and every claim with its verdict, and
the date and world of the run, so the README says exactly what the committed figures say.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..files import atomic_write
from .mainjob import NOTEBOOK_FILE

REPO = Path(__file__).resolve().parents[2]
START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"


def load_records(figures: Path) -> list[dict[str, Any]]:
    """The ``NN_name.json`` records in ``figures``, sorted by name (other JSON files are ignored)."""
    records = []
    for path in sorted(figures.glob("*.json")):
        if NOTEBOOK_FILE.fullmatch(path.stem + ".ipynb"):  # a notebook's record, named as the notebook
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or not isinstance(record.get("claims", []), list):
                raise ValueError(f"{path}: not a notebook record (no claims list)")
            records.append(record | {"_file": path.name})
    return records


def _verdict(claim: dict[str, Any]) -> str:
    text = str(claim.get("verdict") or claim.get("outcome") or "").strip()
    return text or ("held" if claim.get("held") else "not held" if claim.get("held") is False else "not judged")


def notebook_title(path: Path) -> str:
    """The first markdown heading of a notebook without its ``NN ·`` prefix ('' if there is none)."""
    if not path.is_file():
        return ""
    for cell in json.loads(path.read_text()).get("cells", []):
        if cell.get("cell_type") == "markdown":
            first = "".join(cell.get("source", [])).lstrip().split("\n", 1)[0]
            return re.sub(r"^#+\s*\d\d\s*·\s*", "", first).strip() if first.startswith("#") else ""
    return ""


def coverage_table(records: list[dict[str, Any]], notebooks: Path | None = None) -> str:
    """A markdown table: notebook (and its title, from ``notebooks``) | run | verdict counts | each claim."""
    lines = ["| notebook | run | verdicts | claims |", "| --- | --- | --- | --- |"]
    for record in records:
        stem = record["_file"].removesuffix(".json")
        title = notebook_title(notebooks / f"{stem}.ipynb") if notebooks is not None else ""
        claims = record.get("claims") or []
        verdicts = [_verdict(c).lower() for c in claims]
        counts = Counter(verdicts)
        summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no claims"
        items = "; ".join(f"{c.get('name', '?')}: **{v}**" for c, v in zip(claims, verdicts)) or "—"
        run = f"{str(record.get('written', '?'))[:10]}, {record.get('wall_seconds', '?')} s"
        link = f"[`{stem}`](notebooks/{stem}.ipynb)" + (f": {title}" if title else "")
        lines.append(f"| {link} | {run} | {summary} | {items.replace('|', '/')} |")
    return "\n".join(lines)


def replace_between_markers(text: str, table: str) -> str:
    """``text`` with everything between :data:`START` and :data:`END` replaced by ``table``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"expected one {START} followed by one {END}")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figures", type=Path, default=REPO / "figures")
    parser.add_argument("--notebooks", type=Path, default=REPO / "notebooks", help="for the notebooks' titles")
    parser.add_argument("--write", type=Path, default=None, help="a markdown file whose marked table to replace")
    args = parser.parse_args(argv)
    table = coverage_table(load_records(args.figures), args.notebooks)
    if args.write is None:
        print(table)
        return 0
    text = replace_between_markers(args.write.read_text(), table)
    atomic_write(args.write, lambda tmp: Path(tmp).write_text(text))
    print(f"wrote the coverage table ({table.count(chr(10)) - 1} notebooks) into {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
