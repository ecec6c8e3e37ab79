"""Gray images in one place: reading files to uint8 with clear reasons, atomic PNG writes, uint8 <-> [-1, 1].

Used by the SR, analysis and training readers, which add only their own error type and size rules.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.image_limits import DEFAULT_MAX_MP, ImageTooLarge, check_pixels

SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
              b"BM": "BMP"}


class ImageReadError(ValueError):
    """An image file that cannot be used; str() is '<path>: <reason>'."""

    def __init__(self, path: str | Path, reason: str) -> None:
        """Keep the file and the reason apart, for callers that name the file themselves."""
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def to_unit(img_u8: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1] (the models' pixel range)."""
    return np.asarray(img_u8).astype(np.float32) / 127.5 - 1.0


def to_u8(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255], rounded and clipped."""
    return np.clip(np.rint((np.asarray(x, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _kind(p: Path) -> str | None:
    """The image format named by the file's first bytes, or None."""
    with open(p, "rb") as f:
        head = f.read(8)
    return next((k for sig, k in SIGNATURES.items() if head.startswith(sig)), None)


def read_gray(path: str | Path, max_mp: float | None = DEFAULT_MAX_MP, deep: str = "scale") -> np.ndarray:
    """A PNG/JPEG/TIFF/BMP file as 2-D uint8 gray (colour -> luma, alpha dropped); ImageReadError says why not.

    max_mp: refuse files whose header declares more megapixels, before decoding (None: no limit).
    deep: what a 16-bit file becomes: 'scale' (to 8 bits, v / 257) or 'refuse' (the caller needs 8-bit input).
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "no such file")
    if p.is_dir():
        raise ImageReadError(p, "is a directory, not an image")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "empty file (0 bytes)")
    if max_mp is not None:
        try:
            check_pixels(p, max_mp)
        except ImageTooLarge as exc:
            raise ImageReadError(p, f"{exc}") from None
    kind = _kind(p)
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        why = f"truncated or corrupt {kind} file" if kind else "not an image (unrecognised file content)"
        raise ImageReadError(p, f"{why}")
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY) if img.shape[2] >= 3 else img[..., 0]
    if img.dtype == np.uint16:
        if deep != "scale":
            raise ImageReadError(p, "16-bit image; convert it to 8-bit gray")
        img = np.rint(img / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(p, f"unsupported pixel type {img.dtype}; convert it to 8-bit gray")
    return np.ascontiguousarray(img)


def write_png(path: str | Path, img: np.ndarray) -> Path:
    """Write a 2-D uint8 image as PNG atomically (temp file + rename), creating the folder."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    if not ok:
        raise OSError(f"{p}: PNG encoding failed")
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(p)
    return p
