"""The box service: event source -> LayerPipeline -> spool -> MqttPublisher, with health, stats, JSON logs, signals."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge import __version__
from edge.config import Config
from edge.health import write_health
from edge.messages import LayerEvent, SRLayer
from edge.pipeline import LayerPipeline, Stages
from edge.publish.client import MqttPublisher
from edge.publish.topics import Topics
from edge.store.archive import LayerArchive
from edge.store.spool import PublishSpool
from edge.store.state import BoxState

log = logging.getLogger("edge.service")

# An event source runs until it ends or `stop` is set, handing every detected event to `submit`.
EventSource = Callable[[Callable[[LayerEvent], None], threading.Event], None]

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"t": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        doc.update({k: v for k, v in record.__dict__.items() if k not in _STD_ATTRS})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_json_logging(level: int = logging.INFO) -> None:
    """Structured JSON logs on stderr (journald keeps them)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def sd_notify(message: str) -> bool:
    """Send a systemd notification (READY=1, WATCHDOG=1, STOPPING=1) when run under Type=notify."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError:
        return False


class BoxService:
    """Owns the store, pipeline, publisher and event thread of one box."""

    def __init__(self, cfg: Config, stages: Stages, events: EventSource | None, version: str = __version__):
        self.cfg, self.version, self.events = cfg, version, events
        root, fs = cfg.store.root, cfg.store.fsync
        Path(root).mkdir(parents=True, exist_ok=True)
        self.archive, self.spool = LayerArchive(root, fs), PublishSpool(root, fs)
        self.state = BoxState(root, cfg.node.job, fs)
        self.topics = Topics(cfg.mqtt.prefix, cfg.node.node_id)
        self.pipeline = LayerPipeline(stages, self.archive, self.spool, self.state, self.topics, version=version,
                                      keep_raw=cfg.store.keep_raw, retention=(cfg.store.max_bytes, cfg.store.max_age_days),
                                      on_layer_done=self._layer_done)
        self.publisher = MqttPublisher(cfg.mqtt, cfg.node.node_id, self.spool, version=version, state_fn=self.state_doc,
                                       stats_fn=self.stats_doc, command_handler=self.handle_command) if cfg.mqtt.enabled else None
        self.started = time.time()
        self.stopping = threading.Event()
        self.source_done = threading.Event()
        self._disconnected_since: float | None = time.time()
        self._threads: list[threading.Thread] = []

    # ---- documents -------------------------------------------------------------------------
    def state_doc(self) -> dict:
        """Retained `<p>/state` body."""
        job, last = self.state.current()
        return {"node_id": self.cfg.node.node_id, "software_version": self.version, "model_id": self.pipeline.model_id,
                "job": job, "job_active": self.state.active, "last_layer": last,
                "devices": {"bridge": self.cfg.bridge.source, "webcam": self.cfg.capture.webcam, "sr_backend": self.cfg.sr.backend}}

    def stats_doc(self) -> dict:
        """`<p>/stats` body (the publisher adds its own counters)."""
        return {"uptime_s": round(time.time() - self.started, 1), **self.pipeline.stats_dict()}

    def handle_command(self, name: str, cmd: object) -> dict:
        """Act on a validated command; the publisher replies with what this returns."""
        if name == "start_job":
            self.state.set_job(cmd.job, active=True)
        elif name == "stop_job":
            self.state.set_active(False)
        elif name == "set_job":
            self.state.set_job(cmd.job)
        elif name == "requeue_rejected":
            return {"requeued": self.spool.requeue_rejected()}
        job, _ = self.state.current()
        log.info("job changed", extra={"event": "job", "command": name, "job": job, "active": self.state.active})
        return {"job": job, "job_active": self.state.active}

    def _layer_done(self, job: str, layer: int, meta: dict) -> None:
        """After each final layer: refresh the retained state."""
        if self.publisher:
            self.publisher.publish_state()

    def health_doc(self, status: str) -> dict:
        """What `lpbf-edge health` reads."""
        connected = bool(self.publisher and self.publisher.connected.is_set())
        if connected:
            self._disconnected_since = None
        elif self._disconnected_since is None:
            self._disconnected_since = time.time()
        job, last = self.state.current()
        return {"status": status, "pid": os.getpid(), "version": self.version, "heartbeat_unix": time.time(),
                "started_unix": self.started, "mqtt_enabled": self.publisher is not None, "broker_connected": connected,
                "broker_disconnected_since_unix": self._disconnected_since, "job": job, "last_layer": last,
                "spool_pending": self.spool.counts()["pending"], "queue_depth": self.pipeline.queue_depth(),
                "last_error": self.publisher.last_error if self.publisher else None}

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start publisher, pipeline (after crash recovery), health heartbeat and the event source."""
        if self.publisher:
            self.publisher.start()
        self.pipeline.start()
        write_health(self.cfg.store.root, self.health_doc("running"))
        self._spawn(self._heartbeat, "health")
        if self.events is not None:
            self._spawn(self._run_events, "events")
        sd_notify("READY=1")
        log.info("service started", extra={"event": "service_started", "version": self.version, "root": self.cfg.store.root})

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _run_events(self) -> None:
        """Run the event source; report (not crash) when it fails."""
        try:
            self.events(self.pipeline.submit, self.stopping)
        except Exception:
            log.exception("event source failed", extra={"event": "source_failed"})
        finally:
            self.source_done.set()

    def _heartbeat(self) -> None:
        """Rewrite the health file and ping the systemd watchdog."""
        while not self.stopping.wait(self.cfg.store.health_interval_s):
            try:
                write_health(self.cfg.store.root, self.health_doc("running"))
            except OSError as exc:  # e.g. disk full: the stale heartbeat then makes `health` fail, as it should
                log.error("cannot write the health file: %s", exc, extra={"event": "health_write_failed"})
                continue
            sd_notify("WATCHDOG=1")

    def stop(self, drain_timeout: float = 30.0) -> bool:
        """Stop the source, finish queued layers, send the spool, publish offline; True when nothing is left over."""
        sd_notify("STOPPING=1")
        self.stopping.set()
        drained = self.pipeline.stop(drain_timeout)
        sent = self.publisher.stop(drain_timeout) if self.publisher else True
        write_health(self.cfg.store.root, self.health_doc("stopped"))
        log.info("service stopped", extra={"event": "service_stopped", "drained": drained, "spool_sent": sent})
        return drained and sent

    def run_forever(self, exit_when_source_ends: bool = False) -> int:
        """start(), then block until SIGTERM/SIGINT (or the source ends), then stop(); exit code 0."""
        got = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: got.set())
        self.start()
        while not got.wait(0.2):
            if exit_when_source_ends and self.source_done.is_set():
                break
        self.stop()
        return 0


