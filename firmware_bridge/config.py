"""Settings of the laser-signal edge detector and its sources."""

from __future__ import annotations

from pydantic import Field

from edge.config_base import Section


class BridgeConfig(Section):
    """Hysteresis thresholds and timing that turn laser samples into layer events."""

    on_threshold_v: float = Field(2.0, description="Laser signal above this (volts) counts as on.")
    off_threshold_v: float = Field(1.0, description="Laser signal below this (volts) counts as off.")
    min_off_s: float = Field(1.0, gt=0, description="Off time that ends a layer; shorter pauses stay inside the layer.")
    min_on_s: float = Field(0.05, ge=0, description="Cumulative on time before a layer counts as started (rejects spikes).")
    recoat_delay_s: float = Field(8.0, ge=0, description="Delay after layer_complete before the recoat_done event.")
