"""Render the fault table of docs/reliability.md from the rows the fault tests wrote (tests/reliability.py).

    .venv/bin/python scripts/reliability_table.py [--rows runs/reliability] [--doc docs/reliability.md] [--check]

The table replaces what lies between the `<!-- reliability-table:begin -->` and `<!-- reliability-table:end -->`
lines of the document. --check exits 1 when a row shows a lost layer (the tests assert none; this guards the doc).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- reliability-table:begin -->", "<!-- reliability-table:end -->"
AREAS = ["commands", "connection", "delivery", "replay", "shutdown", "laser source", "health", "derived files",
         "bad input"]
COLUMNS = ["area", "fault", "produced", "received", "lost", "duplicated", "exit code", "message (from the box)", "test"]


def _cell(value: object) -> str:
    """Markdown table cell: '-' for none, pipes escaped."""
    if value is None or value == "":
        return "-"
    return str(value).replace("|", "\\|")


def render(rows: list[dict]) -> str:
    """The Markdown table, rows ordered by area then fault."""
    order = {a: i for i, a in enumerate(AREAS)}
    rows = sorted(rows, key=lambda r: (order.get(r["area"], len(AREAS)), r["fault"]))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 5 + ["---"] * 2) + "|"]
    for r in rows:
        test = r.get("test", "")
        short = test.split("::")[-1] if test else ""
        cells = [r["area"], r["fault"], r.get("produced"), r.get("received"), r.get("lost"), r.get("duplicated"),
                 r.get("exit_code"), f"`{r['message']}`" if r.get("message") else None, f"`{short}`" if short else None]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, default=REPO / "runs" / "reliability", help="folder of the rows (JSON)")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "reliability.md", help="document to update")
    ap.add_argument("--check", action="store_true", help="exit 1 when any row lost a layer")
    args = ap.parse_args(argv)
    rows = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(args.rows.glob("*.json"))]
    if not rows:
        print(f"no rows in {args.rows}: run the fault tests first (see {args.doc})", file=sys.stderr)
        return 1
    doc = args.doc.read_text(encoding="utf-8")
    if BEGIN not in doc or END not in doc:
        print(f"{args.doc}: markers {BEGIN} / {END} not found", file=sys.stderr)
        return 1
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    args.doc.write_text(f"{head}{BEGIN}\n{render(rows)}\n{END}{tail}", encoding="utf-8")
    lost = [r["fault"] for r in rows if r.get("lost")]
    print(f"{args.doc}: {len(rows)} rows" + (f"; LOST LAYERS in: {', '.join(lost)}" if lost else "; no layer lost"))
    return 1 if args.check and lost else 0


if __name__ == "__main__":
    sys.exit(main())
