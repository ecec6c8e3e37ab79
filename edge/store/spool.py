"""Publish spool: one file per MQTT message, ordered by sequence number, removed only after a good PUBACK."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from edge.store.atomic import write_bytes, write_json
from edge.store.jobs import check_job_id


@dataclass(frozen=True)
class SpoolMessage:
    """One MQTT message waiting to be published."""

    topic: str
    payload: bytes
    content_type: str
    correlation: bytes
    job: str
    layer: int
    kind: str
    qos: int = 1
    retain: bool = False
    stage: str = "final"


@dataclass(frozen=True)
class SpoolEntry:
    """A spooled message with its sequence number and file."""

    seq: int
    path: Path
    message: SpoolMessage


def _name(seq: int, msg: SpoolMessage) -> str:
    """File name `<seq>+<job>+<layer>+<kind>.msg` ('+', '/' and a leading '.' cannot occur in job ids or kinds)."""
    if not msg.kind.isidentifier():
        raise ValueError(f"spool message kind {msg.kind!r} is not a plain name")
    return f"{seq:012d}+{check_job_id(msg.job)}+{msg.layer:06d}+{msg.kind}.msg"


def _parse_name(name: str) -> tuple[int, str, int] | None:
    """(seq, job, layer) from a spool file name, None for foreign files."""
    parts = name[:-4].split("+") if name.endswith(".msg") else []
    if len(parts) != 4 or not parts[0].isdigit() or not parts[2].isdigit():
        return None
    return int(parts[0]), parts[1], int(parts[2])


def encode_entry(msg: SpoolMessage) -> bytes:
    """One JSON header line, then the raw payload bytes."""
    head = {
        "topic": msg.topic, "content_type": msg.content_type, "correlation": msg.correlation.hex(),
        "job": msg.job, "layer": msg.layer, "kind": msg.kind, "qos": msg.qos, "retain": msg.retain,
        "stage": msg.stage, "payload_len": len(msg.payload),
    }
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + msg.payload


def decode_entry(data: bytes, where: Path) -> SpoolMessage:
    """Inverse of encode_entry; ValueError naming the file when it is damaged."""
    nl = data.find(b"\n")
    try:
        head = json.loads(data[:nl])
        payload = data[nl + 1:]
        if nl < 0 or len(payload) != head["payload_len"]:
            raise ValueError("payload length does not match header")
        return SpoolMessage(
            topic=head["topic"], payload=payload, content_type=head["content_type"],
            correlation=bytes.fromhex(head["correlation"]), job=head["job"], layer=int(head["layer"]),
            kind=head["kind"], qos=int(head["qos"]), retain=bool(head["retain"]), stage=str(head.get("stage", "final")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{where}: damaged spool entry ({exc})") from exc


class PublishSpool:
    """Folder `root/spool/pending` (to send) and `root/spool/rejected` (refused by the broker, kept)."""

    def __init__(self, root: str | Path, fsync: bool = True):
        base = Path(root) / "spool"
        self.pending_dir = base / "pending"
        self.rejected_dir = base / "rejected"
        self.damaged_dir = base / "damaged"
        for d in (self.pending_dir, self.rejected_dir):
            d.mkdir(parents=True, exist_ok=True)
            for stale in d.glob(".*.tmp"):  # a write cut short by a crash never became an entry
                stale.unlink(missing_ok=True)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        seqs = [p[0] for d in (self.pending_dir, self.rejected_dir) for n in os.listdir(d) if (p := _parse_name(n))]
        self._next = max(seqs, default=-1) + 1

    def put(self, messages: list[SpoolMessage]) -> list[SpoolEntry]:
        """Append messages in order; each is on disk (fsynced) before this returns."""
        entries = []
        with self._lock:
            for msg in messages:
                seq = self._next
                self._next += 1
                path = self.pending_dir / _name(seq, msg)
                write_bytes(path, encode_entry(msg), fsync=self.fsync)
                entries.append(SpoolEntry(seq, path, msg))
            self._cond.notify_all()
        return entries

    def pending_names(self) -> list[str]:
        """Names of pending entries in sequence order."""
        return sorted(n for n in os.listdir(self.pending_dir) if _parse_name(n))

    def load(self, name: str) -> SpoolEntry | None:
        """Read one pending entry; a damaged one is moved to spool/damaged and None returned."""
        path = self.pending_dir / name
        parsed = _parse_name(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return SpoolEntry(parsed[0], path, decode_entry(data, path))
        except ValueError:
            self.damaged_dir.mkdir(parents=True, exist_ok=True)
            os.replace(path, self.damaged_dir / name)
            raise

    def ack(self, entry: SpoolEntry) -> None:
        """The broker accepted the message: remove it."""
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            pass

    def reject(self, entry: SpoolEntry, reason: str) -> None:
        """The broker refused the message: keep it in spool/rejected with the reason beside it."""
        target = self.rejected_dir / entry.path.name
        os.replace(entry.path, target)
        write_json(target.with_suffix(".reason.json"), {"topic": entry.message.topic, "reason": reason}, self.fsync)

    def requeue_rejected(self) -> int:
        """Move every rejected entry back to pending (after the ACL was fixed); returns how many."""
        n = 0
        for name in sorted(os.listdir(self.rejected_dir)):
            if _parse_name(name):
                os.replace(self.rejected_dir / name, self.pending_dir / name)
                (self.rejected_dir / name).with_suffix(".reason.json").unlink(missing_ok=True)
                n += 1
        with self._lock:
            self._cond.notify_all()
        return n

    def wait(self, timeout: float) -> None:
        """Block until something is put or `timeout` passes."""
        with self._lock:
            self._cond.wait(timeout)

    def unpublished_layers(self) -> set[tuple[str, int]]:
        """(job, layer) of every message not yet accepted by the broker (pending or rejected)."""
        out = set()
        for d in (self.pending_dir, self.rejected_dir):
            for n in os.listdir(d):
                if p := _parse_name(n):
                    out.add((p[1], p[2]))
        return out

    def counts(self) -> dict[str, int]:
        """Number of pending and rejected entries."""
        return {
            "pending": sum(1 for n in os.listdir(self.pending_dir) if _parse_name(n)),
            "rejected": sum(1 for n in os.listdir(self.rejected_dir) if _parse_name(n)),
        }
