"""SR quality per photograph: does the model paint each camera's own amount of grain, or one average?

Every photograph under --realdata (training, validation and held-out ones alike, each labelled with its split)
gets `--crops` random 256x256 crops, LR by the paper recipe at x4 (area downsample, Gaussian blur k=3). Per
photograph: bicubic PSNR, one sample's PSNR / HF energy ratio / texture distance, the mean of 8's PSNR. The
HF ratio column is the one to read: a model that paints its training mix's average grain gets ratios far from 1
on photographs whose grain is finer or coarser than that average. Writes JSON and a plot.

    .venv/bin/python bench/sr_per_photo.py --model models/default --crops 3 --json docs/sr_per_photo.json \
        --plot docs/img/sr_per_photo.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sr_sets import MIN_CROP_STD, highpass_kurtosis, real_crops, texture_distance, texture_stats  # noqa: E402

from edge.analyze.metrics import hf_energy_ratio, psnr  # noqa: E402
from edge.data.datasets import (  # noqa: E402
    DEFAULT_HOLDOUT_PHOTOS,
    DEFAULT_VAL_PHOTOS,
    SplitSpec,
    photo_sources,
    unit_split,
)
from edge.sr.bundle import load_bundle  # noqa: E402
from edge.sr.manifest import Manifest  # noqa: E402


def photo_split(src, manifest: Manifest) -> str:
    """train / val / holdout / excluded of a photograph (Source) for the bundle's training split (manifest)."""
    d = manifest.training.get("data", {})
    split = d.get("split", {})
    spec = SplitSpec(holdout_photos=tuple(d.get("holdout_photos", DEFAULT_HOLDOUT_PHOTOS)),
                     val_photos=tuple(d.get("val_photos", DEFAULT_VAL_PHOTOS)),
                     holdout_groups=tuple(split.get("holdout_groups", ())),
                     holdout_share=split.get("holdout_share", 0.25),
                     exclude_groups=tuple(split.get("exclude_groups", ())))
    return unit_split(src, 0, spec)


def measure(model: Path, src, crops: int, seed: int, mean_samples: int, root: Path) -> dict:
    """Mean metrics over the crops of one photograph (Source)."""
    from edge.sr.resolver import SuperResolver

    sr = SuperResolver.from_bundle(model, backend="ort", seed=seed)
    rows = []
    for _name, lr, hr in real_crops(src.path, crops, 64, seed, MIN_CROP_STD.get(src.group, 8.0), root):
        ref = texture_stats(hr)
        bic = cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
        one = sr.upscale(lr).sr
        mean = sr.upscale(lr, samples=mean_samples, reduce="mean").sr
        rows.append({"bicubic_psnr": psnr(bic, hr), "sample_psnr": psnr(one, hr), "mean_psnr": psnr(mean, hr),
                     "sample_hf_ratio": hf_energy_ratio(one, hr), "bicubic_texture": texture_distance(bic, ref),
                     "sample_texture": texture_distance(one, ref),
                     "sample_kurt_log_ratio": abs(float(np.log(highpass_kurtosis(one) / highpass_kurtosis(hr))))})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} | {"n": len(rows)}


def chosen_photos(realdata: Path, per_group: int) -> list:
    """The photographs measured: up to `per_group` per source (evenly spread over its sorted list)."""
    groups: dict[str, list] = {}
    for s in photo_sources(realdata):
        groups.setdefault(s.group, []).append(s)
    out = []
    for g in sorted(groups):
        ps = groups[g]
        out += [ps[i] for i in sorted(set(np.linspace(0, len(ps) - 1, min(per_group, len(ps))).round().astype(int)))]
    return out


def plot(res: dict, path: Path) -> None:
    """HF ratio of one sample per photograph (log scale) with the [0.6, 1.5] band, coloured by split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res)
    colors = {"train": "tab:blue", "val": "tab:orange", "holdout": "tab:red", "excluded": "tab:green"}
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(names)), 3.6))
    ax.axhspan(0.6, 1.5, color="0.9", label="target band [0.6, 1.5]")
    ax.bar(range(len(names)), [res[n]["sample_hf_ratio"] for n in names],
           color=[colors[res[n]["split"]] for n in names])
    ax.set_yscale("log")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(names)), [f"{res[n]['group']}/{n.replace('PowderRecoat_', 'PR_')}" for n in names],
                  rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("HF energy ratio, 1 sample")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax.legend(handles, list(colors), fontsize=7, loc="upper right")
    ax.set_title("grain painted vs ground truth, per photograph (paper-recipe LR, x4)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--crops", type=int, default=3, help="crops per photograph")
    ap.add_argument("--mean-samples", type=int, default=8)
    ap.add_argument("--seed", type=int, default=11, help="crop seed (sr_quality uses 0 on the held-out photo)")
    ap.add_argument("--max-per-group", type=int, default=4, help="photographs per source at most (evenly chosen)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    a = ap.parse_args(argv)
    if not a.realdata.is_dir():
        print(f"{a.realdata}: real-photograph folder not found (pass --realdata)", file=sys.stderr)
        return 2
    manifest = load_bundle(a.model, verify=False).manifest
    res: dict[str, dict] = {}
    print(f"{'photo':34s} {'source':14s} {'split':7s} {'bicubic':>7s} {'1 sample':>8s} {'HF':>5s} {'tex/bic':>7s} "
          f"{'mean':>6s}")
    for src in chosen_photos(a.realdata, a.max_per_group):
        t0 = time.time()
        r = measure(a.model, src, a.crops, a.seed, a.mean_samples, a.realdata) | {"split": photo_split(src, manifest),
                                                                                   "group": src.group}
        res[src.name] = r
        print(f"{src.name:34s} {src.group:14s} {r['split']:7s} {r['bicubic_psnr']:7.2f} {r['sample_psnr']:8.2f} "
              f"{r['sample_hf_ratio']:5.2f} {r['sample_texture'] / r['bicubic_texture']:7.2f} {r['mean_psnr']:6.2f} "
              f"({time.time() - t0:.0f}s)", flush=True)
    inside = [n for n, r in res.items() if 0.6 <= r["sample_hf_ratio"] <= 1.5]
    print(f"HF ratio inside [0.6, 1.5] on {len(inside)} of {len(res)} photographs; model {manifest.model_id}")
    if a.json:
        a.json.write_text(json.dumps({"model_id": manifest.model_id, "crops": a.crops, "seed": a.seed,
                                      "photos": res}, indent=1))
    if a.plot:
        plot(res, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
