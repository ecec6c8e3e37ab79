"""Whole-plate benchmark: a large LR plate super-resolved tile by tile with flat memory.

Tiles are processed one tile-row band at a time; each band is blended (linear overlap ramps) into a
small float accumulator and its finished rows are flushed to a uint8 memmap on disk, so peak RSS
depends on the tile and band size, not on the plate size.

    nice -n 0 .venv/bin/python bench/plate.py --lr-size 1024 --json runs/bench/plate.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

UpscaleBatch = Callable[[np.ndarray], np.ndarray]  # [N, h, w] uint8 -> [N, h*s, w*s] float/uint8


def ramp(n: int, overlap: int) -> np.ndarray:
    """1-D blend weight: linear ramps of length `overlap` at both ends, 1 in the middle (never 0)."""
    w = np.ones(n, np.float32)
    if overlap > 0:
        r = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        w[:overlap], w[n - overlap:] = np.minimum(w[:overlap], r), np.minimum(w[n - overlap:], r[::-1])
    return w


def starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, size) with at least `overlap` pixels shared between neighbours."""
    if size <= tile:
        return [0]
    step = tile - overlap
    out = list(range(0, size - tile, step))
    return out + [size - tile]


def super_resolve_plate(lr: np.ndarray, upscale: UpscaleBatch, tile: int, overlap: int, scale: int, out: np.ndarray,
                        batch: int = 8, progress: bool = True) -> np.ndarray:
    """Write the super-resolved plate into `out` ([H*s, W*s] uint8, e.g. a memmap), one band of tiles at a time."""
    H, W = lr.shape
    if H < tile or W < tile:
        raise ValueError(f"plate {lr.shape} is smaller than one tile ({tile})")
    if out.shape != (H * scale, W * scale):
        raise ValueError(f"output must be {(H * scale, W * scale)}, got {out.shape}")
    ys, xs = starts(H, tile, overlap), starts(W, tile, overlap)
    th, ov = tile * scale, overlap * scale
    wtile = np.outer(ramp(th, ov), ramp(th, ov))
    # band accumulator covers rows [band_top, band_top + th) plus the carried overlap from the band above
    acc = np.zeros((2 * th, W * scale), np.float32)
    wacc = np.zeros_like(acc)
    top = 0  # output row of acc[0]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ys) * len(xs), desc="plate tiles", unit="tile")
    for yi, y in enumerate(ys):
        Y = y * scale
        tiles = np.stack([lr[y:y + tile, x:x + tile] for x in xs])
        srs = np.concatenate([np.asarray(upscale(tiles[i:i + batch]), np.float32) for i in range(0, len(xs), batch)])
        r0 = Y - top
        for x, sr in zip(xs, srs):
            X = x * scale
            acc[r0:r0 + th, X:X + th] += sr * wtile
            wacc[r0:r0 + th, X:X + th] += wtile
        next_Y = ys[yi + 1] * scale if yi + 1 < len(ys) else H * scale
        done = next_Y - top  # rows above the next band are final
        out[top:top + done] = np.clip(np.round(acc[:done] / wacc[:done]), 0, 255).astype(np.uint8)
        keep = acc.shape[0] - done
        acc[:keep], wacc[:keep] = acc[done:].copy(), wacc[done:].copy()
        acc[keep:], wacc[keep:] = 0, 0
        top = next_Y
        if bar is not None:
            bar.update(len(xs))
    if bar is not None:
        bar.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the plate benchmark on the default (or given) model bundle and print/write the figures."""
    from edge.bench_cli import PeakRSS, default_fast_upscaler, floor_seconds, matmul_rate, synthetic_plate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr-size", type=int, default=1024, help="LR plate side in pixels")
    ap.add_argument("--model", type=Path, default=None, help="model bundle (default: models/default)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/plate_sr.u8"), help="memmap output file")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    ap.add_argument("--batch", type=int, default=8, help="tiles per model call")
    ap.add_argument("--fast", default=None, help="bench combo name to use (default: the bench's fast path)")
    args = ap.parse_args(argv)

    up = default_fast_upscaler(args.model, args.fast)
    lr = synthetic_plate(args.lr_size, seed=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    s = up.scale
    out = np.lib.format.open_memmap(args.out, mode="w+", dtype=np.uint8, shape=(args.lr_size * s, args.lr_size * s))
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        super_resolve_plate(lr, up, up.tile, up.overlap, s, out, batch=args.batch)
        out.flush()
        secs = time.perf_counter() - t0
    n_tiles = len(starts(args.lr_size, up.tile, up.overlap)) ** 2
    rate = matmul_rate("bfloat16") if "bf16" in up.description else None  # a bf16 path's floor is at the bf16 rate
    floor = floor_seconds(up.flops_per_tile * n_tiles, rate) if up.flops_per_tile else None
    res = {"lr_size": args.lr_size, "sr_size": args.lr_size * s, "tiles": n_tiles, "seconds": secs,
           "s_per_tile": secs / n_tiles, "peak_rss_mb": rss.peak_bytes / 2**20, "floor_s": floor,
           "floor_fraction": floor / secs if floor else None, "path": up.description, "tile": up.tile,
           "overlap": up.overlap, "batch": args.batch}
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
