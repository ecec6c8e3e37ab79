"""Settings of the synthetic build generator and simulated printer."""

from __future__ import annotations

from pydantic import Field

from edge.config_base import Section


class SimConfig(Section):
    """Synthetic LPBF build: plate, images, layers, printer timing."""

    hr_size_px: int = Field(1024, ge=256, le=8192, description="Side of the square Basler-like HR plate image in pixels.")
    scale: int = Field(4, ge=2, le=8, description="Integer HR/LR scale; LR images are hr_size_px / scale.")
    plate_mm: float = Field(100.0, gt=0, description="Side of the square build plate in millimetres.")
    layer_thickness_um: float = Field(40.0, gt=0, description="Layer thickness in micrometres.")
