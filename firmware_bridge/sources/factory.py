"""Build the configured sample source (a zero-argument factory, so the bridge can reopen it after a failure)."""

from __future__ import annotations

from collections.abc import Callable

from firmware_bridge.config import BridgeConfig
from firmware_bridge.sources import SampleSource

SourceFactory = Callable[[], SampleSource]


def source_factory(cfg: BridgeConfig, sim_source: SourceFactory | None = None) -> SourceFactory:
    """Factory for bridge.source: daq, replay (bridge.trace_file) or sim (sim_source, built by the caller).

    The bridge knows no simulated printer: whoever owns one (edge.app) passes its laser source as sim_source.
    """
    speed = cfg.speedup or None
    if cfg.source == "daq":
        from firmware_bridge.sources.daq import DaqSource

        return lambda: DaqSource(cfg.daq)
    if cfg.source == "replay":
        from firmware_bridge.sources.replay import TraceReplaySource

        if cfg.trace_file is None:
            raise ValueError("bridge.source is 'replay' but no trace is given (bridge.trace_file or --trace FILE.csv)")
        trace = cfg.trace_file
        return lambda: TraceReplaySource(trace, chunk=cfg.replay_chunk, speed=speed)
    if sim_source is None:
        raise ValueError("bridge.source is 'sim' but no simulated printer is given (bridge.sim_build_dir or "
                         "--sim-build DIR from `lpbf-edge sim build`)")
    return sim_source
