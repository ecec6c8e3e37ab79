"""Directory replay: frames named by layer number (00001.png, 00001_recoat.png) served on events."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from edge.capture.base import CaptureError, check_image
from edge.messages import Frame, LayerEvent

EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def frame_name(layer: int, event: str = "layer_complete") -> str:
    """File stem for a layer's frame: 00001 after melting, 00001_recoat after recoating."""
    return f"{layer:05d}" + ("_recoat" if event == "recoat_done" else "")


def read_mono(path: Path, camera: str) -> tuple[np.ndarray, int]:
    """Read an image file as mono uint8/uint16; CaptureError names the file when it is unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CaptureError(f"{camera}: cannot decode {path} (missing, truncated or not an image)")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    check_image(camera, img, str(path))
    if img.dtype == np.uint16:
        return img, 16
    if img.dtype != np.uint8:
        raise CaptureError(f"{camera}: {path} has unsupported pixel type {img.dtype} (need 8 or 16 bit)")
    return img, 8


class DirectoryReplayCamera:
    """Serves DIR/<layer>.png for layer_complete and DIR/<layer>_recoat.png (else <layer>) for recoat_done."""

    def __init__(self, directory: str | Path, name: str = "replay"):
        self.directory = Path(directory)
        self.name = name
        self._event: LayerEvent | None = None

    def open(self) -> None:
        """Check the folder exists."""
        if not self.directory.is_dir():
            raise CaptureError(f"{self.name}: replay folder {self.directory} does not exist")

    def select(self, event: LayerEvent) -> None:
        """Remember which layer the next grab is for."""
        self._event = event

    def _find(self, event: LayerEvent) -> Path:
        """Path of the frame for an event (recoat frames fall back to the layer's frame)."""
        stems = [frame_name(event.layer, event.event)]
        if event.event == "recoat_done":
            stems.append(frame_name(event.layer))
        for stem in stems:
            for ext in EXTS:
                p = self.directory / f"{stem}{ext}"
                if p.exists():
                    return p
        raise CaptureError(f"{self.name}: no frame for layer {event.layer} ({event.event}) in {self.directory}")

    def grab(self, timeout_s: float = 0.0) -> Frame:
        """Read the selected layer's frame."""
        if self._event is None:
            raise CaptureError(f"{self.name}: replay camera needs select(event) before grab()")
        path = self._find(self._event)
        img, depth = read_mono(path, self.name)
        return Frame(camera=self.name, image=img, t_capture_s=time.time(), bit_depth=depth, meta={"file": str(path)})

    def close(self) -> None:
        """Nothing to release."""