# ---- the real stages and event sources ------------------------------------------------------------

def sr_stage(cfg: Config) -> Callable:
    """super_resolve callable over the configured model bundle (edge.sr.resolver.SuperResolver)."""
    from edge.sr.resolver import SuperResolver

    resolver = SuperResolver.from_config(cfg.sr)
    sr = cfg.sr

    def run(reg):
        res = resolver.upscale(reg.lr, samples=sr.samples, reduce=sr.reduce, uncertainty=sr.uncertainty and sr.samples > 1)
        return SRLayer(reg.event, res.sr, res.std, res.model_id, dict(res.timings_s))

    return run


def register_stage(cfg: Config, camera: str = "webcam") -> Callable:
    """register callable: webcam frame -> LR plate via calib.register.Calibration."""
    from calib.register import Calibration
    from edge.messages import RegisteredLayer

    if cfg.calib.file is None:
        raise ValueError("calib.file is not set: run `lpbf-edge calib register` first (the box needs the webcam-to-plate map)")
    cal = Calibration.load(cfg.calib.file)
    pitch = float(getattr(cal, "lr_pitch_um", getattr(cal, "pitch_um", 0.0)) or 0.0)

    def run(frames):
        return RegisteredLayer(frames.event, cal.apply(frames.frames[camera].image), pitch, frames)

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


def bridge_events(cfg: Config, make_source: Callable, restart: bool = True) -> EventSource:
    """Event source over a firmware_bridge sample source (NI DAQ on the box); layer numbers come from BoxState."""
    from firmware_bridge.bridge import run_bridge
    from firmware_bridge.detector import LayerDetector

    def run(submit, stop):
        det = LayerDetector(cfg.bridge, source=cfg.bridge.source)
        for ev in run_bridge(make_source, det, max_restarts=-1 if restart else 0, backoff_s=cfg.bridge.restart_backoff_s):
            submit(ev)
            if stop.is_set():
                return

    return run
