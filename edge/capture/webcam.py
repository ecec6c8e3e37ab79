"""USB webcam through OpenCV (V4L2): a grab thread keeps only the latest frame and reconnects after unplugging."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge.capture.base import CaptureError
from edge.messages import Frame

log = logging.getLogger(__name__)


@dataclass
class _Latest:
    """The most recent read: a frame or the reason it was unusable."""

    seq: int = 0
    t: float = 0.0
    image: np.ndarray | None = None
    error: str | None = None


def _default_factory(device: str | int):
    """Open a V4L2 device (index or /dev/videoN) or, for any other string, a file / printf image pattern."""
    if isinstance(device, int) or (isinstance(device, str) and device.startswith("/dev/video")):
        return cv2.VideoCapture(device, cv2.CAP_V4L2)
    return cv2.VideoCapture(device)


class OpenCVWebcam:
    """Webcam with a background grab loop; grab() returns the first frame read after the call."""

    def __init__(
        self,
        device: str | int = "/dev/video0",
        name: str = "webcam",
        width: int | None = 1920,
        height: int | None = 1080,
        fourcc: str | None = "MJPG",
        exposure: float | None = None,
        reconnect_s: float = 0.5,
        reconnect_max_s: float = 5.0,
        replay_fps: float | None = None,
        capture_factory: Callable[[str | int], object] | None = None,
    ):
        self.device = int(device) if isinstance(device, str) and device.isdigit() else device
        self.name = name
        self.width, self.height, self.fourcc, self.exposure = width, height, fourcc, exposure
        self.reconnect_s, self.reconnect_max_s = reconnect_s, reconnect_max_s
        self.replay_fps = replay_fps
        self._factory = capture_factory or _default_factory
        self._cond = threading.Condition()
        self._latest = _Latest()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self.resolution: tuple[int, int] = (0, 0)

    def open(self) -> None:
        """Start the grab thread (it connects, and reconnects with backoff, on its own)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"grab-{self.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the grab thread and release the device."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def grab(self, timeout_s: float) -> Frame:
        """Wait for a frame read after this call; CaptureError on timeout or a corrupt frame."""
        if self._thread is None:
            raise CaptureError(f"{self.name}: grab() before open()")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            seq0 = self._latest.seq
            while self._latest.seq == seq0:
                left = deadline - time.monotonic()
                if left <= 0:
                    state = "connected" if self.connected else f"disconnected (last error: {self.last_error})"
                    raise CaptureError(f"{self.name}: no frame from {self.device} within {timeout_s:.2f} s; camera "
                                       f"{state}")
                self._cond.wait(left)
            latest = self._latest
        if latest.error is not None:
            raise CaptureError(f"{self.name}: {latest.error}")
        return Frame(camera=self.name, image=latest.image, t_capture_s=latest.t, bit_depth=8, meta={"seq": latest.seq})

    # ---- grab thread -----------------------------------------------------------------------

    def _connect(self):
        """Open and configure the capture; None (and last_error set) when it cannot be opened."""
        try:
            cap = self._factory(self.device)
        except Exception as exc:  # backend raised instead of returning a closed capture
            self.last_error = f"open failed: {exc}"
            return None
        if cap is None or not cap.isOpened():
            self.last_error = f"cannot open {self.device}"
            return None
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))
        if self.width and self.height and all(got) and got != (self.width, self.height):
            log.warning("%s: asked for %dx%d, device delivers %dx%d", self.name, self.width, self.height, *got)
        self.resolution = got
        if self.exposure is not None:
            cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2: 1 = manual
            cap.set(cv2.CAP_PROP_EXPOSURE, self.exposure)
        return cap

    def _publish(self, image: np.ndarray | None, error: str | None) -> None:
        """Make a new read visible to grab()."""
        with self._cond:
            self._latest = _Latest(self._latest.seq + 1, time.time(), image, error)
            self._cond.notify_all()

    def _run(self) -> None:
        """Read frames until closed; on read failure release, back off and reconnect."""
        cap, backoff, ever = None, self.reconnect_s, False
        try:
            while not self._stop.is_set():
                if cap is None:
                    cap = self._connect()
                    if cap is None:
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.reconnect_max_s)
                        continue
                    if ever:
                        self.reconnects += 1
                        log.info("%s: reconnected to %s", self.name, self.device)
                    ever, self.connected = True, True
                ok, img = cap.read()
                if not ok:
                    self.last_error = f"read from {self.device} failed (unplugged or stream ended)"
                    log.warning("%s: %s; reconnecting", self.name, self.last_error)
                    cap.release()
                    cap, self.connected = None, False
                    continue
                backoff = self.reconnect_s
                if img is None or not isinstance(img, np.ndarray) or img.size == 0 or img.ndim not in (2, 3):
                    self._publish(None, f"corrupt or empty frame from {self.device}")
                elif img.ndim == 3:
                    self._publish(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), None)
                else:
                    self._publish(img, None)
                if self.replay_fps:
                    self._stop.wait(1.0 / self.replay_fps)
        finally:
            if cap is not None:
                cap.release()
            self.connected = False
