"""Benchmark and distillation tiles: (LR, HR) crops of the shared real photographs (or sim layers), and LR plates."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np


def _gray_images(exclude: tuple[str, ...] = ()) -> list[np.ndarray]:
    """Real powder-bed photographs (uint8 gray) from $LPBF_REALDATA (default ../shared/realdata) but those named in
    `exclude`, or an empty list."""
    root = os.environ.get("LPBF_REALDATA", str(Path(__file__).resolve().parents[3] / "shared" / "realdata"))
    return _read_gray_images(root, tuple(exclude))


@functools.lru_cache(maxsize=1)
def _read_gray_images(folder: str, exclude: tuple[str, ...]) -> list[np.ndarray]:
    """The photographs of one folder, cached per (folder, exclude) so a changed $LPBF_REALDATA is read afresh."""
    import cv2

    root = Path(folder)
    out = []
    for p in sorted(root.glob("*/*")):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg") and p.name not in exclude:
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if img is not None:
                if "pblm" in p.parts:  # JPEG q~75: a 2x area downsample gives clean ground truth
                    img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
                out.append(img)
    return out


def _sim_images(n: int, size: int, seed: int) -> list[np.ndarray]:
    """Synthetic powder-bed layers from the simulator (used when no real photographs are present)."""
    from edge.sim.build import plan_build, render_layer

    plan = plan_build(n, seed)
    return [render_layer(plan, i + 1).hr for i in range(n)]


def bench_pairs(n: int, hr_tile: int, scale: int, seed: int = 0,
                exclude: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """n (LR, HR) tile pairs: random HR crops of real photographs (but those named in `exclude`, e.g. the held-out
    ones), LR by the paper's recipe (area /scale, blur k=3)."""
    from edge.data.degrade import paper_degrade

    imgs = _gray_images(tuple(exclude)) or _sim_images(4, 4 * hr_tile, seed)
    rng = np.random.default_rng(seed)
    hr = np.zeros((n, hr_tile, hr_tile), np.uint8)
    for i in range(n):
        img = imgs[i % len(imgs)]
        y, x = rng.integers(0, img.shape[0] - hr_tile), rng.integers(0, img.shape[1] - hr_tile)
        hr[i] = img[y:y + hr_tile, x:x + hr_tile]
    lr = np.stack([paper_degrade(h, n=scale, k=3) for h in hr])
    return lr, hr


def sim_build_pairs(builds: tuple[Path, ...], n: int, hr_tile: int, scale: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n (LR, HR) tile pairs from sim build folders: LR = each layer's registered webcam view (lr/), HR = the
    rendered layer (hr/) under it, so the simulator's own camera, not the paper recipe, makes the LR."""
    from edge.data.datasets import read_gray, sim_source

    layers = [(Path(b), k) for b in builds for k in sim_source(b).layers]  # raises DataError naming a bad folder
    rng = np.random.default_rng(seed)
    t = hr_tile // scale
    lr, hr = np.zeros((n, t, t), np.uint8), np.zeros((n, hr_tile, hr_tile), np.uint8)
    loaded: dict[tuple[Path, int], tuple[np.ndarray, np.ndarray]] = {}
    for i in range(n):
        b, k = layers[int(rng.integers(len(layers)))]
        if (b, k) not in loaded:
            lo, hi = read_gray(b / "lr" / f"{k:05d}.png"), read_gray(b / "hr" / f"{k:05d}.png")
            if hi.shape[0] < scale * lo.shape[0] or hi.shape[1] < scale * lo.shape[1]:
                raise ValueError(f"{b}: layer {k} HR {hi.shape} is not {scale}x its LR {lo.shape}")
            loaded[b, k] = lo, hi
        lo, hi = loaded[b, k]
        y, x = int(rng.integers(0, lo.shape[0] - t + 1)), int(rng.integers(0, lo.shape[1] - t + 1))
        lr[i], hr[i] = lo[y:y + t, x:x + t], hi[scale * y:scale * (y + t), scale * x:scale * (x + t)]
    return lr, hr


def synthetic_plate(lr_size: int, seed: int = 0, scale: int = 4) -> np.ndarray:
    """An LR plate of the given side: the largest photograph resized to `scale` x and degraded by the paper's recipe."""
    import cv2

    from edge.data.degrade import paper_degrade

    imgs = _gray_images() or _sim_images(1, 1024, seed)
    big = max(imgs, key=lambda a: a.size)
    hr = cv2.resize(big, (scale * lr_size, scale * lr_size), interpolation=cv2.INTER_CUBIC)
    return paper_degrade(hr, n=scale, k=3)
