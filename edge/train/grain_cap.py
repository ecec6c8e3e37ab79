"""`lpbf-edge train grain-cap`: fit the grain-level predictor (edge.sr.grain) on the SR training split."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.data.datasets import PatchDataset, load_sources
from edge.sr.grain import GrainCap, band_energies, check_sigmas, default_sigmas, fit_grain_cap, predict_log_energy
from edge.train.autoencoder import split_spec
from edge.train.config import TrainConfig


def _pairs(ds: PatchDataset, desc: str) -> tuple[list, list, list[str]]:
    """(LR windows, HR windows, 'source/degrade' keys) of every item of a dataset."""
    lrs, hrs, keys = [], [], []
    for i in tqdm(range(len(ds)), desc=desc, mininterval=5.0):
        it = ds[i]
        lrs.append(it["lr"])
        hrs.append(it["hr"])
        keys.append(f"{it['source']}/{it['degrade']}")
    return lrs, hrs, keys


def cap_validation(cap: GrainCap, lrs: list, hrs: list, keys: list[str]) -> dict:
    """Per source/degradation: median predicted/true detail energy (all bands together, and per band) and the
    fraction of windows whose total is within [0.6, 1.5]."""
    pred = np.stack([np.exp(predict_log_energy(cap, lr)) for lr in lrs])
    true = np.stack([band_energies(hr, cap.sigmas) for hr in hrs]) + 1e-2
    total = pred.sum(1) / true.sum(1)
    out = {}
    for k in sorted(set(keys)):
        m = np.array([x == k for x in keys])
        r = total[m]
        out[k] = {"n": int(m.sum()), "median_ratio": round(float(np.median(r)), 3),
                  "within_0.6_1.5": round(float(np.mean((r >= 0.6) & (r <= 1.5))), 3),
                  "band_median_ratio": [round(float(v), 3) for v in np.median(pred[m] / true[m], axis=0)]}
    return out


def train_grain_cap(cfg: TrainConfig, out: Path, window: int = 32, per_unit: int = 150, ridge: float = 1e-2,
                    sigmas: tuple[float, ...] | None = None, margin: float = 1.0) -> GrainCap:
    """Fit on the train split (default degradation mix), validate on val and hold-out; write the cap JSON to `out`.

    sigmas: the detail bands' Gaussian splits in HR px (default edge.sr.grain.default_sigmas(scale)).
    margin: detail energy allowed per band = margin x predicted (1.5: the upper end of the HF target band, a guard
    for a grain-conditioned model that paints its own level).
    """
    if margin <= 0:
        raise ValueError(f"grain cap margin must be > 0, got {margin}")
    sources = load_sources(cfg.sims, cfg.realdata)
    spec = split_spec(cfg)
    sigmas = tuple(sigmas or default_sigmas(cfg.scale))
    check_sigmas(sigmas)  # before the slow part
    train = PatchDataset(sources, "train", spec, per_unit=per_unit, lr_patch=window, scale=cfg.scale, seed=cfg.seed)
    cap = fit_grain_cap(*_pairs(train, "grain-cap train")[:2], sigmas=sigmas, ridge=ridge, window=window)
    validation = {}
    for split in ("val", "holdout"):
        try:
            ds = PatchDataset(sources, split, spec, per_unit=max(8, per_unit // 3), lr_patch=window, scale=cfg.scale,
                              seed=cfg.seed + 1)
        except ValueError:  # a split with no units (e.g. no hold-out build given)
            continue
        validation[split] = cap_validation(cap, *_pairs(ds, f"grain-cap {split}"))
    cap = dataclasses.replace(cap, validation=validation, margin=float(margin))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"grain_cap": cap.to_json(), "cfg": cfg.to_json(), "window": window,
                               "per_unit": per_unit, "ridge": ridge,
                               "sigmas": list(sigmas)}, indent=1))
    return cap
