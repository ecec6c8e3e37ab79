"""The self-learned baseline on real recoat plates (pblm_classes): a box with no install baseline learns one from the
first clean recoat frames of a job, with a defective plate among them, then judges the plates it did not learn from.

Usage: .venv/bin/python bench/bootstrap_eval.py [--realdata ../shared/realdata] [--json F]
Rotation i (8): the job's first frames are clean plates i, i+1, a defective plate (class i mod 3), then clean plates
i+2, i+3, ... until the box's `RecoatStage` (default config: analyze.baseline_bootstrap_frames) reports its baseline
ready; scored against that baseline: the clean plates it did not learn from, and defective plates k with k mod 8 = i.
Photographs (not registered), as bench/recoat_eval.py. A plate counts as flagged when its state is not ok.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recoat_eval import CLASSES, REPO, load  # noqa: E402

from edge.analyze.bootstrap import BaselineBootstrap, RecoatStage  # noqa: E402
from edge.analyze.config import AnalyzeConfig  # noqa: E402
from edge.analyze.recoat import RecoatAnalyzer  # noqa: E402


def rotation(plates: dict, cfg: AnalyzeConfig, i: int, folder: Path) -> dict:
    """Learn from rotation i's job start, then score the plates not learned from."""
    clean = [im for _, im in plates["No_Defect"]]
    bad_cls = CLASSES[1 + i % 3]
    bad = plates[bad_cls][i % len(plates[bad_cls])][1]
    n = len(clean)
    seq = [("clean", (i + d) % n) for d in range(2)] + [("bad", -1)] + [("clean", (i + d) % n) for d in range(2, n)]
    st = RecoatStage(RecoatAnalyzer(cfg, None, False), BaselineBootstrap(cfg, folder, {"rotation": i}, False))
    used, layer = [], 0
    for kind, k in seq:
        layer += 1
        st(bad if kind == "bad" else clean[k], layer)
        used.append((kind, k))
        if st.boot.ready:
            break
    status = st.baseline_status()
    if not st.boot.ready:
        return {"rotation": i, "ready": False, "status": status}
    learned = {k for kind, k in used if kind == "clean"}
    res: dict[str, Counter] = {c: Counter() for c in CLASSES}
    jobs = [("No_Defect", clean[k]) for k in range(n) if k not in learned]
    jobs += [(c, im) for c in CLASSES[1:] for pi, (_, im) in enumerate(plates[c]) if pi % 8 == i]
    for c, im in jobs:
        layer += 1
        a = st(im, layer)
        res[c]["n"] += 1
        res[c]["flagged"] += a.layer_state != "ok"
    return {"rotation": i, "ready": True, "frames_seen": len(used), "status": status,
            "bad_plate_class": bad_cls, "per_class": {c: dict(v) for c, v in res.items()}}


def main() -> None:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cfg, t = AnalyzeConfig(), time.time()
    plates = load(a.realdata)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in tqdm(range(8), desc="rotations", file=sys.stderr):
            rows.append(rotation(plates, cfg, i, Path(tmp) / f"r{i}"))
    tot = {c: Counter() for c in CLASSES}
    for r in rows:
        for c, v in r.get("per_class", {}).items():
            tot[c].update(v)
    print("| rotation | frames seen | kept | refused | defective plate | ready |\n|---|---|---|---|---|---|")
    for r in rows:
        s = r["status"]
        print(f"| {r['rotation']} | {r.get('frames_seen', '-')} | {s['frames']} | {s['rejected']} | "
              f"{r.get('bad_plate_class', '-')} | {r['ready']} |")
    print("\n| class | scored | flagged | rate |\n|---|---|---|---|")
    for c in CLASSES:
        v = tot[c]
        print(f"| {c} | {v['n']} | {v['flagged']} | {v['flagged'] / max(1, v['n']):.2f} |")
    defective = [tot[c] for c in CLASSES[1:]]
    out = {
        "rotations": rows,
        "clean_false_alarm_rate": tot["No_Defect"]["flagged"] / max(1, tot["No_Defect"]["n"]),
        "defective_recall": sum(v["flagged"] for v in defective) / max(1, sum(v["n"] for v in defective)),
        "bad_plates_refused": sum(r["status"]["rejected"] >= 1 for r in rows),
        "seconds": round(time.time() - t, 1),
    }
    print(f"\nclean false alarms {out['clean_false_alarm_rate']:.1%} of {tot['No_Defect']['n']}, defective recall "
          f"{out['defective_recall']:.2f}, defective plate refused in {out['bad_plates_refused']} of 8 rotations; "
          f"{out['seconds']} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
