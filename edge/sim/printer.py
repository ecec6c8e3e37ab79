"""Simulated printer: a sim build's laser signal in (sped-up) real time, and cameras serving its frames per layer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.messages import Frame, LayerEvent
from firmware_bridge.traces import TraceSpec, layer_intervals


class _LayerImages:
    """Reads a sim build's layer images from disk, or renders them through the sim API when given a plan."""

    def __init__(self, build_dir: str | Path | None = None, plan=None):
        if (build_dir is None) == (plan is None):
            raise ValueError("give either a sim build folder or a sim plan")
        self.dir = Path(build_dir) if build_dir is not None else None
        self.plan = plan
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()
        if self.dir is not None:
            files = sorted((self.dir / "webcam").glob("*.png"))
            if not (self.dir / "build.json").exists() or not files:
                raise ValueError(f"{self.dir}: not a sim build (need build.json and webcam/*.png)")
            self.layers = len(files)
        else:
            self.layers = plan.layers

    def get(self, layer: int) -> dict[str, np.ndarray]:
        """Images of one layer: webcam, hr, mask (uint8/uint16 arrays)."""
        with self._lock:
            if layer not in self._cache:
                if self.dir is not None:
                    name = f"{layer:05d}.png"
                    imgs = {}
                    for key, sub in (("webcam", "webcam"), ("hr", "hr"), ("mask", "masks")):
                        img = cv2.imread(str(self.dir / sub / name), cv2.IMREAD_UNCHANGED)
                        if img is None:
                            raise FileNotFoundError(f"{self.dir / sub / name}: missing or unreadable")
                        imgs[key] = img
                else:
                    from edge.sim.build import render_layer

                    li = render_layer(self.plan, layer)
                    imgs = {"webcam": li.webcam, "hr": li.hr, "mask": li.mask}
                self._cache = {k: v for k, v in self._cache.items() if k >= layer - 1}  # keep memory bounded
                self._cache[layer] = imgs
            return self._cache[layer]


class SimPrinter:
    """A printer driven by a sim build: exposure time follows each layer's fused area, then a long recoat off."""

    def __init__(
        self,
        build_dir: str | Path | None = None,
        plan=None,
        speedup: float | None = 1.0,
        rate_hz: float = 1000.0,
        seed: int = 0,
        base_layer_s: float = 1.0,
        s_per_area: float = 20.0,
        recoat_s: float = 10.0,
        spec: TraceSpec | None = None,
    ):
        self.images = _LayerImages(build_dir, plan)
        self.layers = self.images.layers
        self.speedup = speedup
        self.spec = spec or TraceSpec(rate_hz=rate_hz)
        self.rate_hz = rate_hz
        self.seed = seed
        self.base_layer_s, self.s_per_area, self.recoat_s = base_layer_s, s_per_area, recoat_s
        self.layer_ends: list[float] = []
        self.completed_layer = 0
        self._segments, self._total_s = self._plan_signal()

    def _plan_signal(self) -> tuple[list[tuple[float, float, float]], float]:
        """Scan vectors and recoat spikes on one timeline; true layer ends recorded in layer_ends."""
        rng = np.random.default_rng(self.seed)
        segs, t0 = [], self.spec.lead_in_s
        for layer in range(1, self.layers + 1):
            area = float((self.images.get(layer)["mask"] > 0).mean()) if self.s_per_area else 0.0
            vecs = layer_intervals(rng, self.spec, self.base_layer_s + self.s_per_area * area)
            segs += [(t0 + a, t0 + b, v) for a, b, v in vecs]
            end = t0 + vecs[-1][1]
            self.layer_ends.append(end)
            lo, hi = self.spec.spikes_per_recoat
            for _ in range(int(rng.integers(lo, hi + 1))):  # electrical spikes while the recoater moves
                ts = end + rng.uniform(0.05, max(self.recoat_s - 0.05, 0.06))
                segs.append((ts, ts + rng.uniform(*self.spec.spike_s), self.spec.spike_v))
            t0 = end + self.recoat_s
        segs.sort()
        return segs, t0

    @property
    def duration_s(self) -> float:
        """Printer time the whole build takes."""
        return self._total_s

    def laser_source(self, chunk_s: float = 0.05, noise_v: float | None = None) -> SimLaserSource:
        """The laser/galvo signal as a bridge sample source."""
        return SimLaserSource(self, chunk_s, self.spec.noise_v if noise_v is None else noise_v)

    def camera(self, name: str = "webcam") -> SimCamera:
        """A camera serving this printer's frames: 'webcam' (perspective view) or 'basler' (HR plate)."""
        if name not in ("webcam", "basler"):
            raise ValueError(f"sim printer cameras are 'webcam' and 'basler', not {name!r}")
        return SimCamera(self, name)


