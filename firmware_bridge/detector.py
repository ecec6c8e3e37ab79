"""Pure, incremental laser-signal edge detector: sample chunks in, LayerEvents out.

All state lives in the object, so feeding a trace in any chunking gives the same events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from firmware_bridge.config import BridgeConfig
from firmware_bridge.errors import BadSampleError
from lpbf_common.messages import LayerEvent


@dataclass(frozen=True)
class Fault:
    """A signal fault the detector noticed: stuck_high, stuck_low, sample_gap, bad_sample, source_restart."""

    kind: str
    t_s: float
    detail: str

    def to_json_dict(self) -> dict:
        """Plain dict for JSON-lines output."""
        return {"fault": self.kind, "t_s": round(self.t_s, 6), "detail": self.detail}


class LayerDetector:
    """Hysteresis + timing state machine that turns (t, volts) samples into layer events."""

    def __init__(self, cfg: BridgeConfig | None = None, source: str = "unknown", start_layer: int | None = None):
        self.cfg = cfg or BridgeConfig()
        self.source = source
        self.next_layer = start_layer if start_layer is not None else self.cfg.start_layer
        self._faults: list[Fault] = []
        self._pending_recoat: tuple[int, float, float, tuple[str, ...]] | None = None
        self._gaps: list[float] = []  # recent layer end -> next layer start gaps (s)
        self._last_end: float | None = None
        self._recoater_on = False
        self._reset_signal_state()

    # ---- public API -------------------------------------------------------------------------

    def feed(self, t: np.ndarray, v: np.ndarray, recoater: np.ndarray | None = None) -> list[LayerEvent]:
        """Process one chunk of samples (times in s, laser volts, optional recoater-motion volts); return the events
        it completed."""
        t = np.asarray(t, dtype=np.float64).ravel()
        v = np.asarray(v, dtype=np.float64).ravel()
        if t.shape != v.shape:
            raise ValueError(f"time and voltage chunks differ in length ({t.size} vs {v.size})")
        rc = None if recoater is None else np.asarray(recoater, dtype=np.float64).ravel()
        if rc is not None and rc.shape != t.shape:
            raise ValueError(f"time and recoater chunks differ in length ({t.size} vs {rc.size})")
        out: list[LayerEvent] = []
        on_thr, off_thr = self.cfg.on_threshold_v, self.cfg.off_threshold_v
        for i, (ti, vi) in enumerate(zip(t.tolist(), v.tolist(), strict=False)):
            if not self._accept(ti, vi):
                continue
            if rc is not None:
                self._recoater_sample(ti, float(rc[i]), out)
            if vi > on_thr:
                self._level = True
            elif vi < off_thr:
                self._level = False
            self._filter(ti, self._level, out)
        return out

    def finish(self) -> list[LayerEvent]:
        """End of stream: resolve a held sample and close a layer whose end is pending (flagged)."""
        out: list[LayerEvent] = []
        if self._held is not None:
            held, self._held = self._held, None
            self._step(held, False, out)
        if self._active:
            t_end = self._prev_t if self._prev_t is not None else 0.0
            t_off = self._off_since if self._off_since is not None else t_end
            self._complete(t_off, t_end, ("end_of_stream",), out)
        return out

    def reset_signal(self, reason: str = "source_restart") -> list[LayerEvent]:
        """A source restarted (new time base): close an open layer (flagged), keep the numbering."""
        out: list[LayerEvent] = []
        if self._held is not None:
            held, self._held = self._held, None
            self._step(held, False, out)
        t_end = self._prev_t if self._prev_t is not None else 0.0
        self._faults.append(Fault(reason, t_end, "signal state reset; layer numbering continues"))
        if self._active:
            t_off = self._off_since if self._off_since is not None else t_end
            self._complete(t_off, t_end, (reason,), out)
        if self._pending_recoat is not None:
            layer, t_off, _, flags = self._pending_recoat
            self._pending_recoat = None
            out.append(self._event("recoat_done", layer, t_off, t_end, flags + (reason,)))
        self._reset_signal_state()
        return out

    def pop_faults(self) -> list[Fault]:
        """Faults recorded since the last call."""
        faults, self._faults = self._faults, []
        return faults

    @property
    def in_layer(self) -> bool:
        """True while a layer has started and has not been completed."""
        return self._active

    # ---- internals --------------------------------------------------------------------------

    def _reset_signal_state(self) -> None:
        """Forget everything about the signal itself (not the layer counter)."""
        self._prev_t: float | None = None
        self._first_t: float | None = None
        self._level = False
        self._held: float | None = None  # time of an off sample right after an on sample
        self._filtered_on = False
        self._active = False
        self._cum_on = 0.0
        self._last_on_t: float | None = None
        self._off_since: float | None = None
        self._burst_start: float | None = None
        self._run_start: float | None = None
        self._stuck_high = False
        self._stuck_low = False
        self._flags: set[str] = set()
        self._spikes = 0

    def _accept(self, t: float, v: float) -> bool:
        """Check one sample: NaN, non-increasing time and gaps become faults (skip) or errors."""
        bad = None
        if not (math.isfinite(t) and math.isfinite(v)):
            bad = f"non-finite sample (t={t}, v={v})"
        elif self._prev_t is not None and t <= self._prev_t:
            bad = f"time not increasing ({t} after {self._prev_t})"
        if bad is not None:
            if self.cfg.bad_samples == "error":
                raise BadSampleError(bad)
            self._faults.append(Fault("bad_sample", self._prev_t if self._prev_t is not None else 0.0, bad))
            self._flags.add("skipped_samples")
            return False
        if self._prev_t is not None and t - self._prev_t > self.cfg.max_sample_gap_s:
            self._faults.append(Fault("sample_gap", t, f"no samples for {t - self._prev_t:.3f} s"))
            self._flags.add("sample_gap")
        if self._first_t is None:
            self._first_t = t
        return True

    def _filter(self, t: float, on: bool, out: list[LayerEvent]) -> None:
        """Drop single-sample dropouts: an off sample between two on samples counts as on."""
        if self._held is not None:
            held, self._held = self._held, None
            self._step(held, on, out)
            self._step(t, on, out)
        elif not on and self._filtered_on:
            self._held = t
        else:
            self._step(t, on, out)

    def _step(self, t: float, on: bool, out: list[LayerEvent]) -> None:
        """Advance the state machine by one filtered sample."""
        cfg = self.cfg
        dt = 0.0 if self._prev_t is None else min(t - self._prev_t, cfg.max_sample_gap_s)
        self._prev_t = t
        self._filtered_on = on
        if on:
            self._on_sample(t, dt, out)
        else:
            self._off_sample(t, out)
        self._check_timers(t, on, out)

    def _on_sample(self, t: float, dt: float, out: list[LayerEvent]) -> None:
        """An on sample: accumulate start time, or continue / resume the current layer."""
        cfg = self.cfg
        if self._run_start is None:
            self._run_start = t
        self._stuck_low = False
        if not self._active:
            self._cum_on += dt if self._last_on_t is not None and self._off_since is None else 0.0
            self._cum_on = max(self._cum_on, 1e-12)
            self._last_on_t, self._off_since = t, None
            if self._cum_on >= cfg.min_on_s:
                self._start_layer(t, out)
            return
        if self._off_since is None:
            self._last_on_t = t
            return
        if self._burst_start is None:
            self._burst_start = t
        if t - self._burst_start >= cfg.spike_max_s or self._burst_start - self._off_since < cfg.spike_gap_s:
            self._off_since, self._burst_start, self._last_on_t = None, None, t

    def _off_sample(self, t: float, out: list[LayerEvent]) -> None:
        """An off sample: start or extend the off period; end the layer after min_off_s."""
        cfg = self.cfg
        self._run_start = None
        if self._off_since is None:
            self._off_since = t
        if self._burst_start is not None:
            self._burst_start = None
            self._spikes += 1
        if self._active:
            if t - self._off_since >= cfg.min_off_s:
                flags = ("spikes_ignored",) if self._spikes else ()
                self._complete(self._off_since, t, flags, out)
        elif self._cum_on > 0 and t - self._off_since >= cfg.start_reset_s:
            self._cum_on = 0.0

    def _start_layer(self, t: float, out: list[LayerEvent]) -> None:
        """Enough on time: a layer has started (close a recoat wait still open, learn the gap)."""
        self._active = True
        self._spikes = 0
        if self._last_end is not None:
            self._gaps = (self._gaps + [t - self._last_end])[-self.cfg.recoat_gap_layers:]
            self._last_end = None
        if self._pending_recoat is not None:
            layer, t_off, _, flags = self._pending_recoat
            self._pending_recoat = None
            out.append(self._event("recoat_done", layer, t_off, t, flags + ("next_layer_started",)))

    def _complete(self, t_off: float, t_det: float, flags: tuple[str, ...], out: list[LayerEvent]) -> None:
        """Emit layer_complete for the current layer and arm recoat_done."""
        flags = tuple(sorted(set(flags) | self._flags))
        layer = self.next_layer
        self.next_layer += 1
        out.append(self._event("layer_complete", layer, t_off, t_det, flags))
        self._flags = set()
        self._active = False
        self._cum_on = 0.0
        self._burst_start = None
        self._spikes = 0
        self._off_since = t_off
        self._last_end = t_off
        if self.cfg.emit_recoat:
            delay, extra = self.recoat_delay()
            due = math.inf if self.cfg.recoat_source == "signal" else t_off + delay
            self._pending_recoat = (layer, t_off, due, flags + extra)
            self._check_recoat(t_det, out)

    def recoat_delay(self) -> tuple[float, tuple[str, ...]]:
        """Delay after a layer end for recoat_done: the configured one, shortened to recoat_gap_fraction of the
        shortest recent gap to the next layer start (so the frame is taken before the laser is back)."""
        delay = self.cfg.recoat_delay_s
        if self._gaps:
            fit = self.cfg.recoat_gap_fraction * min(self._gaps)
            if fit < delay:
                return fit, ("delay_adapted",)
        return delay, ()

    def _recoater_sample(self, t: float, v: float, out: list[LayerEvent]) -> None:
        """Recoater-motion channel: blade on then off after a layer end arms recoat_done after recoat_settle_s."""
        if v > self.cfg.recoater_on_v:
            self._recoater_on = True
        elif v < self.cfg.recoater_off_v and self._recoater_on:
            self._recoater_on = False
            if self._pending_recoat is not None and self.cfg.recoat_source == "signal":
                layer, t_off, _, flags = self._pending_recoat
                self._pending_recoat = (layer, t_off, t + self.cfg.recoat_settle_s, flags + ("recoater_signal",))

    def _check_timers(self, t: float, on: bool, out: list[LayerEvent]) -> None:
        """Recoat delay, stuck-high and stuck-low timeouts."""
        self._check_recoat(t, out)
        cfg = self.cfg
        if on and self._run_start is not None and not self._stuck_high and t - self._run_start >= cfg.stuck_high_s:
            self._stuck_high = True
            self._flags.add("stuck_high")
            self._faults.append(Fault("stuck_high", t,
                                      f"laser signal on for {t - self._run_start:.1f} s without a break"))
        if not on:
            self._stuck_high = False
            since = self._last_on_t if self._last_on_t is not None else self._first_t
            if since is not None and not self._stuck_low and t - since >= cfg.stuck_low_s:
                self._stuck_low = True
                self._faults.append(Fault("stuck_low", t, f"no laser-on sample for {t - since:.1f} s"))

    def _check_recoat(self, t: float, out: list[LayerEvent]) -> None:
        """Emit recoat_done once its delay has passed."""
        if self._pending_recoat is not None and t >= self._pending_recoat[2]:
            layer, t_off, _, flags = self._pending_recoat
            self._pending_recoat = None
            out.append(self._event("recoat_done", layer, t_off, t, flags))

    def _event(self, kind: str, layer: int, t_off: float, t_det: float, flags: tuple[str, ...]) -> LayerEvent:
        """Build a LayerEvent from this detector."""
        return LayerEvent(event=kind, layer=layer, t_off_s=t_off, t_detected_s=t_det, source=self.source,
                          flags=tuple(flags))


def detect(t: np.ndarray, v: np.ndarray, cfg: BridgeConfig | None = None, source: str = "array") -> list[LayerEvent]:
    """Run a fresh detector over a whole trace (including end-of-stream handling)."""
    det = LayerDetector(cfg, source=source)
    return det.feed(t, v) + det.finish()
