"""Assemble a model bundle (ONNX + safetensors + manifest) from training checkpoints via edge.sr's writer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from edge.models import CondDenoiser, ImageAutoencoder, RegressionNet
from edge.train.common import load_checkpoint


def _read_command(run: Path) -> str | None:
    """The command line recorded in a run folder (command.txt), if any."""
    f = run / "command.txt"
    return f.read_text().strip() if f.is_file() else None


def _finetuned_decoder(ae: dict, ae_pt: Path, decoder_pt: Path) -> tuple[ImageAutoencoder, dict]:
    """The HR autoencoder of a decoder-only fine-tune of `ae` (refused when its encoder differs)."""
    dec = load_checkpoint(decoder_pt)
    enc_keys = [k for k in ae["hr"] if not k.startswith(("decoder.", "net.decoder.", "net.post_quant_conv."))]
    if any(not torch.equal(ae["hr"][k], dec["hr"][k]) for k in enc_keys):
        raise ValueError(f"{decoder_pt}: its HR encoder differs from {ae_pt}; it is not a decoder-only fine-tune of it")
    hr = ImageAutoencoder(ae["arch"]["hr_ae"])
    hr.load_state_dict(dec["hr"])
    return hr.eval(), {"path": str(decoder_pt), "step": dec["step"], "wall_s": round(dec["wall_s"], 1),
                       "val": dec.get("val")}


def _autoencoders(ae_pt: Path, decoder_pt: Path | None) -> tuple[ImageAutoencoder, ImageAutoencoder, dict, dict]:
    """HR/LR autoencoders from ae.pt, with the HR decoder from a decoder-only fine-tune when given."""
    ae = load_checkpoint(ae_pt)
    hr, lr = ImageAutoencoder(ae["arch"]["hr_ae"]), ImageAutoencoder(ae["arch"]["lr_ae"])
    hr.load_state_dict(ae["hr"])
    lr.load_state_dict(ae["lr"])
    info = {"ae": {"path": str(ae_pt), "step": ae["step"], "wall_s": round(ae["wall_s"], 1)}}
    if decoder_pt is not None:
        hr, info["decoder_finetune"] = _finetuned_decoder(ae, ae_pt, decoder_pt)
    return hr.eval(), lr.eval(), ae, info


def _estimate(diff: dict) -> tuple | None:
    """(pixel regressor, mix) of an estimate-conditioned denoiser export, else None."""
    from edge.models import PixelRegressor, estimate_mix

    ce = diff.get("cond_estimate")
    if ce is None:
        return None
    pixel = PixelRegressor(ce["arch"])
    pixel.load_state_dict(ce["pixel"])
    mix = estimate_mix(int(diff["arch"]["latent_channels"]))
    mix.load_state_dict(ce["mix"])
    return pixel.eval(), mix.eval()


def build_bundle(out: Path, ae_pt: Path, diffusion_pt: Path, regression_pt: Path | None = None,
                 decoder_pt: Path | None = None, model_id: str | None = None, sampler: dict | None = None,
                 metrics: dict | None = None, data: dict | None = None, exporter: str = "dynamo",
                 reuse: tuple[str, ...] = (), sample_decoder_pt: Path | None = None):
    """Export the four graphs (+ regression, + the texture/sample decoder) and write a verified bundle into `out`.

    `sample_decoder_pt`: ae.pt of a decoder-only fine-tune trained for texture (GAN/spectral terms); it becomes
    hr_decoder_sample, used for single samples, while hr_decoder (the L1 decoder) decodes means.

    Graphs named in `reuse` whose ONNX file already exists in `out` are not exported again (their
    safetensors are rewritten from the given checkpoints): the slow dynamo export can be staged.
    """
    from edge.sr.bundle import load_bundle, write_bundle
    from edge.sr.export import export_bundle_graphs, save_weights
    from edge.sr.torch_modules import graph_modules

    hr, lr, ae, info = _autoencoders(ae_pt, decoder_pt)
    tex = None
    if sample_decoder_pt is not None:
        tex, info["sample_decoder"] = _finetuned_decoder(ae, ae_pt, sample_decoder_pt)
    diff = load_checkpoint(diffusion_pt)
    if diff.get("kind") != "diffusion-ema":
        raise ValueError(f"{diffusion_pt}: not a denoiser export (best.pt/final.pt of `train diffusion`)")
    if diff["scales"] != ae["scales"]:
        raise ValueError(f"{diffusion_pt}: trained on latents scaled {diff['scales']}, but {ae_pt} has {ae['scales']}")
    den = CondDenoiser(diff["arch"])
    den.load_state_dict(diff["net"])
    est = _estimate(diff)
    if est is not None and regression_pt is not None:
        raise ValueError(f"{diffusion_pt}: this denoiser is conditioned on the pixel estimate, but the regression "
                         "baseline reads the plain LR condition; leave --regression out (the bundle ships "
                         "pixel_regression as its deterministic baseline)")
    reg = None
    if regression_pt is not None:
        r = load_checkpoint(regression_pt)
        reg = RegressionNet(r["arch"])
        reg.load_state_dict(r["net"])
        info["regression"] = {"path": str(regression_pt), "step": r["step"], "wall_s": round(r["wall_s"], 1),
                              "val": r.get("val")}
    cfg = diff["cfg"]
    lr_patch = int(cfg["lr_size"])
    scale = int(cfg["scale"])
    C = int(diff["arch"]["latent_channels"])
    runs = {"autoencoder": ae_pt.parent, "diffusion": diffusion_pt.parent}
    if decoder_pt is not None:
        runs["decoder_finetune"] = decoder_pt.parent
    if regression_pt is not None:
        runs["regression"] = regression_pt.parent
    if sample_decoder_pt is not None:
        runs["sample_decoder"] = sample_decoder_pt.parent
    if est is not None:
        ce = diff["cond_estimate"]
        runs["pixel"] = Path(ce["path"]).parent
        info["pixel"] = {"step": ce["step"], "wall_s": round(load_checkpoint(Path(ce["path"]))["wall_s"], 1)
                         if Path(ce["path"]).is_file() else None, "val": ce.get("val")}
    manifest = {
        "model_id": model_id or f"lpbf-sr-x{scale}-{cfg['preset']}-{time.strftime('%Y%m%d')}",
        "scale": scale,
        "latent_channels": C,
        "latent_shape": [C, lr_patch, lr_patch],
        "lr_patch": lr_patch,
        "hr_patch": lr_patch * scale,
        "latent_scale_factor": float(ae["scales"]["latent_scale_factor"]),
        "lr_latent_scale_factor": float(ae["scales"]["cond_scale_factor"]),
        "schedule": {"kind": cfg["schedule"], "timesteps": int(cfg["timesteps"])},
        "prediction": cfg["prediction"],
        "sampler": sampler or {"name": "dpmpp_2m", "steps": 15, "init": "noise"},
        "reference": {"name": "ddpm", "steps": int(cfg["timesteps"])},
        "arch": {"hr_ae": ae["arch"]["hr_ae"], "lr_ae": ae["arch"]["lr_ae"], "unet": diff["arch"],
                 **({"cond_estimate": {"pixel": diff["cond_estimate"]["arch"]}} if est is not None else {})},
        "training": {
            "data": data or {"sims": cfg["sims"], "realdata": cfg["realdata"], "holdout_builds": cfg["holdout_builds"],
                             "holdout_photos": cfg["holdout_photos"], "val_photos": cfg["val_photos"],
                             "split": {k: cfg.get(k) for k in ("holdout_groups", "holdout_share", "exclude_groups")},
                             "mix": {k: cfg.get(k) for k in ("sim_share", "photo_weight", "texture_aug", "grain_prob",
                                                             "grain_gain")}},
            "command": {k: _read_command(v) for k, v in runs.items()},
            "steps": {"diffusion": diff["step"], **{k: v["step"] for k, v in info.items()}},
            "wall_s": {"diffusion": round(diff["wall_s"], 1), **{k: v["wall_s"] for k, v in info.items()}},
            "seed": cfg["seed"],
            "device": "cpu (2 shared cores)",
        },
        "metrics": {"validation": {"diffusion": diff.get("val"), **({"regression": info["regression"]["val"]}
                                                                 if "regression" in info else {}),
                                   **({"sample_decoder": info["sample_decoder"]["val"]} if tex is not None else {}),
                                   **({"pixel_regression": info["pixel"]["val"]} if est is not None else {})},
                    **(metrics or {})},
    }
    # grain offset (added to the condition by the runtime) and a detail condition's cap (predicts it, guards)
    manifest.update({k: diff[k] for k in ("grain_condition", "grain_cap") if diff.get(k)})
    out.mkdir(parents=True, exist_ok=True)
    mods = graph_modules(hr, lr, den, manifest["latent_scale_factor"], manifest["lr_latent_scale_factor"], reg, tex,
                         est)
    todo = {k: m for k, m in mods.items() if not (k in reuse and (out / f"{k}.onnx").is_file())}
    export_bundle_graphs(todo, out, lr_patch=lr_patch, scale=scale, latent_channels=C, exporter=exporter)  # type: ignore[arg-type]
    for k, m in mods.items():
        if k not in todo:
            save_weights(m, out / f"{k}.safetensors")
    write_bundle(out, manifest)
    return load_bundle(out)


def _raw_manifest(bundle_dir: Path | str) -> dict:
    """A copy of a bundle's manifest as written, for changing and re-writing; loading it validates it first."""
    from edge.sr.bundle import load_bundle

    return dict(load_bundle(bundle_dir, verify=False).manifest.raw)


