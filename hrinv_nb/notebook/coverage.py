"""The README's paper-coverage table, generated from the notebooks' ``figures/NN_name.json`` records.

    python -m hrinv_nb.notebook.coverage                 # print the table
    python -m hrinv_nb.notebook.coverage --write README.md   # replace the marked parts of README.md
    python -m hrinv_nb.notebook.coverage --check README.md   # fail if README.md is not what the records say

Each numbered notebook's JSON lists its claims with their verdicts (``held``, ``NOT held``,
``inconclusive``, ...); the table gives, per notebook, the counts and every claim with its verdict, and
the date and world of the run, so the README says exactly what the committed figures say.

The verdict lists group the same claims by verdict (held; not held; not testable, inconclusive or
control passes). Every claim that did not hold carries a sentence of why, written by a person after
reading the run, in ``notebooks/claim_reasons.yaml`` (``NN_notebook: {claim name: reason}``);
:func:`missing_reasons` lists the claims still without one.
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
VERDICTS_START, VERDICTS_END = "<!-- verdicts:start -->", "<!-- verdicts:end -->"
REASONS = REPO / "notebooks" / "claim_reasons.yaml"
GROUPS = (
    ("Held", ("held",)),
    ("Not held", ("not held",)),
    ("Not testable here, inconclusive, or the control passes", None),  # everything else
)


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


def load_reasons(path: Path = REASONS) -> dict[str, dict[str, str]]:
    """``{notebook stem: {claim name: why it did not hold}}`` from a YAML file ({} when there is none)."""
    import yaml

    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and all(isinstance(t, str) for t in v.values()) for v in data.values()
    ):
        raise ValueError(f"{path}: expected a mapping of notebook -> {{claim name: reason}}")
    return data


def _group(verdict: str) -> int:
    return next((i for i, (_, names) in enumerate(GROUPS) if names is None or verdict in names), len(GROUPS) - 1)


def verdict_lists(records: list[dict[str, Any]], reasons: dict[str, dict[str, str]]) -> str:
    """Markdown lists of the paper claims by verdict; a claim that did not hold has its reason (or says none yet)."""
    groups: list[list[str]] = [[] for _ in GROUPS]
    for record in records:
        stem = record["_file"].removesuffix(".json")
        for claim in record.get("claims") or []:
            name, verdict = str(claim.get("name", "?")), _verdict(claim).lower()
            line = f"- **{stem[:2]}** {name} (*{verdict}*)"
            g = _group(verdict)
            if g > 0:
                line += f": {reasons.get(stem, {}).get(name, '*(no reason written yet)*')}"
            groups[g].append(line)
    parts = []
    for (title, _), lines in zip(GROUPS, groups):
        parts.append(f"**{title}** ({len(lines)})\n\n" + ("\n".join(lines) or "- none"))
    return "\n\n".join(parts)


def missing_reasons(records: list[dict[str, Any]], reasons: dict[str, dict[str, str]]) -> list[str]:
    """``"stem: claim"`` for every claim that did not hold and has no reason in ``reasons``."""
    return [
        f"{r['_file'].removesuffix('.json')}: {c.get('name', '?')}"
        for r in records
        for c in r.get("claims") or []
        if _group(_verdict(c).lower()) > 0 and c.get("name") not in reasons.get(r["_file"].removesuffix(".json"), {})
    ]


def replace_between_markers(text: str, table: str, start: str = START, end: str = END) -> str:
    """``text`` with everything between ``start`` and ``end`` replaced by ``table``."""
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"expected one {start} followed by one {end}")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{table}\n{end}{tail}"


def render(text: str, figures: Path, notebooks: Path | None, reasons: Path = REASONS) -> str:
    """``text`` (a README) with its coverage table and, where it has their markers, its verdict lists regenerated."""
    records = load_records(figures)
    text = replace_between_markers(text, coverage_table(records, notebooks))
    if VERDICTS_START in text:
        text = replace_between_markers(
            text, verdict_lists(records, load_reasons(reasons)), VERDICTS_START, VERDICTS_END
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figures", type=Path, default=REPO / "figures")
    parser.add_argument("--notebooks", type=Path, default=REPO / "notebooks", help="for the notebooks' titles")
    parser.add_argument("--reasons", type=Path, default=REASONS, help="why each claim that did not hold did not")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, default=None, help="a markdown file whose marked parts to replace")
    action.add_argument("--check", type=Path, default=None, help="exit 1 if this file's marked parts are stale")
    args = parser.parse_args(argv)
    records = load_records(args.figures)
    if args.write is None and args.check is None:
        print(coverage_table(records, args.notebooks))
        print()
        print(verdict_lists(records, load_reasons(args.reasons)))
        return 0
    path = args.write or args.check
    old = path.read_text(encoding="utf-8")
    new = render(old, args.figures, args.notebooks, args.reasons)
    missing = missing_reasons(records, load_reasons(args.reasons))
    if missing:
        print(f"{len(missing)} claims that did not hold have no reason in {args.reasons}:", *missing, sep="\n  ")
    if args.check is not None:
        if new != old:
            print(f"{path} is stale: run python -m hrinv_nb.notebook.coverage --write {path}")
            return 1
        print(f"{path} agrees with the records in {args.figures}")
        return 0
    atomic_write(path, lambda tmp: Path(tmp).write_text(new, encoding="utf-8"))
    print(f"wrote the coverage table and verdict lists ({len(records)} notebooks) into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
