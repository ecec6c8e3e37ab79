"""Reading layer images and writing PNGs for the analysis commands, with clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edge.image_limits import DEFAULT_MAX_MP
from edge.imaging import ImageReadError as ImageReadError
from edge.imaging import read_gray as _read
from edge.imaging import write_png as write_png


def read_gray(path: str | Path, max_mp: float = DEFAULT_MAX_MP) -> np.ndarray:
    """8-bit grey layer image (edge.imaging.read_gray: 16-bit scaled down, colour to luma); at least 16x16 px."""
    img = _read(path, max_mp, deep="scale")
    if min(img.shape) < 16:
        raise ImageReadError(path, f"image is {img.shape[1]}x{img.shape[0]} px, too small to analyse (>= 16x16)")
    return img


def layer_number(path: str | Path, default: int) -> int:
    """Layer number from the last digit group of a file name (00012.png -> 12), else default."""
    nums = re.findall(r"\d+", Path(path).stem)
    return int(nums[-1]) if nums else default
