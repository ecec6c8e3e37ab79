"""Autoencoder ceilings per source: what a decoder makes of the HR's own latent (and of a noisy one).

For each autoencoder (ae.pt of `lpbf-edge train autoencoder`, LABEL=PATH), on the held-out crops of every source
(bench/sr_sets.py) and of the held-out sim build: reconstruction PSNR / SSIM, HF energy ratio, texture distance,
high-pass kurtosis log-ratio and the orientation-statistics error (edge.train.losses.oriented_stats, L1), plus the
PSNR when the scaled latent carries Gaussian noise of std 0.3 (about a sampler's latent error, docs/sr_quality.md).
Compares KL with VQ autoencoders and sample decoders with each other.

    .venv/bin/python bench/ae_compare.py --ae kl=runs/ae_kl/ae.pt --ae vq=runs/ae_vq/ae.pt \
        --sim-build runs/data/sim_s3 --crops 4 --json docs/ae_compare.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sr_sets import (  # noqa: E402
    crop_metrics,
    highpass_kurtosis,
    holdout_photos,
    sim_crops,
    source_crops,
    texture_stats,
)

from edge.analyze.metrics import psnr  # noqa: E402

LATENT_NOISE = 0.3  # std in scaled-latent units


def reconstruct(hr_ae, scale: float, hr: np.ndarray, noise: float, seed: int) -> tuple[np.ndarray, float]:
    """(decode(encode(hr) [+ noise]) as uint8, orientation-statistics L1 error) for one HR crop."""
    import torch

    from edge.train.losses import oriented_stats

    x = torch.from_numpy(hr.astype(np.float32) / 127.5 - 1)[None, None]
    with torch.no_grad():
        z = hr_ae.encode(x)
        if noise > 0:
            g = torch.Generator().manual_seed(seed)
            z = z + noise / scale * torch.randn(z.shape, generator=g)
        y = hr_ae.decode(z).clamp(-1, 1)
        err = float((oriented_stats(y) - oriented_stats(x)).abs().mean())
    return np.clip(np.round((y[0, 0].numpy() + 1) * 127.5), 0, 255).astype(np.uint8), err


def measure(models: dict[str, Path], sets: dict[str, list]) -> dict:
    """Per model and set: mean metrics of the clean and the noisy-latent reconstructions."""
    from edge.train.diffusion import load_autoencoders

    out: dict[str, dict] = {}
    for label, path in models.items():
        hr_ae, _, s = load_autoencoders(path)
        scale = float(s["scales"]["latent_scale_factor"])
        out[label] = {"path": str(path), "kind": hr_ae.kind, "step": s.get("step"), "wall_s": s.get("wall_s")}
        for set_name, crops in sets.items():
            rows = []
            for i, (_, _, hr) in enumerate(crops):
                ref, kurt = texture_stats(hr), highpass_kurtosis(hr)
                rec, orient = reconstruct(hr_ae, scale, hr, 0.0, i)
                noisy, _ = reconstruct(hr_ae, scale, hr, LATENT_NOISE, i)
                rows.append({**crop_metrics(rec, hr, ref, kurt), "orient_err": orient, "noisy_psnr": psnr(noisy, hr)})
            out[label][set_name] = {k: float(np.median([r[k] for r in rows]) if k == "kurt_log_ratio"
                                             else np.mean([r[k] for r in rows])) for k in rows[0]}
            print(f"{label:14s} {set_name:16s} " + " ".join(f"{k}={v:.3f}" for k, v in out[label][set_name].items()),
                  flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ae", action="append", required=True, help="LABEL=PATH of an ae.pt (repeat)")
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--sim-build", type=Path, default=None)
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    try:
        models = {k: Path(v) for k, v in (x.split("=", 1) for x in a.ae)}
    except ValueError:
        ap.error("--ae wants LABEL=PATH")
    t0 = time.time()
    sets = {g: source_crops(a.realdata, g, a.crops, 64, a.seed) for g in sorted(holdout_photos(a.realdata))}
    if a.sim_build is not None:
        sets["sim"] = sim_crops(a.sim_build, a.crops, 64, a.seed)
    res = measure(models, sets)
    if a.json:
        cmd = ".venv/bin/python bench/ae_compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
        a.json.write_text(json.dumps({"command": cmd, "wall_s": round(time.time() - t0, 1), **res}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
