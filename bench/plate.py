"""Whole-plate benchmark: a synthetic LR plate through the box's SuperResolver, in a fresh process.

The same measurement `lpbf-edge bench` reports as `plate` (edge.bench_plate), for any plate size and config:

    .venv/bin/python bench/plate.py --lr-size 1024 --json runs/bench/plate.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Measure one plate and print / write the figures."""
    from edge.bench_cli import plate_measure
    from edge.config import load_config
    from edge.sr.config import SRConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr-size", type=int, default=1024, help="LR plate side in pixels")
    ap.add_argument("--model", type=Path, default=None, help="model bundle (default: models/default)")
    ap.add_argument("--config", type=Path, default=None, help="box config whose sr section to use (default: defaults)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    cfg = load_config(args.config).sr if args.config else SRConfig()
    if args.model is not None:
        cfg = cfg.model_copy(update={"model": str(args.model)})
    res = plate_measure(cfg, args.lr_size)
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
