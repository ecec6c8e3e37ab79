"""Render a `lpbf-edge bench --json` report as markdown (for docs/fast_inference.md).

    .venv/bin/python bench/report_md.py docs/bench.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def render(rep: dict) -> str:
    """Markdown: machine line, one row per SuperResolver path (reference first, the box's fast path second), the
    plate, then the targets."""
    m, s = rep["machine"], rep["setup"]
    out = [f"Machine: {m['cpu_count']} cores, torch {m['torch']}, matmul {m['matmul_gflops_fp32']:.0f} GFLOP/s fp32 / "
           f"{m['matmul_gflops_bf16']:.0f} bf16, load average {m['load_avg_1min_start']:.1f} at the start, "
           f"{m['load_avg_1min_end']:.1f} at the end. Model `{rep['model']['model_id']}`; {s['crops']} LR crops of "
           f"{s['crop']}x{s['crop']} ({s['tiles_per_crop']} overlapping model tiles each; {s['reference_crops']} for "
           f"the reference), {len(s['seeds'])} samples (seeds) per crop with their quality averaged; time per model "
           f"tile, best of {s['repeats']} passes.", "",
           "| path (all through SuperResolver) | s/tile | speed-up | PSNR dB | dPSNR vs ref | texture / ref | "
           "GFLOP/tile | floor fraction |", "|---|---|---|---|---|---|---|---|"]
    for r in [rep["reference"], rep["fast"], *rep["paths"]]:
        rel = ("1.0x", "", "") if r is rep["reference"] else (
            f"{r['speedup']:.1f}x", f"{r['psnr_delta_db']:+.2f}", f"{r['texture_ratio']:.2f}")
        out.append(f"| {r['name']} | {r['s_per_sample']:.4f} | {rel[0]} | {r['psnr_db']:.2f} | {rel[1]} | {rel[2]} | "
                   f"{r['flops_per_sample'] / 1e9:.3f} | {r['floor_fraction']:.3f} |")
    p = rep["plate"]
    out += ["", f"Plate {p['lr']}x{p['lr']} LR -> {p['sr']}x{p['sr']}: {p['tiles']} tiles in {p['s']:.1f} s "
            f"({p['s_per_tile'] * 1e3:.2f} ms/tile), peak RSS {p['peak_rss_mb']:.0f} MB, floor fraction "
            f"{p['floor_fraction']:.3f}.", "",
            "Settings: reference = " + rep["reference"]["settings"] + "; fast = " + rep["fast"]["settings"] + ".", "",
            "Targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in rep["targets"].items()) + "."]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
