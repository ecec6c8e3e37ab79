"""How much PSNR over bicubic the LR leaves on the table: band-limited oracles and a linear MMSE (Wiener) estimator.

Same held-out crops as bench/sr_quality.py (same --crops/--seed): the photograph with paper-recipe LR ('real'),
the sim build with its simulated-webcam LR ('sim'), the same sim crops with paper-recipe LR ('sim_paper').
Per set:
- oracle band-limits of the HR itself: everything up to the LR Nyquist kept (an estimator that recovered that whole
  band exactly and painted nothing above it), and up to half of it;
- a linear MMSE estimator: each 4x4 HR block as a least-squares linear function of the (2r+1)^2 LR neighbourhood,
  fitted on the training data of the same kind (training sim builds' webcam LR, the same builds' HR with the paper
  recipe, or the training photographs with the paper recipe). For the sim powder (a Gaussian random field) the
  linear estimator is close to the best possible one away from part edges, so its gain bounds what any method
  can get there.
With --quality JSON files of bench/sr_quality.py on the same crops, the report adds the pixel CNN and the mean of 8
for comparison, and the plot shows every estimator's gain over bicubic per set.

    .venv/bin/python bench/sr_fidelity_bound.py --sim-build runs/data/sim_s3 --train-sim runs/data/sim_s1 \
        --train-sim runs/data/sim_s2 --crops 4 --seed 0 --quality docs/sr_quality.json \
        --json docs/sr_fidelity_bound.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sr_sets import holdout_photos, paper_lr, read_photo, sim_crops, source_crops  # noqa: E402

from edge.analyze.metrics import psnr  # noqa: E402
from edge.data.datasets import DEFAULT_VAL_PHOTOS, PHOTO_EXTS, read_gray  # noqa: E402
from edge.data.degrade import paper_degrade  # noqa: E402

S = 4


def neighbourhoods(lr: np.ndarray, r: int) -> np.ndarray:
    """[H*W, (2r+1)^2 + 1] float64: each LR pixel's neighbourhood (reflect-padded) and a constant."""
    p = np.pad(lr.astype(np.float64), r, mode="reflect")
    h, w = lr.shape
    cols = [p[dy:dy + h, dx:dx + w].ravel() for dy in range(2 * r + 1) for dx in range(2 * r + 1)]
    return np.stack(cols + [np.ones(h * w)], 1)


def blocks(hr: np.ndarray) -> np.ndarray:
    """[H*W, S*S] float64: the HR block under each LR pixel."""
    h, w = hr.shape[0] // S, hr.shape[1] // S
    return hr[:h * S, :w * S].reshape(h, S, w, S).transpose(0, 2, 1, 3).reshape(h * w, S * S).astype(np.float64)


class LinearMMSE:
    """Least-squares linear LR-neighbourhood -> HR-block estimator (accumulated normal equations)."""

    def __init__(self, radius: int, per_image: int, seed: int) -> None:
        """Empty normal equations; `per_image` random LR pixels are used from each training pair."""
        n = (2 * radius + 1) ** 2 + 1
        self.r, self.per_image, self.rng = radius, per_image, np.random.default_rng(seed)
        self.xtx, self.xty = np.zeros((n, n)), np.zeros((n, S * S))
        self.coef: np.ndarray | None = None

    def add(self, lr: np.ndarray, hr: np.ndarray) -> None:
        """Add one (uint8 LR, uint8 HR) training pair."""
        x, y = neighbourhoods(lr, self.r), blocks(hr)
        keep = self.rng.choice(len(x), min(self.per_image, len(x)), replace=False)
        self.xtx += x[keep].T @ x[keep]
        self.xty += x[keep].T @ y[keep]

    def fit(self) -> None:
        """Solve (lightly ridge-regularised for conditioning)."""
        self.coef = np.linalg.solve(self.xtx + 1e-3 * np.eye(len(self.xtx)), self.xty)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        """uint8 LR -> uint8 HR."""
        assert self.coef is not None, "fit() first"
        y = neighbourhoods(lr, self.r) @ self.coef
        h, w = lr.shape
        out = y.reshape(h, w, S, S).transpose(0, 2, 1, 3).reshape(h * S, w * S)
        return np.clip(np.round(out), 0, 255).astype(np.uint8)


def band_limit(hr: np.ndarray, frac: float) -> np.ndarray:
    """The HR with every spatial frequency above `frac` cycles/px (per axis) removed."""
    f = np.fft.fft2(hr.astype(np.float64))
    keep = ((np.abs(np.fft.fftfreq(hr.shape[0]))[:, None] <= frac)
            & (np.abs(np.fft.fftfreq(hr.shape[1]))[None, :] <= frac))
    return np.clip(np.round(np.real(np.fft.ifft2(f * keep))), 0, 255).astype(np.uint8)


def training_photos(realdata: Path) -> list[Path]:
    """Photographs of the SR training split (not a held-out one of bench/sr_sets.py, not the old validation one)."""
    skip = {p for ps in holdout_photos(realdata).values() for p in ps}
    return sorted(p for p in realdata.rglob("*") if p.suffix.lower() in PHOTO_EXTS and p not in skip
                  and p.name not in DEFAULT_VAL_PHOTOS)


