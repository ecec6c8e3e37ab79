"""Settings of the super-resolution stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.config_base import Section


class SRConfig(Section):
    """Model bundle, backend and sampler settings for super-resolution."""

    model: str | None = Field(None, description="Model bundle directory; none uses the shipped default model.")
    profile: Literal["fast", "quality"] = Field(
        "fast", description="fast: every setting below that you leave unset comes from the bundle's measured fast path "
                            "(manifest fast_path.box_config; models/default: 2-step distilled student + light encoder + "
                            "light decoder on OpenVINO bf16 where the CPU reports bf16, else on the fused ONNX Runtime "
                            "loop; a bundle without a fast path runs its own sampler); quality: the settings below as "
                            "written (models/default: DPM-Solver++ 15 steps, full encoder and decoder, ONNX Runtime).")
    backend: Literal["ort", "openvino", "torch", "tensorrt"] = Field("ort", description="Inference backend.")
    steps: int | None = Field(None, ge=1, le=1000, description="Sampler steps; none uses the bundle's default.")
    samples: int = Field(1, ge=1, le=32, description="Samples per layer; >1 also gives the per-pixel spread.")
    seed: int = Field(0, description="Base seed for the sampler noise.")
    sampler: str | None = Field(
        None, pattern=r"^(ddpm|ddim|dpmpp_2m|reference|student\d+)$",
        description="Sampler: ddpm | ddim | dpmpp_2m | reference (the paper-faithful DDPM) | studentN (a distilled "
                    "N-step student the bundle ships); none uses the bundle's fast sampler.")
    reduce: Literal["sample", "mean"] = Field("sample", description="With samples > 1: publish the first sample or the mean.")
    uncertainty: bool = Field(False, description="Compute the per-pixel spread of the samples (needs samples >= 2).")
    tile: int | None = Field(None, ge=4, le=1024, description="LR tile size in pixels; none uses the bundle's lr_patch.")
    overlap: int | None = Field(None, ge=0, le=512, description="LR tile overlap in pixels; none uses tile/4.")
    batch: int = Field(64, ge=1, le=1024, description="Tiles x samples per backend call: tiles of a whole layer share "
                       "fixed-size batches (docs/fast_inference.md measures the per-tile cost against the batch).")
    fused: bool = Field(True, description="ort and openvino: run each sampler step as one fused graph call over "
                        "preallocated buffers (edge.sr.fused); false: one denoiser call + a numpy update per step.")
    decoder: Literal["full", "light"] = Field(
        "full", description="HR decoder for single samples: full, or light (the bundle's distilled light decoder: "
                            "several times cheaper on a CPU; its quality cost is in docs/fast_inference.md).")
    encoder: Literal["full", "light"] = Field(
        "full", description="Condition encoder: full, or light (the bundle's distilled light encoder at LR resolution: "
                            "a fraction of the full one's work; its quality cost is in docs/fast_inference.md).")
    grain_cap: bool = Field(True, description="Apply the bundle's grain cap (if it has one): lower a sample's fine "
                            "detail where it exceeds what the LR spectrum predicts (edge.sr.grain, docs/sr_quality.md).")
    openvino_precision: Literal["f32", "bf16"] = Field(
        "f32", description="OpenVINO inference precision; bf16 only on CPUs that report it (~1e-2 difference).")
