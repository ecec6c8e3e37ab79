"""Settings of the super-resolution stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.config_base import Section


class SRConfig(Section):
    """Model bundle, backend and sampler settings for super-resolution."""

    model: str | None = Field(None, description="Model bundle directory; none uses the shipped default model.")
    profile: Literal["fast", "quality"] = Field(
        "fast", description="Where the settings marked 'profile' come from when left null. fast: the bundle's measured "
                            "fast path (manifest fast_path.box_config, the first entry this machine runs; "
                            "models/default: 2-step distilled student + light encoder + light decoder on OpenVINO bf16 "
                            "where the CPU reports bf16, else on the fused ONNX Runtime loop; a bundle without a fast "
                            "path runs its own sampler). quality: the bundle's own sampler (models/default: "
                            "DPM-Solver++ 15 steps) with the full encoder and decoder on ONNX Runtime.")
    backend: Literal["ort", "openvino", "torch", "tensorrt"] | None = Field(
        None, description="Inference backend; null: the profile's (fast: the fast path's; quality: ort).")
    steps: int | None = Field(None, ge=1, le=1000, description="Sampler steps; null uses the sampler's own.")
    samples: int = Field(1, ge=1, le=32, description="Samples per layer; >1 also gives the per-pixel spread.")
    seed: int = Field(0, description="Base seed for the sampler noise.")
    sampler: str | None = Field(
        None, pattern=r"^(ddpm|ddim|dpmpp_2m|reference|student\d+)$",
        description="Sampler: ddpm | ddim | dpmpp_2m | reference (the paper-faithful DDPM) | studentN (a distilled "
                    "N-step student the bundle ships); null: the profile's (fast: the fast path's, e.g. student2; "
                    "quality: the bundle's own sampler).")
    reduce: Literal["sample", "mean"] = Field("sample", description="With samples > 1: publish the first sample or the "
                                                                    "mean.")
    uncertainty: bool = Field(False, description="Compute the per-pixel spread of the samples (needs samples >= 2).")
    geometry: Literal["auto", "regression", "mean", "sample", "bicubic"] = Field(
        "auto", description="The estimate segmentation, 3D and roughness read (the published image stays the sample): "
                            "regression (the bundle's pixel regression CNN, the estimate the denoiser is conditioned "
                            "on), mean (of `samples` grain-capped samples), sample (one sample's grain), bicubic (of "
                            "the LR); auto: regression when the bundle ships pixel_regression.onnx, else mean with "
                            "samples >= 2, else bicubic (the log line says which). Measured in docs/analysis.md.")
    tile: int | None = Field(None, ge=4, le=1024, description="LR tile size in pixels; null: the bundle's lr_patch.")
    overlap: int | None = Field(None, ge=0, le=512, description="LR tile overlap in pixels; null uses tile/4.")
    batch: int = Field(64, ge=1, le=1024, description="Tiles x samples per backend call: tiles of a whole layer share "
                       "fixed-size batches (docs/fast_inference.md measures the per-tile cost against the batch).")
    fused: bool | None = Field(None, description="ort and openvino: run each sampler step as one fused graph call over "
                               "preallocated buffers (edge.sr.fused); false: one denoiser call + a numpy update per "
                               "step; null: the profile's (on unless the fast path says otherwise).")
    decoder: Literal["full", "light"] | None = Field(
        None, description="HR decoder for single samples: full, or light (the bundle's distilled light decoder, "
                          "several times cheaper on a CPU; its quality in docs/fast_inference.md); null: the "
                          "profile's.")
    encoder: Literal["full", "light"] | None = Field(
        None, description="Condition encoder: full, or light (the bundle's distilled light encoder at LR resolution, a "
                          "fraction of the full one's work; its quality in docs/fast_inference.md); null: the "
                          "profile's.")
    grain_cap: bool = Field(True, description="Apply the bundle's grain cap (if it has one): lower a sample's fine "
                            "detail where it exceeds what the LR spectrum predicts (edge.sr.grain, "
                            "docs/sr_quality.md).")
    openvino_precision: Literal["f32", "bf16"] | None = Field(
        None, description="OpenVINO inference precision; bf16 only on CPUs that report it (~1e-2 difference); "
                          "null: the profile's (the fast path's, else f32).")
