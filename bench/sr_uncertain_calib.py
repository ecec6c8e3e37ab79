"""Calibrate `analyze.sr_std_high` (the sr_uncertain threshold) on the K-sample spread after the grain cap.

Usage: .venv/bin/python bench/sr_uncertain_calib.py BUILD... [--samples 2] [--json F] [--plot F]
For each sim build (hr/ is the truth), the box's SR stage (edge.sr_stage.SRStage, default config with
sr.samples = K, sr.uncertainty on) gives the published sample and the spread of K grain-capped samples. For each
candidate threshold, edge.analyze.anomaly.detect_sr_uncertain marks regions exactly as the box does; a region is
*right* when the sample there really is wrong: its mean |sample - HR| exceeds the layer's 90th percentile of the
local error (|sample - HR| smoothed over sigma 4 px). Precision = right regions / regions (a random region is right
about 10 % of the time). The threshold is the smallest whose precision reaches --precision (0.8).
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from edge.analyze.anomaly import detect_sr_uncertain
from edge.analyze.build_io import open_build
from edge.analyze.config import AnalyzeConfig
from edge.analyze.segment import scale_of

THRESHOLDS = (4, 6, 8, 10, 12, 14, 16, 18, 20, 24, 28)


def layer_regions(sample: np.ndarray, std: np.ndarray, hr: np.ndarray, cfg: AnalyzeConfig) -> list[tuple[float, bool]]:
    """(threshold, right) for every sr_uncertain region of one layer at every candidate threshold."""
    err = np.abs(sample.astype(np.float32) - hr.astype(np.float32))
    bad = np.percentile(cv2.GaussianBlur(err, (0, 0), 4), 90)
    s = scale_of(sample.shape[1], cfg)
    out = []
    for t in THRESHOLDS:
        flags, high = detect_sr_uncertain(std, cfg.model_copy(update={"sr_std_high": float(t)}), s)
        lab, _ = ndimage.label(high) if high is not None else (None, 0)
        for f in flags:
            x, y, w, h = f.bbox
            region = np.zeros(err.shape, bool)
            region[y:y + h, x:x + w] = True
            inside = region & (lab > 0) if lab is not None else region
            out.append((float(t), bool(err[inside].mean() > bad)))
    return out


def main() -> None:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--precision", type=float, default=0.8)
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None)
    a = ap.parse_args()
    from edge.sr.config import SRConfig
    from edge.sr_stage import SRStage

    t0 = time.time()
    cfg = AnalyzeConfig()
    stage = SRStage(SRConfig(samples=a.samples, uncertainty=True))
    regions: list[tuple[float, bool]] = []
    layers, spread = 0, []
    for bd in a.builds:
        b = open_build(bd)
        lrs = [b.image("lr", L) for L in b.layers]
        outs = stage.run_many(lrs)
        for L, o in tqdm(list(zip(b.layers, outs, strict=False)), desc=b.path.name):
            regions += layer_regions(o.sample, o.std, b.image("hr", L), cfg)
            spread.append(np.percentile(o.std, [50, 99, 99.9]))
            layers += 1
    rows = []
    for t in THRESHOLDS:
        hits = [r for th, r in regions if th == t]
        rows.append({"threshold": t, "regions_per_layer": len(hits) / layers,
                     "precision": (sum(hits) / len(hits)) if hits else None})
    ok = [r["threshold"] for r in rows if r["precision"] is not None and r["precision"] >= a.precision]
    chosen = min(ok) if ok else None
    sp = np.mean(spread, axis=0)
    doc = {"builds": a.builds, "samples": a.samples, "layers": layers, "rows": rows, "chosen": chosen,
           "target_precision": a.precision, "spread_p50_p99_p999": [round(float(v), 2) for v in sp],
           "seconds": round(time.time() - t0, 1), "sr": stage.describe()}
    for r in rows:
        print(r)
    print({k: v for k, v in doc.items() if k != "rows"})
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    if a.plot:
        _plot(rows, chosen, a, a.plot)


def _plot(rows: list[dict], chosen, a, path: str) -> None:
    """Precision and regions per layer against the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["threshold"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(t, [r["precision"] if r["precision"] is not None else np.nan for r in rows], "o-", label="precision")
    ax.axhline(a.precision, color="grey", ls=":", label=f"target {a.precision}")
    ax.set_xlabel(f"sr_std_high (grey levels, spread of {a.samples} grain-capped samples)")
    ax.set_ylabel("flags whose sample really is wrong")
    ax.set_ylim(0, 1.02)
    ax2 = ax.twinx()
    ax2.plot(t, [r["regions_per_layer"] for r in rows], "s--", color="tab:orange", label="regions per layer")
    ax2.set_ylabel("sr_uncertain regions per layer", color="tab:orange")
    if chosen is not None:
        ax.axvline(chosen, color="tab:green", label=f"chosen {chosen}")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
