"""Layer pipeline: event -> capture -> register -> super-resolve -> analyse -> store -> spool (publish drains it).

Threads: `submit()` only enqueues (never blocks the detector); a capture worker grabs, registers and
archives every layer at once; one SR worker super-resolves and analyses layers in order. When SR is
busy the capture worker publishes the LR layer and the flags computable on it first; the SR layer and
the updated anomaly follow when ready. The SR backlog holds only layer keys (LR is on disk), so it is
unbounded on disk and bounded in memory: no event is ever dropped.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge.messages import Frame, LayerEvent, LayerFrames, RegisteredLayer, SRLayer
from edge.publish.payloads import image_info, layer_messages
from edge.publish.topics import Topics
from edge.store.archive import LayerArchive
from edge.store.retention import apply_retention
from edge.store.spool import PublishSpool, SpoolMessage
from edge.store.state import BoxState

log = logging.getLogger("edge.pipeline")

WEBCAM = "webcam"


class Analysis(Protocol):
    """What an analyser returns (edge.analyze.layer.LayerAnalysis)."""

    layer_state: str
    flags: tuple
    mask: np.ndarray
    timings_s: dict


@dataclass(frozen=True)
class Stages:
    """The stage callables; the service wires the real ones, tests may wire cheaper ones."""

    capture: Callable[[LayerEvent], LayerFrames]
    register: Callable[[LayerFrames], RegisteredLayer]
    super_resolve: Callable[[RegisteredLayer], SRLayer]
    analyze_sr: Callable[..., Analysis]  # (image, layer, std[, estimate=, lr=] when the SR layer has an estimate)
    analyze_lr: Callable[[np.ndarray, int, np.ndarray | None], Analysis] | None = None
    primary_camera: str = WEBCAM
    capture_recoat: bool = True
    analyze_recoat: Callable[[np.ndarray, int, np.ndarray | None], Analysis] | None = None


@dataclass
class _SRJob:
    """A layer waiting for super-resolution (lr None: reload it from the archive)."""

    job: str
    layer: int
    layer_uuid: str
    event: LayerEvent
    lr: np.ndarray | None
    pitch_um: float
    lr_published: bool
    t0: float
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    failure: str | None = None  # set: publish as capture_failed (queued so final layers stay in order)


class StageStats:
    """Per-stage latency (last/mean/max seconds) and layer counters, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency: dict[str, list[float]] = {}
        self.counters: dict[str, int] = {}

    def time(self, stage: str, seconds: float) -> None:
        """Record one latency sample."""
        with self._lock:
            s = self.latency.setdefault(stage, [0.0, 0.0, 0.0, 0])  # last, sum, max, n
            s[0], s[1], s[2], s[3] = seconds, s[1] + seconds, max(s[2], seconds), s[3] + 1

    def count(self, name: str, n: int = 1) -> None:
        """Increment a counter."""
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def snapshot(self) -> dict:
        """Counters and latency summary as plain JSON."""
        with self._lock:
            lat = {k: {"last_s": round(v[0], 4), "mean_s": round(v[1] / v[3], 4), "max_s": round(v[2], 4), "n": v[3]}
                   for k, v in self.latency.items()}
            return {"counters": dict(self.counters), "latency": lat}


