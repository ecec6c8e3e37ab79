"""Powder-texture statistics of synthetic HR layers vs the real photographs, at the sim's pixel pitch.

Usage: .venv/bin/python bench/sim_texture_stats.py [--realdata DIR] [--json FILE] [--layers N] [--seed S] [--images DIR]

With --images DIR it also writes the example figures of docs/sim.md (sim_*.png) into DIR.

Real photographs are resampled (area) to the sim HR pitch before measuring, assuming ~30 µm/px for
both public datasets (their ~100 mm plates span ~3300 px); powder-only boxes were picked by eye and
are listed below in native pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.sim.build import plan_build, render_layer  # noqa: E402
from edge.sim.config import SimConfig  # noqa: E402
from edge.sim.texture_stats import TextureStats, powder_patches, texture_stats  # noqa: E402

REAL_PITCH_UM = 30.0
_S = int(128 * 3.3)  # a 128-px sim patch in native pixels of the 20 MP / PBLM cameras
# file -> list of powder-only boxes (x, y, w, h) in native pixels
REAL_BOXES: dict[str, list[tuple[int, int, int, int]]] = {
    "risheng_slm/S01.jpg": [(2 * _S, 3 * _S, _S, _S), (2 * _S, 4 * _S, _S, _S)],
    "risheng_slm/S03.jpg": [(2 * _S, 3 * _S, _S, _S), (2 * _S, 4 * _S, _S, _S)],
    "risheng_slm/S05.jpg": [(2 * _S, 3 * _S, _S, _S), (2 * _S, 4 * _S, _S, _S)],
    "risheng_slm/10002.png": [(520, 0, 500, 500), (520, 520, 500, 500)],
    "risheng_slm/10018.png": [(0, 0, 500, 500), (520, 0, 500, 500)],
    "risheng_slm/10448.png": [(0, 250, 500, 500), (0, 520, 500, 500)],
    "pblm/PowderRecoat_20210909_143308.jpg": [(3 * _S, 1 * _S, 2 * _S, _S), (3 * _S, 4 * _S, 2 * _S, _S)],
    "pblm/PowderRecoat_20210913_103813.jpg": [(3 * _S, 1 * _S, 2 * _S, _S), (3 * _S, 4 * _S, 2 * _S, _S)],
    "pblm/PowderRecoat_20210915_111858.jpg": [(3 * _S, 1 * _S, 2 * _S, _S), (3 * _S, 4 * _S, 2 * _S, _S)],
    "pblm/PowderRecoat_20210916_103848.jpg": [(3 * _S, 1 * _S, 2 * _S, _S), (3 * _S, 4 * _S, 2 * _S, _S)],
    "pblm/PowderRecoat_20211125_135551.jpg": [(3 * _S, 1 * _S, 2 * _S, _S), (3 * _S, 4 * _S, 2 * _S, _S)],
}


def mean_stats(stats: list[TextureStats]) -> dict[str, float]:
    """Average each statistic over patches."""
    keys = stats[0].as_dict().keys()
    return {k: float(np.mean([s.as_dict()[k] for s in stats])) for k in keys}


def real_patches(root: Path, rel: str, factor: float) -> list[np.ndarray]:
    """Powder boxes of one real photograph, resampled by 1/factor to the sim pitch."""
    img = cv2.imread(str(root / rel), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise SystemExit(f"{root / rel}: cannot read image")
    out = []
    for x, y, w, h in REAL_BOXES[rel]:
        crop = img[y : y + h, x : x + w]
        out.append(cv2.resize(crop, (max(int(w / factor), 16), max(int(h / factor), 16)), interpolation=cv2.INTER_AREA))
    return out


def sim_patches(cfg: SimConfig, layers: int, seed: int, size: int = 128) -> list[np.ndarray]:
    """Powder-only patches (no part within 2 mm, no fiducials, no defects) of a few sim layers."""
    plan = plan_build(layers, seed, cfg)
    out: list[np.ndarray] = []
    for layer in range(1, layers + 1):
        imgs = render_layer(plan, layer)
        out += powder_patches(imgs.hr, imgs.mask, plan.pitch_mm, size)
    return out


def _labelled(img: np.ndarray, text: str) -> np.ndarray:
    """Gray image -> BGR with a caption in the top-left corner."""
    out = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    cv2.putText(out, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_figures(out: Path, realdata: Path, seed: int) -> None:
    """Example HR / webcam / LR / mask / defect figures and a real crop at the same pitch."""
    from edge.sim.defects import DEFECT_TYPES

    out.mkdir(parents=True, exist_ok=True)
    cfg = SimConfig(defect_rate=0.0)
    plan = plan_build(12, seed, cfg)
    imgs = render_layer(plan, 6)
    cv2.imwrite(str(out / "sim_hr.png"), imgs.hr)
    cv2.imwrite(str(out / "sim_webcam.png"), cv2.resize(imgs.webcam, (960, 540), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(out / "sim_lr.png"), imgs.lr)
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[1:, 0] = cv2.applyColorMap(np.linspace(30, 255, 255).astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_TURBO)[:, 0]
    cv2.imwrite(str(out / "sim_mask.png"), cv2.LUT(cv2.cvtColor(imgs.mask * 19, cv2.COLOR_GRAY2BGR), lut))
    n = plan.n
    crop = imgs.hr[n // 4 : n // 4 + 384, n // 8 : n // 8 + 384]
    real = cv2.imread(str(realdata / "risheng_slm" / "S01.jpg"), cv2.IMREAD_GRAYSCALE)
    side = int(round(384 * plan.pitch_mm * 1000 / REAL_PITCH_UM))
    rc = cv2.resize(real[2 * _S : 2 * _S + side, 3 * _S : 3 * _S + side], (384, 384), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(out / "sim_vs_real.png"), np.hstack([_labelled(crop, "sim HR (1:1)"),
                                                         np.full((384, 8, 3), 255, np.uint8),
                                                         _labelled(rc, "real S01, same pitch")]))
    # one tile per defect type, each from a layer that has it, with the label box drawn
    tiles = []
    dplan = plan_build(40, seed + 1, SimConfig(defect_rate=1.0))
    wanted = set(DEFECT_TYPES)
    for layer in range(1, dplan.layers + 1):
        if not wanted:
            break
        li = None
        for ev in dplan.defects:
            if ev.type in wanted and ev.active(layer):
                li = li or render_layer(dplan, layer, cameras=False)
                lab = next((lb for lb in li.labels if lb["defect_id"] == ev.id), None)
                if lab is None:
                    continue
                x, y, w, h = lab["bbox"]
                cx, cy = x + w // 2, y + h // 2
                half = max(96, min(max(w, h) // 2 + 24, 256))
                x0, y0 = int(np.clip(cx - half, 0, n - 2 * half)), int(np.clip(cy - half, 0, n - 2 * half))
                tile = cv2.cvtColor(li.hr, cv2.COLOR_GRAY2BGR)
                cv2.rectangle(tile, (x, y), (x + w - 1, y + h - 1), (0, 200, 255) if lab["severity"] == "critical"
                              else (0, 255, 0), 1)
                tile = cv2.resize(tile[y0 : y0 + 2 * half, x0 : x0 + 2 * half], (256, 256),
                                  interpolation=cv2.INTER_AREA)
                cv2.putText(tile, f"{ev.type} ({lab['severity']})", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                            (255, 255, 255), 1, cv2.LINE_AA)
                tiles.append(tile)
                wanted.discard(ev.type)
    rows = [np.hstack(tiles[i : i + 3]) for i in range(0, len(tiles) - len(tiles) % 3, 3)]
    if rows:
        cv2.imwrite(str(out / "sim_defects.png"), np.vstack(rows))


def main() -> None:
    """Print a markdown table (and optionally JSON) of texture statistics, sim vs real."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_real = Path(os.environ.get("LPBF_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))
    ap.add_argument("--realdata", type=Path, default=default_real)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=Path, default=None, help="also write the docs figures (sim_*.png) here")
    args = ap.parse_args()
    if args.images:
        write_figures(args.images, args.realdata, args.seed)

    cfg = SimConfig(defect_rate=0.0)
    factor = cfg.plate_mm * 1000.0 / cfg.hr_size_px / REAL_PITCH_UM
    rows: dict[str, dict[str, float]] = {}
    sims = sim_patches(cfg, args.layers, args.seed)
    rows[f"sim (seed {args.seed}, {len(sims)} patches)"] = mean_stats([texture_stats(p) for p in sims])
    for rel in REAL_BOXES:
        if (args.realdata / rel).exists():
            rows[rel] = mean_stats([texture_stats(p) for p in real_patches(args.realdata, rel, factor)])
        else:
            print(f"skipping {rel}: not found under {args.realdata}", file=sys.stderr)
    cols = ["mean", "std", "grain_contrast", "spectral_slope", "spatter_per_mpx"]
    print(f"pitch {cfg.plate_mm * 1000 / cfg.hr_size_px:.1f} um/px; real photographs resampled by 1/{factor:.2f}\n")
    print("| source | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.3f}" if c in ("grain_contrast", "spectral_slope") else f"{r[c]:.1f}"
                                          for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
