"""Build the configured sample source (a zero-argument factory, so the bridge can reopen it after a failure)."""

from __future__ import annotations

from collections.abc import Callable

from firmware_bridge.config import BridgeConfig
from firmware_bridge.sources import SampleSource


def source_factory(cfg: BridgeConfig, printer=None) -> Callable[[], SampleSource]:
    """Factory for bridge.source: daq, replay (bridge.trace_file) or sim (a SimPrinter, or bridge.sim_build_dir)."""
    speed = cfg.speedup or None
    if cfg.source == "daq":
        from firmware_bridge.sources.daq import DaqSource

        return lambda: DaqSource(cfg.daq)
    if cfg.source == "replay":
        from firmware_bridge.sources.replay import TraceReplaySource

        if cfg.trace_file is None:
            raise ValueError("bridge.source is 'replay' but bridge.trace_file is not set")
        return lambda: TraceReplaySource(cfg.trace_file, chunk=cfg.replay_chunk, speed=speed)
    if printer is None:
        if cfg.sim_build_dir is None:
            raise ValueError("bridge.source is 'sim' but neither a printer nor bridge.sim_build_dir is given")
        from edge.sim.printer import SimPrinter

        printer = SimPrinter(cfg.sim_build_dir, speedup=speed)
    return printer.laser_source
