"""Runs a sample source through the detector; restarts a dead source with backoff, numbering intact."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Optional

from edge.messages import LayerEvent
from firmware_bridge.detector import Fault, LayerDetector
from firmware_bridge.errors import SourceError
from firmware_bridge.sources import SampleSource

log = logging.getLogger(__name__)

# on_state(state, error, retry_in_s): "running" (first samples of a (re)opened source), "retrying" (failed,
# reopened after retry_in_s), "failed" (failed, not retried: the error is raised), "ended" (source finished)
StateCallback = Callable[[str, Optional[str], Optional[float]], None]


def run_bridge(
    make_source: Callable[[], SampleSource],
    detector: LayerDetector,
    max_restarts: int = 0,
    backoff_s: float = 1.0,
    on_fault: Callable[[Fault], None] | None = None,
    sleep: Callable[[float], object] = time.sleep,
    retry_on: tuple[type[BaseException], ...] = (SourceError,),
    max_backoff_s: float = 30.0,
    on_state: StateCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[LayerEvent]:
    """Yield events from a source; on an error in retry_on restart it (up to max_restarts, -1 = forever).

    The wait before a restart doubles from backoff_s up to max_backoff_s and starts over once a reopened
    source delivers samples. should_stop() is checked after every wait (pass sleep=stop_event.wait so a
    stop request also cuts the wait short).
    """
    restarts = failures = 0
    state = on_state or (lambda *_: None)
    while True:
        source = None
        try:
            source = make_source()
            started = False
            for t, v in source.chunks():
                if not started:
                    started, failures = True, 0
                    state("running", None, None)
                yield from detector.feed(t, v)
                _report(detector, on_fault)
            yield from detector.finish()
            _report(detector, on_fault)
            state("ended", None, None)
            return
        except retry_on as exc:
            name = getattr(source, "name", "source")
            yield from detector.reset_signal("source_restart")
            _report(detector, on_fault)
            if max_restarts >= 0 and restarts >= max_restarts:
                log.error("source %s failed: %s", name, exc)
                state("failed", str(exc), None)
                raise
            delay = min(backoff_s * 2**failures, max_backoff_s)
            log.warning("source %s failed: %s; reopening in %.1f s", name, exc, delay)
            state("retrying", str(exc), delay)
            sleep(delay)
            restarts += 1
            failures += 1
            if should_stop is not None and should_stop():
                return
        except Exception as exc:
            state("failed", f"{type(exc).__name__}: {exc}", None)
            raise
        finally:
            if source is not None:
                source.close()


def _report(detector: LayerDetector, on_fault: Callable[[Fault], None] | None) -> None:
    """Hand new faults to the callback (or the log)."""
    for fault in detector.pop_faults():
        if on_fault is not None:
            on_fault(fault)
        else:
            log.warning("laser signal fault: %s at %.3f s: %s", fault.kind, fault.t_s, fault.detail)
