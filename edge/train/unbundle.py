"""Training checkpoints rebuilt from a verified bundle, so a shipped model can be fine-tuned without its run folders.

`lpbf-edge train unbundle --model models/default --out runs/shipped` writes ae.pt (both autoencoders and their
latent scales; the HR decoder is the bundle's mean decoder), sample_decoder.pt (the same with the sample decoder,
when the bundle has one), pixel.pt (the pixel regressor of an estimate-conditioned bundle) and denoiser.pt (the
denoiser as a `train diffusion` export, with its estimate mix), in the formats `train diffusion --ae/--estimate/
--init-from`, `train autoencoder --init-from` and `train bundle` read.
"""

from __future__ import annotations

from pathlib import Path

from edge.train.common import save_checkpoint


def _strip(state: dict, prefix: str) -> dict:
    """The entries of a state dict under `prefix`, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def unbundle(model: Path | str, out: Path | str) -> list[Path]:
    """Write the training checkpoints of bundle `model` into `out`; returns the files written."""
    from safetensors.torch import load_file

    from edge.sr.bundle import BundleError, load_bundle
    from edge.train.config import TrainConfig

    b = load_bundle(model)
    m, out = b.manifest, Path(out)
    arch = m.arch
    if not all(k in arch for k in ("hr_ae", "lr_ae", "unet")):
        raise BundleError(f"{b.path}: manifest arch lacks hr_ae/lr_ae/unet; it cannot be unbundled")
    w = {g: load_file(str(b.path / f"{g}.safetensors")) for g in ("hr_encoder", "lr_encoder", "denoiser")}
    lr_key = "lr_enc.ae." if "cond_estimate" in arch else "ae."
    scales = {"latent_scale_factor": m.latent_scale_factor, "cond_scale_factor": m.lr_latent_scale_factor}
    tr = m.training
    data = tr.get("data", {})
    cfg = TrainConfig(out=str(out), sims=list(data.get("sims", [])), realdata=data.get("realdata"),
                      holdout_builds=list(data.get("holdout_builds", [])),
                      holdout_photos=list(data.get("holdout_photos", ["S05.jpg"])),
                      val_photos=list(data.get("val_photos", ["10448.png"])), lr_size=m.lr_patch,
                      scale=m.scale, prediction=m.prediction, schedule=m.make_schedule().kind,
                      timesteps=m.timesteps).to_json()
    origin = {"unbundled_from": str(b.path), "model_id": b.model_id}
    ae = {"kind": "autoencoder-ema", "arch": {"hr_ae": arch["hr_ae"], "lr_ae": arch["lr_ae"]},
          "hr": _strip(w["hr_encoder"], "ae."), "lr": _strip(w["lr_encoder"], lr_key), "scales": scales,
          "channel_gains": None, "step": tr.get("steps", {}).get("ae", 0), "cfg": cfg,
          "wall_s": float(tr.get("wall_s", {}).get("ae", 0.0)), **origin}
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "ae.pt"]
    save_checkpoint(written[0], ae)
    if m.has_file("hr_decoder_sample.safetensors"):
        dec = _strip(load_file(str(b.path / "hr_decoder_sample.safetensors")), "ae.")
        written.append(out / "sample_decoder.pt")
        save_checkpoint(written[-1], {**ae, "hr": dec, "step": tr.get("steps", {}).get("sample_decoder", 0)})
    diff = {"kind": "diffusion-ema", "arch": arch["unet"], "net": _strip(w["denoiser"], ""), "scales": scales,
            "ae": {"path": str(out / "ae.pt"), "step": ae["step"], "cfg": cfg}, "cfg": cfg,
            "step": tr.get("steps", {}).get("diffusion", 0), "wall_s": float(tr.get("wall_s", {}).get("diffusion", 0)),
            "val": m.metrics.get("validation", {}).get("diffusion"), **origin}
    if "cond_estimate" in arch:
        pixel = {"kind": "pixel-ema", "arch": arch["cond_estimate"]["pixel"], "net": _strip(w["lr_encoder"], "pixel."),
                 "step": tr.get("steps", {}).get("pixel", 0), "wall_s": float(tr.get("wall_s", {}).get("pixel", 0.0)),
                 "val": m.metrics.get("validation", {}).get("pixel_regression"), "cfg": cfg, **origin}
        written.append(out / "pixel.pt")
        save_checkpoint(written[-1], pixel)
        diff["cond_estimate"] = {"path": str(out / "pixel.pt"), "arch": pixel["arch"], "step": pixel["step"],
                                 "val": pixel["val"], "pixel": pixel["net"], "mix": _strip(w["lr_encoder"], "mix.")}
    written.append(out / "denoiser.pt")
    save_checkpoint(written[-1], diff)
    return written
