"""The composition root: the box's stages, laser-signal source and event source, built from one Config.

`lpbf-edge run` (edge.service_cli), `lpbf-edge demo` (edge.demo), `lpbf-edge capture paired` and
bench/overhead.py build the box here, so each thing is decided in one place: the laser source (laser_source, over
firmware_bridge's source_factory), the calibration (register_stage, Calibration.register_layer) and the model
bundle (sr_stage: --model / sr.model, else $LPBF_MODEL, else models/default, by edge.sr.bundle).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.config import Config
from edge.messages import LayerEvent, SRLayer
from edge.pipeline import Stages
from edge.service import EventSource
from edge.source_monitor import SourceMonitor
from firmware_bridge.config import BridgeConfig
from firmware_bridge.sources.factory import SourceFactory, source_factory

if TYPE_CHECKING:
    from edge.sim.printer import SimPrinter

log = logging.getLogger("edge.app")


def sr_stage(cfg: Config) -> Callable:
    """super_resolve callable over the configured SR stage (edge.sr_stage.SRStage: SuperResolver + estimate)."""
    from edge.sr_stage import SRStage

    stage = SRStage(cfg.sr)
    resolver = stage.resolver
    log.info("super-resolution: %s (%s)", stage.describe(), resolver.settings_note,
             extra={"event": "sr_settings", "sr": stage.describe(), "why": resolver.settings_note})
    t = time.perf_counter()
    # one throw-away layer before the first real one: compiles the backend's full-batch shapes (OpenVINO compiles per
    # static shape on first use) and warms the estimate's session, so layer 1 is not 0.4 s slower than the rest
    side = resolver.overlap + math.ceil(math.sqrt(resolver.batch)) * (resolver.tile - resolver.overlap) + 1
    stage.run(np.full((side, side), 128, np.uint8))  # at least one full batch of tiles
    log.info("super-resolution warmed up in %.1f s", time.perf_counter() - t, extra={"event": "sr_warmup"})

    def run(reg):
        out = stage.run(reg.lr)
        return SRLayer(reg.event, out.sample, out.std, out.model_id, dict(out.timings_s), out.estimate)

    run.backend = resolver.runner.name  # type: ignore[attr-defined]
    return run


def register_stage(cfg: Config, camera: str = "webcam") -> Callable:
    """register callable: a layer's webcam frame -> LR plate, by the configured calib.register.Calibration."""
    from calib.register import Calibration

    if cfg.calib.file is None:
        raise ValueError("calib.file is not set: run `lpbf-edge calib register` first "
                         "(the box needs the webcam-to-plate map)")
    cal = Calibration.load(cfg.calib.file)

    def run(frames):
        return cal.register_layer(frames, camera)

    return run


def analyzers(cfg: Config, base=None) -> tuple[Callable, Callable]:
    """(SR analyser, LR analyser): separate LayerAnalyzer instances so their layer histories stay in order (base: the
    printer baseline, default the configured analyze.baseline_path)."""
    from edge.analyze.baseline import load_baseline
    from edge.analyze.expected import ExpectedMaskDir
    from edge.analyze.layer import LayerAnalyzer

    folder = cfg.analyze.expected_masks_dir
    expected = ExpectedMaskDir(folder) if folder else None
    if base is None and cfg.analyze.baseline_path:
        base = load_baseline(cfg.analyze.baseline_path)
    # the box analyses frames registered to the plate (calib): nothing outside the plate is in view
    return (LayerAnalyzer(cfg.analyze, expected, base, registered=True).analyze,
            LayerAnalyzer(cfg.analyze, expected, base, registered=True).analyze)


def camera_identity(cfg: Config) -> dict:
    """What a self-learned baseline is tied to: the calibration file's content, the webcam and its frame size."""
    import hashlib

    calib = None
    if cfg.calib.file and Path(cfg.calib.file).is_file():
        calib = hashlib.sha256(Path(cfg.calib.file).read_bytes()).hexdigest()
    c = cfg.capture
    return {"calib_sha256": calib, "webcam": c.webcam, "device": c.webcam_device,
            "size": [c.webcam_width, c.webcam_height]}


