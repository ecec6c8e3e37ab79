"""Fixed-size tile batches across whole images (and across samples), prepared ahead of inference in one thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from edge.sr.noise import PositionalNoise
from edge.sr.tiling import TiledImage

TileRef = tuple[int, tuple[int, int]]  # (image index, (tile row, tile column))


@dataclass
class TileBatch:
    """One backend call's worth of tiles: LR tiles padded to a static count, their noise, and where they go."""

    refs: list[TileRef]  # the real tiles, in order (the first len(refs) rows of every array below)
    images: list[TiledImage]  # the image each row of `lr` comes from (padding rows repeat the last real tile)
    lr: np.ndarray  # [T, 1, t, t] float32 in [-1, 1]
    noise: np.ndarray  # [n, K*T, C, t, t] float32; row k*T + j = sample k of tile j
    upsampled: np.ndarray | None = None  # [T, 1, t*s, t*s] bicubic of `lr` (noised-estimate starts only)


def static_count(n: int, full: int) -> int:
    """Tiles in one backend call: `full`, or for a last partial batch the smallest power of two >= n (at most full).

    Static-shape backends (OpenVINO, the fused loops, TensorRT) keep one compiled graph per count, so a run uses
    at most 1 + log2(full) distinct shapes and wastes less than half of its last call.
    """
    if n >= full:
        return full
    return min(full, 1 << max(0, int(n - 1).bit_length()))


def tile_batches(images: Sequence[TiledImage], noises: Sequence[PositionalNoise], tiles_per_batch: int,
                 samples: int, upsample: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[TileBatch]:
    """Batches of `tiles_per_batch` tiles in image order, row-major, each tile with the noise of its K samples."""
    refs = [(i, r) for i, img in enumerate(images) for r in img.refs]
    for start in range(0, len(refs), tiles_per_batch):
        chunk = refs[start:start + tiles_per_batch]
        padded = chunk + [chunk[-1]] * (static_count(len(chunk), tiles_per_batch) - len(chunk))
        lr = np.stack([images[i].crop(r) for i, r in padded])[:, None]
        rows = [noises[i].tile_noise(k, *images[i].origin(r)) for k in range(samples) for i, r in padded]
        noise = np.ascontiguousarray(np.stack(rows, axis=1))
        _release(images, noises, chunk)
        yield TileBatch(chunk, [images[i] for i, _ in padded], lr, noise, None if upsample is None else upsample(lr))


def _release(images: Sequence[TiledImage], noises: Sequence[PositionalNoise], chunk: list[TileRef]) -> None:
    """Drop noise bands no later batch needs: tile rows above this batch's first, and images before it."""
    first_image, first_ref = chunk[0]
    for i in range(first_image):
        noises[i].release_above(1 << 30)
    noises[first_image].release_above(images[first_image].origin(first_ref)[0])


def prefetched(items: Iterator, depth: int = 2) -> Iterator:
    """Iterate `items` produced by one background thread up to `depth` ahead (the tile preparation overlaps the
    backend call, which releases the GIL); an exception in the producer is raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry: tuple) -> bool:
        """Hand one entry to the consumer; False once the consumer has gone."""
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((done, exc))

    worker = threading.Thread(target=produce, name="sr-tile-prep", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
