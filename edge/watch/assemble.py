"""Group a box's per-layer MQTT messages by CorrelationData and verify every image against the sha256 in meta.

A layer goes out in stages: with SR behind, an early `lr` stage (meta, LR PNG, anomaly from the webcam image),
then the `final` stage (meta, SR PNG, anomaly from the super-resolved image); otherwise only `final`.
A stage is done when its meta and anomaly arrived and every image meta lists arrived with a matching sha256
(the final meta lists the LR image sent in the early stage too). Pure logic: no network, no files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

STAGES = ("lr", "final")


@dataclass(frozen=True)
class LayerMessage:
    """One message on `<p>/job/<job>/layer/<n>/<kind>` with its MQTT 5 properties."""

    node: str
    job: str
    layer: int
    kind: str
    payload: bytes
    correlation: bytes | None
    stage: str | None
    t: float


@dataclass
class StageDone:
    """A layer stage that is complete (problems empty) or given up on after the settle time (problems say why)."""

    node: str
    job: str
    layer: int
    stage: str
    meta: dict
    anomaly: dict | None
    images: dict[str, bytes]
    problems: list[str]
    t_received: float

    @property
    def ok(self) -> bool:
        """Every listed image arrived with its sha256, and meta and anomaly arrived."""
        return not self.problems

    @property
    def replayed(self) -> bool:
        """The box sent this layer again on request (meta `replayed: true`)."""
        return bool(self.meta.get("replayed"))


@dataclass
class _Layer:
    """What arrived so far for one layer (one CorrelationData)."""

    node: str
    job: str
    layer: int
    t_first: float
    metas: dict[str, dict] = field(default_factory=dict)
    meta_t: dict[str, float] = field(default_factory=dict)
    anomalies: dict[str, dict] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


class LayerAssembler:
    """Collects layer messages; `add` and `expire` return the stages that became done."""

    def __init__(self, settle_s: float = 20.0, keep_layers: int = 2000):
        self.settle_s = settle_s
        self.keep_layers = keep_layers
        self._layers: dict[object, _Layer] = {}

    def _key(self, m: LayerMessage) -> object:
        """CorrelationData when present (the contract), else the topic's node/job/layer."""
        return m.correlation if m.correlation else (m.node, m.job, m.layer)

    def add(self, m: LayerMessage) -> list[StageDone]:
        """Take one message; return stages it completed."""
        key = self._key(m)
        rec = self._layers.get(key)
        if rec is None:
            rec = self._layers[key] = _Layer(m.node, m.job, m.layer, m.t)
            self._evict()
        if (rec.job, rec.layer) != (m.job, m.layer):
            rec.notes.append(
                f"{m.kind} for job {m.job} layer {m.layer} carries the CorrelationData of job {rec.job} "
                f"layer {rec.layer}"
            )
            return []
        if m.correlation is None:
            rec.notes.append(f"{m.kind} came without MQTT 5 CorrelationData (grouped by topic)")
        if m.kind == "meta":
            self._add_meta(rec, m)
        elif m.kind == "anomaly":
            doc = _json(m.payload)
            stage = m.stage if m.stage in STAGES else self._latest_stage(rec)
            if doc is None:
                rec.notes.append(f"anomaly ({stage}) is not a JSON object")
            elif stage not in rec.done:
                rec.anomalies[stage] = doc
        else:
            rec.images[m.kind] = m.payload
        return [d for d in (self._try_done(rec, s, m.t, False) for s in STAGES) if d is not None]

    def _add_meta(self, rec: _Layer, m: LayerMessage) -> None:
        """Record a meta document under its stage (a resend of a done stage is ignored)."""
        doc = _json(m.payload)
        if doc is None:
            rec.notes.append("meta is not a JSON object")
            return
        stage = doc.get("stage") if doc.get("stage") in STAGES else ("final" if doc.get("final", True) else "lr")
        if stage in rec.done and stage not in rec.failed:
            return  # a resend (QoS 1 duplicate or a replay) of a stage already complete
        if stage in rec.done:  # a stage given up on arrives again (a replay): take it afresh
            rec.done.discard(stage)
            rec.failed.discard(stage)
            rec.anomalies.pop(stage, None)
            rec.notes.clear()
        rec.metas[stage] = doc
        rec.meta_t[stage] = m.t

    @staticmethod
    def _latest_stage(rec: _Layer) -> str:
        """Stage of the most recent meta (anomaly messages without a stage property follow their meta)."""
        return max(rec.meta_t, key=rec.meta_t.get) if rec.meta_t else "final"

    def _try_done(self, rec: _Layer, stage: str, now: float, give_up: bool) -> StageDone | None:
        """The stage as done when complete (or, with give_up, with what is missing)."""
        meta = rec.metas.get(stage)
        if stage in rec.done or meta is None:
            return None
        problems = []
        images: dict[str, bytes] = {}
        for kind, info in (meta.get("images") or {}).items():
            data = rec.images.get(kind)
            want = info.get("sha256") if isinstance(info, dict) else None
            if data is None:
                problems.append(f"{kind} image never arrived")
            elif want is None:
                problems.append(f"meta gives no sha256 for {kind}")
            elif sha256_hex(data) != want:
                problems.append(f"{kind} image sha256 {sha256_hex(data)[:12]}... does not match meta's {want[:12]}...")
            else:
                images[kind] = data
        anomaly = rec.anomalies.get(stage)
        if anomaly is None:
            problems.append("anomaly never arrived")
        if problems and not give_up:
            return None
        rec.done.add(stage)
        if problems:
            rec.failed.add(stage)
        if stage == "final" and not problems:
            rec.images.clear()  # handed over with the StageDone; keep memory bounded
        return StageDone(rec.node, rec.job, rec.layer, stage, meta, anomaly, images, problems + rec.notes, now)

    def expire(self, now: float) -> list[StageDone]:
        """Give up on stages whose meta arrived more than settle_s ago and are still incomplete."""
        out = []
        for rec in list(self._layers.values()):
            for stage in STAGES:
                t = rec.meta_t.get(stage)
                if t is not None and now - t > self.settle_s:
                    d = self._try_done(rec, stage, now, give_up=True)
                    if d is not None:
                        out.append(d)
        return out

    def _evict(self) -> None:
        """Keep at most keep_layers records (oldest first out)."""
        while len(self._layers) > self.keep_layers:
            self._layers.pop(next(iter(self._layers)))


def _json(payload: bytes) -> dict | None:
    """A JSON object from bytes, or None."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None
