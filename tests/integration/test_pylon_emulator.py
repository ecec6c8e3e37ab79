"""Basler capture against the real pylon camera emulator (PYLON_CAMEMU) replaying an image folder."""

from __future__ import annotations

import os

os.environ.setdefault("PYLON_CAMEMU", "1")  # must be set before pylon's transport layer first loads

import cv2
import numpy as np
import pytest

pylon = pytest.importorskip("pypylon.pylon")

from edge.capture.base import CaptureError  # noqa: E402
from edge.capture.basler import BaslerCamera  # noqa: E402
from edge.capture.capture import LayerCapture  # noqa: E402
from edge.capture.paired import PairedWriter  # noqa: E402
from edge.capture.replay import DirectoryReplayCamera  # noqa: E402
from edge.messages import LayerEvent  # noqa: E402

W, H = 96, 64


def _images(folder, n):
    folder.mkdir()
    for i in range(1, n + 1):
        img = np.full((H, W), 20 * i, np.uint8)
        img[5:15, 5 : 5 + 5 * i] = 255  # a bar whose length encodes the index
        cv2.imwrite(str(folder / f"{i:05d}.png"), img)
    return folder


def _index(img):
    return int(round(float(np.median(img)) / 20))


def _ev(layer, kind="layer_complete"):
    return LayerEvent(kind, layer, float(layer), float(layer) + 1.0, "test")


@pytest.fixture
def emu_dir(tmp_path):
    return _images(tmp_path / "emu", 4)


def test_software_trigger_grabs_folder_images_in_order(emu_dir):
    cam = BaslerCamera(emulator_dir=emu_dir, size=(W, H), exposure_us=1000.0, gain_db=0.0)
    cam.open()
    try:
        assert cam._cam.ExposureTime.Value == pytest.approx(1000.0) and cam._cam.TriggerSource.Value == "Software"
        got = [cam.grab(2.0) for _ in range(5)]
    finally:
        cam.close()
    assert [_index(f.image) for f in got] == [1, 2, 3, 4, 1]
    assert all(f.image.shape == (H, W) and f.image.dtype == np.uint8 and f.bit_depth == 8 for f in got)
    assert got[1].image[10, 5 + 5 * 2 - 1] == 255 and got[1].image[10, 5 + 5 * 2 + 1] != 255


def test_mono12_gives_uint16_frames(emu_dir):
    cam = BaslerCamera(emulator_dir=emu_dir, size=(W, H), pixel_format="Mono12")
    cam.open()
    try:
        f = cam.grab(2.0)
    finally:
        cam.close()
    assert f.image.dtype == np.uint16 and f.bit_depth == 12 and int(f.image.max()) <= 4095
    assert int(f.image.max()) > 255  # the 8-bit file is expanded to 12 bits


def test_hardware_trigger_without_pulse_times_out_cleanly(emu_dir):
    cam = BaslerCamera(emulator_dir=emu_dir, size=(W, H), trigger="hardware", trigger_line="Line1")
    cam.open()
    try:
        with pytest.raises(CaptureError, match="no frame within"):
            cam.grab(0.3)
    finally:
        cam.close()


def test_missing_serial_and_bad_folder_are_clear_errors(tmp_path, emu_dir):
    with pytest.raises(CaptureError, match="no Basler camera found for serial nope"):
        BaslerCamera(serial="nope").open()
    with pytest.raises(CaptureError, match="does not exist"):
        BaslerCamera(emulator_dir=tmp_path / "missing").open()


def test_paired_capture_with_emulated_basler_and_replayed_webcam(tmp_path, emu_dir):
    webcam_dir = _images(tmp_path / "webcam", 3)
    basler = BaslerCamera(emulator_dir=emu_dir, size=(W, H))
    cap = LayerCapture([DirectoryReplayCamera(webcam_dir, name="webcam"), basler], timeout_s=2.0)
    writer = PairedWriter(tmp_path / "pairs")
    cap.open()
    try:
        results = [cap.capture(_ev(n)) for n in (1, 2, 3, 4)]
    finally:
        cap.close()
    for lf in results:
        writer.write(lf)
    assert [sorted(r.frames) for r in results[:3]] == [["basler", "webcam"]] * 3
    assert "webcam" in results[3].failed and "layer 4" in results[3].failed["webcam"]
    assert _index(results[2].frames["webcam"].image) == 3 and _index(results[2].frames["basler"].image) == 3
    pairs = writer.pairs("webcam", "basler")
    assert [p[0].name for p in pairs] == ["00001.png", "00002.png", "00003.png"]
    assert _index(cv2.imread(str(pairs[1][1]), cv2.IMREAD_UNCHANGED)) == 2
    assert (tmp_path / "pairs" / "basler" / "00004.png").exists()


def test_grab_before_open_and_after_close_is_an_error(emu_dir):
    cam = BaslerCamera(emulator_dir=emu_dir, size=(W, H))
    with pytest.raises(CaptureError, match="before open"):
        cam.grab(0.5)
    cam.open()
    cam.grab(1.0)
    cam.close()
    with pytest.raises(CaptureError, match="before open"):
        cam.grab(0.5)
