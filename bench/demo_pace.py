"""Does the box keep pace with the demo's simulated printer? Per layer of a finished `lpbf-edge demo` run: the
printer's layer period against the SR worker's time (SuperResolver with the demo's config, then the SR analysis),
each measured here in isolation on the archived LR layers.

    .venv/bin/lpbf-edge demo --layers 6 --out demo-out && .venv/bin/python bench/demo_pace.py demo-out [JSON]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Print and write (JSON, default DEMO/pace.json) the per-layer periods and SR + analysis times."""
    from edge.app import analyzers
    from edge.config import Config
    from edge.sim.printer import SimPrinter
    from edge.sr.resolver import SuperResolver

    args = argv or sys.argv[1:]
    out = Path(args[0])
    dest = Path(args[1]) if len(args) > 1 else out / "pace.json"
    summary = json.loads((out / "summary.json").read_text())
    cfg = Config.model_validate_json((out / "config.json").read_text())
    speed = summary["printer_speedup"]
    printer = SimPrinter(out / "build", speedup=speed, seed=7)
    ends = np.asarray(printer.layer_ends) / speed
    periods = np.diff(ends)
    res = SuperResolver.from_config(cfg.sr)
    analyze = analyzers(cfg)[0]
    rows = []
    for n in range(1, summary["layers"] + 1):
        lr = cv2.imread(str(out / "box/archive" / cfg.node.job / f"{n:06d}" / "lr.png"), cv2.IMREAD_GRAYSCALE)
        res.upscale(lr)  # warm (compiled shapes, caches)
        t0 = time.perf_counter()
        sr = res.upscale(lr)
        t1 = time.perf_counter()
        analyze(sr.sr, n, sr.std)
        t2 = time.perf_counter()
        rows.append({"layer": n, "lr": list(lr.shape), "sr_s": t1 - t0, "analyze_s": t2 - t1,
                     "next_layer_after_s": float(periods[n - 1]) if n - 1 < len(periods) else None})
        print(rows[-1], flush=True)
    import os

    rep = {"settings": res.describe(), "load_avg_1min": os.getloadavg()[0],
           "demo_summary": {k: v for k, v in summary.items() if k not in ("rows", "html")}, "rows": rows,
           "late": sum(r["sr_s"] + r["analyze_s"] > r["next_layer_after_s"] for r in rows if r["next_layer_after_s"])}
    dest.write_text(json.dumps(rep, indent=1))
    print(f"layers whose SR + analysis take longer than the printer's next layer: {rep['late']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
