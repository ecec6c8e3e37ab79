"""Detector accuracy against ground truth on generated traces (`lpbf-edge bridge accuracy`)."""

from __future__ import annotations

import numpy as np

from firmware_bridge.detector import detect
from firmware_bridge.traces import TraceSpec, generate_trace

HARSH = TraceSpec(noise_v=0.2, dropout_prob=0.02, spikes_per_recoat=(5, 10), pause_prob=0.15)


def detector_accuracy(layers: int, seeds: int, harsh: bool = False) -> dict:
    """Traces with a wrong layer count, and the t_off_s error (ms) of the others, over seeds 0..seeds-1."""
    spec = HARSH if harsh else TraceSpec()
    errs, count_bad = [], 0
    for seed in range(seeds):
        tr = generate_trace(layers, seed=seed, spec=spec)
        done = [e for e in detect(tr.t, tr.v) if e.event == "layer_complete"]
        if len(done) != layers:
            count_bad += 1
            continue
        errs.append(np.abs(np.array([e.t_off_s for e in done]) - tr.layer_ends))
    e = np.concatenate(errs) * 1000 if errs else np.zeros(1)
    return {"traces": seeds, "layers_per_trace": layers, "harsh": harsh, "traces_with_wrong_count": count_bad,
            "t_off_err_ms_mean": round(float(e.mean()), 3), "t_off_err_ms_p99": round(float(np.percentile(e, 99)), 3),
            "t_off_err_ms_max": round(float(e.max()), 3)}
