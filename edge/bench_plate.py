"""A whole LR plate through the box's SuperResolver: time, time per tile and peak RSS (run in its own process).

    python -m edge.bench_plate '<sr config JSON>' LR_SIZE [SEED]   -> one JSON line on stdout
"""

from __future__ import annotations

import json
import sys
import time


def measure_plate(cfg, lr_size: int, seed: int = 0) -> dict:
    """Super-resolve a synthetic LR plate of side lr_size with SuperResolver.from_config(cfg); figures as a dict."""
    from edge.bench_measure import PeakRSS
    from edge.data.tiles import synthetic_plate
    from edge.sr.resolver import SuperResolver
    from edge.sr.tiling import tile_starts

    res = SuperResolver.from_config(cfg)
    plate = synthetic_plate(lr_size, seed, res.scale)
    res.upscale(plate[:128, :128])  # compiles the full-batch shapes
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        out = res.upscale(plate)
        secs = time.perf_counter() - t0
    tiles = len(tile_starts(plate.shape[0], res.tile, res.overlap)) * len(tile_starts(plate.shape[1], res.tile,
                                                                                     res.overlap))
    return {"lr": lr_size, "sr": int(out.sr.shape[0]), "s": secs, "tiles": tiles, "s_per_tile": secs / tiles,
            "peak_rss_mb": rss.peak_bytes / 2**20, "settings": res.describe(),
            "timings_s": {k: round(v, 3) for k, v in out.timings_s.items()}}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process: config JSON, plate side, seed -> one JSON line."""
    from edge.sr.config import SRConfig

    args = sys.argv[1:] if argv is None else argv
    cfg = SRConfig.model_validate_json(args[0])
    print(json.dumps(measure_plate(cfg, int(args[1]), int(args[2]) if len(args) > 2 else 0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
