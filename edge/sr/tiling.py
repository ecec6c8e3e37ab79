"""Overlapping tiles over an LR image, processed one tile row at a time and blended in HR space."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

# (LR tiles [N, t, t] float32 in [-1, 1], their LR origins [(y, x)] in the padded image) -> HR [N, C, t*s, t*s]
TileFn = Callable[[np.ndarray, list[tuple[int, int]]], np.ndarray]


@dataclass(frozen=True)
class TileGrid:
    """Tile origins over a (reflection-padded) LR image of size (height, width)."""

    height: int
    width: int
    tile: int
    overlap: int

    @property
    def ys(self) -> list[int]:
        return tile_starts(self.height, self.tile, self.overlap)

    @property
    def xs(self) -> list[int]:
        return tile_starts(self.width, self.tile, self.overlap)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Origins covering [0, size) with tiles of `tile` sharing at least `overlap` pixels (last one flush right)."""
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in 0..tile-1 (tile {tile}, overlap {overlap})")
    if size <= tile:
        return [0]
    step = tile - overlap
    n = math.ceil((size - tile) / step) + 1
    return [min(i * step, size - tile) for i in range(n)]


def blend_window(n: int, ramp: int, lead: bool, trail: bool) -> np.ndarray:
    """1-D weight: raised-cosine ramps of `ramp` px on the sides that overlap a neighbour, 1 elsewhere, never 0."""
    w = np.ones(n, np.float64)
    if ramp > 0:
        r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        if lead:
            w[:ramp] = r
        if trail:
            w[n - ramp:] = np.minimum(w[n - ramp:], r[::-1])
    return np.maximum(w, 1e-6)


def pad_to_tile(img: np.ndarray, tile: int) -> np.ndarray:
    """Reflect-pad an image on the bottom/right up to at least one tile in each dimension."""
    ph, pw = max(0, tile - img.shape[0]), max(0, tile - img.shape[1])
    if ph == 0 and pw == 0:
        return img
    mode = "reflect" if min(img.shape[:2]) > 1 else "edge"
    return np.pad(img, ((0, ph), (0, pw)), mode=mode)


def tiled_upscale(lr: np.ndarray, fn: TileFn, scale: int, tile: int, overlap: int, batch: int = 8,
                  channels: int = 1, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Run `fn` over overlapping tiles of a 2-D float LR image; returns the blended HR result [C, H*s, W*s] float32.

    Tiles are processed one tile row at a time in batches of `batch`: the only per-tile intermediates alive are
    those of one batch, plus the HR output and weight accumulators.
    """
    if lr.ndim != 2 or lr.size == 0:
        raise ValueError(f"expected a non-empty 2-D image, got shape {lr.shape}")
    H, W = lr.shape
    src = pad_to_tile(lr.astype(np.float32, copy=False), tile)
    grid = TileGrid(src.shape[0], src.shape[1], tile, overlap)
    ys, xs = grid.ys, grid.xs
    th, ramp = tile * scale, overlap * scale
    acc = np.zeros((channels, src.shape[0] * scale, src.shape[1] * scale), np.float32)
    wsum = np.zeros(acc.shape[1:], np.float32)
    done, total = 0, len(ys) * len(xs)
    for iy, y in enumerate(ys):
        wy = blend_window(th, ramp, iy > 0, iy < len(ys) - 1)
        for chunk in _chunks(list(enumerate(xs)), batch):
            tiles = np.stack([src[y:y + tile, x:x + tile] for _, x in chunk])
            out = np.asarray(fn(tiles, [(y, x) for _, x in chunk]), np.float32)
            if out.shape != (len(chunk), channels, th, th):
                raise ValueError(f"tile function returned {out.shape}, expected {(len(chunk), channels, th, th)}")
            for k, (ix, x) in enumerate(chunk):
                w = np.outer(wy, blend_window(th, ramp, ix > 0, ix < len(xs) - 1)).astype(np.float32)
                Y, X = y * scale, x * scale
                acc[:, Y:Y + th, X:X + th] += out[k] * w
                wsum[Y:Y + th, X:X + th] += w
            done += len(chunk)
            if progress:
                progress(done, total)
    acc /= wsum
    return acc[:, : H * scale, : W * scale]


def _chunks(items: list, n: int) -> Iterator[list]:
    """Consecutive slices of at most n items."""
    for i in range(0, len(items), n):
        yield items[i:i + n]