def recoat_analyzer(cfg: Config, base=None, judges: tuple = ()) -> Callable:
    """The recoat-frame analyser (spreading defects against the printer's baseline, or zero-config). Without an
    install baseline it learns one from the first clean recoat frames (analyze.baseline_bootstrap_frames) and hands it
    to `judges` too (the layer analysers' powder judges)."""
    from edge.analyze.baseline import load_baseline
    from edge.analyze.bootstrap import BaselineBootstrap, RecoatStage
    from edge.analyze.recoat import RecoatAnalyzer

    a = cfg.analyze
    if base is None and a.baseline_path:
        base = load_baseline(a.baseline_path)
    analyzer = RecoatAnalyzer(a, base, registered=True)
    if base is not None:
        return RecoatStage(analyzer, status={"source": "install", "state": "ready", "path": a.baseline_path})
    if a.baseline_bootstrap_frames == 0 or "recoat_done" not in cfg.capture.grab_on:
        why = "analyze.baseline_bootstrap_frames is 0" if a.baseline_bootstrap_frames == 0 else "no recoat frames"
        return RecoatStage(analyzer, status={"source": "none", "state": f"zero-config ({why})"})
    boot = BaselineBootstrap(a, Path(cfg.store.root) / "baseline_self", camera_identity(cfg), registered=True)
    if not boot.ready:
        log.info("no install baseline: learning one from the first clean recoat frames",
                 extra={"event": "baseline_bootstrap", **boot.status()})
    return RecoatStage(analyzer, boot, judges)


def real_stages(cfg: Config, capture: Callable, register: Callable | None = None,
                super_resolve: Callable | None = None) -> Stages:
    """The box's real stages around a capture callable.

    register defaults to the configured calibration and super_resolve to the configured model bundle (a bench may
    pass a stand-in to time everything else).
    """
    from edge.analyze.baseline import load_baseline

    base = load_baseline(cfg.analyze.baseline_path) if cfg.analyze.baseline_path else None
    sr_an, lr_an = analyzers(cfg, base)
    judges = (sr_an.__self__.powder, lr_an.__self__.powder)
    return Stages(capture=capture, register=register or register_stage(cfg),
                  super_resolve=super_resolve or sr_stage(cfg), analyze_sr=sr_an, analyze_lr=lr_an,
                  capture_recoat="recoat_done" in cfg.capture.grab_on,
                  analyze_recoat=recoat_analyzer(cfg, base, judges))


@dataclass(frozen=True)
class LaserSource:
    """The laser-signal sample source the box runs on, the bridge settings it was picked by, and the sim printer."""

    bridge: BridgeConfig
    make: SourceFactory
    printer: SimPrinter | None = None

    @property
    def restartable(self) -> bool:
        """A dead source is reopened forever only for the NI DAQ; a replayed trace or the sim ends the run."""
        return self.bridge.source == "daq"


def laser_source(cfg: Config, trace: Path | None = None, speed: float | None = None,
                 sim_build: Path | None = None) -> LaserSource:
    """The configured laser-signal source (bridge.source: daq, replay or sim), the one place it is picked.

    trace replays that CSV whatever bridge.source says; speed overrides bridge.speedup (0: as fast as possible);
    sim_build overrides bridge.sim_build_dir (the simulated printer's build folder, `lpbf-edge sim build`).
    """
    updates: dict[str, object] = {}
    if trace is not None:
        updates.update(source="replay", trace_file=str(trace))
    if speed is not None:
        updates["speedup"] = speed
    bridge = cfg.bridge.model_copy(update=updates)
    printer = None
    folder = sim_build or bridge.sim_build_dir
    if bridge.source == "sim" and folder is not None:
        from edge.sim.printer import SimPrinter

        printer = SimPrinter(folder, speedup=bridge.speedup or None)
    return LaserSource(bridge, source_factory(bridge, printer.laser_source if printer else None), printer)


@dataclass
class Box:
    """What `lpbf-edge run` runs: the stages, the event source, and what to close at exit."""

    stages: Stages
    events: EventSource
    laser: LaserSource
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Release the cameras (and anything else opened for the box)."""
        for close in self.closers:
            close()


def build_box(cfg: Config, trace: Path | None = None, speed: float | None = None, sim_build: Path | None = None,
              super_resolve: Callable | None = None) -> Box:
    """The real stages over the configured cameras and the configured laser source (see laser_source).

    With the simulated printer, its webcam replaces the configured cameras.
    """
    from edge.capture.capture import LayerCapture
    from edge.capture.factory import build_cameras

    laser = laser_source(cfg, trace=trace, speed=speed, sim_build=sim_build)
    cameras = [laser.printer.camera("webcam")] if laser.printer is not None else build_cameras(cfg.capture)
    cap = LayerCapture(cameras, cfg.capture.timeout_s)
    cap.open()
    try:
        stages = real_stages(cfg, cap.capture, super_resolve=super_resolve)
    except Exception:
        cap.close()
        raise
    return Box(stages, bridge_events(cfg, laser.make, restart=laser.restartable), laser, [cap.close])


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
