"""The Camera protocol every capture backend implements, and the capture error type."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from edge.messages import Frame, LayerEvent


class CaptureError(RuntimeError):
    """A frame could not be grabbed (timeout, unplugged, corrupt); the message names the camera."""


@runtime_checkable
class Camera(Protocol):
    """A camera the capture stage can grab from."""

    name: str

    def open(self) -> None:
        """Connect and start streaming / arm the trigger."""
        ...

    def grab(self, timeout_s: float) -> Frame:
        """Return one frame taken now (or raise CaptureError)."""
        ...

    def close(self) -> None:
        """Release the device."""
        ...


@runtime_checkable
class LayerAwareCamera(Camera, Protocol):
    """A camera whose frame depends on the layer event (directory replay, simulated printer)."""

    def select(self, event: LayerEvent) -> None:
        """Choose the frame for this event before grab()."""
        ...


def check_image(camera: str, image, where: str = "") -> None:
    """Raise CaptureError if a frame is missing, empty or not a 2-D/3-D array of pixels."""
    import numpy as np

    if image is None or not isinstance(image, np.ndarray) or image.size == 0 or image.ndim not in (2, 3):
        shape = getattr(image, "shape", None)
        raise CaptureError(f"{camera}: corrupt or empty frame{(' from ' + where) if where else ''} (shape {shape})")
