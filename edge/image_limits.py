"""Input size bound for the image-reading commands: width x height from the file header, before any decoding."""

from __future__ import annotations

import warnings
from pathlib import Path

DEFAULT_MAX_MP = 64.0  # megapixels (10^6 px); an 8000x8000 input
MAX_MP_HELP = "Refuse inputs over this many megapixels (read from the header, before decoding)."


class ImageTooLarge(ValueError):
    """An input whose header declares more pixels than the configured limit."""


def header_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) read from the file header only (imagesize; Pillow's lazy open as fallback), None if unknown."""
    import imagesize

    try:
        w, h = imagesize.get(str(path))
    except (OSError, ValueError):
        w = h = -1
    if w > 0 and h > 0:
        return int(w), int(h)
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:  # reads the header, decodes nothing
                return int(im.width), int(im.height)
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(f"larger than Pillow's decompression-bomb limit ({exc})") from None
        except Exception:  # noqa: BLE001 - not an image the header readers know: the decoder reports it
            return None


def check_pixels(path: str | Path, max_mp: float = DEFAULT_MAX_MP) -> tuple[int, int] | None:
    """Raise ImageTooLarge when the header declares more than max_mp megapixels; returns the header size."""
    size = header_size(path)
    if size is not None and size[0] * size[1] > max_mp * 1e6:
        w, h = size
        raise ImageTooLarge(f"{w}x{h} px ({w * h / 1e6:.3g} MP) is over the {max_mp:g} MP input limit "
                            "(raise it with --max-mp if this machine has the memory)")
    return size
