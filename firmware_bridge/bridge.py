"""Runs a sample source through the detector; restarts a dead source with backoff, numbering intact."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from edge.messages import LayerEvent
from firmware_bridge.detector import Fault, LayerDetector
from firmware_bridge.errors import SourceError
from firmware_bridge.sources import SampleSource

log = logging.getLogger(__name__)


def run_bridge(
    make_source: Callable[[], SampleSource],
    detector: LayerDetector,
    max_restarts: int = 0,
    backoff_s: float = 1.0,
    on_fault: Callable[[Fault], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[LayerEvent]:
    """Yield events from a source; on SourceError restart it (up to max_restarts, -1 = forever)."""
    restarts = 0
    while True:
        source = make_source()
        try:
            for t, v in source.chunks():
                yield from detector.feed(t, v)
                _report(detector, on_fault)
            yield from detector.finish()
            _report(detector, on_fault)
            return
        except SourceError as exc:
            log.warning("source %s failed: %s", source.name, exc)
            yield from detector.reset_signal("source_restart")
            _report(detector, on_fault)
            if max_restarts >= 0 and restarts >= max_restarts:
                raise
            sleep(min(backoff_s * 2**restarts, 30.0))
            restarts += 1
        finally:
            source.close()


def _report(detector: LayerDetector, on_fault: Callable[[Fault], None] | None) -> None:
    """Hand new faults to the callback (or the log)."""
    for fault in detector.pop_faults():
        if on_fault is not None:
            on_fault(fault)
        else:
            log.warning("laser signal fault: %s at %.3f s: %s", fault.kind, fault.t_s, fault.detail)
