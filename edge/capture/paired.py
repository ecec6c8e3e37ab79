"""Paired capture: write each camera's frame per layer, named by layer number, for training pairs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2

from edge.capture.replay import frame_name
from edge.messages import LayerFrames


class PairedWriter:
    """Writes OUT/<camera>/<layer>.png (and <layer>_recoat.png) plus one index line per event."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.index = self.out_dir / "index.jsonl"

    def write(self, lf: LayerFrames) -> dict[str, Path]:
        """Write the frames of one event atomically; return camera -> written path."""
        stem = frame_name(lf.event.layer, lf.event.event)
        written: dict[str, Path] = {}
        for cam, frame in lf.frames.items():
            d = self.out_dir / cam
            d.mkdir(exist_ok=True)
            path = d / f"{stem}.png"
            tmp = d / f".{stem}.tmp.png"
            if not cv2.imwrite(str(tmp), frame.image):
                raise OSError(f"cannot write {tmp}")
            os.replace(tmp, path)
            written[cam] = path
        rec = {
            "layer": lf.event.layer,
            "event": lf.event.event,
            "t_off_s": lf.event.t_off_s,
            "frames": {c: str(p.relative_to(self.out_dir)) for c, p in written.items()},
            "bit_depth": {c: f.bit_depth for c, f in lf.frames.items()},
            "failed": lf.failed,
        }
        with self.index.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        return written

    def pairs(self, low: str, high: str) -> list[tuple[Path, Path]]:
        """(low, high) frame paths of every event where both cameras delivered."""
        out = []
        for line in self.index.read_text().splitlines():
            rec = json.loads(line)
            if low in rec["frames"] and high in rec["frames"]:
                out.append((self.out_dir / rec["frames"][low], self.out_dir / rec["frames"][high]))
        return out


def run_paired(events, capture, writer: PairedWriter, grab_on=("layer_complete", "recoat_done")) -> int:
    """Capture and write every event of an event stream (bridge output); return the events written."""
    n = 0
    for ev in events:
        if ev.event not in grab_on:
            continue
        writer.write(capture.capture(ev))
        n += 1
    return n