class SimLaserSource:
    """Sample source over a SimPrinter timeline, paced at `speedup` x real time (None: as fast as possible)."""

    def __init__(self, printer: SimPrinter, chunk_s: float, noise_v: float):
        self.printer, self.chunk_s, self.noise_v = printer, chunk_s, noise_v
        self.name = "sim-printer"
        self._closed = False

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (t, v) chunks in printer time; updates the printer's completed layer as time passes."""
        p, rate = self.printer, self.printer.rate_hz
        rng = np.random.default_rng(p.seed + 1)
        segs = p._segments
        n_total = int(p.duration_s * rate)
        step = max(1, int(self.chunk_s * rate))
        k = 0  # first segment that may still overlap the current chunk
        wall0 = time.monotonic()
        for i0 in range(0, n_total, step):
            if self._closed:
                return
            t = np.arange(i0, min(i0 + step, n_total)) / rate
            v = np.full(t.size, p.spec.off_v)
            while k < len(segs) and segs[k][1] < t[0]:
                k += 1
            j = k
            while j < len(segs) and segs[j][0] <= t[-1]:
                a, b, lvl = segs[j]
                v[(t >= a) & (t < b)] = lvl
                j += 1
            v += rng.normal(0, self.noise_v, t.size)
            if p.speedup:
                delay = t[-1] / p.speedup - (time.monotonic() - wall0)
                if delay > 0:
                    time.sleep(delay)
            p.completed_layer = int(np.searchsorted(p.layer_ends, t[-1], side="right"))
            yield t, v

    def close(self) -> None:
        """Stop producing samples."""
        self._closed = True


class SimCamera:
    """Camera over a SimPrinter: serves the frame of the selected event's layer (else the last completed layer)."""

    def __init__(self, printer: SimPrinter, name: str):
        self.printer, self.name = printer, name
        self._event: LayerEvent | None = None
        self._open = False

    def open(self) -> None:
        """Nothing to connect."""
        self._open = True

    def select(self, event: LayerEvent) -> None:
        """Serve this event's layer on the next grab."""
        self._event = event

    def grab(self, timeout_s: float) -> Frame:
        """The layer's webcam view or HR plate image (a recoat frame is not rendered by the sim: meta says so)."""
        from edge.capture.base import CaptureError

        if not self._open:
            raise CaptureError(f"{self.name}: grab() before open()")
        layer = self._event.layer if self._event is not None else max(1, self.printer.completed_layer)
        if not 1 <= layer <= self.printer.layers:
            raise CaptureError(f"{self.name}: the simulated build has no layer {layer} (1..{self.printer.layers})")
        img = self.printer.images.get(layer)["webcam" if self.name == "webcam" else "hr"]
        meta = {"layer": layer, "sim": True}
        if self._event is not None and self._event.event == "recoat_done":
            meta["recoat_view"] = "not simulated: the exposed layer's image is served"
        return Frame(camera=self.name, image=img, t_capture_s=time.time(), bit_depth=8, meta=meta)

    def close(self) -> None:
        """Nothing to release."""
        self._open = False