def update_metrics(bundle_dir: Path, metrics: dict) -> None:
    """Merge `metrics` into a bundle's manifest and re-hash it (edge.sr.bundle.write_bundle)."""
    from edge.sr.bundle import write_bundle

    m = _raw_manifest(bundle_dir)
    m["metrics"] = {**m.get("metrics", {}), **metrics}
    write_bundle(bundle_dir, m)


def set_grain_cap(bundle_dir: Path, cap_file: Path) -> None:
    """Put the grain cap fitted by `train grain-cap` (its JSON file) into a bundle's manifest and re-hash it."""
    from edge.sr.bundle import write_bundle
    from edge.sr.grain import GrainCap

    data = json.loads(Path(cap_file).read_text())
    cap = GrainCap.from_json(data.get("grain_cap", data))  # validates before anything is written
    m = _raw_manifest(bundle_dir)
    m["grain_cap"] = cap.to_json()
    write_bundle(bundle_dir, m)


FAST_PATH = {
    "bench_names": ["openvino-bf16 student2 + light decoder", "ort fused student2 + light decoder"],
    "box_config": [{"backend": "openvino", "openvino_precision": "bf16", "sampler": "student2", "decoder": "light"},
                   {"backend": "ort", "fused": True, "sampler": "student2", "decoder": "light"}],
    "note": "first entry on CPUs with bf16 (AVX512-BF16/AMX), else the second; see docs/fast_inference.md",
}


