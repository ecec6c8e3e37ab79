"""Segmentation IoU: the classical pipeline vs plain Sauvola, on sim layers (HR, LR, bicubic) and real photographs.

Usage: .venv/bin/python bench/segment_eval.py --seeds 31 32 --layers 20 --every 4 --hr 512 [--realdata ../shared/realdata] [--json F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.analyze.config import AnalyzeConfig
from edge.analyze.segment import Segmenter, iou, plain_sauvola_segment

REPO = Path(__file__).resolve().parents[1]


def sim_rows(seeds: list[int], layers: int, every: int, hr: int) -> list[dict]:
    """IoU per (seed, layer, source) against the sim ground-truth masks."""
    from edge.sim.build import plan_build, render_layer
    from edge.sim.config import SimConfig

    cfg, rows = AnalyzeConfig(), []
    for seed in seeds:
        plan = plan_build(layers, seed, SimConfig(hr_size_px=hr))
        for L in tqdm(range(1, layers + 1, every), desc=f"seed {seed}", leave=False):
            li = render_layer(plan, L)
            gt = li.mask > 0
            srcs = {"HR": li.hr, "LR": li.lr, "bicubic": cv2.resize(li.lr, (hr, hr), interpolation=cv2.INTER_CUBIC)}
            for name, img in srcs.items():
                g = gt if img.shape == gt.shape else cv2.resize(gt.astype(np.uint8), img.shape[::-1], interpolation=cv2.INTER_AREA) > 0
                rows.append({"seed": seed, "layer": L, "source": name, "ours": iou(Segmenter(cfg).segment(img).mask, g),
                             "sauvola": iou(plain_sauvola_segment(img, cfg), g)})
    return rows


def real_rows(realdata: Path) -> list[dict]:
    """IoU on the S01 ring crop against the circle-fitted reference mask in tests/data."""
    im = cv2.imread(str(realdata / "risheng_slm" / "S01.jpg"), cv2.IMREAD_GRAYSCALE)
    crop = im[720:2064, 3180:3848]
    crop = cv2.resize(crop, (crop.shape[1] // 2, crop.shape[0] // 2), interpolation=cv2.INTER_AREA)
    ref = cv2.imread(str(REPO / "tests" / "data" / "real_s01_rings_ref.png"), cv2.IMREAD_GRAYSCALE) > 0
    rows = []
    for name, cfg in (("defaults", AnalyzeConfig()), ("camera settings (pixel_scale 1.5, feature_min 2)", AnalyzeConfig(pixel_scale=1.5, feature_min=2.0))):
        rows.append({"image": "S01 rings crop", "config": name, "ours": iou(Segmenter(cfg).segment(crop).mask, ref),
                     "sauvola": iou(plain_sauvola_segment(crop, cfg), ref)})
    return rows


def main() -> None:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[31, 32])
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--hr", type=int, default=512)
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = sim_rows(a.seeds, a.layers, a.every, a.hr)
    print("| source | layers | IoU ours | IoU plain Sauvola |\n|---|---|---|---|")
    for src in ("HR", "LR", "bicubic"):
        r = [x for x in rows if x["source"] == src]
        print(f"| {src} | {len(r)} | {np.mean([x['ours'] for x in r]):.3f} | {np.mean([x['sauvola'] for x in r]):.3f} |")
    real = real_rows(a.realdata) if (a.realdata / "README.md").exists() else []
    for r in real:
        print(f"| real: {r['image']}, {r['config']} | 1 | {r['ours']:.3f} | {r['sauvola']:.3f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"sim": rows, "real": real}, indent=1))


if __name__ == "__main__":
    main()
