"""Semi-manual reference masks of the fused rings in the shared melt photographs (risheng_slm S01/S03/S05).

Usage: .venv/bin/python bench/ring_reference.py [--realdata ../shared/realdata] [--out tests/data] [--overlay DIR]
How (docs/analysis.md, "Real reference masks"): the 18 ring centres were picked once on S01 (annulus template matching
on a texture map at 1/4 size, threshold 0.35, plus one ring below it at 0.31 checked by eye) and are the same in all
three photographs (fixed camera: phase correlation of the three finds shifts < 0.4 px; same build, the rings grow
straight up). At half size: darkness map D = 1 - median5 / Gaussian(60) of median5 (the median drops the bright specks
on the walls); each centre refined jointly on the three photographs by a +-10 px grid search (then 0.5 px steps)
maximising mean D on the annulus minus mean D just inside and outside it; one annulus for all (the rings are one CAD
design) from the mean radial profile of D over all rings: inner and outer radius where it crosses halfway between the
wall level and the powder inside / outside; centres and radii refined twice in turn from a first guess of 47 / 70 px.
Crops (CROPS) are written as 0/255 PNGs; the S05 crops are held out from any tuning (HOLD_OUT).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CENTRES = [
    (1724, 824),
    (1400, 1080),
    (1720, 1076),
    (1648, 1532),
    (1636, 1832),
    (1292, 2204),
    (1628, 2220),
    (1576, 2548),
    (3340, 932),
    (3352, 1200),
    (3656, 1200),
    (3304, 1616),
    (3612, 1612),
    (3316, 1904),
    (3632, 1900),
    (3288, 2376),
    (3600, 2388),
    (3300, 2692),
]  # full-resolution (x, y), picked on S01
CROPS = {  # name -> (photo, rows, cols) at full resolution (masks at half size); the bar block and its spatter stay out
    "real_s01_rings_ref": ("S01", (720, 2064), (3180, 3848)),
    "real_s01_left_top_rings_ref": ("S01", (640, 1260), (1120, 1880)),
    "real_s01_left_low_rings_ref": ("S01", (1260, 2740), (1100, 1790)),
    "real_s03_left_top_rings_ref": ("S03", (640, 1260), (1120, 1880)),
    "real_s03_left_low_rings_ref": ("S03", (1260, 2740), (1100, 1790)),
    "real_s03_right_rings_ref": ("S03", (720, 2880), (3160, 3848)),
    "real_s05_left_top_rings_ref": ("S05", (640, 1260), (1120, 1880)),
    "real_s05_left_low_rings_ref": ("S05", (1260, 2740), (1100, 1790)),
    "real_s05_right_rings_ref": ("S05", (720, 2880), (3160, 3848)),
}
HOLD_OUT = (
    "real_s05_left_top_rings_ref",
    "real_s05_left_low_rings_ref",
    "real_s05_right_rings_ref",
)  # never looked at while tuning the segmentation


def darkness(g: np.ndarray) -> np.ndarray:
    """How much darker than the powder around it: 1 - (5 px median / its Gaussian(60 px) mean); the median drops
    the bright specks that sit on the walls, so the dark fused band reads whole."""
    m = cv2.medianBlur(np.clip(g, 0, 255).astype(np.uint8), 5).astype(np.float32)
    return 1.0 - m / np.maximum(cv2.GaussianBlur(m, (0, 0), 60.0), 1.0)


def radial_profile(t: np.ndarray, c: tuple[float, float], rmax: int = 95) -> np.ndarray:
    """Mean of t in 1 px rings around c, r = 0..rmax."""
    h, w = t.shape
    x0, y0 = int(c[0]) - rmax, int(c[1]) - rmax
    yy, xx = np.mgrid[y0 : y0 + 2 * rmax + 1, x0 : x0 + 2 * rmax + 1]
    ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    r = np.rint(np.hypot(xx - c[0], yy - c[1])).astype(int)
    sel = ok & (r <= rmax)
    return np.bincount(r[sel], weights=t[yy[sel], xx[sel]], minlength=rmax + 1) / np.maximum(
        np.bincount(r[sel], minlength=rmax + 1), 1
    )


def refine(
    maps: list[np.ndarray], c: tuple[float, float], r_in: float, r_out: float, search: int = 10
) -> tuple[float, float]:
    """Centre within +-search px (1 px, then 0.5 px steps) maximising, summed over the maps (one per photograph: the
    camera did not move and the rings grow straight up), the mean of the map on the annulus minus the mean just inside
    and just outside it."""

    def score(x: float, y: float) -> float:
        """Annulus contrast of the maps about (x, y)."""
        tot = 0.0
        for t in maps:
            p = radial_profile(t, (x, y), int(r_out + 12))
            tot += p[int(r_in) : int(r_out) + 1].mean() - 0.5 * (
                p[int(r_in) - 10 : int(r_in) - 2].mean() + p[int(r_out) + 3 : int(r_out) + 11].mean()
            )
        return tot

    grid = [(c[0] + dx, c[1] + dy) for dy in range(-search, search + 1) for dx in range(-search, search + 1)]
    best = max(grid, key=lambda q: score(*q))
    fine = [(best[0] + dx, best[1] + dy) for dy in np.arange(-1, 1.01, 0.5) for dx in np.arange(-1, 1.01, 0.5)]
    return max(fine, key=lambda q: score(*q))


def radii(maps: list[np.ndarray], centres: list[tuple[float, float]]) -> tuple[float, float]:
    """Common inner/outer radius of the wall: half-way crossings (linear interpolation) of the mean radial darkness
    profile (all rings of all photographs) between the wall level (mean where the profile is above half its maximum)
    and the powder level inside (r < 30 px) or outside (r 85-95 px)."""
    p = np.mean([radial_profile(d, c) for d in maps for c in centres], axis=0)
    base = float(min(p[:30].mean(), p[85:96].mean()))
    wall = float(p[(p - base) >= 0.5 * (p[30:85].max() - base)].mean())
    peak = int(np.argmax(p[30:85])) + 30

    def cross(level: float, idx: range) -> float:
        """First radius along idx where the profile crosses level (linear interpolation)."""
        for i in idx:
            a, b = p[i], p[i + idx.step]
            if (a - level) * (b - level) <= 0 and a != b:
                return i + (level - a) / (b - a) * idx.step
        raise RuntimeError("no crossing")

    return cross(0.5 * (wall + float(p[:30].mean())), range(peak, 0, -1)), cross(
        0.5 * (wall + float(p[85:96].mean())), range(peak, 94, 1)
    )


def make(realdata: Path, out: Path, overlay: Path | None) -> dict:
    """Write every crop's reference mask; return the fitted geometry (common to the three photographs)."""
    photos = sorted({p for p, _, _ in CROPS.values()})
    halves = {}
    for photo in photos:
        im = cv2.imread(str(realdata / "risheng_slm" / f"{photo}.jpg"), cv2.IMREAD_GRAYSCALE)
        if im is None:
            raise SystemExit(f"cannot read {realdata / 'risheng_slm' / (photo + '.jpg')}")
        halves[photo] = cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA).astype(
            np.float32
        )
    maps = [darkness(g) for g in halves.values()]
    r_in, r_out = 47.0, 70.0  # first guess (by eye), refined with the centres
    cs = [(x / 2.0, y / 2.0) for x, y in CENTRES]
    for _ in range(2):
        cs = [refine(maps, c, r_in, r_out) for c in cs]
        r_in, r_out = radii(maps, cs)
    fits = {
        "photos": photos,
        "r_in_px": round(r_in, 2),
        "r_out_px": round(r_out, 2),
        "centres_half_px": [[float(a), float(b)] for a, b in cs],
    }
    for photo, g in halves.items():
        yy, xx = np.mgrid[0 : g.shape[0], 0 : g.shape[1]]
        full = np.zeros(g.shape, bool)
        for cx, cy in cs:
            d = np.hypot(xx - cx, yy - cy)
            full |= (d >= r_in) & (d <= r_out)
        for name, (p, (r0, r1), (c0, c1)) in CROPS.items():
            if p != photo:
                continue
            m = full[r0 // 2 : r1 // 2, c0 // 2 : c1 // 2]
            cv2.imwrite(str(out / f"{name}.png"), (m * 255).astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
            if overlay is not None:
                crop = g[r0 // 2 : r1 // 2, c0 // 2 : c1 // 2].astype(np.uint8)
                edge = m ^ cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
                ov = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
                ov[edge] = (0, 0, 255)
                cv2.imwrite(
                    str(overlay / f"{name}_overlay.png"), np.hstack([cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR), ov])
                )
    return fits


def main() -> None:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data")
    ap.add_argument(
        "--overlay", type=Path, default=None, help="Also write crop | crop with the reference outline PNGs here."
    )
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.overlay:
        a.overlay.mkdir(parents=True, exist_ok=True)
    print(json.dumps(make(a.realdata, a.out, a.overlay), indent=1))


if __name__ == "__main__":
    main()
