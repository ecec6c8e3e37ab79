"""Side-by-side summary of two bench/sr_quality.py JSON files (e.g. the previous and the new model), per source.

Prints a markdown table: per set, for the quality path and the fast path, the one-sample texture distance / bicubic's,
HF ratio, kurtosis log-ratio, PSNR - bicubic, the mean of 8's PSNR - bicubic (and - linear MMSE on sim), and the
number of issue-20 targets met.

    .venv/bin/python bench/sr_quality_compare.py --run prev=docs/sr_quality_box_prev.json \
        --run new=docs/sr_quality_box_gc.json

With `--img LABEL=DIR` (the runs' `--img-dir`, repeat) and `--img-out PREFIX` it also stacks each set's side-by-side
image of every run into one PNG per set, PREFIX_<set>.png, one captioned row per run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from sr_quality import targets  # noqa: E402
from sr_sets import label  # noqa: E402


def row(set_name: str, r: dict, one: str, mean: str) -> str:
    """One table row's cells for a (one sample, mean) pair of methods."""
    b, d, m = r["bicubic"], r[one], r[mean]
    met = sum(ok for _, ok, _ in targets(set_name, r, one, mean))
    ref = f" / {m['psnr'] - r['linear_mmse']['psnr']:+.2f}" if set_name == "sim" and "linear_mmse" in r else ""
    return (f"{d['texture'] / b['texture']:.2f} | {d['hf_ratio']:.2f} | {d['kurt_log_ratio']:.2f} | "
            f"{d['psnr'] - b['psnr']:+.2f} | {m['psnr'] - b['psnr']:+.2f}{ref} | {met} of 7")


def table(runs: dict[str, dict]) -> str:
    """The markdown table over every set present in all runs."""
    sets = [s for s in next(iter(runs.values())) if isinstance(runs[next(iter(runs))][s], dict)
            and all(s in r for r in runs.values())]
    lines = ["| set | model | path | texture / bicubic's | HF ratio | kurt log-ratio | 1 sample PSNR - bicubic | "
             "mean of 8 PSNR - bicubic (sim: / - linear MMSE) | targets met |", "|---|---|---|---|---|---|---|---|---|"]
    for s in sets:
        for run_name, res in runs.items():
            r = res[s]
            for path, one, mean in (("quality", "default", "mean8"), ("fast", "fast", "fast_mean8")):
                if one in r and mean in r:
                    lines.append(f"| {s} | {run_name} | {path} | {row(s, r, one, mean)} |")
    return "\n".join(lines)


def stack_images(dirs: dict[str, Path], prefix: Path) -> list[Path]:
    """Per set, the runs' side-by-side images (DIR/sr_<set>.png) stacked, each under a caption with its label."""
    sets = sorted({p.stem[len("sr_"):] for d in dirs.values() for p in d.glob("sr_*.png")})
    written = []
    for s in sets:
        rows = []
        for name, d in dirs.items():
            f = d / f"sr_{s}.png"
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) if f.is_file() else None
            if img is None:
                raise SystemExit(f"{f}: missing or unreadable side-by-side image of set {s!r} for run {name!r}")
            rows.append(label(img, f"model {name}"))
        width = max(r.shape[1] for r in rows)
        out = np.vstack([np.pad(r, ((0, 6), (0, width - r.shape[1])), constant_values=255) for r in rows])
        path = prefix.parent / f"{prefix.name}_{s}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), out)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, help="LABEL=JSON of bench/sr_quality.py (repeat)")
    ap.add_argument("--img", action="append", default=[], help="LABEL=DIR of a run's --img-dir (repeat)")
    ap.add_argument("--img-out", type=Path, default=None, help="prefix of the stacked PNGs, e.g. docs/img/sr_cmp")
    a = ap.parse_args(argv)
    runs = {}
    for x in a.run:
        label, path = x.split("=", 1)
        d = json.loads(Path(path).read_text())
        runs[label] = {k: v for k, v in d.items() if isinstance(v, dict) and "bicubic" in v}
    print(table(runs))
    if a.img and a.img_out is not None:
        for p in stack_images({k: Path(v) for k, v in (x.split("=", 1) for x in a.img)}, a.img_out):
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
