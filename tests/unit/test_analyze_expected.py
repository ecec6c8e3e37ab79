"""Expected (sliced-CAD) masks read from a folder feed the analyzer; the box wires them from the config."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.analyze.config import AnalyzeConfig
from edge.analyze.expected import ExpectedMaskDir
from edge.analyze.layer import AnalysisInputError, LayerAnalyzer
from edge.config import Config


def test_folder_masks_are_loaded_by_layer_and_resized_to_the_image(tmp_path):
    m = np.zeros((64, 64), np.uint8)
    m[10:30, 20:40] = 3
    cv2.imwrite(str(tmp_path / "00002.png"), m)
    exp = ExpectedMaskDir(tmp_path)
    assert list(exp) == [2] and len(exp) == 1 and exp.get(1) is None
    got = LayerAnalyzer(AnalyzeConfig(), exp).expected_mask(2, (128, 128))
    assert got.shape == (128, 128) and got.sum() == 4 * 20 * 20
    (tmp_path / "00003.png").write_bytes(b"not a png")
    with pytest.raises(AnalysisInputError, match="00003.png"):
        exp[3]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(AnalysisInputError, match="expected_masks_dir"):
        ExpectedMaskDir(tmp_path / "nope")


def test_service_passes_the_configured_masks_to_both_analyzers(tmp_path):
    from edge.app import analyzers

    cfg = Config.model_validate({"analyze": {"expected_masks_dir": str(tmp_path)}})
    sr_an, lr_an = analyzers(cfg)
    assert isinstance(sr_an.__self__.expected, ExpectedMaskDir) and isinstance(lr_an.__self__.expected, ExpectedMaskDir)
    assert sr_an.__self__ is not lr_an.__self__
    assert analyzers(Config())[0].__self__.expected is None
