"""`train unbundle`: the shipped bundle's weights and manifest fields come back as training checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from edge.sr.bundle import load_bundle  # noqa: E402
from edge.train.common import load_checkpoint  # noqa: E402
from edge.train.unbundle import unbundle  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "default"


def test_unbundle_gives_back_the_shipped_weights_and_typed_fields(tmp_path):
    b = load_bundle(SHIPPED)
    m = b.manifest
    written = unbundle(SHIPPED, tmp_path)
    assert {p.name for p in written} >= {"ae.pt", "denoiser.pt"}
    ae = load_checkpoint(tmp_path / "ae.pt")
    assert ae["scales"] == {"latent_scale_factor": m.latent_scale_factor, "cond_scale_factor": m.lr_latent_scale_factor}
    assert ae["arch"]["hr_ae"] == m.arch["hr_ae"] and ae["cfg"]["timesteps"] == m.timesteps
    den = load_checkpoint(tmp_path / "denoiser.pt")
    assert den["arch"] == m.arch["unet"] and den["val"] == m.metrics["validation"]["diffusion"]
    shipped = load_file(str(SHIPPED / "denoiser.safetensors"))
    assert den["net"].keys() == shipped.keys()
    assert all(torch.equal(den["net"][k], shipped[k]) for k in shipped)
