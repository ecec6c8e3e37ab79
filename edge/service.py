"""The box service: event source -> LayerPipeline -> spool -> MqttPublisher, with health, stats, JSON logs, signals."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge import __version__
from edge.config import Config
from edge.health import assess, write_health
from edge.messages import LayerEvent
from edge.pipeline import LayerPipeline, Stages
from edge.publish.client import MqttPublisher
from edge.publish.replay import LayerReplayer
from edge.publish.topics import Topics
from edge.source_monitor import SourceMonitor
from edge.store.archive import LayerArchive
from edge.store.spool import PublishSpool
from edge.store.state import BoxState

log = logging.getLogger("edge.service")

# An event source runs until it ends or `stop` is set, handing every detected event to `submit`. It may carry a
# `monitor` (SourceMonitor) that it keeps up to date with its own state (open, retrying, failed).
EventSource = Callable[[Callable[[LayerEvent], None], threading.Event], None]

EXIT_OK = 0
EXIT_SOURCE_FAILED = 1  # the event source failed (e.g. a replayed trace is broken)
EXIT_LEFT_OVER = 3  # stopped with layers unfinished or messages still spooled (sent at the next start)

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"t": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
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
    """Owns the store, pipeline, publisher, replayer and event thread of one box."""

    def __init__(self, cfg: Config, stages: Stages, events: EventSource | None, version: str = __version__):
        self.cfg, self.version, self.events = cfg, version, events
        root, fs = cfg.store.root, cfg.store.fsync
        Path(root).mkdir(parents=True, exist_ok=True)
        self.archive, self.spool = LayerArchive(root, fs), PublishSpool(root, fs)
        self.state = BoxState(root, cfg.node.job, fs)
        self.topics = Topics(cfg.mqtt.prefix, cfg.node.node_id)
        self.pipeline = LayerPipeline(stages, self.archive, self.spool, self.state, self.topics, version=version,
                                      keep_raw=cfg.store.keep_raw,
                                      retention=(cfg.store.max_bytes, cfg.store.max_age_days),
                                      on_layer_done=self._layer_done)
        self.publisher = (MqttPublisher(cfg.mqtt, cfg.node.node_id, self.spool, version=version,
                                        state_fn=self.state_doc, stats_fn=self.stats_doc,
                                        command_handler=self.handle_command)
                          if cfg.mqtt.enabled else None)
        self.web = None  # the read-only web view (web.enabled), started with the service
        self.replayer = LayerReplayer(self.archive, self.spool, self.topics, cfg.mqtt.replay_layers_per_s,
                                      cfg.mqtt.replay_max_layers, high_water=4 * cfg.mqtt.inflight_window)
        self.source = getattr(events, "monitor", None) or SourceMonitor(cfg.service.expected_layer_s)
        if events is None:
            self.source.update("none")
        self.source_error: str | None = None
        self.started = time.time()
        self.stopping = threading.Event()
        self.source_done = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- documents -------------------------------------------------------------------------
    def state_doc(self) -> dict:
        """Retained `<p>/state` body."""
        job, last = self.state.current()
        return {"node_id": self.cfg.node.node_id, "software_version": self.version, "model_id": self.pipeline.model_id,
                "job": job, "job_active": self.state.active, "last_layer": last,
                "devices": {"bridge": self.cfg.bridge.source, "webcam": self.cfg.capture.webcam,
                            "sr_backend": self._sr_backend()}}

    def _sr_backend(self) -> str | None:
        """The backend SR really runs on (the profile may choose it), else the configured one."""
        return getattr(self.pipeline.stages.super_resolve, "backend", None) or self.cfg.sr.backend

    def stats_doc(self) -> dict:
        """`<p>/stats` body (the publisher adds its own counters)."""
        return {"uptime_s": round(time.time() - self.started, 1), **self.pipeline.stats_dict()}

    def handle_command(self, name: str, cmd: object) -> dict:
        """Act on a validated command; the publisher replies with what this returns."""
        if name == "replay":
            return self.replayer.request(cmd.job, cmd.first, cmd.last)
        if name == "requeue_rejected":
            return {"requeued": self.spool.requeue_rejected()}
        if name == "start_job":
            self.state.set_job(cmd.job, active=True)
        elif name == "stop_job":
            self.state.set_active(False)
        elif name == "set_job":
            self.state.set_job(cmd.job)
        job, _ = self.state.current()
        log.info("job changed", extra={"event": "job", "command": name, "job": job, "active": self.state.active})
        return {"job": job, "job_active": self.state.active}

    def _layer_done(self, job: str, layer: int, meta: dict) -> None:
        """After each final layer: refresh the retained state."""
        if self.publisher:
            self.publisher.publish_state()

    def _baseline_status(self) -> dict | None:
        """Where the powder judges' baseline comes from (install file, self-learned, none) and its progress."""
        fn = getattr(self.pipeline.stages.analyze_recoat, "baseline_status", None)
        return fn() if callable(fn) else None

    def health_doc(self, status: str) -> dict:
        """What `lpbf-edge health` reads: every part, what is degraded, and what a restart may fix."""
        now = time.time()
        job, last = self.state.current()
        counts, depth = self.spool.counts(), self.pipeline.queue_depth()
        broker = {"enabled": False, "connected": False, "disconnected_since_unix": None, "last_error": None}
        if self.publisher:
            broker = {"enabled": True, "host": f"{self.cfg.mqtt.host}:{self.cfg.mqtt.port}",
                      **self.publisher.connection()}
        try:
            free_mb = round(shutil.disk_usage(self.cfg.store.root).free / 2**20, 1)
        except OSError:
            free_mb = None
        doc = {"status": status, "pid": os.getpid(), "version": self.version, "heartbeat_unix": now,
               "started_unix": self.started, "root": str(self.cfg.store.root), "job": job,
               "job_active": self.state.active, "last_layer": last, "broker": broker,
               "source": self.source.snapshot(now),
               "sr": {"backlog": depth["sr"], "events_waiting": depth["events"], "max": self.cfg.service.max_sr_backlog,
                      "workers_alive": status != "running" or self.pipeline.workers_alive()},
               "spool": {**counts, "max": self.cfg.service.max_spool_pending},
               "disk": {"free_mb": free_mb, "min_free_mb": self.cfg.service.min_free_mb},
               "analysis_baseline": self._baseline_status(),
               "warnings": list(broker.get("warnings", [])),
               # flat keys of the first health format (kept for existing readers)
               "mqtt_enabled": broker["enabled"], "broker_connected": broker["connected"],
               "broker_disconnected_since_unix": broker["disconnected_since_unix"], "spool_pending": counts["pending"],
               "queue_depth": depth, "last_error": broker["last_error"]}
        degraded, restart = assess(doc, self.cfg.service, now) if status == "running" else ([], [])
        doc.update(healthy=not degraded, degraded=degraded, restart_needed=restart)
        return doc

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start publisher, replayer, pipeline (after crash recovery), health heartbeat and the event source."""
        if self.publisher:
            self.publisher.start()
        self.replayer.start()
        self.pipeline.start()
        if self.cfg.web.enabled:
            self._start_web()
        write_health(self.cfg.store.root, self.health_doc("running"))
        self._spawn(self._heartbeat, "health")
        if self.events is not None:
            self._spawn(self._run_events, "events")
        sd_notify("READY=1")
        log.info("service started", extra={"event": "service_started", "version": self.version,
                                           "root": self.cfg.store.root})

    def _start_web(self) -> None:
        """Start the read-only web view; a failure is logged and the box goes on without it."""
        from edge.web.server import WebError, WebServer

        try:
            self.web = WebServer(self.cfg.store.root, self.cfg.web, f"lpbf-edge {self.cfg.node.node_id}",
                                 self.cfg.store.health_max_age_s).start()
        except (WebError, ValueError) as exc:
            log.error("web view not started: %s", exc, extra={"event": "web_failed"})

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _submit(self, event: LayerEvent) -> None:
        """Hand an event to the pipeline and note it for the source's health."""
        self.source.event(event.event)
        self.pipeline.submit(event)

    def _run_events(self) -> None:
        """Run the event source; report (not crash) when it fails."""
        try:
            self.events(self._submit, self.stopping)
            if self.source.snapshot()["state"] not in ("failed",):
                self.source.update("ended")
        except Exception as exc:
            self.source_error = f"{type(exc).__name__}: {exc}"
            self.source.update("failed", self.source_error)
            log.exception("event source failed: %s", self.source_error, extra={"event": "source_failed"})
        finally:
            self.source_done.set()

    def _heartbeat(self) -> None:
        """Rewrite the health file; ping the systemd watchdog only while nothing a restart could fix is wrong."""
        while not self.stopping.wait(self.cfg.store.health_interval_s):
            try:
                doc = self.health_doc("running")
                write_health(self.cfg.store.root, doc)
            except OSError as exc:  # e.g. disk full: the stale heartbeat then makes `health` fail, as it should
                log.error("cannot write the health file: %s", exc, extra={"event": "health_write_failed"})
                continue
            withheld = doc["restart_needed"] if self.cfg.service.watchdog == "restartable" else doc["degraded"]
            sd_notify("STATUS=" + ("degraded: " + "; ".join(doc["degraded"]) if doc["degraded"] else "healthy")[:400])
            if withheld:
                log.error("watchdog withheld: %s", "; ".join(withheld), extra={"event": "watchdog_withheld"})
            else:
                sd_notify("WATCHDOG=1")

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the source, finish queued layers and send the spool within `timeout` (service.stop_timeout_s).

        Publishes offline, logs what stays spooled or unfinished for the next start; True when nothing is left.
        """
        budget = self.cfg.service.stop_timeout_s if timeout is None else timeout
        end = time.monotonic() + budget
        reserve = min(6.0, budget * 0.25)  # replayer, offline message, disconnect, thread joins
        sd_notify("STOPPING=1")
        self.stopping.set()
        work = max(0.0, budget - reserve)
        drained = self.pipeline.stop(work * 0.7, join_timeout=min(2.0, reserve / 3))
        replays = self.replayer.stop(timeout=0.5)
        left_s = max(0.0, end - time.monotonic() - reserve / 2)
        sent = self.publisher.stop(left_s) if self.publisher else True
        unfinished, counts = self.pipeline.unfinished(), self.spool.counts()
        if self.web is not None:
            self.web.stop()
        write_health(self.cfg.store.root, self.health_doc("stopped"))
        clean = drained and sent and not unfinished["layers"] and not counts["pending"]
        log.log(logging.INFO if clean else logging.WARNING,
                "service stopped" if clean else "service stopped; left for the next start: %d spooled messages, "
                "%d rejected, unfinished layers %s, %d events not captured",
                *(() if clean else (counts["pending"], counts["rejected"], unfinished["layers"], unfinished["events"])),
                extra={"event": "service_stopped", "drained": drained, "spool_sent": sent, "spool": counts,
                       "unfinished_layers": unfinished["layers"], "events_not_captured": unfinished["events"],
                       "replays_unfinished": replays, "took_s": round(budget - (end - time.monotonic()), 2)})
        return clean

    def run_forever(self, exit_when_source_ends: bool = False) -> int:
        """start(), block until SIGTERM/SIGINT (or the source ends), stop(); the exit code (EXIT_*)."""
        got = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: got.set())
        self.start()
        while not got.wait(0.2):
            if exit_when_source_ends and self.source_done.is_set():
                break
        clean = self.stop()
        if self.source_error is not None:
            return EXIT_SOURCE_FAILED
        return EXIT_OK if clean else EXIT_LEFT_OVER
