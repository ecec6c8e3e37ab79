"""Assemble a model bundle from training checkpoints (ae.pt + a diffusion export).

For example to distil before the default ships:

    .venv/bin/python bench/teacher_bundle.py --ae runs/dec/ae.pt --diffusion runs/diffusion/best.pt \
        --out runs/distill/teacher
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build(ae: Path, diffusion: Path, out: Path, lr_patch: int = 16, exporter: str = "legacy") -> Path:
    """Write a verified bundle (ONNX + safetensors + manifest) from the two checkpoints; returns its folder."""
    from edge.models import CondDenoiser
    from edge.sr.torch_modules import write_model_bundle
    from edge.train.common import load_checkpoint
    from edge.train.diffusion import load_autoencoders

    hr, lr, ae_state = load_autoencoders(ae)
    d = load_checkpoint(diffusion)
    if not str(d.get("kind", "")).startswith("diffusion"):
        raise ValueError(f"{diffusion}: not a diffusion export (kind {d.get('kind')!r})")
    net = CondDenoiser(d["arch"])
    net.load_state_dict(d["net"])
    cfg = d.get("cfg") or {}
    if isinstance(cfg, str):
        import json

        cfg = json.loads(cfg)
    scales = ae_state["scales"]
    manifest = {
        "model_id": f"teacher-{diffusion.parent.name}-step{d.get('step')}",
        "scale": 2 ** (len(ae_state["arch"]["hr_ae"]["block_out_channels"]) - 1),
        "latent_channels": int(d["arch"]["latent_channels"]),
        "lr_patch": lr_patch,
        "latent_scale_factor": {"hr": float(scales["latent_scale_factor"]),
                                "lr": float(scales.get("cond_scale_factor", scales["latent_scale_factor"]))},
        "schedule": {"kind": cfg.get("schedule", "cosine"), "timesteps": int(cfg.get("timesteps", 200))},
        "prediction": cfg.get("prediction", "v_prediction"),
        "sampler": {"name": "dpmpp_2m", "steps": 20},
        "reference": {"name": "ddpm", "steps": int(cfg.get("timesteps", 200))},
        "arch": {"hr_ae": ae_state["arch"]["hr_ae"], "lr_ae": ae_state["arch"]["lr_ae"], "unet": d["arch"]},
        "training": {"ae": str(ae), "diffusion": str(diffusion), "step": d.get("step")},
    }
    return write_model_bundle(out, hr, lr, net.eval(), manifest, exporter=exporter).path


def main(argv: list[str] | None = None) -> int:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ae", type=Path, required=True, help="autoencoder export (ae.pt)")
    ap.add_argument("--diffusion", type=Path, required=True, help="diffusion export (best.pt / final.pt)")
    ap.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    ap.add_argument("--lr-patch", type=int, default=16, help="LR tile side of the bundle")
    a = ap.parse_args(argv)
    print(build(a.ae, a.diffusion, a.out, a.lr_patch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
