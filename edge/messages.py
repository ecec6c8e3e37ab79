"""The stage messages, under the name edge code imports them by; they are defined in lpbf_common.messages."""

from __future__ import annotations

from lpbf_common.messages import (
    AnomalyFlag,
    EventKind,
    Frame,
    LayerEvent,
    LayerFrames,
    LayerResult,
    LayerState,
    RegisteredLayer,
    SRLayer,
)

__all__ = ["AnomalyFlag", "EventKind", "Frame", "LayerEvent", "LayerFrames", "LayerResult", "LayerState",
           "RegisteredLayer", "SRLayer"]
