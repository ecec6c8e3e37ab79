"""Speed of the box's default SR profile for two model bundles, side by side, in one run (interleaved passes).

Each bundle runs as the box runs it (SRConfig defaults -> edge.sr.profile -> SuperResolver.from_config) on the same
synthetic LR plate (edge.data.tiles.synthetic_plate); passes alternate between the bundles so a shared machine's load
falls on both alike; the best pass of each is kept. Prints a table and the ratio; --json writes it.

    .venv/bin/python bench/sr_speed_compare.py --model prev=models/default --model new=runs/bundle_gc --plate-lr 512
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def open_box_resolver(model: Path):
    """The SuperResolver the box would build for this bundle with its default SR config."""
    from edge.sr.config import SRConfig
    from edge.sr.resolver import SuperResolver

    return SuperResolver.from_config(SRConfig(model=str(model)))


def main(argv: list[str] | None = None) -> int:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="LABEL=BUNDLE (repeat, at least two)")
    ap.add_argument("--plate-lr", type=int, default=512, help="side of the LR plate in pixels")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per bundle (best kept)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    from tqdm import tqdm

    from edge.data.tiles import synthetic_plate

    models = dict(m.split("=", 1) for m in a.model)
    plate = synthetic_plate(a.plate_lr)
    res = {k: open_box_resolver(Path(v)) for k, v in models.items()}
    for r in res.values():  # warm-up: sessions, fused graphs, caches
        r.upscale(plate[:64, :64])
    best: dict[str, dict] = {k: {"s": float("inf")} for k in res}
    for _ in tqdm(range(a.repeats), desc="passes"):
        for k, r in res.items():
            t0 = time.perf_counter()
            out = r.upscale(plate)
            dt = time.perf_counter() - t0
            if dt < best[k]["s"]:
                best[k] = {"s": dt, **{f"{n}_s": round(v, 3) for n, v in out.timings_s.items()}}
    first = next(iter(res))
    print(f"LR plate {a.plate_lr}x{a.plate_lr}, box default profile, best of {a.repeats}")
    print("| bundle | model id | settings | s per plate | vs " + first + " |")
    print("|---|---|---|---|---|")
    for k, r in res.items():
        print(f"| {k} | {r.model_id} | {r.describe()} | {best[k]['s']:.2f} | {best[k]['s'] / best[first]['s']:.2f}x |")
    if a.json:
        a.json.write_text(json.dumps({"plate_lr": a.plate_lr, "repeats": a.repeats, "models": models,
                                      "results": {k: {"model_id": res[k].model_id, "describe": res[k].describe(),
                                                      **best[k]} for k in res}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
