"""Settings of layer analysis and anomaly thresholds (per printer)."""

from __future__ import annotations

from pydantic import Field

from edge.config_base import Section


class AnalyzeConfig(Section):
    """Segmentation and anomaly-flag thresholds."""

    sauvola_window: int = Field(51, ge=3, description="Sauvola threshold window (pixels, odd).")
