"""Turn a LayerEvent into LayerFrames: grab every camera in parallel; a failed camera is listed, never raised."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from edge.capture.base import Camera, CaptureError, LayerAwareCamera
from edge.messages import Frame, LayerEvent, LayerFrames

log = logging.getLogger(__name__)


class LayerCapture:
    """Grabs a frame from each camera for each layer event."""

    def __init__(self, cameras: list[Camera], timeout_s: float = 5.0):
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        self.cameras = list(cameras)
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(cameras)), thread_name_prefix="capture")
        self.open_failures: dict[str, str] = {}

    def open(self) -> None:
        """Open every camera; one that fails to open is remembered and reported on every layer."""
        for cam in self.cameras:
            try:
                cam.open()
            except Exception as exc:  # any backend failure must not stop the box
                self.open_failures[cam.name] = f"open failed: {exc}"
                log.error("%s: %s", cam.name, exc)

    def _grab_one(self, cam: Camera, event: LayerEvent) -> Frame:
        """Select the layer (if the camera cares) and grab."""
        if isinstance(cam, LayerAwareCamera):
            cam.select(event)
        return cam.grab(self.timeout_s)

    def capture(self, event: LayerEvent) -> LayerFrames:
        """Grab all cameras for one event; failures land in LayerFrames.failed with their reason."""
        frames: dict[str, Frame] = {}
        failed: dict[str, str] = dict(self.open_failures)
        jobs = {c.name: self._pool.submit(self._grab_one, c, event) for c in self.cameras if c.name not in failed}
        for name, fut in jobs.items():
            try:
                frames[name] = fut.result(timeout=self.timeout_s + 5.0)
            except CaptureError as exc:
                failed[name] = str(exc)
            except Exception as exc:  # a backend bug or driver crash: report it, keep the box running
                failed[name] = f"{type(exc).__name__}: {exc}"
        for name, why in failed.items():
            log.warning("layer %d %s: %s failed: %s", event.layer, event.event, name, why)
        return LayerFrames(event=event, frames=frames, failed=failed)

    def close(self) -> None:
        """Close every camera and the worker threads."""
        for cam in self.cameras:
            try:
                cam.close()
            except Exception as exc:
                log.warning("%s: close failed: %s", cam.name, exc)
        self._pool.shutdown(wait=False)
