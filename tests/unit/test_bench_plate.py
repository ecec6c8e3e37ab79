"""Whole-plate band streaming: tiles blend seamlessly into a memmap, bad sizes are refused."""

from __future__ import annotations

import numpy as np
import pytest

from bench.plate import ramp, starts, super_resolve_plate


def _nearest(scale):
    return lambda tiles: np.stack([np.kron(t, np.ones((scale, scale), np.uint8)) for t in tiles])


@pytest.mark.parametrize("size,tile,overlap", [(40, 16, 4), (37, 16, 3), (16, 16, 4)])
def test_plate_equals_direct_upscale(tmp_path, size, tile, overlap):
    lr = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    out = np.lib.format.open_memmap(tmp_path / "o.npy", mode="w+", dtype=np.uint8, shape=(size * 2, size * 2))
    calls = []
    up = _nearest(2)
    super_resolve_plate(lr, lambda t: calls.append(len(t)) or up(t), tile, overlap, 2, out, batch=2, progress=False)
    np.testing.assert_array_equal(out, np.kron(lr, np.ones((2, 2), np.uint8)))
    assert max(calls) <= 2 and sum(calls) == len(starts(size, tile, overlap)) ** 2


def test_seams_are_blended():
    """Tiles that disagree (a per-tile offset) meet through a ramp, not a step."""
    lr = np.zeros((40, 40), np.uint8)
    count = iter(range(1000))
    up = lambda tiles: np.stack([np.full((32, 32), 50.0 * (next(count) % 2)) for _ in tiles])  # noqa: E731
    out = np.zeros((80, 80), np.uint8)
    super_resolve_plate(lr, up, 16, 4, 2, out, batch=1, progress=False)
    row = out[5].astype(int)
    assert np.abs(np.diff(row)).max() < 50  # no hard seam


def test_helpers_and_errors():
    assert starts(40, 16, 4) == [0, 12, 24]
    w = ramp(8, 3)
    assert w.min() > 0 and w[3:5].tolist() == [1, 1] and np.allclose(w, w[::-1])
    with pytest.raises(ValueError, match="smaller than one tile"):
        super_resolve_plate(np.zeros((8, 8), np.uint8), _nearest(2), 16, 4, 2, np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="output must be"):
        super_resolve_plate(np.zeros((16, 16), np.uint8), _nearest(2), 16, 4, 2, np.zeros((16, 16), np.uint8))
