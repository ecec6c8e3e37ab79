"""Overlapping tiles over an LR image and their raised-cosine blend in HR space (separable weights, one accumulator)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    if min(img.shape[:2]) > 1:
        return np.pad(img, ((0, ph), (0, pw)), mode="reflect")
    return np.pad(img, ((0, ph), (0, pw)), mode="edge")


class TiledImage:
    """One LR image cut into overlapping tiles, and the HR accumulator its super-resolved tiles are blended into.

    The blend weight of a tile is outer(wy, wx) (raised-cosine ramps on the sides that meet a neighbour), so the sum of
    weights is separable: only the HR accumulator [C, H*s, W*s] is image-sized, normalised by two 1-D weight sums.
    Images smaller than a tile are reflection-padded (edge mode for 1-px images); `result` keeps the padded size.
    """

    def __init__(self, lr: np.ndarray, scale: int, tile: int, overlap: int, channels: int = 1):
        if lr.ndim != 2 or lr.size == 0:
            raise ValueError(f"expected a non-empty 2-D image, got shape {lr.shape}")
        self.shape = lr.shape
        self.src = pad_to_tile(np.asarray(lr, np.float32), tile)
        self.scale, self.tile, self.overlap = scale, tile, overlap
        grid = TileGrid(self.src.shape[0], self.src.shape[1], tile, overlap)
        self.ys, self.xs = grid.ys, grid.xs
        th, ramp = tile * scale, overlap * scale
        self._wy = [blend_window(th, ramp, i > 0, i < len(self.ys) - 1).astype(np.float32) for i in range(len(self.ys))]
        self._wx = [blend_window(th, ramp, i > 0, i < len(self.xs) - 1).astype(np.float32) for i in range(len(self.xs))]
        self._w2: dict[tuple[bool, ...], np.ndarray] = {}
        self.acc = np.zeros((channels, self.src.shape[0] * scale, self.src.shape[1] * scale), np.float32)
        self.grain: np.ndarray | None = None  # the image's grain descriptor (edge.sr.grain), set by the SuperResolver

    @property
    def refs(self) -> list[tuple[int, int]]:
        """(tile row, tile column) of every tile, row-major."""
        return [(iy, ix) for iy in range(len(self.ys)) for ix in range(len(self.xs))]

    def origin(self, ref: tuple[int, int]) -> tuple[int, int]:
        """LR origin (y, x) of a tile in the padded image."""
        return self.ys[ref[0]], self.xs[ref[1]]

    def crop(self, ref: tuple[int, int]) -> np.ndarray:
        """The LR tile [tile, tile] at a ref."""
        y, x = self.origin(ref)
        return self.src[y:y + self.tile, x:x + self.tile]

    def _weight(self, ref: tuple[int, int]) -> np.ndarray:
        """Blend weight of a tile (one of at most 9 distinct ones: first / inner / last row and column)."""
        key = (ref[0] > 0, ref[0] < len(self.ys) - 1, ref[1] > 0, ref[1] < len(self.xs) - 1)
        w = self._w2.get(key)
        if w is None:
            w = self._w2[key] = np.outer(self._wy[ref[0]], self._wx[ref[1]])
        return w

    def add(self, refs: Sequence[tuple[int, int]], hr: np.ndarray) -> None:
        """Blend super-resolved tiles hr [n, C, th, th] (float) into the accumulator."""
        th = self.tile * self.scale
        if hr.shape[0] != len(refs) or hr.shape[1:] != (self.acc.shape[0], th, th):
            raise ValueError(f"tiles of shape {hr.shape}, expected {(len(refs), self.acc.shape[0], th, th)}")
        for ref, out in zip(refs, hr, strict=False):
            y, x = self.origin(ref)
            Y, X = y * self.scale, x * self.scale
            self.acc[:, Y:Y + th, X:X + th] += out * self._weight(ref)

    def result(self) -> np.ndarray:
        """The blended HR image [C, Hp*s, Wp*s] of the padded image (normalised in place; call once)."""
        th, s = self.tile * self.scale, self.scale
        wy = np.zeros(self.acc.shape[1], np.float32)
        wx = np.zeros(self.acc.shape[2], np.float32)
        for y, w in zip(self.ys, self._wy, strict=False):
            wy[y * s:y * s + th] += w
        for x, w in zip(self.xs, self._wx, strict=False):
            wx[x * s:x * s + th] += w
        self.acc /= wy[None, :, None]
        self.acc /= wx[None, None, :]
        return self.acc

    def crop_hr(self, hr: np.ndarray) -> np.ndarray:
        """An HR array [..., Hp*s, Wp*s] cropped back to the unpadded image."""
        return hr[..., : self.shape[0] * self.scale, : self.shape[1] * self.scale]


def tiled_upscale(lr: np.ndarray, fn: TileFn, scale: int, tile: int, overlap: int, batch: int = 8,
                  channels: int = 1, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Run `fn` over overlapping tiles of a 2-D float LR image in batches of `batch` tiles (row-major, across tile
    rows); returns the blended HR result [C, H*s, W*s] float32."""
    img = TiledImage(lr, scale, tile, overlap, channels)
    refs = img.refs
    for i in range(0, len(refs), batch):
        chunk = refs[i:i + batch]
        tiles = np.stack([img.crop(r) for r in chunk])
        out = np.asarray(fn(tiles, [img.origin(r) for r in chunk]), np.float32)
        img.add(chunk, out)
        if progress:
            progress(min(i + batch, len(refs)), len(refs))
    return img.crop_hr(img.result())
