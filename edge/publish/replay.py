"""The `replay` command: archived layers sent again through the spool, rate-limited, with their original ids.

A subscriber that lost layers (its broker restarted without persistence, its queue overflowed) asks
`<p>/cmd/replay {"job", "from", "to"}`. The reply says at once which layers will come (`layers`), which
are still being made (`pending`: they arrive by themselves) and which the archive does not hold
(`missing`). A worker thread then spools each layer's final messages (meta with `"replayed": true`, lr,
sr, recoat, anomaly; never `anomaly/latest`) with the layer's original CorrelationData, at most
`mqtt.replay_layers_per_s` layers a second and only while the spool holds less than `high_water`
pending messages, so a replay never crowds out live layers or fills the disk.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

from edge.publish.commands import CommandError
from edge.publish.payloads import layer_messages
from edge.publish.topics import Topics
from edge.store.archive import LayerArchive
from edge.store.spool import PublishSpool

log = logging.getLogger("edge.publish.replay")

IMAGE_FILES = (("lr", "lr.png"), ("sr", "sr.png"), ("recoat", "recoat_lr.png"))


@dataclass(frozen=True)
class _Request:
    """One accepted replay: the layers still to send."""

    job: str
    first: int
    last: int
    layers: tuple[int, ...]


class LayerReplayer:
    """Accepts replay requests (a bounded queue) and spools the archived layers from its own thread."""

    def __init__(self, archive: LayerArchive, spool: PublishSpool, topics: Topics, layers_per_s: float = 2.0,
                 max_layers: int = 1000, max_requests: int = 16, high_water: int = 64):
        self.archive, self.spool, self.topics = archive, spool, topics
        self.interval_s, self.max_layers = 1.0 / layers_per_s, max_layers
        self.max_requests, self.high_water = max_requests, high_water
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: tuple[_Request, int] | None = None  # request being sent, layers already spooled
        self.replayed = 0

    def request(self, job: str, first: int, last: int) -> dict:
        """Queue a replay; the reply body. CommandError when the range is too long or too many are queued."""
        if last - first + 1 > self.max_layers:
            raise CommandError(f"replay: {last - first + 1} layers asked, at most {self.max_layers} per request "
                               "(mqtt.replay_max_layers); split the range")
        complete, pending, missing = [], [], []
        for n in range(first, last + 1):
            if self.archive.is_complete(job, n):
                complete.append(n)
            elif self.archive.layer_dir(job, n).exists():
                pending.append(n)
            else:
                missing.append(n)
        with self._cond:
            if complete and len(self._queue) >= self.max_requests:
                raise CommandError(f"replay: {len(self._queue)} replays are already queued; try again later")
            ahead = len(self._queue) + int(self._current is not None)
            if complete:
                self._queue.append(_Request(job, first, last, tuple(complete)))
                self._cond.notify()
        log.info("replay queued", extra={"event": "replay_queued", "job": job, "from": first, "to": last,
                                         "layers": len(complete), "missing": len(missing), "pending": len(pending)})
        return {"job": job, "from": first, "to": last, "layers": complete, "pending": pending, "missing": missing,
                "queued_ahead": ahead, "layers_per_s": round(1.0 / self.interval_s, 3)}

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._loop, name="mqtt-replay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> list[str]:
        """Stop the worker; returns (and logs) the replays left unsent ('job from..to: n layers')."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            left = [f"{r.job} {r.first}..{r.last}: {len(r.layers)} layers" for r in self._queue]
            if self._current is not None:
                r, done = self._current
                left.insert(0, f"{r.job} {r.first}..{r.last}: {len(r.layers) - done} layers")
        if left:
            log.warning("replays not finished (ask again after the restart): %s", "; ".join(left),
                        extra={"event": "replay_unfinished", "replays": left})
        return left

    def busy(self) -> bool:
        """True while a replay is being sent or waits in the queue."""
        with self._cond:
            return bool(self._queue) or self._current is not None

    def _loop(self) -> None:
        """Send queued requests one layer at a time; a failing layer is logged and skipped."""
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                req = self._queue.popleft()
                self._current = (req, 0)
            for i, n in enumerate(req.layers):
                while self.spool.counts()["pending"] >= self.high_water and not self._stop.is_set():
                    self._stop.wait(0.2)
                if self._stop.is_set():
                    return
                try:
                    self._send(req.job, n)
                except Exception as exc:  # noqa: BLE001 - e.g. retention deleted it meanwhile
                    log.error("replay of %s layer %d failed: %s", req.job, n, exc,
                              extra={"event": "replay_failed", "job": req.job, "layer": n})
                with self._cond:
                    self._current = (req, i + 1)
                self._stop.wait(self.interval_s)
            with self._cond:
                self._current = None
            log.info("replay done", extra={"event": "replay_done", "job": req.job, "from": req.first, "to": req.last})

    def _send(self, job: str, n: int) -> None:
        """Spool one archived layer's final messages again, as published, plus `replayed: true` in meta."""
        meta = self.archive.get_json(job, n, "meta")
        anomaly = self.archive.get_json(job, n, "anomaly")
        if not meta or not meta.get("final") or anomaly is None:
            raise ValueError(f"layer {job}/{n} is no longer complete in the archive")
        images = {}
        for kind, name in IMAGE_FILES:
            data = self.archive.get_bytes(job, n, name)
            if data is not None and (kind != "lr" or "lr" in meta.get("images", {})):
                images[kind] = data
        meta = dict(meta, replayed=True)
        msgs = layer_messages(self.topics, job, n, meta["layer_uuid"], meta, images, anomaly, "final", latest=False)
        self.spool.put(msgs)
        self.replayed += 1
