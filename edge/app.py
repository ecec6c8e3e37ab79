"""The composition root: the box's stages, laser-signal source and event source, built from one Config.

`lpbf-edge run` (edge.service_cli), `lpbf-edge demo` (edge.demo), `lpbf-edge capture paired` and
bench/overhead.py build the box here, so the laser source is picked, the calibration loaded and the model bundle
resolved in one place each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from edge.config import Config
from edge.messages import LayerEvent, SRLayer
from edge.pipeline import Stages
from edge.service import EventSource
from edge.source_monitor import SourceMonitor

log = logging.getLogger("edge.app")


def sr_stage(cfg: Config) -> Callable:
    """super_resolve callable over the configured model bundle (edge.sr.resolver.SuperResolver)."""
    from edge.sr.resolver import SuperResolver

    resolver = SuperResolver.from_config(cfg.sr)
    log.info("super-resolution: %s (%s)", resolver.describe(), resolver.settings_note,
             extra={"event": "sr_settings", "sr": resolver.describe(), "why": resolver.settings_note})
    sr = cfg.sr

    def run(reg):
        res = resolver.upscale(reg.lr, samples=sr.samples, reduce=sr.reduce, uncertainty=sr.uncertainty and sr.samples > 1)
        return SRLayer(reg.event, res.sr, res.std, res.model_id, dict(res.timings_s))

    run.backend = resolver.runner.name  # type: ignore[attr-defined]
    return run


def register_stage(cfg: Config, camera: str = "webcam") -> Callable:
    """register callable: a layer's webcam frame -> LR plate, by the configured calib.register.Calibration."""
    from calib.register import Calibration

    if cfg.calib.file is None:
        raise ValueError("calib.file is not set: run `lpbf-edge calib register` first (the box needs the webcam-to-plate map)")
    cal = Calibration.load(cfg.calib.file)

    def run(frames):
        return cal.register_layer(frames, camera)

    return run


def analyzers(cfg: Config) -> tuple[Callable, Callable]:
    """(SR analyser, LR analyser): separate LayerAnalyzer instances so their layer histories stay in order."""
    from edge.analyze.baseline import load_baseline
    from edge.analyze.expected import ExpectedMaskDir
    from edge.analyze.layer import LayerAnalyzer

    folder = cfg.analyze.expected_masks_dir
    expected = ExpectedMaskDir(folder) if folder else None
    base = load_baseline(cfg.analyze.baseline_path) if cfg.analyze.baseline_path else None
    # the box analyses frames registered to the plate (calib): nothing outside the plate is in view
    return (LayerAnalyzer(cfg.analyze, expected, base, registered=True).analyze,
            LayerAnalyzer(cfg.analyze, expected, base, registered=True).analyze)


def recoat_analyzer(cfg: Config) -> Callable:
    """The recoat-frame analyser (spreading defects against the printer's baseline, or zero-config)."""
    from edge.analyze.baseline import load_baseline
    from edge.analyze.recoat import RecoatAnalyzer

    base = load_baseline(cfg.analyze.baseline_path) if cfg.analyze.baseline_path else None
    analyzer = RecoatAnalyzer(cfg.analyze, base, registered=True)
    return lambda image, layer, _std=None: analyzer.analyze(image, layer)


def real_stages(cfg: Config, capture: Callable, register: Callable | None = None) -> Stages:
    """The box's real stages around a capture callable (register defaults to the configured calibration)."""
    sr_an, lr_an = analyzers(cfg)
    return Stages(capture=capture, register=register or register_stage(cfg), super_resolve=sr_stage(cfg), analyze_sr=sr_an,
                  analyze_lr=lr_an, capture_recoat="recoat_done" in cfg.capture.grab_on,
                  analyze_recoat=recoat_analyzer(cfg))


def build_box(cfg: Config, trace: Path | None = None, speed: float | None = None,
              sim_build: Path | None = None) -> tuple[Stages, EventSource, list[Callable]]:
    """Real stages, the configured laser-signal source and what to close at exit, for `lpbf-edge run`.

    bridge.source: daq (NI DAQ, the box), replay (a trace CSV, `trace`), sim (the simulated printer over a
    sim build folder `sim_build`, whose webcam replaces the configured cameras).
    """
    from edge.capture.capture import LayerCapture
    from edge.capture.factory import build_cameras

    src = cfg.bridge.source
    cameras = None
    if src == "replay":
        if trace is None:
            raise ValueError("bridge.source is 'replay': pass the laser trace with --trace FILE.csv")
        from firmware_bridge.sources.replay import TraceReplaySource

        def make_source():
            return TraceReplaySource(trace, cfg.bridge.replay_chunk, speed)
    elif src == "daq":
        from firmware_bridge.sources.daq import DaqSource

        def make_source():
            return DaqSource(cfg.bridge.daq)
    else:
        if sim_build is None:
            raise ValueError("bridge.source is 'sim': pass the sim build folder with --sim-build DIR (`lpbf-edge sim build`)")
        from edge.sim.printer import SimPrinter

        printer = SimPrinter(sim_build, speedup=speed)
        make_source, cameras = printer.laser_source, [printer.camera("webcam")]
    cap = LayerCapture(cameras if cameras is not None else build_cameras(cfg.capture), cfg.capture.timeout_s)
    cap.open()
    try:
        stages = real_stages(cfg, cap.capture)
    except Exception:
        cap.close()
        raise
    return stages, bridge_events(cfg, make_source, restart=src == "daq"), [cap.close]


class BridgeEvents:
    """Event source over a firmware_bridge sample source (NI DAQ on the box); layer numbers come from BoxState.

    With restart (the DAQ), a failing or missing source is reopened forever with backoff (bridge.restart_backoff_s
    doubling to service.source_backoff_max_s); `monitor` tells health whether it runs.
    """

    def __init__(self, cfg: Config, make_source: Callable, restart: bool = True):
        self.cfg, self.make_source, self.restart = cfg, make_source, restart
        self.monitor = SourceMonitor(cfg.service.expected_layer_s)

    def __call__(self, submit: Callable[[LayerEvent], None], stop: threading.Event) -> None:
        from firmware_bridge.bridge import run_bridge
        from firmware_bridge.detector import LayerDetector
        from firmware_bridge.errors import BridgeError

        det = LayerDetector(self.cfg.bridge, source=self.cfg.bridge.source)
        events = run_bridge(self.make_source, det, max_restarts=-1 if self.restart else 0,
                            backoff_s=self.cfg.bridge.restart_backoff_s, sleep=stop.wait,
                            retry_on=(BridgeError, OSError) if self.restart else (), should_stop=stop.is_set,
                            max_backoff_s=self.cfg.service.source_backoff_max_s, on_state=self.monitor.update)
        for ev in events:
            submit(ev)
            if stop.is_set():
                return


def bridge_events(cfg: Config, make_source: Callable, restart: bool = True) -> EventSource:
    """The box's event source over a firmware_bridge sample source (see BridgeEvents)."""
    return BridgeEvents(cfg, make_source, restart)
