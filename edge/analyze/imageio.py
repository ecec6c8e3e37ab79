"""Reading layer images and writing PNGs for the analysis commands, with clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from edge.image_limits import DEFAULT_MAX_MP, ImageTooLarge, check_pixels


class ImageReadError(ValueError):
    """An input image that cannot be used; the message names the file and the reason."""


def read_gray(path: str | Path, max_mp: float = DEFAULT_MAX_MP) -> np.ndarray:
    """8-bit grey image from PNG/JPEG/TIFF (16-bit scaled down, colour averaged); over max_mp megapixels refused."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such file")
    try:
        check_pixels(p, max_mp)
    except ImageTooLarge as exc:
        raise ImageReadError(f"{p}: {exc}") from None
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f"{p}: not a readable image (PNG/JPEG/TIFF expected)")
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if min(img.shape) < 16:
        raise ImageReadError(f"{p}: image is {img.shape[1]}x{img.shape[0]} px, too small to analyse (>= 16x16)")
    return img


def write_png(path: str | Path, img: np.ndarray) -> Path:
    """Write a PNG atomically (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"{p}: PNG encoding failed")
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(p)
    return p


def layer_number(path: str | Path, default: int) -> int:
    """Layer number from the last digit group of a file name (00012.png -> 12), else default."""
    nums = re.findall(r"\d+", Path(path).stem)
    return int(nums[-1]) if nums else default
