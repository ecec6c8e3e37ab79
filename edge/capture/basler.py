"""Basler camera through pypylon: software or hardware trigger, Mono8/Mono12, exposure and gain."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from edge.capture.base import CaptureError, check_image
from edge.messages import Frame

log = logging.getLogger(__name__)


def _pylon():
    """Import pypylon (an optional extra) or say how to install it."""
    try:
        from pypylon import genicam, pylon
    except ImportError as exc:
        raise CaptureError("basler: pypylon is not installed (pip install 'lpbf-edge[cameras]')") from exc
    return pylon, genicam


class BaslerCamera:
    """One Basler camera; grab() fires TriggerSoftware (or waits for the hardware trigger) and retrieves the frame."""

    def __init__(
        self,
        name: str = "basler",
        serial: str | None = None,
        trigger: str = "software",
        trigger_line: str = "Line1",
        pixel_format: str = "Mono8",
        exposure_us: float | None = 20000.0,
        gain_db: float | None = None,
        emulator_dir: str | Path | None = None,
        size: tuple[int, int] | None = None,
    ):
        if trigger not in ("software", "hardware"):
            raise ValueError(f"basler trigger must be 'software' or 'hardware', not {trigger!r}")
        if pixel_format not in ("Mono8", "Mono12"):
            raise ValueError(f"basler pixel_format must be Mono8 or Mono12, not {pixel_format!r}")
        self.name, self.serial, self.trigger, self.trigger_line = name, serial, trigger, trigger_line
        self.pixel_format, self.exposure_us, self.gain_db = pixel_format, exposure_us, gain_db
        self.emulator_dir = Path(emulator_dir) if emulator_dir is not None else None
        self.size = size
        self._cam = None
        self._wanted = False

    def _device(self, pylon):
        """Create the pylon device for the configured serial (or the first camera)."""
        tl = pylon.TlFactory.GetInstance()
        devices = tl.EnumerateDevices()
        if self.serial is not None:
            devices = [d for d in devices if d.GetSerialNumber() == self.serial]
        if not devices:
            what = f"serial {self.serial}" if self.serial else "any camera"
            hint = " (PYLON_CAMEMU is set but no emulated device matched)" if os.environ.get("PYLON_CAMEMU") else ""
            raise CaptureError(f"{self.name}: no Basler camera found for {what}{hint}; check USB3/GigE cable and power")
        return tl.CreateDevice(devices[0])

    def open(self) -> None:
        """Open the camera, apply pixel format, exposure, gain and trigger, and start grabbing."""
        pylon, genicam = _pylon()
        self._wanted = True
        cam = None
        try:
            cam = pylon.InstantCamera(self._device(pylon))
            cam.Open()
            self._configure(cam, genicam)
            cam.StartGrabbing(pylon.GrabStrategy_OneByOne)
        except genicam.GenericException as exc:
            self._release(cam, genicam)
            raise CaptureError(f"{self.name}: cannot open/configure camera: {exc.GetDescription()}") from exc
        except CaptureError:
            self._release(cam, genicam)
            raise
        self._cam = cam

    @staticmethod
    def _release(cam, genicam) -> None:
        """Close a half-opened camera, ignoring pylon errors."""
        if cam is None:
            return
        try:
            if cam.IsGrabbing():
                cam.StopGrabbing()
            if cam.IsOpen():
                cam.Close()
        except genicam.GenericException:
            pass

    def _ensure_open(self, genicam) -> None:
        """After an unplug (device removed) drop the dead handle and try to reopen the camera."""
        if self._cam is not None and self._cam.IsCameraDeviceRemoved():
            log.warning("%s: camera removed; reconnecting", self.name)
            self._release(self._cam, genicam)
            self._cam = None
        if self._cam is None and self._wanted:
            self.open()

    def _set(self, cam, genicam, names: tuple[str, ...], value) -> None:
        """Set the first available of several feature names (SFNC 2 vs older cameras)."""
        for n in names:
            node = getattr(cam, n, None)
            if node is not None and genicam.IsWritable(node):
                node.Value = value
                return
        raise CaptureError(f"{self.name}: camera has no writable feature {' / '.join(names)}")

    def _configure(self, cam, genicam) -> None:
        """Apply the settings to an open camera."""
        if self.emulator_dir is not None:
            if not self.emulator_dir.is_dir():
                raise CaptureError(f"{self.name}: emulator image folder {self.emulator_dir} does not exist")
            cam.ImageFilename.Value = str(self.emulator_dir)
            cam.ImageFileMode.Value = "On"
            cam.TestImageSelector.Value = "Off"
        if self.size is not None:
            cam.Width.Value, cam.Height.Value = self.size
        cam.PixelFormat.Value = self.pixel_format
        if self.exposure_us is not None:
            self._set(cam, genicam, ("ExposureTime", "ExposureTimeAbs"), float(self.exposure_us))
        if self.gain_db is not None:
            self._set(cam, genicam, ("Gain", "GainAbs"), float(self.gain_db))
        cam.TriggerSelector.Value = "FrameStart"
        cam.TriggerMode.Value = "On"
        cam.TriggerSource.Value = "Software" if self.trigger == "software" else self.trigger_line
        if self.trigger == "hardware" and genicam.IsWritable(getattr(cam, "TriggerActivation", None)):
            cam.TriggerActivation.Value = "RisingEdge"

    def grab(self, timeout_s: float) -> Frame:
        """Trigger (software) or wait for the external trigger (hardware) and return the frame."""
        pylon, genicam = _pylon()
        if not self._wanted:
            raise CaptureError(f"{self.name}: grab() before open()")
        self._ensure_open(genicam)
        ms = max(1, int(timeout_s * 1000))
        cam = self._cam
        try:
            if self.trigger == "software":
                while cam.GetGrabResultWaitObject().Wait(0):  # drop stale frames so the result is this trigger's
                    cam.RetrieveResult(0, pylon.TimeoutHandling_Return).Release()
                if not cam.WaitForFrameTriggerReady(ms, pylon.TimeoutHandling_Return):
                    raise CaptureError(f"{self.name}: camera not ready for a trigger within {timeout_s:.2f} s")
                cam.TriggerSoftware.Execute()
            t = time.time()
            res = cam.RetrieveResult(ms, pylon.TimeoutHandling_Return)
        except genicam.TimeoutException as exc:
            raise CaptureError(f"{self.name}: no frame within {timeout_s:.2f} s") from exc
        except genicam.GenericException as exc:
            raise CaptureError(f"{self.name}: grab failed: {exc.GetDescription()}") from exc
        if res is None or not res.IsValid():
            raise CaptureError(f"{self.name}: no frame within {timeout_s:.2f} s ({self.trigger} trigger)")
        try:
            if not res.GrabSucceeded():
                raise CaptureError(f"{self.name}: grab failed: {res.GetErrorDescription()} (code {res.GetErrorCode()})")
            img = np.array(res.Array, copy=True)
            meta = {"image_number": int(res.ImageNumber), "pixel_format": self.pixel_format}
        finally:
            res.Release()
        check_image(self.name, img)
        depth = 12 if self.pixel_format == "Mono12" else 8
        return Frame(camera=self.name, image=img, t_capture_s=t, bit_depth=depth, meta=meta)

    def close(self) -> None:
        """Stop grabbing and close the camera."""
        self._wanted = False
        if self._cam is None:
            return
        _, genicam = _pylon()
        self._release(self._cam, genicam)
        self._cam = None
