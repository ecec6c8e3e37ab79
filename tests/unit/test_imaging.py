"""One image reader and one pixel-range conversion for SR, analysis and training: behaviour and the callers' rules."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.analyze.imageio import read_gray as read_layer
from edge.data.datasets import DataError
from edge.data.datasets import read_gray as read_training
from edge.imaging import ImageReadError, read_gray, to_u8, to_unit, write_png
from edge.sr.imageio import InputImageError, read_gray8


def test_pixel_range_round_trip_is_exact_and_clipped():
    levels = np.arange(256, dtype=np.uint8)
    x = to_unit(levels)
    assert x.dtype == np.float32 and x[0] == -1.0 and x[-1] == 1.0
    np.testing.assert_array_equal(to_u8(x), levels)
    np.testing.assert_array_equal(to_u8(np.array([-3.0, 0.0, 2.0])), [0, 128, 255])


@pytest.fixture
def files(tmp_path):
    """Good and bad image files of every kind the readers meet."""
    rng = np.random.default_rng(0)
    gray = (rng.random((40, 52)) * 255).astype(np.uint8)
    bgr = np.dstack([gray, 255 - gray, gray // 2])
    p = {"gray": tmp_path / "gray.png", "bgr": tmp_path / "colour.jpg", "bgra": tmp_path / "alpha.png",
         "deep": tmp_path / "deep.png", "float": tmp_path / "float.tiff", "trunc": tmp_path / "trunc.png",
         "text": tmp_path / "notes.png", "empty": tmp_path / "empty.png", "tiny": tmp_path / "tiny.png"}
    cv2.imwrite(str(p["gray"]), gray)
    cv2.imwrite(str(p["bgr"]), bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])
    cv2.imwrite(str(p["bgra"]), np.dstack([bgr, np.full_like(gray, 7)]))
    cv2.imwrite(str(p["deep"]), gray.astype(np.uint16) * 257)
    cv2.imwrite(str(p["float"]), gray.astype(np.float32))
    p["trunc"].write_bytes(p["gray"].read_bytes()[:120])
    p["text"].write_text("not an image\n")
    p["empty"].write_bytes(b"")
    cv2.imwrite(str(p["tiny"]), gray[:8, :8])
    return p, gray, bgr


def test_reader_converts_colour_and_depth(files):
    p, gray, bgr = files
    np.testing.assert_array_equal(read_gray(p["gray"]), gray)
    assert read_gray(p["bgr"]).shape == gray.shape
    np.testing.assert_array_equal(read_gray(p["bgra"]), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))  # alpha dropped
    np.testing.assert_array_equal(read_gray(p["deep"]), gray)  # v * 257 / 257
    with pytest.raises(ImageReadError, match="16-bit image; convert it to 8-bit gray"):
        read_gray(p["deep"], deep="refuse")


@pytest.mark.parametrize("key, reason", [("trunc", "truncated or corrupt PNG"), ("text", "not an image"),
                                         ("empty", "empty file"), ("float", "unsupported pixel type float32")])
def test_bad_files_say_what_and_where(files, key, reason):
    p, _, _ = files
    with pytest.raises(ImageReadError) as exc:
        read_gray(p[key])
    assert str(exc.value).startswith(f"{p[key]}: ") and reason in exc.value.reason


def test_missing_directory_and_oversized(files, tmp_path):
    p, _, _ = files
    with pytest.raises(ImageReadError, match="no such file"):
        read_gray(tmp_path / "absent.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_gray(tmp_path)
    with pytest.raises(ImageReadError, match="input limit"):
        read_gray(p["gray"], max_mp=1e-4)  # 40x52 px is 0.002 MP
    assert read_gray(p["gray"], max_mp=None).shape == (40, 52)


def test_callers_keep_their_own_rules(files):
    p, gray, _ = files
    with pytest.raises(InputImageError) as exc:  # SR: 8-bit only, reason without the path (the CLI adds it)
        read_gray8(p["deep"])
    assert str(exc.value) == "16-bit image; convert it to 8-bit gray"
    np.testing.assert_array_equal(read_layer(p["deep"]), gray)  # analysis scales 16-bit frames
    with pytest.raises(ImageReadError, match="too small to analyse"):
        read_layer(p["tiny"])
    with pytest.raises(DataError, match="trunc.png"):  # training data: the dataset's error type
        read_training(p["trunc"])


def test_write_png_is_atomic_and_round_trips(tmp_path):
    img = (np.arange(30 * 20) % 256).astype(np.uint8).reshape(30, 20)
    out = write_png(tmp_path / "sub" / "a.png", img)
    np.testing.assert_array_equal(read_gray(out), img)
    assert sorted(q.name for q in out.parent.iterdir()) == ["a.png"]  # no temp file left
