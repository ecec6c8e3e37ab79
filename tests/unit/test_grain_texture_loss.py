"""Grain-texture training term: high-pass kurtosis as the benches measure it, and a loss that sees sparkle."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sr_sets import highpass_kurtosis  # noqa: E402

from edge.train.losses import grain_texture_loss, highpass_log_kurtosis  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _powder(sparkle: float, seed: int, size: int = 64) -> np.ndarray:
    """Gaussian grain on a gradient, plus `sparkle` x bright isolated specks (heavy-tailed high-pass)."""
    rng = np.random.default_rng(seed)
    img = np.linspace(80, 140, size)[None, :] + cv2.GaussianBlur(rng.normal(0, 6, (size, size)), (0, 0), 0.8)
    specks = rng.random((size, size)) < 0.01
    img[specks] += 90 * sparkle
    return np.clip(img, 0, 255).astype(np.uint8)


def _unit(imgs: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(imgs)[:, None].astype(np.float32) / 127.5 - 1.0)


def test_highpass_log_kurtosis_matches_the_bench_definition():
    """The training term's kurtosis is the benches' (image minus its sigma 1.5 Gaussian blur), up to float error."""
    imgs = [_powder(s, i) for i, s in enumerate((0.0, 0.5, 1.0))]
    got = highpass_log_kurtosis(_unit(imgs)).numpy()
    want = np.log([highpass_kurtosis(im) for im in imgs])
    np.testing.assert_allclose(got, want, atol=0.02)
    assert got[2] > got[0] + 0.5  # specks make the tail heavy


def test_grain_texture_loss_is_zero_on_the_truth_and_sees_lost_sparkle():
    """Identical texture costs nothing; losing the specks or blurring the grain costs; gradients reach the input."""
    truth = _unit([_powder(1.0, i) for i in range(4)])
    same_kind = _unit([_powder(1.0, 10 + i) for i in range(4)])  # other grains, same statistics
    no_sparkle = _unit([_powder(0.0, 10 + i) for i in range(4)])
    blurred = torch.from_numpy(np.stack([cv2.GaussianBlur(x[0].numpy(), (0, 0), 1.2) for x in truth])[:, None])
    assert float(grain_texture_loss(truth, truth)) == pytest.approx(0.0, abs=1e-5)
    base = float(grain_texture_loss(same_kind, truth))
    assert float(grain_texture_loss(no_sparkle, truth)) > base + 0.2
    assert float(grain_texture_loss(blurred, truth)) > base + 0.2
    x = no_sparkle.clone().requires_grad_(True)
    grain_texture_loss(x, truth).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
