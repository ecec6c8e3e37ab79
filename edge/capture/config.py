"""Settings of the cameras the box grabs from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.config_base import Section


class CaptureConfig(Section):
    """Which cameras to use and how to grab them."""

    webcam: Literal["opencv", "replay", "none"] = Field("opencv", description="Webcam source: OpenCV device, directory replay, or none.")
    webcam_device: str = Field("/dev/video0", description="OpenCV device path or index for the webcam.")
    replay_dir: str | None = Field(None, description="Folder of frames named by layer number, for directory replay.")
    timeout_s: float = Field(5.0, gt=0, description="Seconds to wait for a frame before the layer is marked capture_failed.")
