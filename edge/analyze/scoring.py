"""Scoring anomaly flags against labelled defects.

Per-class precision/recall, critical recall, clean-layer false alarms.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from edge.messages import AnomalyFlag

NOT_DEFECTS = ("sr_uncertain", "segmentation_failed", "laser_in_image")


def boxes_touch(a: list[int] | tuple, b: list[int] | tuple, margin: int) -> bool:
    """Whether two [x, y, w, h] boxes overlap once each is grown by margin pixels."""
    return (
        a[0] - margin < b[0] + b[2] + margin
        and b[0] - margin < a[0] + a[2] + margin
        and a[1] - margin < b[1] + b[3] + margin
        and b[1] - margin < a[1] + a[3] + margin
    )


def scale_box(b: list[int], f: float) -> list[int]:
    """Box in HR pixels -> box on an image f times the HR size."""
    return [int(b[0] * f), int(b[1] * f), max(1, int(round(b[2] * f))), max(1, int(round(b[3] * f)))]


@dataclass
class Score:
    """Running counts over layers."""

    label_hits: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # type -> [detected, total]
    flag_hits: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # type -> [true, total]
    critical: list = field(default_factory=lambda: [0, 0])  # critical labels [detected, total]
    critical_layers: list = field(default_factory=lambda: [0, 0])  # layers with a critical label [state not ok, total]
    clean: list = field(default_factory=lambda: [0, 0])  # clean layers [flagged, total]
    clean_flag_types: dict = field(default_factory=lambda: defaultdict(int))

    def add(self, labels: list[dict], flags: tuple[AnomalyFlag, ...], state: str, f: float, margin: int) -> None:
        """Score one layer: labels in HR px, flags on an image f times HR size."""
        defect_flags = [fl for fl in flags if fl.type not in NOT_DEFECTS and fl.severity != "info"]  # info never alarms
        boxes = [scale_box(lb["bbox"], f) for lb in labels]
        for lb, box in zip(labels, boxes, strict=False):
            hit = any(fl.type == lb["type"] and boxes_touch(fl.bbox, box, margin) for fl in defect_flags)
            self.label_hits[lb["type"]][0] += hit
            self.label_hits[lb["type"]][1] += 1
            if lb["severity"] == "critical":
                self.critical[0] += hit
                self.critical[1] += 1
        for fl in defect_flags:
            ok = any(fl.type == lb["type"] and boxes_touch(fl.bbox, box, margin) for lb,
                     box in zip(labels, boxes, strict=False))
            self.flag_hits[fl.type][0] += ok
            self.flag_hits[fl.type][1] += 1
        if any(lb["severity"] == "critical" for lb in labels):
            self.critical_layers[0] += state != "ok"
            self.critical_layers[1] += 1
        if not labels:
            flagged = bool(defect_flags)
            self.clean[0] += flagged
            self.clean[1] += 1
            for fl in defect_flags:
                self.clean_flag_types[fl.type] += 1

    def table(self) -> list[dict]:
        """Per-class rows: labels, recall, flags, precision."""
        rows = []
        for t in sorted(set(self.label_hits) | set(self.flag_hits)):
            d, n = self.label_hits[t] if t in self.label_hits else (0, 0)
            tp, nf = self.flag_hits[t] if t in self.flag_hits else (0, 0)
            rows.append({"type": t, "labels": n, "recall": d / n if n else None, "flags": nf,
                         "precision": tp / nf if nf else None})
        return rows

    def summary(self) -> dict:
        """Headline numbers."""
        c, cl, cc = self.critical, self.clean, self.critical_layers
        return {
            "critical_recall": c[0] / c[1] if c[1] else None,
            "critical_labels": c[1],
            "critical_layer_recall": cc[0] / cc[1] if cc[1] else None,
            "clean_layers": cl[1],
            "clean_false_alarm_rate": cl[0] / cl[1] if cl[1] else None,
            "clean_false_alarm_types": dict(self.clean_flag_types),
        }
