"""Settings of the super-resolution stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.config_base import Section


class SRConfig(Section):
    """Model bundle, backend and sampler settings for super-resolution."""

    model: str | None = Field(None, description="Model bundle directory; none uses the shipped default model.")
    backend: Literal["ort", "openvino", "torch", "tensorrt"] = Field("ort", description="Inference backend.")
    steps: int | None = Field(None, ge=1, le=1000, description="Sampler steps; none uses the bundle's default.")
    samples: int = Field(1, ge=1, le=32, description="Samples per layer; >1 also gives the per-pixel spread.")
    seed: int = Field(0, description="Base seed for the sampler noise.")