def fast_path_entry(light_encoder: bool) -> dict:
    """The manifest `fast_path`: student2 + light decoder, plus the light condition encoder when the bundle has one."""
    if not light_encoder:
        return FAST_PATH
    return {**FAST_PATH, "bench_names": [f"{n} + light encoder" for n in FAST_PATH["bench_names"]],
            "box_config": [{**e, "encoder": "light"} for e in FAST_PATH["box_config"]]}


def add_distilled(bundle_dir: Path, distill_dir: Path, command: str = "") -> list[str]:
    """Copy the distilled parts in `distill_dir` (student*_report.json, decoder_report.json, encoder_report.json, ONNX)
    into a bundle, list them in its manifest `distilled`, name the fast path when student2 + light decoder are both
    there, and re-hash. Returns the keys added."""
    import shutil

    from edge.sr.bundle import BundleError, write_bundle

    bundle_dir, distill_dir = Path(bundle_dir), Path(distill_dir)
    reports = {p.name[: -len("_report.json")]: p for p in sorted(distill_dir.glob("student*_report.json"))}
    for key, name in (("light_decoder", "decoder_report.json"), ("light_encoder", "encoder_report.json")):
        if (distill_dir / name).is_file():
            reports[key] = distill_dir / name
    if not reports:
        raise BundleError(f"{distill_dir}: no student*_report.json, decoder_report.json or encoder_report.json; "
                          "run `lpbf-edge train distill` first")
    m = _raw_manifest(bundle_dir)
    distilled = dict(m.get("distilled") or {})
    for key, rp in reports.items():
        rep = json.loads(rp.read_text())
        src = distill_dir / rep["file"]
        if not src.is_file():
            raise BundleError(f"{rp}: names {rep['file']}, which is not in {distill_dir}")
        shutil.copyfile(src, bundle_dir / rep["file"])
        distilled[key] = {**rep, **({"command": command} if command else {})}
    m["distilled"] = distilled
    if "student2" in distilled and "light_decoder" in distilled:
        m["fast_path"] = fast_path_entry("light_encoder" in distilled)
    write_bundle(bundle_dir, m)
    return list(reports)
