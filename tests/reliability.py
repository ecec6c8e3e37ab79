"""Rows of docs/reliability.md, written by the fault tests themselves (rendered by scripts/reliability_table.py).

Each fault test measures what happened (layers the box produced, layers a paho MQTT 5 subscriber received,
lost and duplicated layers, the exit code, the message the box gave) and calls `record`; one JSON file per
fault lands in `$LPBF_RELIABILITY_DIR` (default `runs/reliability/`).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def out_dir() -> Path:
    """Where the rows go."""
    return Path(os.environ.get("LPBF_RELIABILITY_DIR") or REPO / "runs" / "reliability")


def layer_counts(produced: list[int], received: list[int]) -> dict[str, int]:
    """produced / received (distinct) / lost / duplicated from layer numbers (received: one per final delivery)."""
    got = Counter(received)
    return {"produced": len(set(produced)), "received": len(set(received) & set(produced)),
            "lost": len(set(produced) - set(got)), "duplicated": sum(c - 1 for c in got.values() if c > 1)}


def record(fault: str, area: str, message: str, *, exit_code: int | None = None, produced: int | None = None,
           received: int | None = None, lost: int | None = None, duplicated: int | None = None, test: str = "") -> Path:
    """Write one row (fault, what was produced / received / lost / duplicated, exit code, the box's message)."""
    message = re.sub(r"(?:/private)?/(?:tmp|var/tmp)/\S*/([^/\s]+)", r".../\1", " ".join(str(message).split()))
    row = {"fault": fault, "area": area, "produced": produced, "received": received, "lost": lost,
           "duplicated": duplicated, "exit_code": exit_code, "message": message[:300],
           "test": test or os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]}
    folder = out_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9]+", "-", f"{area}-{fault}").strip("-").lower()[:120] + ".json")
    path.write_text(json.dumps(row, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path
