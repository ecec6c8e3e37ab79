"""Tiny real models and a tiny real model bundle for the SR runtime tests (random weights, diffusers modules)."""

from __future__ import annotations

import atexit
from pathlib import Path

import numpy as np

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


def tiny_vae(down: int, seed: int = 0):
    """A small AutoencoderKL with 1 input channel and 2**down spatial reduction to 4 latent channels."""
    torch = _torch()
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    n = down + 1
    return AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=LATENT_C, layers_per_block=1,
        block_out_channels=tuple([8] * n), down_block_types=tuple(["DownEncoderBlock2D"] * n),
        up_block_types=tuple(["UpDecoderBlock2D"] * n), norm_num_groups=4,
    ).eval()


def tiny_modules(seed: int = 0) -> dict:
    """The four bundle graphs as torch modules with the contract's signatures (scaled latents)."""
    import torch

    sf = 0.5

    class Denoiser(torch.nn.Module):
        """(x, t, cond) -> model output."""

        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, x, t, cond):
            return self.unet(torch.cat([x, cond], dim=1), t).sample

    class Encoder(torch.nn.Module):
        """image [-1,1] -> scaled latent (posterior mode)."""

        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, img):
            h = self.vae.quant_conv(self.vae.encoder(img))
            return h[:, :LATENT_C] * sf

    class Decoder(torch.nn.Module):
        """scaled latent -> image."""

        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, z):
            return self.vae.decoder(self.vae.post_quant_conv(z / sf))

    class Regression(torch.nn.Module):
        """cond -> deterministic HR-latent estimate (the optional regression graph)."""

        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Conv2d(LATENT_C, 8, 3, padding=1), torch.nn.SiLU(),
                                           torch.nn.Conv2d(8, LATENT_C, 3, padding=1))

        def forward(self, cond):
            return self.net(cond)

    hr_vae, lr_vae = tiny_vae(2, seed + 1), tiny_vae(0, seed + 2)
    torch.manual_seed(seed + 3)
    regression = Regression().eval()
    return {
        "denoiser": Denoiser(tiny_unet(seed)).eval(),
        "lr_encoder": Encoder(lr_vae).eval(),
        "hr_encoder": Encoder(hr_vae).eval(),
        "hr_decoder": Decoder(hr_vae).eval(),
        "regression": regression,
        "latent_scale_factor": sf,
    }


def torch_denoise(module):
    """numpy denoise callable over a torch denoiser module (float32)."""
    import torch

    def denoise(x: np.ndarray, t: np.ndarray, cond: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(cond)).numpy()

    return denoise


def build_tiny_bundle(out: Path, prediction: str = "v_prediction", schedule: str = "cosine", timesteps: int = 50,
                      sampler: dict | None = None, seed: int = 0, lr_patch: int = 8,
                      exporter: str = "legacy") -> Path:
    """Export the tiny modules to ONNX and write a complete, hashed bundle at `out`."""
    from edge.sr.bundle import write_bundle
    from edge.sr.export import export_bundle_graphs

    mods = tiny_modules(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    export_bundle_graphs(mods, out, lr_patch=lr_patch, scale=SCALE, latent_channels=LATENT_C, exporter=exporter)
    manifest = {
        "model_id": f"tiny-test-{prediction}-{schedule}-{seed}",
        "scale": SCALE,
        "latent_channels": LATENT_C,
        "latent_shape": [LATENT_C, lr_patch, lr_patch],
        "lr_patch": lr_patch,
        "hr_patch": lr_patch * SCALE,
        "latent_scale_factor": mods["latent_scale_factor"],
        "schedule": {"kind": schedule, "timesteps": timesteps},
        "prediction": prediction,
        "sampler": sampler or {"name": "dpmpp_2m", "steps": 4, "init": "noise"},
        "reference": {"name": "ddpm", "steps": timesteps},
        "arch": {"kind": "tiny-test"},
        "training": {"data": "none (random weights, tests only)"},
        "metrics": {},
    }
    write_bundle(out, manifest)
    return out


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
