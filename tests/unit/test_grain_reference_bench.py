"""bench/grain_reference.py: the reference calibration it measures scales the cap's prediction as documented."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import grain_reference  # noqa: E402

from edge.sr.grain import default_sigmas, fit_grain_cap, predict_log_energy  # noqa: E402
from tests.unit.test_grain_cap import _grainy  # noqa: E402


def _cap():
    """A cap fitted on synthetic grain of several amplitudes (paper-recipe LR of 32 px windows)."""
    rng = np.random.default_rng(0)
    pairs = [p for i, a in enumerate((2, 5, 10, 20)) for p in
             grain_reference.window_pairs(_grainy(a, i, 256), None, 32, 6, rng)]
    return fit_grain_cap([lr for lr, _ in pairs], [h for _, h in pairs], sigmas=default_sigmas(4), window=32)


def test_window_pairs_are_aligned_lr_hr_windows():
    """Each pair is a 32-px window of the registered LR and the 128-px HR window exactly under it."""
    hr = np.arange(256 * 256).reshape(256, 256)  # unique values locate every window
    lr = np.arange(64 * 64).reshape(64, 64)
    pairs = grain_reference.window_pairs(hr, lr, 32, 5, np.random.default_rng(2))
    assert len(pairs) == 5
    for lr_w, hr_w in pairs:
        y, x = divmod(int(lr_w[0, 0]), 64)
        assert lr_w.shape == (32, 32) and np.array_equal(lr_w, lr[y:y + 32, x:x + 32])
        assert hr_w.shape == (128, 128) and np.array_equal(hr_w, hr[4 * y:4 * y + 128, 4 * x:4 * x + 128])


def test_calibrated_cap_multiplies_prediction_by_the_factors():
    """Calibrating with per-band factors f multiplies every predicted energy by f (and keeps the bands' split)."""
    cap = _cap()
    f = np.array([0.5, 1.0, 2.0, 4.0])
    cal = grain_reference.calibrated(cap, f, 2.0)
    lr = _grainy(6, 9, 128)[:32, :32]
    np.testing.assert_allclose(np.exp(predict_log_energy(cal, lr) - predict_log_energy(cap, lr)), f, rtol=1e-6)
    assert cal.sigmas == cap.sigmas and cal.max_gain == 2.0


def test_log_ratios_see_more_detail_than_predicted():
    """HR windows with their grain doubled but the LR kept carry about 4x the predicted fine-band energy."""
    cap = _cap()
    pairs = grain_reference.window_pairs(_grainy(6, 3, 256), None, 32, 8, np.random.default_rng(4))
    base = np.median(grain_reference.log_ratios(cap, pairs), 0)
    boosted = []
    for lr, h in pairs:
        smooth = h.astype(np.float64).mean()
        boosted.append((lr, np.clip(smooth + 2.0 * (h - smooth), 0, 255).astype(np.uint8)))
    more = np.median(grain_reference.log_ratios(cap, boosted), 0)
    assert np.all(more[1:] - base[1:] > np.log(2.5))  # the finer bands, where the grain lives
