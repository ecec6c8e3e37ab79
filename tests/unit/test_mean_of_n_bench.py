"""bench/mean_of_n.py: the a + b/K fit recovers a calibrated sampler's posterior-mean error and spread."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import mean_of_n  # noqa: E402


def test_fit_recovers_the_limit_of_averaged_posterior_samples():
    """Samples x_hat + posterior noise of variance v around a fixed estimate: the mean of K has MSE bias^2 + v/K."""
    rng = np.random.default_rng(0)
    truth = rng.normal(128, 20, 20000)
    post_mean = truth + rng.normal(0, 3.0, truth.shape)  # the sampler's posterior mean misses by 3 (MSE 9)
    mses = []
    for k in mean_of_n.KS:
        draws = post_mean[None] + rng.normal(0, 3.0, (k, truth.size))  # calibrated: spread equal to the error
        mses.append(mean_of_n.mse(draws.mean(0), truth))
    a, b = mean_of_n.fit_limit(list(mean_of_n.KS), mses)
    assert abs(a - 9.0) < 0.4 and abs(b - 9.0) < 0.6  # limit = posterior-mean error, spread / limit ~ 1
    assert abs((mean_of_n.db(mses[3]) - mean_of_n.db(a)) + 10 * np.log10(1 + 1 / 8)) < 0.1  # mean of 8: 0.51 dB
