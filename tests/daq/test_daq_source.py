"""Real NI DAQ acquisition (runs only where a driver and device are present)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from firmware_bridge.config import DaqConfig
from firmware_bridge.sources.daq import DaqSource

pytestmark = pytest.mark.daq


def test_analog_acquisition_delivers_increasing_time_chunks():
    src = DaqSource(DaqConfig(rate_hz=1000.0, chunk_samples=100))
    try:
        chunks = list(itertools.islice(src.chunks(), 5))
    finally:
        src.close()
    t = np.concatenate([c[0] for c in chunks])
    assert t.size == 500 and np.all(np.diff(t) > 0)
    assert np.all(np.isfinite(np.concatenate([c[1] for c in chunks])))
