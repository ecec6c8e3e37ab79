"""Held-out crop sets and per-crop metrics shared by the SR quality benches (bench/sr_quality.py and friends).

Real sets, one per source (printer / camera) of ../shared/realdata (edge.data.datasets.photo_group): 256x256 crops
of that source's held-out photographs, LR by the paper recipe at x4 (area downsample, Gaussian blur k=3). Sim: the
held-out sim build with its registered simulated-webcam LR; sim_paper: the same crops with paper-recipe LR.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.analyze.metrics import CVDSettings, hf_energy_ratio, mae, psnr, ssim, wph_coeffs
from edge.data.datasets import PHOTO_EXTS, PRESCALE_GROUPS, hashed_holdout, photo_group, read_gray, sim_source
from edge.data.degrade import paper_degrade

WPH = CVDSettings(size=128, j=3, l_angles=4)
# The held-out photographs of each source for models trained with the default split of issue 20 (docs/sr_quality.md):
# named photographs, and a hashed quarter of pblm_classes (edge.data.datasets.hashed_holdout).
HOLDOUT_PHOTOS = {"risheng_melt": ("S05.jpg",), "risheng_recoat": ("10448.png",),
                  "pblm": ("PowderRecoat_20211125_135551.jpg",)}
HOLDOUT_SHARE_GROUPS = {"pblm_classes": 0.25}
MIN_CROP_STD = {"pblm_classes": 3.0}  # near-uniform powder plates; elsewhere 8 skips flat background

Crop = tuple[str, np.ndarray, np.ndarray]  # (name, LR uint8, HR uint8)


def read_photo(photo: Path, root: Path | None = None) -> np.ndarray:
    """A shared photograph at the working size (the PBLM photographs, both folders, at half size)."""
    img = read_gray(photo)
    pre = PRESCALE_GROUPS.get(photo_group(photo, root), 1)
    if pre > 1:
        img = cv2.resize(img, (img.shape[1] // pre, img.shape[0] // pre), interpolation=cv2.INTER_AREA)
    return img


def real_crops(photo: Path, n: int, lr: int, seed: int, min_std: float = 8.0, root: Path | None = None) -> list[Crop]:
    """(name, LR, HR) crops of a photograph; LR by the paper recipe (n=4, k=3); flat crops (std < min_std) skipped."""
    img = read_photo(photo, root)
    rng = np.random.default_rng(seed)
    out, hs = [], lr * 4
    for _ in range(200 * n):
        if len(out) == n:
            break
        y, x = int(rng.integers(0, img.shape[0] - hs)), int(rng.integers(0, img.shape[1] - hs))
        hr = np.ascontiguousarray(img[y:y + hs, x:x + hs])
        if hr.std() < min_std:
            continue
        out.append((f"{photo.name}@{y},{x}", paper_degrade(hr, 4, 3), hr))
    return out


def holdout_photos(realdata: Path) -> dict[str, list[Path]]:
    """The held-out photographs of each source under `realdata` (HOLDOUT_PHOTOS, HOLDOUT_SHARE_GROUPS)."""
    out: dict[str, list[Path]] = {}
    for p in sorted(realdata.rglob("*")):
        if p.suffix.lower() not in PHOTO_EXTS or not p.is_file():
            continue
        g = photo_group(p, realdata)
        if p.name in HOLDOUT_PHOTOS.get(g, ()) or (g in HOLDOUT_SHARE_GROUPS
                                                   and hashed_holdout(p.name, HOLDOUT_SHARE_GROUPS[g])):
            out.setdefault(g, []).append(p)
    return out


def source_crops(realdata: Path, group: str, n: int, lr: int, seed: int) -> list[Crop]:
    """n crops of one source's held-out photographs, spread round-robin over them."""
    photos = holdout_photos(realdata).get(group, [])
    if not photos:
        raise ValueError(f"{realdata}: no held-out photographs of source {group!r}")
    if len(photos) > n:  # spread over the source (its folders are sorted by class)
        photos = [photos[i] for i in np.linspace(0, len(photos) - 1, n).round().astype(int)]
    per = [real_crops(p, -(-n // len(photos)), lr, seed + i, MIN_CROP_STD.get(group, 8.0), realdata)
           for i, p in enumerate(photos)]
    out = [c for k in range(max(map(len, per))) for crops in per if k < len(crops) for c in [crops[k]]]
    return out[:n]


def sim_crops(build: Path, n: int, lr: int, seed: int) -> list[Crop]:
    """(name, LR, HR) crops of a held-out sim build; LR = the build's registered webcam view."""
    src = sim_source(build)
    rng = np.random.default_rng(seed)
    out = []
    layers = [src.layers[i] for i in np.linspace(0, len(src.layers) - 1, n).astype(int)]
    for k in layers:
        hr_img, lr_img = read_gray(build / "hr" / f"{k:05d}.png"), read_gray(build / "lr" / f"{k:05d}.png")
        y, x = int(rng.integers(4, lr_img.shape[0] - lr - 4)), int(rng.integers(4, lr_img.shape[1] - lr - 4))
        out.append((f"{build.name}/{k:05d}@{y},{x}", lr_img[y:y + lr, x:x + lr].copy(),
                    hr_img[4 * y:4 * (y + lr), 4 * x:4 * (x + lr)].copy()))
    return out


def paper_lr(crops: list[Crop]) -> list[Crop]:
    """The same crops with the LR remade from the HR by the paper recipe (n=4, k=3)."""
    return [(name, paper_degrade(hr, 4, 3), hr) for name, _, hr in crops]


def texture_stats(img: np.ndarray) -> np.ndarray:
    """pywph phase-harmonic coefficients averaged over the 128x128 tiles of an image (no resampling)."""
    t = WPH.size
    ys, xs = range(0, img.shape[0] - t + 1, t), range(0, img.shape[1] - t + 1, t)
    tiles = [img[y:y + t, x:x + t] for y in ys for x in xs]
    return np.mean([np.abs(wph_coeffs(x.astype(np.float32), WPH)) for x in tiles], axis=0)


def texture_distance(img: np.ndarray, ref_stats: np.ndarray) -> float:
    """Relative L2 distance of the phase-harmonic statistics to the ground truth's."""
    return float(np.linalg.norm(texture_stats(img) - ref_stats) / np.linalg.norm(ref_stats))


def highpass_kurtosis(img: np.ndarray, sigma: float = 1.5) -> float:
    """Kurtosis of the image minus its Gaussian blur of `sigma` px (3 for Gaussian grain; sparkle makes it larger)."""
    x = img.astype(np.float64)
    hp = x - cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    v = float(np.mean(hp ** 2))
    return float(np.mean(hp ** 4)) / v ** 2 if v > 1e-9 else 3.0


def crop_metrics(img: np.ndarray, hr: np.ndarray, ref_stats: np.ndarray, ref_kurt: float) -> dict[str, float]:
    """MAE, PSNR, SSIM, HF energy ratio, texture distance and |log kurtosis ratio| of one output against its HR."""
    return {"mae": mae(img, hr), "psnr": psnr(img, hr), "ssim": ssim(img, hr), "hf_ratio": hf_energy_ratio(img, hr),
            "texture": texture_distance(img, ref_stats),
            "kurt_log_ratio": abs(float(np.log(highpass_kurtosis(img) / ref_kurt)))}


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over crops, except the kurtosis log-ratio: its median (the issue-20 definition)."""
    out = {k: float(np.median([r[k] for r in rows]) if k == "kurt_log_ratio" else np.mean([r[k] for r in rows]))
           for k in rows[0]}
    return {**out, "n": len(rows)}


def label(img: np.ndarray, text: str) -> np.ndarray:
    """Image with a caption strip on top."""
    strip = np.full((18, img.shape[1]), 255, np.uint8)
    cv2.putText(strip, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
    return np.vstack([strip, img])


def side_by_side(rows: list[tuple[dict[str, np.ndarray], np.ndarray]], shown: tuple[str, ...],
                 names: dict[str, str]) -> np.ndarray:
    """One row per crop: each shown method's output, then the ground truth, captioned; rows stacked."""
    out = []
    for outs, hr in rows:
        cols = [label(outs[m], names.get(m, m)) for m in shown if m in outs] + [label(hr, "ground truth")]
        sep = np.full((cols[0].shape[0], 4), 255, np.uint8)
        out.append(np.hstack([c for col in cols for c in (col, sep)][:-1]))
    width = max(r.shape[1] for r in out)
    out = [np.pad(r, ((0, 4), (0, width - r.shape[1])), constant_values=255) for r in out]
    return np.vstack(out)
