"""Realistic synthetic laser traces with ground-truth layer ends, for tests, the sim printer and demos."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TraceSpec:
    """Knobs of a synthetic laser trace (times in seconds, levels in volts)."""

    rate_hz: float = 1000.0
    layer_s: tuple[float, float] = (1.5, 3.0)
    vector_s: tuple[float, float] = (0.005, 0.08)
    jump_s: tuple[float, float] = (0.0002, 0.003)
    pause_prob: float = 0.05
    pause_s: tuple[float, float] = (0.1, 0.5)
    recoat_s: tuple[float, float] = (2.0, 4.0)
    lead_in_s: float = 0.5
    power_v: tuple[float, float] = (2.6, 9.5)
    off_v: float = 0.05
    noise_v: float = 0.08
    spikes_per_recoat: tuple[int, int] = (0, 4)
    spike_s: tuple[float, float] = (0.0005, 0.003)
    spike_v: float = 6.0
    dropout_prob: float = 0.002


@dataclass(frozen=True)
class Trace:
    """Sampled laser signal and, per layer, the true time the laser turned off (continuous time)."""

    t: np.ndarray
    v: np.ndarray
    layer_ends: np.ndarray
    layer_starts: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_csv(self, path: str | Path) -> Path:
        """Write `time_s,laser_v` CSV with a header (the `bridge replay` input format)."""
        path = Path(path)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["time_s", "laser_v"])
            w.writerows(zip(np.char.mod("%.6f", self.t), np.char.mod("%.4f", self.v), strict=False))
        return path


def layer_intervals(rng: np.random.Generator, spec: TraceSpec, duration_s: float) -> list[tuple[float, float, float]]:
    """Scan vectors (start, end, volts) of one layer lasting about duration_s, with jumps and pauses."""
    vecs: list[tuple[float, float, float]] = []
    t = 0.0
    level = rng.uniform(*spec.power_v)
    while t < duration_s:
        length = rng.uniform(*spec.vector_s)
        if rng.random() < 0.1:  # contour / hatch switch: new power level
            level = rng.uniform(*spec.power_v)
        vecs.append((t, t + length, level))
        t += length
        t += rng.uniform(*spec.pause_s) if rng.random() < spec.pause_prob else rng.uniform(*spec.jump_s)
    return vecs


def generate_trace(n_layers: int, seed: int = 0, spec: TraceSpec | None = None) -> Trace:
    """A trace of n_layers layers: vectors, jumps, pauses, long recoat offs with spikes, noise, dropouts."""
    spec = spec or TraceSpec()
    rng = np.random.default_rng(seed)
    segments: list[tuple[float, float, float]] = []
    ends, starts = [], []
    t0 = spec.lead_in_s
    for _ in range(n_layers):
        vecs = layer_intervals(rng, spec, rng.uniform(*spec.layer_s))
        segments += [(t0 + a, t0 + b, lvl) for a, b, lvl in vecs]
        starts.append(t0 + vecs[0][0])
        end = t0 + vecs[-1][1]
        ends.append(end)
        recoat = rng.uniform(*spec.recoat_s)
        for _ in range(rng.integers(spec.spikes_per_recoat[0], spec.spikes_per_recoat[1] + 1)):
            ts = end + rng.uniform(0.05, recoat - 0.05)
            segments.append((ts, ts + rng.uniform(*spec.spike_s), spec.spike_v))
        t0 = end + recoat
    total = t0 + 0.2
    n = int(total * spec.rate_hz)
    t = np.arange(n) / spec.rate_hz
    v = np.full(n, spec.off_v)
    for a, b, lvl in segments:
        i0, i1 = int(np.ceil(a * spec.rate_hz)), int(np.ceil(b * spec.rate_hz))
        if i1 == i0 and i0 < n:  # sub-sample spike still reaches one sample
            i1 = i0 + 1
        v[i0:i1] = lvl
    on = v > 1.5
    drop = on & (rng.random(n) < spec.dropout_prob)
    drop[1:] &= ~drop[:-1]  # single-sample dropouts only
    v[drop] = spec.off_v
    v = v + rng.normal(0, spec.noise_v, n)
    return Trace(t=t, v=v, layer_ends=np.asarray(ends), layer_starts=np.asarray(starts))
