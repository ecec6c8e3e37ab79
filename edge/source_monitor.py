"""Laser-signal source state for health: running / retrying / failed / ended, and layer events against their pace."""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque


class SourceMonitor:
    """Fed by the bridge (state changes) and the service (events); snapshot() is what health reports."""

    def __init__(self, expected_layer_s: float | None = None, window: int = 8):
        self.expected_layer_s = expected_layer_s
        self._lock = threading.Lock()
        self._state, self._since = "starting", time.time()
        self._error: str | None = None
        self._retry_in: float | None = None
        self._restarts = 0
        self._events = 0
        self._last_event: float | None = None
        self._ends: deque[float] = deque(maxlen=window + 1)

    def update(self, state: str, error: str | None = None, retry_in_s: float | None = None) -> None:
        """A state change of the source (firmware_bridge.bridge.run_bridge's on_state)."""
        with self._lock:
            if state == "retrying":
                self._restarts += 1
            if state != self._state:
                self._since = time.time()
            self._state, self._retry_in = state, retry_in_s
            if error is not None:
                self._error = error

    def event(self, kind: str) -> None:
        """An event reached the service; layer ends set the pace."""
        now = time.time()
        with self._lock:
            self._events += 1
            self._last_event = now
            if kind == "layer_complete":
                self._ends.append(now)
            if self._state == "starting":
                self._state, self._since = "running", now

    def expected(self) -> tuple[float | None, str]:
        """(expected seconds between layer ends, 'config' | 'learned' | 'unknown')."""
        if self.expected_layer_s is not None:
            return self.expected_layer_s, "config"
        with self._lock:
            ends = list(self._ends)
        if len(ends) < 3:
            return None, "unknown"
        return statistics.median(b - a for a, b in zip(ends, ends[1:], strict=False)), "learned"

    def snapshot(self, now: float | None = None) -> dict:
        """State, error, restarts, events and seconds since the last one against the expected layer time."""
        now = time.time() if now is None else now
        expected, basis = self.expected()
        with self._lock:
            since_event = None if self._last_event is None else round(now - self._last_event, 1)
            return {"state": self._state, "alive": self._state in ("starting", "running"),
                    "state_since_unix": self._since, "last_error": self._error, "retry_in_s": self._retry_in,
                    "restarts": self._restarts, "events": self._events, "last_event_unix": self._last_event,
                    "seconds_since_event": since_event,
                    "expected_layer_s": None if expected is None else round(expected, 2), "expected_from": basis}
