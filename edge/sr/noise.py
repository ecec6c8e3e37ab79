"""Sampler noise keyed by absolute LR position, so overlapping tiles (and any tiling or batching) see the same noise."""

from __future__ import annotations

import numpy as np


class PositionalNoise:
    """Noise [n, C, tile, tile] for the tile at LR (y, x) of sample k of one image, drawn per (seed, k, LR row).

    Each LR row r of sample k is one generator `default_rng([seed, k, r])` drawn as [width, n, C], so column x gets
    the same numbers whatever the (padded) image width is. Antithetic pairs: sample 2j+1 gets the negated noise of
    sample 2j; each chain is still a draw from the model, but a pair's texture largely cancels in the mean of K
    (docs/sr_quality.md). Sample 0 is the same either way. Bands (one tile row of one sample) are cached for the
    tile rows in flight and dropped once the tiles move below them.
    """

    def __init__(self, seed: int, channels: int, tile: int, n: int, width: int, antithetic: bool = True):
        self.seed, self.channels, self.tile, self.n, self.width = int(seed), channels, tile, n, width
        self.antithetic = bool(antithetic)
        self._bands: dict[tuple[int, int], np.ndarray] = {}

    def band(self, k: int, y: int) -> np.ndarray:
        """Noise [n, C, tile, width] of LR rows y..y+tile of sample k."""
        key = (k, y)
        band = self._bands.get(key)
        if band is None:
            if self.antithetic and k % 2 == 1:
                band = -self.band(k - 1, y)
            else:
                rows = [np.random.default_rng([self.seed, k, r]).standard_normal(
                    (self.width, self.n, self.channels), dtype=np.float32) for r in range(y, y + self.tile)]
                band = np.ascontiguousarray(np.stack(rows, axis=0).transpose(2, 3, 0, 1))
            self._bands[key] = band
        return band

    def tile_noise(self, k: int, y: int, x: int) -> np.ndarray:
        """Noise [n, C, tile, tile] of the tile at LR origin (y, x), sample k."""
        return self.band(k, y)[..., x:x + self.tile]

    def release_above(self, y: int) -> None:
        """Forget the bands of tile rows that start above LR row y (they are done)."""
        for key in [key for key in self._bands if key[1] < y]:
            del self._bands[key]
