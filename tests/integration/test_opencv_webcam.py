"""OpenCV webcam path on replayed sources: image sequence, video file, unplug/reconnect, corrupt frames, timeouts."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge.capture.base import CaptureError
from edge.capture.capture import LayerCapture
from edge.capture.webcam import OpenCVWebcam
from edge.messages import LayerEvent

H, W = 48, 64


def _sequence(folder, n):
    folder.mkdir()
    for i in range(1, n + 1):
        cv2.imwrite(str(folder / f"{i:05d}.png"), np.full((H, W, 3), 10 * i, np.uint8))
    return str(folder / "%05d.png")


def test_image_sequence_gives_fresh_gray_frames_and_loops_by_reconnecting(tmp_path):
    pattern = _sequence(tmp_path / "seq", 6)
    cam = OpenCVWebcam(pattern, width=None, height=None, fourcc=None, replay_fps=100, reconnect_s=0.01)
    cam.open()
    try:
        vals = [int(cam.grab(2.0).image.mean()) // 10 for _ in range(14)]
        f = cam.grab(2.0)
    finally:
        cam.close()
    assert f.image.shape == (H, W) and f.image.dtype == np.uint8
    assert set(vals) <= set(range(1, 7))
    assert cam.reconnects >= 1  # the end of the sequence looks like an unplug; it reopened
    ups = sum(b > a for a, b in zip(vals, vals[1:], strict=False))
    assert ups >= 8  # successive grabs return newer frames, not a stale buffered one


def test_video_file_written_with_videowriter(tmp_path):
    path = str(tmp_path / "clip.avi")
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (W, H))
    assert vw.isOpened()
    for i in range(20):
        vw.write(np.full((H, W, 3), 10 * i, np.uint8))
    vw.release()
    cam = OpenCVWebcam(path, width=None, height=None, fourcc=None, replay_fps=200)
    cam.open()
    try:
        a = cam.grab(2.0)
        time.sleep(0.02)
        b = cam.grab(2.0)
    finally:
        cam.close()
    assert a.image.shape == (H, W) and b.meta["seq"] > a.meta["seq"]


class _FlakyCapture:
    """Fake V4L2 capture (test only): gives frames, then unplugs after `reads` reads, optionally corrupt frames."""

    def __init__(self, reads, corrupt=False):
        self.reads, self.corrupt, self.n = reads, corrupt, 0

    def isOpened(self):
        return True

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 0.0

    def read(self):
        time.sleep(0.005)
        self.n += 1
        if self.n > self.reads:
            return False, None
        return True, (np.zeros((0, 0, 3), np.uint8) if self.corrupt else np.full((H, W, 3), 100, np.uint8))

    def release(self):
        pass


def test_unplug_then_replug_reconnects_with_backoff():
    # plugged for 20 reads, then two failed reopen attempts (unplugged), then plugged again
    plan = [_FlakyCapture(20), None, None, _FlakyCapture(10**6)]
    opens = []

    def factory(dev):
        opens.append(time.monotonic())
        item = plan.pop(0) if len(plan) > 1 else plan[0]
        if item is None:
            raise OSError("No such device /dev/video0")
        return item

    cam = OpenCVWebcam("/dev/video0", capture_factory=factory, reconnect_s=0.05, reconnect_max_s=0.2)
    cam.open()
    try:
        assert cam.grab(1.0).image.shape == (H, W)
        deadline = time.monotonic() + 3.0
        while cam.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cam.reconnects == 1 and cam.connected
        assert cam.grab(1.0).image.mean() == 100
    finally:
        cam.close()
    gaps = np.diff(opens)
    assert len(opens) == 4 and gaps[2] >= 0.09  # second retry waited longer (0.05 s, then 0.1 s)


def test_unplugged_camera_times_out_with_reason_and_capture_lists_it():
    def factory(dev):
        raise OSError("No such device")

    cam = OpenCVWebcam("/dev/video7", capture_factory=factory, reconnect_s=0.05)
    cap = LayerCapture([cam], timeout_s=0.2)
    cap.open()
    try:
        lf = cap.capture(LayerEvent("layer_complete", 3, 1.0, 2.0))
    finally:
        cap.close()
    assert lf.frames == {} and "disconnected" in lf.failed["webcam"] and "No such device" in lf.failed["webcam"]


def test_corrupt_frame_raises_capture_error():
    cam = OpenCVWebcam(0, capture_factory=lambda d: _FlakyCapture(10**6, corrupt=True))
    cam.open()
    try:
        with pytest.raises(CaptureError, match="corrupt or empty frame"):
            cam.grab(1.0)
    finally:
        cam.close()


def test_grab_before_open_is_an_error():
    with pytest.raises(CaptureError, match="before open"):
        OpenCVWebcam(0).grab(0.1)
