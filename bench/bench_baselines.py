"""Baselines and ceilings the SR quality bench measures beside the model: the bundle's pixel CNN, the autoencoder."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=4)
def _pixel_session(path: str):
    """An ONNX Runtime session of a bundle's pixel_regression graph (cached per file)."""
    from edge.sr.runners import ort_session

    return ort_session(path)


def pixel_regression(bundle_dir: Path, lr: np.ndarray) -> np.ndarray:
    """The bundle's pixel-space regression CNN (the denoiser's estimate) on a whole LR crop: uint8 LR -> uint8 HR."""
    s = _pixel_session(str(bundle_dir / "pixel_regression.onnx"))
    y = s.run(None, {"lr": (lr.astype(np.float32) / 127.5 - 1)[None, None]})[0][0, 0]
    return np.clip(np.round((y + 1) * 127.5), 0, 255).astype(np.uint8)


def autoencode(model: Path, hr: np.ndarray, graph: str) -> np.ndarray:
    """HR -> HR latent -> HR through a bundle decoder, per 64x64 tile: the ceiling any sampler can reach."""
    from edge.sr.bundle import load_bundle
    from edge.sr.runners import OrtRunner

    runner = OrtRunner(load_bundle(model))
    if not runner.bundle.has_graph(graph):
        graph = "hr_decoder"
    t = 4 * runner.bundle.lr_patch
    x = (hr.astype(np.float32) / 127.5 - 1)
    tiles = np.stack([x[y:y + t, c:c + t] for y in range(0, hr.shape[0], t) for c in range(0, hr.shape[1], t)])[:, None]
    dec = runner.decode(runner.encode_hr(tiles), graph)[:, 0]
    n = hr.shape[1] // t
    out = np.vstack([np.hstack(list(dec[r * n:(r + 1) * n])) for r in range(hr.shape[0] // t)])
    return np.clip(np.round((out + 1) * 127.5), 0, 255).astype(np.uint8)
