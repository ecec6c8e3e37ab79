"""A bundle written from SR-MODEL's torch modules (edge.models) round-trips: ONNX == rebuilt torch modules."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
models = pytest.importorskip("edge.models")
if not all(hasattr(models, n) for n in ("ImageAutoencoder", "CondDenoiser", "ScaledEncoder", "ScaledDecoder")):
    pytest.skip("edge.models (SR-MODEL) has no autoencoder/denoiser modules yet", allow_module_level=True)

from edge.sr.bundle import load_torch_modules  # noqa: E402
from edge.sr.runners import OrtRunner, TorchRunner  # noqa: E402
from edge.sr.torch_modules import write_model_bundle  # noqa: E402

AE = {"kind": "kl", "in_channels": 1, "latent_channels": 4, "layers_per_block": 1, "norm_num_groups": 4}
ARCH = {
    "hr_ae": {**AE, "block_out_channels": [8, 8, 8]},
    "lr_ae": {**AE, "block_out_channels": [8]},
    "unet": {"latent_channels": 4, "cond_channels": 4, "block_out_channels": [16, 16], "layers_per_block": 1,
             "norm_num_groups": 8, "attention": False, "num_train_timesteps": 50},
}


def test_write_model_bundle_round_trip(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    hr, lr = models.ImageAutoencoder(ARCH["hr_ae"]), models.ImageAutoencoder(ARCH["lr_ae"])
    den = models.CondDenoiser(ARCH["unet"])
    manifest = {"model_id": "tiny-edge-models", "scale": 4, "latent_channels": 4, "latent_shape": [4, 8, 8],
                "lr_patch": 8, "hr_patch": 32, "latent_scale_factor": 0.7, "lr_latent_scale_factor": 1.3,
                "schedule": {"kind": "cosine", "timesteps": 50}, "prediction": "v_prediction",
                "sampler": {"name": "dpmpp_2m", "steps": 4}, "reference": {"name": "ddpm", "steps": 50},
                "arch": ARCH, "training": {}, "metrics": {}}
    b = write_model_bundle(tmp_path / "b", hr, lr, den, manifest, exporter="legacy")
    assert {"denoiser.safetensors", "hr_decoder.onnx"} <= set(b.manifest.files)
    mods = load_torch_modules(b.path)
    assert mods["lr_encoder"].scale == 1.3 and mods["hr_decoder"].scale == 0.7
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 8, 12)).astype(np.float32)
    lr_img = rng.uniform(-1, 1, (2, 1, 8, 12)).astype(np.float32)
    o, t = OrtRunner(b), TorchRunner(mods)
    np.testing.assert_allclose(o.denoise(x, np.array([3, 40], np.float32), x),
                               t.denoise(x, np.array([3, 40], np.float32), x), atol=1e-4)
    np.testing.assert_allclose(o.encode_lr(lr_img), t.encode_lr(lr_img), atol=1e-4)
    np.testing.assert_allclose(o.decode(x), t.decode(x), atol=1e-4)
    assert TorchRunner.from_bundle(b).modules.keys() == mods.keys()
