"""Per-op profile of the box's fast path on OpenVINO: time, memory traffic and convolution FLOP rate per op type.

Each graph the box's SuperResolver runs (condition encoder, fused denoiser step, decoder) is compiled exactly as the
runtime compiles it (edge.sr.runners.OvGraph, the box's precision and threads, the box's static batch) with
OpenVINO's per-node performance counters on; the best of `--runs` inferences is kept. Memory traffic is what each
executed node reads and writes (its input and output tensors at their runtime precision). A whole 256x256 layer
through SuperResolver gives the time outside the graphs (tile preparation, blending, grain cap).

    nice -n 0 .venv/bin/python bench/profile_fast.py --json docs/profile_fast.json
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

BYTES = {"f32": 4, "bf16": 2, "f16": 2, "i64": 8, "i32": 4, "u8": 1, "i8": 1, "boolean": 1}


def _type_bytes(t) -> int:
    """Bytes per element of an OpenVINO element type."""
    return BYTES.get(t.get_type_name(), 4)


def _numel(shape) -> int:
    """Elements of a static shape."""
    return int(np.prod([int(d) for d in shape])) if len(shape) else 1


def node_table(compiled) -> list[dict]:
    """Executed nodes of a compiled model: type, time (ms), bytes read and written, FLOPs of convolutions."""
    rows = []
    for n in compiled.get_runtime_model().get_ordered_ops():
        info = n.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("Const", "Constant", "Parameter", "Result"):
            continue
        raw = info["execTimeMcs"].astype(str)
        if not raw.replace(".", "").isdigit():  # 'not_executed': folded into a neighbour
            continue
        ms = float(raw) / 1e3
        out = sum(_numel(n.get_output_shape(i)) * _type_bytes(n.get_output_element_type(i))
                  for i in range(n.get_output_size()))
        ins = [n.input_value(i) for i in range(n.get_input_size())]
        read = sum(_numel(v.get_shape()) * _type_bytes(v.get_element_type()) for v in ins)
        flops = 0
        if kind == "Convolution" and len(ins) > 1:
            w = ins[1].get_shape()
            flops = 2 * _numel(n.get_output_shape(0)) * _numel(list(w)[1:])
        rows.append({"type": kind, "ms": ms, "read": read, "write": out, "flops": flops})
    return rows


def profile_graph(graph, shapes: dict[str, list[int]], runs: int) -> dict:
    """Per-type totals of the best of `runs` inferences of one graph at these input shapes."""
    compiled = graph.core.compile_model(_reshaped(graph, shapes), "CPU", {
        "INFERENCE_PRECISION_HINT": graph.precision, "INFERENCE_NUM_THREADS": graph.threads,
        "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "PERF_COUNT": True})
    req = compiled.create_infer_request()
    feeds = {k: np.random.default_rng(0).standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    if "coef" in feeds:
        feeds["coef"] = np.array([1, 0, 0, 1, 0, 0], np.float32)
    if "t" in feeds:
        feeds["t"] = np.full(shapes["t"], 99.0, np.float32)
    for _ in range(3):
        req.infer(feeds)
    best, best_wall = None, float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        req.infer(feeds)
        wall = time.perf_counter() - t0
        if wall < best_wall:
            best, best_wall = node_table(compiled), wall
    by = collections.defaultdict(lambda: {"ms": 0.0, "n": 0, "read_mb": 0.0, "write_mb": 0.0, "gflop": 0.0})
    for r in best:
        b = by[r["type"]]
        b["ms"] += r["ms"]
        b["n"] += 1
        b["read_mb"] += r["read"] / 2**20
        b["write_mb"] += r["write"] / 2**20
        b["gflop"] += r["flops"] / 1e9
    return {"wall_ms": best_wall * 1e3, "ops": dict(sorted(by.items(), key=lambda kv: -kv[1]["ms"]))}


def _reshaped(graph, shapes):
    """The graph's model reshaped to static shapes."""
    m = graph.model.clone()
    m.reshape(shapes)
    return m


def sweep(graphs: dict, batches: list[int], lat: list[int], runs: int) -> int:
    """Per-tile wall time (best of `runs`) of each graph at each batch size (the shapes scaled to the batch)."""
    for name, (g, shapes) in graphs.items():
        row = []
        for b in batches:
            scaled = {k: [b, *v[1:]] if len(v) > 1 or k == "t" else v for k, v in shapes.items()}
            scaled = {k: ([b] if k == "t" else v) for k, v in scaled.items()}
            row.append(f"{b}: {profile_graph(g, scaled, runs)['wall_ms'] / b:.3f}")
        print(f"{name} (ms per tile at batch): {', '.join(row)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Profile the fast path's graphs at the box's batch and one 256x256 layer; print and write JSON."""
    from edge.sr.config import SRConfig
    from edge.sr.resolver import SuperResolver

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model bundle (default: models/default)")
    ap.add_argument("--runs", type=int, default=10, help="inferences per graph, best kept")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sweep", type=int, nargs="*", default=None,
                    help="instead: per-tile wall time of each graph at these batch sizes")
    args = ap.parse_args(argv)
    res = SuperResolver.from_config(SRConfig(model=args.model))
    if res.runner.name != "openvino":
        print(f"the box's fast path runs on {res.runner.name} here; this profile reads OpenVINO's counters")
        return 1
    b, t, n = res.bundle, res.tile, res.batch
    c = b.latent_channels
    lat = [n, c, t, t]
    graphs = {"condition encoder": (res.runner.open(b.graph("lr_encoder")), {"lr": [n, 1, t, t]})}
    den = res._fused.graph if res._fused is not None else res.runner.open(b.graph("denoiser"))
    den_shapes = {"x": lat, "t": [n], "cond": lat}
    if res._fused is not None:
        den_shapes.update({"coef": [6], "noise": lat, "x0_prev": lat})
    graphs["denoiser step (fused)" if res._fused else "denoiser step"] = (den, den_shapes)
    graphs["decoder"] = (res.runner.open(b.graph(b.decoder_for("sample"))), {"latent": lat})
    if args.sweep:
        return sweep(graphs, args.sweep, lat, args.runs)
    out = {"settings": res.describe(), "batch": n, "graphs": {}}
    for name, (g, shapes) in graphs.items():
        p = profile_graph(g, shapes, args.runs)
        out["graphs"][name] = p
        print(f"{name}: {p['wall_ms'] / n:.3f} ms/tile")
        for kind, v in list(p["ops"].items())[:8]:
            rate = f", {v['gflop'] / v['ms'] * 1e3:.0f} GFLOP/s" if v["gflop"] else ""
            traffic = (v["read_mb"] + v["write_mb"]) / n
            print(f"   {kind:14s} {v['ms'] / n:7.3f} ms/tile  n={v['n']:3d}  traffic {traffic:6.2f} MB/tile{rate}")
    from edge.data.tiles import synthetic_plate

    layer = synthetic_plate(256, 0, res.scale)
    res.upscale(layer)
    t0 = time.perf_counter()
    r = res.upscale(layer)
    out["layer_256"] = {"s": time.perf_counter() - t0, "timings_s": {k: round(v, 4) for k, v in r.timings_s.items()}}
    print(f"256x256 layer: {out['layer_256']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
