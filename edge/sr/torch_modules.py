"""Torch side of a bundle: the four graph modules built from edge.models + manifest arch, and writing a full bundle.

Bundle weight convention: `<graph>.safetensors` holds the state dict of the graph's torch module
(lr_encoder/hr_encoder: ScaledEncoder, hr_decoder: ScaledDecoder, denoiser: CondDenoiser, regression: RegressionNet,
pixel_regression: PixelRegressor); an estimate-conditioned bundle's lr_encoder is an EstimateCondEncoder (LR encoder,
pixel regressor and mix; the HR encoder it reuses stays in hr_encoder.safetensors);
manifest.arch = {"hr_ae": ..., "lr_ae": ..., "unet": ..., ["cond_estimate": {"pixel": ...}]} (edge.models formats);
manifest.latent_scale_factor = HR latent scale, manifest.lr_latent_scale_factor = LR one (edge.sr.manifest).
"""

from __future__ import annotations

from pathlib import Path

from edge.sr.bundle import Bundle, BundleError, load_bundle, write_bundle
from edge.sr.manifest import Manifest, ManifestError

GRAPH_FILES = ("lr_encoder", "hr_encoder", "denoiser", "hr_decoder", "regression", "hr_decoder_sample",
               "pixel_regression")


def graph_modules(hr_ae, lr_ae, denoiser, hr_scale: float, lr_scale: float, regression=None, sample_ae=None,
                  estimate: tuple | None = None) -> dict:
    """The export/reference modules with the contract's signatures (encoders emit scaled latents).

    estimate: (PixelRegressor, mix conv) of an estimate-conditioned denoiser: lr_encoder becomes the composite
    condition and the pixel regressor is also exported alone as pixel_regression.
    """
    from edge.models import EstimateCondEncoder, ScaledDecoder, ScaledEncoder

    mods = {
        "lr_encoder": ScaledEncoder(lr_ae, lr_scale).eval(),
        "hr_encoder": ScaledEncoder(hr_ae, hr_scale).eval(),
        "denoiser": denoiser.eval(),
        "hr_decoder": ScaledDecoder(hr_ae, hr_scale).eval(),
    }
    if estimate is not None:
        pixel, mix = estimate
        mods["lr_encoder"] = EstimateCondEncoder(mods["lr_encoder"], mods["hr_encoder"], pixel, mix).eval()
        mods["pixel_regression"] = pixel.eval()
    if regression is not None:
        mods["regression"] = regression.eval()
    if sample_ae is not None:
        mods["hr_decoder_sample"] = ScaledDecoder(sample_ae, hr_scale).eval()
    return mods


def load_torch_modules(path: Path | str | Bundle) -> dict:
    """Rebuild the bundle's torch modules from manifest arch + safetensors (verified bundle); needs torch."""
    from safetensors.torch import load_file

    from edge.models import CondDenoiser, ImageAutoencoder, PixelRegressor, RegressionNet, estimate_mix

    b = path if isinstance(path, Bundle) else load_bundle(path)
    m = b.manifest
    arch = m.arch
    if not all(k in arch for k in ("hr_ae", "lr_ae", "unet")):
        raise BundleError(f"{b.path / 'manifest.json'}: arch lacks hr_ae/lr_ae/unet, so its torch modules cannot be "
                          "rebuilt; use an ONNX backend (--backend ort)")
    hr_s, lr_s = m.latent_scale_factor, m.lr_latent_scale_factor
    reg = RegressionNet(arch["unet"]) if m.has_file("regression.safetensors") else None
    tex = ImageAutoencoder(arch["hr_ae"]) if m.has_file("hr_decoder_sample.safetensors") else None
    est = None
    if "cond_estimate" in arch:
        est = (PixelRegressor(arch["cond_estimate"]["pixel"]), estimate_mix(int(arch["unet"]["latent_channels"])))
    mods = graph_modules(ImageAutoencoder(arch["hr_ae"]), ImageAutoencoder(arch["lr_ae"]), CondDenoiser(arch["unet"]),
                         hr_s, lr_s, reg, tex, est)
    for name, mod in mods.items():
        f = f"{name}.safetensors"
        if not m.has_file(f):
            raise BundleError(f"{b.path / f}: not in the bundle; its torch module cannot be rebuilt (use --backend "
                              "ort)")
        try:
            mod.load_state_dict(load_file(str(b.path / f)))
        except RuntimeError as exc:
            raise BundleError(f"{b.path / f}: weights do not fit the manifest arch ({str(exc)[:200]})") from exc
    return mods


def write_model_bundle(out: Path | str, hr_ae, lr_ae, denoiser, manifest: dict, regression=None,
                       exporter: str = "dynamo") -> Bundle:
    """Export all graphs to ONNX + safetensors into `out`, write the hashed manifest, and load it back verified."""
    from edge.sr.export import export_bundle_graphs

    try:  # validated before the (slow) export; the file list is filled in by write_bundle
        m = Manifest.from_dict({**manifest, "files": {}})
    except ManifestError as exc:
        raise BundleError(f"{out}: the manifest to write is invalid: {exc}") from exc
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mods = graph_modules(hr_ae, lr_ae, denoiser, m.latent_scale_factor, m.lr_latent_scale_factor, regression)
    export_bundle_graphs(mods, out, lr_patch=m.lr_patch, scale=m.scale, latent_channels=m.latent_channels,
                         exporter=exporter)  # type: ignore[arg-type]
    write_bundle(out, manifest)
    return load_bundle(out)
