"""Segmentation IoU: the default (auto), the self-fitted classifier, the paper's prompt pipeline and plain Sauvola, on
sim layers (HR, LR, bicubic: registered plate frames, as the box sees them) and on every real reference crop
(tests/data, made by bench/ring_reference.py; S05 crops held out).

Usage: .venv/bin/python bench/segment_eval.py --seeds 31 32 --layers 20 --every 4 --hr 512
       [--realdata ../shared/realdata] [--json F]
(--layers 0: real crops only)
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
                g = (
                    gt
                    if img.shape == gt.shape
                    else cv2.resize(gt.astype(np.uint8), img.shape[::-1], interpolation=cv2.INTER_AREA) > 0
                )
                rows.append(
                    {
                        "seed": seed,
                        "layer": L,
                        "source": name,
                        "ours": iou(Segmenter(cfg, registered=True).segment(img).mask, g),
                        "classifier": iou(
                            Segmenter(cfg.model_copy(update={"segment_method": "classifier"})).segment(img).mask, g
                        ),
                        "prompts": iou(
                            Segmenter(cfg.model_copy(update={"segment_method": "prompts"})).segment(img).mask, g
                        ),
                        "sauvola": iou(plain_sauvola_segment(img, cfg), g),
                    }
                )
    return rows


def real_rows(realdata: Path) -> list[dict]:
    """IoU on every ring crop with a reference mask in tests/data (bench/ring_reference.py): the box's default
    classifier, the paper's prompt pipeline and plain Sauvola, at the defaults and at this camera's settings."""
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    from ring_reference import CROPS, HOLD_OUT

    settings = {
        "defaults": {},
        "camera (pixel_scale 1.5, no corner marks)": {"pixel_scale": 1.5, "ignore_corner_frac": 0.0},
    }
    photos, rows = {}, []
    for name, (photo, (r0, r1), (c0, c1)) in tqdm(CROPS.items(), desc="real crops", leave=False):
        if photo not in photos:
            photos[photo] = cv2.imread(str(realdata / "risheng_slm" / f"{photo}.jpg"), cv2.IMREAD_GRAYSCALE)
        im = photos[photo][r0:r1, c0:c1]
        crop = cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA)
        ref = cv2.imread(str(REPO / "tests" / "data" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 0
        for label, kw in settings.items():
            cfg = AnalyzeConfig(**kw)
            rows.append(
                {
                    "image": name,
                    "held_out": name in HOLD_OUT,
                    "config": label,
                    "ours": iou(Segmenter(cfg).segment(crop).mask, ref),
                    "classifier": iou(
                        Segmenter(cfg.model_copy(update={"segment_method": "classifier"})).segment(crop).mask, ref
                    ),
                    "prompts": iou(
                        Segmenter(cfg.model_copy(update={"segment_method": "prompts"})).segment(crop).mask, ref
                    ),
                    "sauvola": iou(plain_sauvola_segment(crop, cfg), ref),
                }
            )
    return rows


def print_real(rows: list[dict]) -> None:
    """Per-crop table and means over the tuning and held-out crops."""
    print(
        "\n| crop | held out | config | IoU default (auto: classifier on photographs) | IoU prompts "
        "| IoU plain Sauvola |"
        "\n|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['image']} | {'yes' if r['held_out'] else 'no'} | {r['config']} | {r['ours']:.3f} | "
            f"{r['prompts']:.3f} | {r['sauvola']:.3f} |"
        )
    for cfg in sorted({r["config"] for r in rows}):
        for held in (False, True):
            sel = [r for r in rows if r["config"] == cfg and r["held_out"] == held]
            if sel:
                print(
                    f"| **mean, {'held out' if held else 'tuning'}** | | {cfg} | "
                    f"{np.mean([r['ours'] for r in sel]):.3f} | "
                    f"{np.mean([r['prompts'] for r in sel]):.3f} | {np.mean([r['sauvola'] for r in sel]):.3f} |"
                )


def plot_real(realdata: Path, names: list[str], path: Path) -> None:
    """Rows of crop | reference | plain Sauvola | classifier (camera settings), outlines in colour."""
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    from ring_reference import CROPS

    cfg = AnalyzeConfig(pixel_scale=1.5, ignore_corner_frac=0.0)
    rows = []
    for name in names:
        photo, (r0, r1), (c0, c1) = CROPS[name]
        im = cv2.imread(str(realdata / "risheng_slm" / f"{photo}.jpg"), cv2.IMREAD_GRAYSCALE)[r0:r1, c0:c1]
        crop = cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA)
        ref = cv2.imread(str(REPO / "tests" / "data" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 0
        tiles = [cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)]
        for m in (ref, plain_sauvola_segment(crop, cfg), Segmenter(cfg).segment(crop).mask):
            t = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
            t[m & ref], t[m & ~ref], t[~m & ref] = (60, 200, 60), (40, 40, 230), (230, 120, 40)
            tiles.append(t)
        rows.append(np.hstack(tiles))
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    img = np.vstack(rows)
    img = cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # a docs figure, not data
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 85] if str(path).endswith(".jpg") else [])


def main() -> None:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[31, 32])
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--hr", type=int, default=512)
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", type=Path, default=None, help="PNG: real crops | reference | plain Sauvola | classifier.")
    a = ap.parse_args()
    rows = sim_rows(a.seeds, a.layers, a.every, a.hr) if a.layers > 0 else []
    print("| source | layers | IoU default (auto: prompts on registered frames) | IoU classifier | IoU prompts | "
          "IoU plain Sauvola |\n|---|---|---|---|---|---|")
    for src in ("HR", "LR", "bicubic"):
        r = [x for x in rows if x["source"] == src]
        if r:
            print(
                f"| {src} | {len(r)} | {np.mean([x['ours'] for x in r]):.3f} | "
                f"{np.mean([x['classifier'] for x in r]):.3f} | "
                f"{np.mean([x['prompts'] for x in r]):.3f} | "
                f"{np.mean([x['sauvola'] for x in r]):.3f} |"
            )
    real = real_rows(a.realdata) if (a.realdata / "README.md").exists() else []
    if real:
        print_real(real)
        if a.plot:
            names = ["real_s01_rings_ref", "real_s05_right_rings_ref", "real_s05_left_top_rings_ref"]
            plot_real(a.realdata, names, a.plot)
    if a.json:
        Path(a.json).write_text(json.dumps({"sim": rows, "real": real}, indent=1))


if __name__ == "__main__":
    main()
