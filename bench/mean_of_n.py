"""Where the mean of samples can go: PSNR of the box's mean of K samples for K = 1..32, and its limit (issue 20).

For a sampler that draws from the true posterior, E||mean of K - x||^2 = MMSE x (1 + 1/K): one sample is 3.0 dB
below the posterior mean, the mean of 8 is 0.51 dB below it, and no K gets past it. Fitting MSE(K) = a + b / K per
set over the held-out crops (K >= 2: the box pairs chains antithetically, which puts K = 1 off the curve) gives the
sampler's own limit a (its posterior mean, K -> infinity) and its spread b;
b / a is 1 for independent draws from the true posterior; antithetic pairs and smoother samples lower it. The pixel
regressor (L1, the estimate the denoiser is conditioned on) stands in for the MMSE estimate. PSNR here is of the MSE
pooled over a set's crops (what the 1/K law holds for), not sr_quality's mean of per-crop PSNR. Box default profile
(the bundle's fast path, grain cap as the box runs it; antithetic pairs as the box draws them).

    .venv/bin/python bench/mean_of_n.py --model models/default --sim-build runs/data/sim_s3 --crops 8 \
        --json docs/mean_of_n_tex.json --plot docs/img/mean_of_n_tex.png
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_baselines import pixel_regression  # noqa: E402
from grain_reference import box_bench_parser, box_resolver  # noqa: E402
from sr_sets import holdout_photos, sim_crops, source_crops  # noqa: E402

KS = (1, 2, 4, 8, 16, 32)
FIT_KS = KS[1:]  # the box pairs chains antithetically, so a single sample is off the a + b/K curve of the pairs


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error in gray levels^2."""
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def db(m: float) -> float:
    """PSNR (8-bit peak) of a mean squared error."""
    return float(10 * np.log10(255.0 ** 2 / max(m, 1e-12)))


def fit_limit(ks: list[int], mses: list[float]) -> tuple[float, float]:
    """Least-squares (a, b) of MSE(K) = a + b / K."""
    A = np.stack([np.ones(len(ks)), 1.0 / np.asarray(ks, np.float64)], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, np.asarray(mses, np.float64), rcond=None)
    return float(a), float(b)


def measure(sr, model: Path, crops: list) -> dict:
    """Mean over crops of the MSE of bicubic, the pixel regressor and the mean of K samples; the fitted limit."""
    rows: dict[str, list[float]] = {"bicubic": [], "pixel_regression": [], **{str(k): [] for k in KS}}
    for _, lr, hr in crops:
        rows["bicubic"].append(mse(cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC), hr))
        if (model / "pixel_regression.onnx").is_file():
            rows["pixel_regression"].append(mse(pixel_regression(model, lr), hr))
        for k in KS:
            rows[str(k)].append(mse(sr.upscale(lr, samples=k, reduce="mean" if k > 1 else "sample").sr, hr))
    return summarise({k: float(np.mean(v)) for k, v in rows.items() if v})


def summarise(m: dict[str, float]) -> dict:
    """From the mean MSE per method / K: the a + b/K fit over FIT_KS and every PSNR over bicubic's."""
    a, b = fit_limit(list(FIT_KS), [m[str(k)] for k in FIT_KS])
    bic = db(m["bicubic"])
    out = {"mse": m, "limit_mse": a, "spread_mse": b, "spread_over_limit": b / a if a > 0 else float("nan"),
           "db_vs_bicubic": {k: db(v) - bic for k, v in m.items() if k != "bicubic"}}
    out["db_vs_bicubic"]["limit"] = db(a) - bic if a > 0 else float("nan")
    return out


def plot(res: dict, path: Path) -> None:
    """PSNR over bicubic against K per set, with the fitted curve, its limit and the pixel regressor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    kk = np.geomspace(1, 64, 50)
    for i, (g, r) in enumerate(res["sets"].items()):
        c = f"C{i}"
        bic = db(r["mse"]["bicubic"])
        ax.plot(KS, [r["db_vs_bicubic"][str(k)] for k in KS], "o", color=c, label=g)
        ax.plot(kk, [db(r["limit_mse"] + r["spread_mse"] / k) - bic for k in kk], "-", color=c, lw=0.8)
        if "pixel_regression" in r["db_vs_bicubic"]:
            ax.axhline(r["db_vs_bicubic"]["pixel_regression"], color=c, ls=":", lw=1)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples averaged (K)")
    ax.set_ylabel("PSNR - bicubic (dB)")
    ax.set_title(f"{res['model_id']}\nmean of K (dots), fit a + b/K over K >= 2 (line), pixel regressor (dotted), "
                 "target +1 dB (dashed)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(res: dict) -> str:
    """Markdown table: dB over bicubic per K, the limit, the pixel regressor, spread / limit."""
    lines = [f"model {res['model_id']} (box default profile)", "",
             "| set | " + " | ".join(f"mean of {k}" for k in KS) + " | limit (K -> inf) | pixel regressor | b / a |",
             "|---|" + "---|" * (len(KS) + 3)]
    for g, r in res["sets"].items():
        d = r["db_vs_bicubic"]
        pr = f"{d['pixel_regression']:+.2f}" if "pixel_regression" in d else "-"
        lines.append(f"| {g} | " + " | ".join(f"{d[str(k)]:+.2f}" for k in KS)
                     + f" | {d['limit']:+.2f} | {pr} | {r['spread_over_limit']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure every set, print the table, write JSON and the plot."""
    ap = box_bench_parser(__doc__)
    ap.add_argument("--plot", type=Path, default=None)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    sr = box_resolver(ap, a)
    sets = {g: source_crops(a.realdata, g, a.crops, 64, 0) for g in sorted(holdout_photos(a.realdata))}
    if a.sim_build is not None:
        sets["sim"] = sim_crops(a.sim_build, a.crops, 64, 0)
    res = {"model_id": sr.model_id, "command": " ".join(sys.argv), "ks": list(KS),
           "sets": {g: measure(sr, a.model, c) for g, c in tqdm(sets.items(), desc="mean of K", mininterval=5.0)}}
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(report(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    if a.plot:
        plot(res, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