class LayerPipeline:
    """Runs layers from events to spooled MQTT messages; see the module docstring for the threading."""

    def __init__(self, stages: Stages, archive: LayerArchive, spool: PublishSpool, state: BoxState, topics: Topics, *,
                 version: str = "0", keep_raw: bool = True, retention: tuple[int, float] | None = None,
                 on_layer_done: Callable[[str, int, dict], None] | None = None):
        self.stages, self.archive, self.spool, self.state, self.topics = stages, archive, spool, state, topics
        self.version, self.keep_raw, self.retention, self.on_layer_done = version, keep_raw, retention, on_layer_done
        self.stats = StageStats()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._sr: deque[_SRJob] = deque()
        self._sr_cond = threading.Condition()
        self._sr_busy = False
        self._sr_current: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._unfinished = 0  # events submitted but not yet fully handled by the capture worker
        self._unfinished_lock = threading.Lock()
        self._recoat_map: dict[int, tuple[str, int, str]] = {}
        self._threads: list[threading.Thread] = []
        self.last_layer: tuple[str, int] | None = None
        self.model_id = "unknown"
        self.retention_every_s = 60.0  # retention scans the archive: at most once a minute
        self._last_retention = -1e9

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Recover unfinished layers from the archive, then start the workers."""
        self.recover()
        for target, name in ((self._capture_loop, "pipeline-capture"), (self._sr_loop, "pipeline-sr")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, event: LayerEvent) -> None:
        """Hand over a detected event; returns at once (never blocks the detector)."""
        self.stats.count("events_seen")
        if event.event == "layer_complete":
            self.stats.count("layers_seen")
        with self._unfinished_lock:
            self._unfinished += 1
        self._events.put((event, time.monotonic()))

    def queue_depth(self) -> dict[str, int]:
        """Events waiting for capture and layers waiting for SR."""
        return {"events": self._events.qsize(), "sr": len(self._sr) + int(self._sr_busy)}

    def drain(self, timeout: float) -> bool:
        """Wait until every submitted event is fully processed (True) or `timeout` passes (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._sr_cond:
                sr_idle = not self._sr and not self._sr_busy
            if self._unfinished == 0 and sr_idle:
                return True
            time.sleep(0.02)
        return False

    def stop(self, drain_timeout: float = 30.0, join_timeout: float = 10.0) -> bool:
        """Drain (up to drain_timeout) and stop the workers; unfinished layers are resumed by the next start."""
        drained = self.drain(drain_timeout)
        self._stop.set()
        self._events.put(None)
        with self._sr_cond:
            self._sr_cond.notify_all()
        end = time.monotonic() + join_timeout
        for t in self._threads:
            t.join(timeout=max(0.0, end - time.monotonic()))
        return drained

    def workers_alive(self) -> bool:
        """True while the capture and SR workers run."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def unfinished(self) -> dict:
        """What is not final yet: events not captured, and (job, layer) in SR or waiting for it."""
        with self._sr_cond:
            layers = ([list(self._sr_current)] if self._sr_current else []) + [[j.job, j.layer] for j in self._sr]
        return {"events": self._events.qsize(), "layers": layers}

    def stats_dict(self) -> dict:
        """Stats for `<p>/stats`."""
        return {**self.stats.snapshot(), "queue_depth": self.queue_depth(), "model_id": self.model_id,
                "last_layer": list(self.last_layer) if self.last_layer else None}

    # ---- capture worker ---------------------------------------------------------------------------
    def _capture_loop(self) -> None:
        """Take events in order; layer_complete -> a new layer, recoat_done -> recoat frames of the last layer."""
        while not self._stop.is_set():
            item = self._events.get()
            if item is None:
                break
            event, t0 = item
            try:
                if event.event == "layer_complete":
                    self._new_layer(event, t0)
                elif event.event == "recoat_done":
                    self._recoat(event)
            except Exception:  # a bug in one layer must not stop the box
                log.exception("layer event failed", extra={"event": "pipeline_error",
                                                           "layer_event": event.to_json_dict()})
                self.stats.count("pipeline_errors")
            finally:
                with self._unfinished_lock:
                    self._unfinished -= 1

    def _grab(self, event: LayerEvent) -> tuple[LayerFrames, float]:
        """Run the capture stage; an exception becomes a LayerFrames with every camera failed."""
        t = time.monotonic()
        try:
            frames = self.stages.capture(event)
        except Exception as exc:
            log.error("capture failed: %s", exc, extra={"event": "capture_failed", "layer_event": event.event})
            frames = LayerFrames(event, {}, {self.stages.primary_camera: f"{type(exc).__name__}: {exc}"})
        return frames, time.monotonic() - t

    def _archive_raw(self, job: str, n: int, frames: LayerFrames, prefix: str) -> dict:
        """Archive raw frames (if keep_raw) and describe every camera for meta."""
        cams = {}
        for name, fr in frames.frames.items():
            if self.keep_raw:
                self.archive.put_png(job, n, f"{prefix}raw_{name}", fr.image)
            cams[name] = {"shape": list(fr.image.shape), "bit_depth": fr.bit_depth, "t_capture_s": fr.t_capture_s}
        return cams

    def _new_layer(self, event: LayerEvent, t0: float) -> None:
        """Allocate the layer number, capture, register, archive; then SR now or LR first."""
        job, n = self.state.next_layer()
        lid = str(uuid.uuid4())
        self.archive.put_json(job, n, "event", {"job": job, "layer": n, "layer_uuid": lid,
                                                "event": event.to_json_dict(), "t_unix": time.time()})
        self._recoat_map[event.layer] = (job, n, lid)
        if len(self._recoat_map) > 16:
            self._recoat_map.pop(next(iter(self._recoat_map)))
        self.last_layer = (job, n)
        frames, t_cap = self._grab(event)
        self.stats.time("capture", t_cap)
        meta = self._base_meta(job, n, lid, event)
        meta["cameras"] = self._archive_raw(job, n, frames, "")
        meta["failed_cameras"] = dict(frames.failed)
        self._continue_layer(job, n, lid, event, frames, meta, {"capture": t_cap}, t0)

    def _continue_layer(self, job: str, n: int, lid: str, event: LayerEvent, frames: LayerFrames, meta: dict,
                        timings: dict, t0: float) -> None:
        """Register the primary frame; a missing/failed frame makes the layer capture_failed."""
        cam = self.stages.primary_camera
        if cam not in frames.frames:
            reason = frames.failed.get(cam, f"no {cam} frame")
            self._publish_failed(job, n, lid, meta, f"capture_failed: {reason}", timings)
            return
        t = time.monotonic()
        try:
            reg = self.stages.register(frames)
        except Exception as exc:
            self._publish_failed(job, n, lid, meta, f"registration failed: {type(exc).__name__}: {exc}", timings)
            return
        timings["register"] = time.monotonic() - t
        self.stats.time("register", timings["register"])
        self.archive.put_png(job, n, "lr", reg.lr)
        meta["pitch_um"] = reg.pitch_um
        sr_job = _SRJob(job, n, lid, event, reg.lr, reg.pitch_um, False, t0, timings, meta)
        with self._sr_cond:
            behind = self._sr_busy or bool(self._sr)
        if behind and self.stages.analyze_lr is not None:
            self._publish_lr_first(sr_job)
            sr_job.lr = None  # keep memory bounded: reload from the archive when SR gets to it
        with self._sr_cond:
            self._sr.append(sr_job)
            self._sr_cond.notify()

    def _recoat(self, event: LayerEvent) -> None:
        """Capture after recoating: archive frames and publish the registered recoat image on `.../recoat`."""
        if not self.stages.capture_recoat:
            return
        job, n, lid = self._recoat_map.get(event.layer) or (*self.state.current(), None)
        if lid is None:
            ev = self.archive.get_json(job, n, "event")
            if ev is None:
                log.warning("recoat event without a layer", extra={"event": "recoat_orphan",
                                                                   "layer_event": event.to_json_dict()})
                return
            lid = ev["layer_uuid"]
        frames, t_cap = self._grab(event)
        self.stats.time("capture_recoat", t_cap)
        self._archive_raw(job, n, frames, "recoat_")
        if self.stages.primary_camera not in frames.frames:
            self.stats.count("recoat_capture_failed")
            return
        try:
            reg = self.stages.register(frames)
        except Exception as exc:
            log.error("recoat registration failed: %s", exc, extra={"event": "recoat_register_failed", "layer": n})
            return
        data = self.archive.put_png(job, n, "recoat_lr", reg.lr)
        msgs = [SpoolMessage(self.topics.layer(job, n, "recoat"), data, "image/png", lid.encode(), job, n, "recoat")]
        if self.stages.analyze_recoat is not None:  # spreading flags, published like the layer's anomaly JSON
            t = time.monotonic()
            analysis, err = self._analyze(self.stages.analyze_recoat, reg.lr, n, None)
            self.stats.time("analyze_recoat", time.monotonic() - t)
            doc = self._anomaly(job, n, analysis) | ({"analysis_error": err} if err else {})
            self.archive.put_json(job, n, "recoat_anomaly", doc)
            msgs.append(SpoolMessage(self.topics.layer(job, n, "recoat_anomaly"), json.dumps(doc).encode(),
                                     "application/json",
                                     lid.encode(), job, n, "recoat_anomaly"))
        self.spool.put(msgs)

    # ---- SR worker ----------------------------------------------------------------------------------
    def _sr_loop(self) -> None:
        """Super-resolve and analyse queued layers in order."""
        while True:
            with self._sr_cond:
                while not self._sr and not self._stop.is_set():
                    self._sr_cond.wait(0.5)
                if self._stop.is_set():
                    return
                job = self._sr.popleft()
                self._sr_busy, self._sr_current = True, (job.job, job.layer)
            try:
                self._finish_layer(job)
            except Exception:
                log.exception("layer failed", extra={"event": "pipeline_error", "job": job.job, "layer": job.layer})
                self.stats.count("pipeline_errors")
            finally:
                with self._sr_cond:
                    self._sr_busy, self._sr_current = False, None

    def _finish_layer(self, j: _SRJob) -> None:
        """SR + analysis + archive + spool of the final layer messages."""
        if j.failure is not None:
            self._emit_failed(j)
            return
        lr = j.lr if j.lr is not None else self.archive.get_image(j.job, j.layer, "lr")
        reg = RegisteredLayer(j.event, lr, j.pitch_um)
        meta, timings = j.meta, j.timings
        images: dict[str, bytes] = {}
        t = time.monotonic()
        try:
            srl = self.stages.super_resolve(reg)
        except Exception as exc:
            log.error("super-resolution failed: %s", exc, extra={"event": "sr_failed", "layer": j.layer})
            srl, meta["sr_error"] = None, f"{type(exc).__name__}: {exc}"
        timings["sr"] = time.monotonic() - t
        self.stats.time("sr", timings["sr"])
        image = lr if srl is None else srl.sr
        if srl is not None:
            self.model_id = srl.model_id
            meta["model_id"] = srl.model_id
            meta["sr_timings_s"] = {k: round(v, 4) for k, v in srl.timings_s.items()}
        t = time.monotonic()
        # the real SR stage hands its geometry estimate and the LR on (edge.sr_stage, edge.analyze.artefacts)
        extra = {"estimate": srl.estimate, "lr": lr} if srl is not None and srl.estimate is not None else {}
        analysis, err = self._analyze(self.stages.analyze_sr, image, j.layer, None if srl is None else srl.std, **extra)
        timings["analyze"] = time.monotonic() - t
        self.stats.time("analyze", timings["analyze"])
        t = time.monotonic()
        lr_bytes = self.archive.get_bytes(j.job, j.layer, "lr.png")
        if not j.lr_published:
            images["lr"] = lr_bytes
        meta["images"] = {"lr": image_info(lr_bytes, lr.shape)}
        if srl is not None:
            images["sr"] = self.archive.put_png(j.job, j.layer, "sr", srl.sr)
            meta["images"]["sr"] = image_info(images["sr"], srl.sr.shape)
            if srl.std is not None:
                self.archive.put_png(j.job, j.layer, "sr_std", _to_u8(srl.std))
        if analysis is not None and analysis.mask is not None and analysis.mask.size:
            self.archive.put_png(j.job, j.layer, "mask", (np.asarray(analysis.mask) > 0).astype(np.uint8) * 255)
        if err:
            meta["analysis_error"] = err
        meta["flags_image"] = "sr" if srl is not None else "lr"
        anomaly = self._anomaly(j.job, j.layer, analysis)
        self._emit(j, meta, images, anomaly, timings, stage="final", t_store=t)

    def _analyze(self, fn, image: np.ndarray, layer: int, std: np.ndarray | None, **extra):
        """Run an analyser; an exception is reported as segmentation_failed instead of losing the layer."""
        try:
            return fn(image, layer, std, **extra), None
        except Exception as exc:
            log.error("analysis failed: %s", exc, extra={"event": "analysis_failed", "layer": layer})
            return None, f"{type(exc).__name__}: {exc}"

    def _anomaly(self, job: str, n: int, analysis) -> dict:
        """Anomaly JSON of docs/mqtt.md#anomaly-json, exactly its keys."""
        if analysis is None:
            return {"job": job, "layer": n, "layer_state": "segmentation_failed", "flags": []}
        flags = [f.to_json_dict() for f in analysis.flags]
        return {"job": job, "layer": n, "layer_state": analysis.layer_state, "flags": flags}

    # ---- emitting ------------------------------------------------------------------------------------
    def _base_meta(self, job: str, n: int, lid: str, event: LayerEvent) -> dict:
        """Fields every meta message carries."""
        return {"node_id": self.topics.node_id, "job": job, "layer": n, "layer_uuid": lid,
                "software_version": self.version, "event": event.to_json_dict(), "t_off_s": event.t_off_s,
                "t_detected_s": event.t_detected_s, "t_event_unix": time.time(), "model_id": None}

    def _publish_lr_first(self, j: _SRJob) -> None:
        """SR is busy: publish LR, flags computed on LR and a preliminary meta now."""
        t = time.monotonic()
        analysis, err = self._analyze(self.stages.analyze_lr, j.lr, j.layer, None)
        self.stats.time("analyze_lr", time.monotonic() - t)
        lr_bytes = self.archive.get_bytes(j.job, j.layer, "lr.png")
        meta = dict(j.meta, images={"lr": image_info(lr_bytes, j.lr.shape)}, sr_pending=True, flags_image="lr")
        if err:
            meta["analysis_error"] = err
        self.stats.count("layers_lr_first")
        self._emit(j, meta, {"lr": lr_bytes}, self._anomaly(j.job, j.layer, analysis), dict(j.timings),
                   stage="lr", t_store=time.monotonic())
        j.lr_published = True

    def _publish_failed(self, job: str, n: int, lid: str, meta: dict, reason: str, timings: dict) -> None:
        """A layer without a usable frame: queued behind the layers before it, then published as capture_failed."""
        log.error("layer %d: %s", n, reason, extra={"event": "layer_capture_failed", "job": job, "layer": n})
        self.stats.count("layers_capture_failed")
        ev = LayerEvent("layer_complete", n, meta.get("t_off_s", 0.0), meta.get("t_detected_s", 0.0))
        j = _SRJob(job, n, lid, ev, None, 0.0, False, time.monotonic(), timings, meta, failure=reason)
        with self._sr_cond:
            self._sr.append(j)
            self._sr_cond.notify()

    def _emit_failed(self, j: _SRJob) -> None:
        """meta (with the failure) + anomaly with layer_state capture_failed."""
        meta = dict(j.meta, failure=j.failure, images={})
        anomaly = {"job": j.job, "layer": j.layer, "layer_state": "capture_failed", "flags": []}
        self._emit(j, meta, {}, anomaly, j.timings, stage="final", t_store=time.monotonic())

    def _emit(self, j: _SRJob, meta: dict, images: dict[str, bytes], anomaly: dict, timings: dict, stage: str,
              t_store: float) -> None:
        """Archive anomaly, spool the layer's messages, then archive meta (meta.final marks the layer done)."""
        meta = dict(meta, stage=stage, final=stage == "final", layer_state=anomaly["layer_state"],
                    timings_s={k: round(v, 4) for k, v in timings.items()}, t_meta_unix=time.time())
        self.archive.put_json(j.job, j.layer, f"anomaly_{stage}" if stage != "final" else "anomaly", anomaly)
        latest = self.state.advance_latest(j.job, j.layer)  # anomaly/latest never goes back within a job
        msgs = layer_messages(self.topics, j.job, j.layer, j.layer_uuid, meta, images, anomaly, stage, latest)
        self.spool.put(msgs)
        self.archive.put_json(j.job, j.layer, "meta", meta)
        self.stats.time("store", time.monotonic() - t_store)
        if stage == "final":
            self.stats.time("total", time.monotonic() - j.t0)
            self.stats.count("layers_done")
            if self.retention and time.monotonic() - self._last_retention >= self.retention_every_s:
                self._last_retention = time.monotonic()
                for job, n in apply_retention(self.archive, self.spool, *self.retention):
                    log.info("retention deleted layer", extra={"event": "retention", "job": job, "layer": n})
            if self.on_layer_done:
                self.on_layer_done(j.job, j.layer, meta)
        log.info("layer %d %s spooled (%s)", j.layer, stage, anomaly["layer_state"],
                 extra={"event": "layer_spooled", "job": j.job, "layer": j.layer, "stage": stage,
                        "layer_state": anomaly["layer_state"], "messages": len(msgs)})

    # ---- crash recovery ------------------------------------------------------------------------------
    def recover(self) -> list[tuple[str, int]]:
        """Finish layers a crash left half done, in order; a number with no record is published capture_failed."""
        resumed = []
        job, last = self.state.current()
        if last and not self.archive.layer_dir(job, last).exists():
            ev = LayerEvent("layer_complete", last, 0.0, 0.0, source="recovery")
            lid = str(uuid.uuid4())
            self.archive.put_json(job, last, "event", {"job": job, "layer": last, "layer_uuid": lid,
                                                       "event": ev.to_json_dict(),
                                                       "t_unix": time.time(), "recovered": True})
        for job, n in self.archive.incomplete_layers():
            ev_doc = self.archive.get_json(job, n, "event")
            e = ev_doc["event"]
            event = LayerEvent(e["event"], e["layer"], e["t_off_s"], e["t_detected_s"], e.get("source", "unknown"),
                               tuple(e.get("flags", ())))
            lid = ev_doc["layer_uuid"]
            prev = self.archive.get_json(job, n, "meta")
            meta = self._base_meta(job, n, lid, event)
            kept = ("cameras", "failed_cameras", "pitch_um", "t_event_unix")
            meta.update({k: v for k, v in (prev or {}).items() if k in kept})
            meta["recovered"] = True
            lr = self.archive.get_image(job, n, "lr")
            if lr is not None:
                with self._sr_cond:
                    self._sr.append(_SRJob(job, n, lid, event, None, float(meta.get("pitch_um", 0.0)), prev is not None,
                                           time.monotonic(), {}, meta))
            else:
                raw = self.archive.get_image(job, n, f"raw_{self.stages.primary_camera}")
                cam = self.stages.primary_camera
                frames = (LayerFrames(event, {cam: Frame(cam, raw, 0.0)}, {}) if raw is not None
                          else LayerFrames(event, {}, {cam: "service stopped before the frame was archived"}))
                meta.setdefault("cameras", {})
                meta.setdefault("failed_cameras", dict(frames.failed))
                self._continue_layer(job, n, lid, event, frames, meta, {}, time.monotonic())
            resumed.append((job, n))
            log.warning("resuming unfinished layer", extra={"event": "layer_recovered", "job": job, "layer": n})
        return resumed


def _to_u8(a: np.ndarray) -> np.ndarray:
    """A float spread map scaled to uint8 for archiving."""
    a = np.asarray(a, dtype=np.float32)
    hi = float(a.max()) if a.size else 0.0
    return np.zeros(a.shape, np.uint8) if hi <= 0 else np.clip(a / hi * 255.0, 0, 255).astype(np.uint8)


__all__ = ["LayerPipeline", "Stages"]
