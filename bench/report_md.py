"""Render a `lpbf-edge bench --json` report as a markdown table (for docs/fast_inference.md).

    .venv/bin/python bench/report_md.py docs/bench_quick.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def render(rep: dict) -> str:
    """Markdown: machine line, one row per path (reference first), the fast path marked, then the summary."""
    m, s = rep["machine"], rep["setup"]
    out = [f"Machine: {m['cpu_count']} cores, torch {m['torch']}, matmul {m['matmul_gflops_fp32']:.0f} GFLOP/s fp32"
           + (f" / {m['matmul_gflops_bf16']:.0f} bf16" if m.get("matmul_gflops_bf16") else "")
           + f", load average {m.get('load_avg_1min', float('nan')):.1f}. Model `{rep['model']['model_id']}`, "
           f"{s['tiles']} tiles ({s['reference_tiles']} for the reference), batch {s['batch']}.", "",
           "| path | s/sample | samples/s | speed-up | PSNR dB | dPSNR vs ref | texture dist. | texture / ref | peak RSS MB | GFLOP/sample | floor fraction |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in [rep["reference"], *rep["combos"]]:
        if r.get("error"):
            out.append(f"| {r['name']} | error: {r['error'][:80]} |||||||||| ")
            continue
        mark = " **(fast)**" if r["name"] == rep["fast"]["name"] else ""
        out.append(f"| {r['name']}{mark} | {r['s_per_sample']:.4f} | {r['samples_per_s']:.1f} | {r['speedup']:.1f}x | "
                   f"{r['psnr_db']:.2f} | {r['psnr_delta_db']:+.2f} | {r['texture_distance']:.4f} | {r['texture_ratio']:.2f} | "
                   f"{r['peak_rss_mb']:.0f} | {r['flops_per_sample'] / 1e9:.2f} | {r['floor_fraction']:.3f} |")
    f = rep["fast"]
    out += ["", f"Fast path `{f['name']}`: {rep['speedup']:.1f}x faster than the reference, PSNR {f['psnr_delta_db']:+.2f} dB, "
            f"texture distance x{f['texture_ratio']:.2f}; arithmetic floor {rep['floor']['s_per_sample'] * 1e3:.2f} ms/sample, "
            f"{rep['floor']['fraction_achieved']:.3f} of it achieved. Targets: {rep['targets']}."]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
