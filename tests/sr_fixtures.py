"""Tiny real models and a tiny real model bundle for the SR runtime tests (random weights; edge.models + diffusers)."""

from __future__ import annotations

import atexit
from pathlib import Path

SCALE = 4
LATENT_C = 4


def _torch():
    """torch with one intra-op thread: on a loaded 2-core box, 2 spinning threads make tiny models ~15x slower."""
    import torch

    torch.set_num_threads(1)
    return torch


def tiny_unet(seed: int = 0):
    """A small conditional UNet2DModel: [noisy latent (4) | LR cond (4)] -> 4 channels."""
    torch = _torch()
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8, in_channels=2 * LATENT_C, out_channels=LATENT_C, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
    ).eval()


AE = {"kind": "kl", "in_channels": 1, "latent_channels": LATENT_C, "layers_per_block": 1, "norm_num_groups": 4}
ARCH = {
    "hr_ae": {**AE, "block_out_channels": [8, 8, 8]},  # 2 down-samplings: HR 4h -> latent h
    "lr_ae": {**AE, "block_out_channels": [8]},  # no down-sampling: LR h -> condition h
    "unet": {"latent_channels": LATENT_C, "cond_channels": LATENT_C, "block_out_channels": [16, 32],
             "layers_per_block": 1, "norm_num_groups": 8, "attention": False, "num_train_timesteps": 50},
}
HR_SCALE, LR_SCALE = 0.5, 0.8


def tiny_nets(seed: int = 0) -> tuple:
    """SR-MODEL's modules (edge.models) at a tiny size with seeded random weights.

    Returns (hr_ae, lr_ae, denoiser, regression)."""
    torch = _torch()
    from edge.models import CondDenoiser, ImageAutoencoder, RegressionNet

    torch.manual_seed(seed)
    return (ImageAutoencoder(ARCH["hr_ae"]).eval(), ImageAutoencoder(ARCH["lr_ae"]).eval(),
            CondDenoiser(ARCH["unet"]).eval(), RegressionNet(ARCH["unet"]).eval())


def tiny_modules(seed: int = 0) -> dict:
    """The bundle graphs as torch modules with the contract's signatures (scaled latents), plus latent_scale_factor."""
    from edge.sr.torch_modules import graph_modules

    hr, lr, den, reg = tiny_nets(seed)
    mods = graph_modules(hr, lr, den, HR_SCALE, LR_SCALE, reg)
    mods["latent_scale_factor"] = HR_SCALE
    return mods


def build_tiny_bundle(out: Path, prediction: str = "v_prediction", schedule: str = "cosine", timesteps: int = 50,
                      sampler: dict | None = None, seed: int = 0, lr_patch: int = 8,
                      exporter: str = "legacy") -> Path:
    """Export the tiny modules to ONNX + safetensors and write a complete, hashed bundle at `out`."""
    from edge.sr.torch_modules import write_model_bundle

    manifest = {
        "model_id": f"tiny-test-{prediction}-{schedule}-{seed}",
        "scale": SCALE,
        "latent_channels": LATENT_C,
        "latent_shape": [LATENT_C, lr_patch, lr_patch],
        "lr_patch": lr_patch,
        "hr_patch": lr_patch * SCALE,
        "latent_scale_factor": HR_SCALE,
        "lr_latent_scale_factor": LR_SCALE,
        "schedule": {"kind": schedule, "timesteps": timesteps},
        "prediction": prediction,
        "sampler": sampler or {"name": "dpmpp_2m", "steps": 4, "init": "noise"},
        "reference": {"name": "ddpm", "steps": timesteps},
        "arch": ARCH,
        "training": {"data": "none (random weights, tests only)"},
        "metrics": {},
    }
    hr, lr, den, reg = tiny_nets(seed)
    return write_model_bundle(Path(out), hr, lr, den, manifest, regression=reg, exporter=exporter).path


_CACHE: dict[tuple, Path] = {}


def _cleanup() -> None:
    """Remove the cached tiny bundles when the test process exits."""
    import shutil

    for p in _CACHE.values():
        shutil.rmtree(p, ignore_errors=True)


atexit.register(_cleanup)


def tiny_bundle(prediction: str = "v_prediction", schedule: str = "cosine", sampler: dict | None = None) -> Path:
    """A tiny bundle built once per test process (tests that modify it must copy it first)."""
    import json
    import shutil
    import tempfile

    key = (prediction, schedule, json.dumps(sampler, sort_keys=True))
    if key not in _CACHE:
        base = ("v_prediction", "cosine", "null")
        if key != base:  # same graphs, other manifest: copy the base bundle and rewrite its manifest
            src = tiny_bundle()
            out = Path(tempfile.mkdtemp(prefix="lpbf-tiny-bundle-"))
            shutil.copytree(src, out, dirs_exist_ok=True)
            from edge.sr.bundle import MANIFEST, write_bundle

            m = json.loads((out / MANIFEST).read_text())
            m.update(prediction=prediction, schedule={"kind": schedule, "timesteps": 50})
            if sampler:
                m["sampler"] = sampler
            write_bundle(out, m)
            _CACHE[key] = out
        else:
            _CACHE[key] = build_tiny_bundle(Path(tempfile.mkdtemp(prefix="lpbf-tiny-bundle-")))
    return _CACHE[key]
