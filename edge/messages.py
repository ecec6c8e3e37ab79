"""Frozen messages passed one way between stages: bridge -> capture -> calib -> sr -> analyze -> store -> publish."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

EventKind = Literal["layer_complete", "recoat_done"]
LayerState = Literal["ok", "minor", "critical", "capture_failed", "segmentation_failed", "laser_in_image"]


@dataclass(frozen=True)
class LayerEvent:
    """A layer boundary detected on the laser signal (t_off_s is the falling edge, not detection time)."""

    event: EventKind
    layer: int
    t_off_s: float
    t_detected_s: float
    source: str = "unknown"
    flags: tuple[str, ...] = ()

    def to_json_dict(self) -> dict:
        """Plain dict for the `bridge replay` JSON-lines output."""
        return {
            "event": self.event,
            "layer": self.layer,
            "t_off_s": round(self.t_off_s, 6),
            "t_detected_s": round(self.t_detected_s, 6),
            "source": self.source,
            "flags": list(self.flags),
        }


@dataclass(frozen=True)
class Frame:
    """One camera frame: mono image (uint8 or uint16) with where and when it came from."""

    camera: str
    image: np.ndarray
    t_capture_s: float
    bit_depth: int = 8
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LayerFrames:
    """Frames grabbed for one layer event; a camera that failed is listed in `failed` with its reason."""

    event: LayerEvent
    frames: dict[str, Frame]
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredLayer:
    """The webcam view warped onto the plate grid at 1/scale of the HR pitch (the model's LR input)."""

    event: LayerEvent
    lr: np.ndarray
    pitch_um: float
    raw: LayerFrames | None = None


@dataclass(frozen=True)
class SRLayer:
    """Super-resolved layer (uint8), optional per-pixel spread, and the model that made it."""

    event: LayerEvent
    sr: np.ndarray
    std: np.ndarray | None
    model_id: str
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AnomalyFlag:
    """One anomaly flag as published in the anomaly JSON (DESIGN.md section 4)."""

    type: str
    severity: Literal["info", "minor", "critical"]  # info: weak evidence, never changes a layer's state
    score: float
    bbox: tuple[int, int, int, int]
    area_px: int
    layers_persisted: int = 1

    def to_json_dict(self) -> dict:
        """Plain dict in the published anomaly JSON shape."""
        return {
            "type": self.type,
            "severity": self.severity,
            "score": float(self.score),
            "bbox": [int(v) for v in self.bbox],
            "area_px": int(self.area_px),
            "layers_persisted": int(self.layers_persisted),
        }


@dataclass(frozen=True)
class LayerResult:
    """Everything the box knows about a layer after analysis; what store and publish consume."""

    job: str
    layer: int
    layer_uuid: str
    layer_state: LayerState
    flags: tuple[AnomalyFlag, ...]
    lr: np.ndarray | None
    sr: np.ndarray | None
    mask: np.ndarray | None
    model_id: str
    timings_s: dict[str, float] = field(default_factory=dict)
    t_off_s: float = 0.0

    def anomaly_json(self) -> dict:
        """The anomaly JSON of DESIGN.md section 4."""
        return {
            "job": self.job,
            "layer": self.layer,
            "layer_state": self.layer_state,
            "flags": [f.to_json_dict() for f in self.flags],
        }
