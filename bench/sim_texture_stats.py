"""Powder-texture statistics of synthetic HR layers vs the real photographs, at the sim's pixel pitch.

Usage: .venv/bin/python bench/sim_texture_stats.py [--realdata DIR] [--json FILE] [--layers N] [--seed S]

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


def main() -> None:
    """Print a markdown table (and optionally JSON) of texture statistics, sim vs real."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_real = Path(os.environ.get("LPBF_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))
    ap.add_argument("--realdata", type=Path, default=default_real)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

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
        print(f"| {name} | " + " | ".join(f"{r[c]:.3f}" if c in ("grain_contrast", "spectral_slope") else f"{r[c]:.1f}" for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
