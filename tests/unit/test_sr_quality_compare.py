"""bench/sr_quality_compare.py: stacking the runs' side-by-side images per set."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import sr_quality_compare  # noqa: E402


def test_stack_images_puts_each_runs_row_under_its_caption(tmp_path):
    """One PNG per set; the rows keep each run's pixels in the given order, under an 18 px caption."""
    dirs = {}
    for i, name in enumerate(("prev", "tex")):
        d = tmp_path / name
        d.mkdir()
        for s, w in (("pblm", 40), ("sim", 30)):
            cv2.imwrite(str(d / f"sr_{s}.png"), np.full((20, w + 10 * i), 50 + 100 * i, np.uint8))
        dirs[name] = d
    written = sr_quality_compare.stack_images(dirs, tmp_path / "out" / "cmp")
    assert sorted(p.name for p in written) == ["cmp_pblm.png", "cmp_sim.png"]
    img = cv2.imread(str(tmp_path / "out" / "cmp_pblm.png"), cv2.IMREAD_GRAYSCALE)
    assert img.shape == (2 * (18 + 20 + 6), 50)
    assert (img[18:38, :40] == 50).all() and (img[38:44] == 255).all()  # prev's row, padded white to tex's width
    assert (img[44 + 18:44 + 38, :50] == 150).all()


def test_stack_images_names_the_missing_image(tmp_path):
    """A run without a set's image stops with the file and run named, instead of a ragged figure."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cv2.imwrite(str(tmp_path / "a" / "sr_sim.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(SystemExit, match=r"sr_sim.png.*'sim'.*'b'"):
        sr_quality_compare.stack_images({"a": tmp_path / "a", "b": tmp_path / "b"}, tmp_path / "cmp")
