"""Settings of the cameras the box grabs from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.config_base import Section


class BaslerConfig(Section):
    """Basler camera through pypylon (research rigs; the paper's 20 MP reference camera)."""

    enabled: Literal["pylon", "replay", "none"] = Field("none", description="Basler source: a pylon camera, directory "
                                                        "replay, or none.")
    serial: str | None = Field(None, description="Serial number of the camera to open; none opens the first one found.")
    trigger: Literal["software", "hardware"] = Field("software", description="software: the box fires TriggerSoftware "
                                                     "on each event; hardware: an external pulse on trigger_line.")
    trigger_line: str = Field("Line1", description="Input line wired to the hardware trigger (opto-isolated Line1 on "
                              "ace cameras).")
    pixel_format: Literal["Mono8", "Mono12"] = Field("Mono8", description="Mono8 (uint8) or Mono12 (uint16 holding 12 "
                                                     "bits).")
    exposure_us: float = Field(20000.0, gt=0, description="Exposure time in microseconds.")
    gain_db: float = Field(0.0, ge=0, description="Analog gain in dB.")
    replay_dir: str | None = Field(None, description="Folder of frames named by layer number, for directory replay.")
    emulator_dir: str | None = Field(None, description="With PYLON_CAMEMU set: folder of images the pylon emulator "
                                     "serves (ImageFilename).")


class CaptureConfig(Section):
    """Which cameras to use and how to grab them."""

    webcam: Literal["opencv", "replay", "none"] = Field("opencv", description="Webcam source: OpenCV device, directory "
                                                        "replay, or none.")
    webcam_device: str = Field("/dev/video0", description="OpenCV device path or index for the webcam.")
    replay_dir: str | None = Field(None, description="Folder of frames named by layer number, for directory replay.")
    timeout_s: float = Field(5.0, gt=0, description="Seconds to wait for a frame before the layer is marked "
                             "capture_failed.")
    webcam_width: int = Field(1920, ge=16, description="Requested webcam frame width in pixels.")
    webcam_height: int = Field(1080, ge=16, description="Requested webcam frame height in pixels.")
    webcam_fourcc: str = Field("MJPG", min_length=4, max_length=4, description="Requested V4L2 pixel format (MJPG "
                               "allows 1080p at 30 fps over USB 2).")
    webcam_exposure: float | None = Field(None, description="Manual exposure in V4L2 units (100 us steps); none keeps "
                                          "auto exposure.")
    webcam_reconnect_s: float = Field(0.5, gt=0, description="First wait before reopening an unplugged webcam (doubles "
                                      "each try).")
    webcam_reconnect_max_s: float = Field(5.0, gt=0, description="Longest wait between webcam reopen attempts.")
    basler: BaslerConfig = Field(default_factory=BaslerConfig, description="Basler camera settings.")
    grab_on: tuple[Literal["layer_complete", "recoat_done"], ...] = Field(
        ("layer_complete", "recoat_done"), description="Events that trigger a capture: after melting and/or after "
        "recoating."
    )
    paired_dir: str | None = Field(None, description="If set, every captured frame is also written here per camera, "
                                   "named by layer (training pairs).")
