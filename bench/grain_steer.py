"""How far the grain condition steers a grain-conditioned bundle, and what a perfect condition would buy (issue 20).

On the held-out crops of bench/sr_sets.py, the box's one sample (the bundle's fast path) with the grain condition
as the box measures it from the LR, shifted in log energy by -1.5 .. +1.5 (a 20x range), and, for a bundle whose
condition is the grain cap's detail level, the condition measured on the crop's own ground truth ("oracle": what a
perfect detail predictor would give; the box never has it). Cap off throughout, so only the model decides; the box's
own setting (cap on, the LR's condition) is the last row.

    .venv/bin/python bench/grain_steer.py --model runs/bundle_dc --sim-build runs/data/sim_s3 --crops 8 \
        --json docs/grain_steer_dc.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from grain_reference import REAL_SETS, box_bench_parser, box_resolver, one_sample  # noqa: E402
from sr_sets import sim_crops, source_crops  # noqa: E402

from edge.sr.grain import DETAIL_SOURCE, detail_condition_hr, detail_condition_lr, grain_descriptor  # noqa: E402

SHIFTS = (-1.5, -0.75, 0.0, 0.75, 1.5)
ENERGY_ENTRIES = 3  # the LR descriptor's log band energies come first (edge.sr.grain.DESCRIPTOR_NAMES)


def condition_of(sr, shift: float = 0.0, oracle: bool = False):
    """grain_of(lr, hr) for one_sample: the box's condition from the LR with its log energies shifted, or the detail
    level measured on the ground truth."""
    gc = sr.grain_condition
    detail = gc.source == DETAIL_SOURCE
    cap = sr.bundle.manifest.grain_cap

    def grain_of(lr: np.ndarray, hr: np.ndarray) -> np.ndarray:
        if oracle:
            return detail_condition_hr(cap, hr, sr.scale)
        d = (detail_condition_lr(cap, lr) if detail else grain_descriptor(lr, gc.window)).copy()
        d[:None if detail else ENERGY_ENTRIES] += shift
        return d

    return grain_of


def measure(sr, sets: dict) -> dict:
    """Per set: the uncapped sample at each shift, with the oracle condition (detail source), and the box's setting."""
    cap0, out = sr.grain_cap, {}
    detail = sr.grain_condition.source == DETAIL_SOURCE
    try:
        for g, crops in tqdm(sets.items(), desc="grain steer", mininterval=5.0):
            sr.grain_cap = None
            rows = {f"{s:+.2f}": one_sample(sr, crops, condition_of(sr, s)) for s in SHIFTS}
            if detail:
                rows["oracle"] = one_sample(sr, crops, condition_of(sr, oracle=True))
            sr.grain_cap = cap0
            rows["box"] = one_sample(sr, crops)
            out[g] = rows
    finally:
        sr.grain_cap = cap0
    return out


def report(res: dict) -> str:
    """Markdown: HF ratio per shift, and the full metrics of the oracle and the box rows."""
    lines = [f"model {res['model_id']} (grain condition: {res['source']}); cap off except 'box'", "",
             "| set | HF ratio at shift " + " / ".join(f"{s:+.2f}" for s in SHIFTS) + " |", "|---|---|"]
    for g, rows in res["sets"].items():
        lines.append(f"| {g} | " + " / ".join(f"{rows[f'{s:+.2f}']['hf_ratio']:.2f}" for s in SHIFTS) + " |")
    lines += ["", "| set | condition | HF | kurt | texture / bicubic's | PSNR - bicubic | cap acts |",
              "|---|---|---|---|---|---|---|"]
    for g, rows in res["sets"].items():
        for name in ("+0.00", "oracle", "box"):
            if name in rows:
                m = rows[name]
                lines.append(f"| {g} | {'LR, cap off' if name == '+0.00' else name} | {m['hf_ratio']:.2f} | "
                             f"{m['kurt_log_ratio']:.2f} | {m['texture_vs_bicubic']:.2f} | "
                             f"{m['psnr_vs_bicubic']:+.2f} | {m['cap_share']:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the tables, write the JSON."""
    ap = box_bench_parser(__doc__)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    sr = box_resolver(ap, a)
    if sr.grain_condition is None:
        ap.error(f"{a.model}: the bundle has no grain condition to steer")
    sets = {g: source_crops(a.realdata, g, a.crops, 64, 0) for g in REAL_SETS}
    if a.sim_build is not None:
        sets["sim"] = sim_crops(a.sim_build, a.crops, 64, 0)
    res = {"model_id": sr.model_id, "source": sr.grain_condition.source, "command": " ".join(sys.argv),
           "sets": measure(sr, sets), "wall_s": 0.0}
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(report(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
