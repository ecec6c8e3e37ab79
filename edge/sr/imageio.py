"""Reading LR inputs and writing SR outputs for `lpbf-edge sr`: 8-bit gray PNG/JPEG only, clear reasons otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge.image_limits import DEFAULT_MAX_MP, ImageTooLarge, check_pixels


class InputImageError(ValueError):
    """An input file that cannot be super-resolved; str() is the reason (the caller adds the file name)."""


def read_gray8(path: Path, max_mp: float = DEFAULT_MAX_MP) -> np.ndarray:
    """Load a PNG/JPEG as 2-D uint8 gray (colour is converted to luma); raise InputImageError with the reason.

    Inputs whose header declares more than max_mp megapixels are refused before anything is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise InputImageError("no such file")
    if p.is_dir():
        raise InputImageError("is a directory, not an image")
    if p.stat().st_size == 0:
        raise InputImageError("empty file (0 bytes)")
    try:
        check_pixels(p, max_mp)
    except ImageTooLarge as exc:
        raise InputImageError(str(exc)) from None
    try:
        with Image.open(p) as im:
            if im.format not in ("PNG", "JPEG"):
                raise InputImageError(f"not a PNG or JPEG (format {im.format})")
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F") or "16" in im.mode:
                raise InputImageError(f"{im.mode} image with more than 8 bits per pixel; convert it to 8-bit gray")
            if im.width == 0 or im.height == 0:
                raise InputImageError(f"zero-size image ({im.width}x{im.height})")
            im.load()
            gray = im if im.mode == "L" else im.convert("L")
            arr = np.asarray(gray, dtype=np.uint8).copy()
    except InputImageError:
        raise
    except UnidentifiedImageError:
        raise InputImageError("not an image (unrecognised file content)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(f"unreadable or truncated image ({exc})") from None
    if arr.ndim != 2 or arr.size == 0:
        raise InputImageError(f"unexpected decoded shape {arr.shape}")
    return arr


def write_png(path: Path, img: np.ndarray) -> Path:
    """Write an 8-bit gray PNG atomically (temp file + rename)."""
    from PIL import Image

    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8), mode="L").save(tmp, format="PNG")
    os.replace(tmp, p)
    return p