def fit_estimators(train_sims: list[Path], realdata: Path, radius: int, seed: int) -> dict[str, LinearMMSE]:
    """One linear MMSE estimator per set kind, each fitted on that kind's training data."""
    est = {k: LinearMMSE(radius, 20000, seed) for k in ("real", "sim", "sim_paper")}
    layers = [(b, f) for b in train_sims for f in sorted((b / "lr").glob("*.png"))]
    for b, f in tqdm(layers, desc="fit sim"):
        hr = read_gray(b / "hr" / f.name)
        est["sim"].add(read_gray(f), hr)
        est["sim_paper"].add(paper_degrade(hr, S, 3), hr)
    for p in tqdm(training_photos(realdata), desc="fit photos"):
        img = read_photo(p, realdata)
        h, w = img.shape[0] // S * S, img.shape[1] // S * S
        est["real"].add(paper_degrade(img[:h, :w], S, 3), img[:h, :w])
    for e in est.values():
        e.fit()
    return est


def measure(sets: dict[str, list], est: dict[str, LinearMMSE]) -> dict[str, dict[str, float]]:
    """Mean PSNR per set of bicubic, the two oracles and the linear MMSE estimator."""
    out = {}
    for name, crops in sets.items():
        rows = [{"bicubic": psnr(cv2.resize(lr, None, fx=S, fy=S, interpolation=cv2.INTER_CUBIC), hr),
                 "oracle_lr_nyquist": psnr(band_limit(hr, 0.5 / S), hr),
                 "oracle_half_lr_nyquist": psnr(band_limit(hr, 0.25 / S), hr),
                 "linear_mmse": psnr(est[name if name in est else "real"](lr), hr)} for _, lr, hr in crops]
        out[name] = ({k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
                     | {"n": len(rows), "crops": [c[0] for c in crops]})
    return out


def add_quality(res: dict, quality: list[Path]) -> None:
    """Pixel CNN and mean-of-8 PSNR from sr_quality JSON files of the same crops (in place)."""
    for q in quality:
        d = json.loads(q.read_text())
        for name, r in res.items():
            for m, key in (("pixel_regression", "pixel_cnn"), ("mean8", "mean8")):
                if m in d.get(name, {}) and d[name].get("crops") == r["crops"]:
                    r[key] = d[name][m]["psnr"]


def plot(res: dict, path: Path) -> None:
    """Gain over bicubic (dB) of each estimator per set, with the +0.5 dB line of issue 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("oracle_half_lr_nyquist", "oracle: HR up to LR Nyquist / 2"), ("linear_mmse", "linear MMSE"),
            ("pixel_cnn", "pixel CNN (shipped estimate)"), ("mean8", "mean of 8 (shipped model)"),
            ("oracle_lr_nyquist", "oracle: HR up to LR Nyquist")]
    sets = list(res)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(keys)
    for i, (k, lab) in enumerate(keys):
        vals = [res[s].get(k, np.nan) - res[s]["bicubic"] for s in sets]
        ax.bar(np.arange(len(sets)) + (i - len(keys) / 2 + 0.5) * width, vals, width, label=lab)
    ax.axhline(0.5, color="k", ls="--", lw=0.8)
    ax.text(len(sets) - 0.5, 0.52, "issue 3: mean of 8 >= +0.5 dB", ha="right", va="bottom", fontsize=7)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(sets)), sets)
    ax.set_ylabel("PSNR gain over bicubic (dB)")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("what each LR leaves on the table (held-out crops, x4)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--source", action="append", default=[], help="real source (repeat; default: all held-out ones)")
    ap.add_argument("--sim-build", type=Path, required=True, help="held-out sim build folder")
    ap.add_argument("--train-sim", type=Path, action="append", required=True, help="training sim build (repeat)")
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--radius", type=int, default=4, help="LR neighbourhood radius of the linear estimator")
    ap.add_argument("--quality", type=Path, action="append", default=[], help="sr_quality JSON of the same crops")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    a = ap.parse_args(argv)
    for p in [a.realdata, a.sim_build, *a.train_sim]:
        if not p.is_dir():
            print(f"{p}: folder not found", file=sys.stderr)
            return 2
    sets = {g: source_crops(a.realdata, g, a.crops, 64, a.seed)
            for g in (a.source or sorted(holdout_photos(a.realdata)))}
    sets["sim"] = sim_crops(a.sim_build, a.crops, 64, a.seed)
    sets["sim_paper"] = paper_lr(sets["sim"])
    res = measure(sets, fit_estimators(a.train_sim, a.realdata, a.radius, a.seed))
    add_quality(res, a.quality)
    cols = ["oracle_half_lr_nyquist", "linear_mmse", "pixel_cnn", "mean8", "oracle_lr_nyquist"]
    print(f"{'set':10s} {'bicubic':>8s} " + " ".join(f"{c:>22s}" for c in cols))
    for s, r in res.items():
        print(f"{s:10s} {r['bicubic']:8.2f} " + " ".join(
            f"{r[c]:14.2f} ({r[c] - r['bicubic']:+.2f})" if c in r else f"{'-':>22s}" for c in cols))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    if a.plot:
        plot(res, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
