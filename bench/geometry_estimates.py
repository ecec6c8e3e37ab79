"""Which SR estimate should geometry read? IoU 2D/3D and roughness of each candidate on sim builds (docs/analysis.md).

Usage: .venv/bin/python bench/geometry_estimates.py BUILD... [--samples 4] [--full-mean] [--json F]
Candidates, all through the box's SR stage (edge.sr_stage.SRStage, default config): one sample (what the box read
before), the mean of 2 and of K grain-capped samples (light decoder, as published), the bundle's pixel regression,
bicubic of the LR, and the HR image and the ground-truth masks as references. --full-mean adds the resolver's own
mean of 2 and K samples (`reduce: mean`, full decoder). Segmentation as the box runs it (registered frames, no CAD).
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from edge.analyze.build_io import open_build
from edge.analyze.config import AnalyzeConfig
from edge.analyze.paths_eval import geometry_scores
from edge.analyze.segment import Segmenter


def candidates(stage, lrs: list[np.ndarray], k: int, full_mean: bool) -> tuple[dict, dict]:
    """{name: images} of every SR candidate and {name: seconds} of what each cost."""
    from edge.sr_stage import bicubic_up

    t = time.perf_counter()
    stacks = stage._samples(lrs, None)
    cost = {"sample run": (time.perf_counter() - t) / k}
    s = np.stack([[r.sr for r in run] for run in stacks]).astype(np.float32)  # [K, layers, H, W]
    t = time.perf_counter()
    reg = [stage.regression(lr) for lr in lrs]
    cost["regression"] = time.perf_counter() - t
    mean = lambda n: list(np.rint(s[:n].mean(0)).astype(np.uint8))  # noqa: E731
    out = {"bicubic": [bicubic_up(lr, stage.scale) for lr in lrs], "sample": list(s[0].astype(np.uint8)),
           "mean2": mean(2), f"mean{k}": mean(k), "regression": reg}
    if full_mean:
        for n in (2, k):
            t = time.perf_counter()
            out[f"mean{n}_full_decoder"] = [r.sr for r in stage.resolver.upscale_many(lrs, samples=n, reduce="mean")]
            cost[f"mean{n}_full_decoder"] = time.perf_counter() - t
    return out, cost


def main() -> None:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--full-mean", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from edge.sr.config import SRConfig
    from edge.sr_stage import SRStage

    stage = SRStage(SRConfig(samples=a.samples, uncertainty=True, geometry="regression"))
    seg = Segmenter(AnalyzeConfig(), registered=True)
    doc: dict = {"sr": stage.describe(), "builds": {}}
    for bd in a.builds:
        b = open_build(bd)
        lrs = [b.image("lr", L) for L in b.layers]
        hrs = [b.image("hr", L) for L in b.layers]
        gts = [b.mask(L) for L in b.layers]
        imgs, cost = candidates(stage, lrs, a.samples, a.full_mean)
        rows = {"hr": geometry_scores([seg.segment(h).mask for h in hrs], gts, b.hr_pitch_um),
                "ground truth": geometry_scores([g > 0 for g in gts], gts, b.hr_pitch_um)}
        for name, im in imgs.items():
            rows[name] = geometry_scores([seg.segment(i).mask for i in im], gts, b.hr_pitch_um)
            rows[name]["psnr"] = float(np.mean([cv2.PSNR(i, h) for i, h in zip(im, hrs, strict=False)]))
            shown = {k: round(v, 3) for k, v in rows[name].items() if isinstance(v, float)}
            print(b.path.name, name, shown, flush=True)
        doc["builds"][b.path.name] = {"rows": rows, "seconds": cost, "layers": len(b.layers)}
        print(b.path.name, "seconds", {k: round(v, 1) for k, v in cost.items()}, flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(doc, fh, indent=1)


if __name__ == "__main__":
    main()
