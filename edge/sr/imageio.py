"""Reading LR inputs and writing SR outputs for `lpbf-edge sr`: 8-bit gray images only, clear reasons otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.image_limits import DEFAULT_MAX_MP
from edge.imaging import ImageReadError, read_gray
from edge.imaging import write_png as write_png


class InputImageError(ValueError):
    """An input file that cannot be super-resolved; str() is the reason (the caller adds the file name)."""


def read_gray8(path: Path, max_mp: float = DEFAULT_MAX_MP) -> np.ndarray:
    """Load an image as 2-D uint8 gray (edge.imaging.read_gray; 16-bit input refused: the model was trained on 8-bit
    frames and the file does not say how its levels map to them); InputImageError with the reason."""
    try:
        return read_gray(path, max_mp, deep="refuse")
    except ImageReadError as exc:
        raise InputImageError(exc.reason) from None
