"""Build the configured cameras from the capture config section."""

from __future__ import annotations

from edge.capture.base import Camera
from edge.capture.config import CaptureConfig


def build_cameras(cfg: CaptureConfig) -> list[Camera]:
    """Cameras named 'webcam' and 'basler' as the config asks (none -> left out)."""
    cams: list[Camera] = []
    if cfg.webcam == "opencv":
        from edge.capture.webcam import OpenCVWebcam

        cams.append(
            OpenCVWebcam(
                cfg.webcam_device,
                name="webcam",
                width=cfg.webcam_width,
                height=cfg.webcam_height,
                fourcc=cfg.webcam_fourcc,
                exposure=cfg.webcam_exposure,
                reconnect_s=cfg.webcam_reconnect_s,
                reconnect_max_s=cfg.webcam_reconnect_max_s,
            )
        )
    elif cfg.webcam == "replay":
        from edge.capture.replay import DirectoryReplayCamera

        if cfg.replay_dir is None:
            raise ValueError("capture.webcam is 'replay' but capture.replay_dir is not set")
        cams.append(DirectoryReplayCamera(cfg.replay_dir, name="webcam"))
    b = cfg.basler
    if b.enabled == "pylon":
        from edge.capture.basler import BaslerCamera

        cams.append(
            BaslerCamera(
                name="basler",
                serial=b.serial,
                trigger=b.trigger,
                trigger_line=b.trigger_line,
                pixel_format=b.pixel_format,
                exposure_us=b.exposure_us,
                gain_db=b.gain_db,
                emulator_dir=b.emulator_dir,
            )
        )
    elif b.enabled == "replay":
        from edge.capture.replay import DirectoryReplayCamera

        if b.replay_dir is None:
            raise ValueError("capture.basler.enabled is 'replay' but capture.basler.replay_dir is not set")
        cams.append(DirectoryReplayCamera(b.replay_dir, name="basler"))
    return cams
