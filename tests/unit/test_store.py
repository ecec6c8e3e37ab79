"""Archive, spool, retention and box state on disk."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from edge.store.archive import LayerArchive, decode_png
from edge.store.atomic import read_json, write_bytes
from edge.store.retention import apply_retention
from edge.store.spool import PublishSpool, SpoolMessage
from edge.store.state import BoxState


def _msg(job: str, layer: int, kind: str, payload: bytes = b"x") -> SpoolMessage:
    return SpoolMessage(f"t/{job}/{layer}/{kind}", payload, "application/octet-stream", b"uuid", job, layer, kind)


def test_atomic_write_replaces_whole_file(tmp_path):
    """A write leaves no temporary file and the content is complete."""
    p = tmp_path / "a" / "f.bin"
    write_bytes(p, b"1" * 1000)
    write_bytes(p, b"2")
    assert p.read_bytes() == b"2" and sorted(os.listdir(p.parent)) == ["f.bin"]


def test_read_json_names_the_bad_file(tmp_path):
    """A damaged JSON file gives an error that names it."""
    (tmp_path / "s.json").write_text("{oops")
    with pytest.raises(ValueError, match="s.json"):
        read_json(tmp_path / "s.json")


def test_archive_png_roundtrip_16bit(tmp_path):
    """uint16 frames keep their bit depth; put_png returns exactly the archived bytes."""
    a = LayerArchive(tmp_path, fsync=False)
    img = (np.arange(64 * 32, dtype=np.uint16).reshape(32, 64) * 31)
    data = a.put_png("J", 3, "raw_basler", img)
    assert data == a.get_bytes("J", 3, "raw_basler.png")
    assert np.array_equal(decode_png(data), img)
    with pytest.raises(ValueError, match="float32"):
        a.put_png("J", 3, "bad", img.astype(np.float32))


def test_spool_order_ack_reject_and_restart(tmp_path):
    """Entries come back in put order across a restart; ack deletes, reject keeps the data with a reason."""
    s = PublishSpool(tmp_path, fsync=False)
    s.put([_msg("J", 1, "meta", b"m1"), _msg("J", 1, "lr", bytes(range(256)))])
    s.put([_msg("J", 2, "meta")])
    s2 = PublishSpool(tmp_path, fsync=False)  # "restart"
    entries = [s2.load(n) for n in s2.pending_names()]
    assert [(e.message.layer, e.message.kind) for e in entries] == [(1, "meta"), (1, "lr"), (2, "meta")]
    assert entries[1].message.payload == bytes(range(256)) and entries[1].message.correlation == b"uuid"
    s2.ack(entries[0])
    s2.reject(entries[1], "reason code 135 Not authorized")
    assert s2.counts() == {"pending": 1, "rejected": 1}
    assert s2.unpublished_layers() == {("J", 1), ("J", 2)}
    new = s2.put([_msg("J", 3, "meta")])[0]
    assert new.seq > entries[2].seq
    assert s2.requeue_rejected() == 1 and s2.counts() == {"pending": 3, "rejected": 0}


def test_damaged_spool_entry_is_set_aside(tmp_path):
    """A truncated entry raises a clear error once and is moved to spool/damaged."""
    s = PublishSpool(tmp_path, fsync=False)
    e = s.put([_msg("J", 1, "lr", b"0123456789")])[0]
    e.path.write_bytes(e.path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="damaged spool entry"):
        s.load(e.path.name)
    assert s.pending_names() == [] and (s.damaged_dir / e.path.name).exists()


def _done_layer(a: LayerArchive, job: str, n: int, size: int, age_s: float) -> None:
    a.put_png(job, n, "sr", np.random.default_rng(n).integers(0, 255, (size, size), dtype=np.uint8))
    a.put_json(job, n, "event", {"layer": n})
    a.put_json(job, n, "meta", {"final": True})
    t = time.time() - age_s
    os.utime(a.layer_dir(job, n) / "meta.json", (t, t))


def test_retention_never_deletes_unpublished_or_unfinished(tmp_path):
    """Old/oversize published layers go oldest first; unpublished and unfinished ones stay."""
    a, s = LayerArchive(tmp_path, fsync=False), PublishSpool(tmp_path, fsync=False)
    for n in range(1, 6):
        _done_layer(a, "J", n, 64, age_s=(10 - n) * 86400)
    s.put([_msg("J", 1, "sr")])  # layer 1 not yet acknowledged by the broker
    a.put_json("J", 6, "event", {"layer": 6})  # layer 6 still being processed
    deleted = apply_retention(a, s, max_bytes=10**9, max_age_days=6.5)
    assert deleted == [("J", 2), ("J", 3)]  # 8 and 7 days old; layer 1 (9 days) is unpublished
    one = a.size_bytes("J", 4)
    deleted = apply_retention(a, s, max_bytes=a.size_bytes() - one, max_age_days=100)
    assert deleted == [("J", 4)]
    assert {n for _, n, _ in a.layers()} == {1, 5, 6}


def test_state_survives_restart(tmp_path):
    """Layer numbers continue after a restart and per job."""
    st = BoxState(tmp_path, "A")
    assert [st.next_layer() for _ in range(3)][-1] == ("A", 3)
    st.set_job("B", active=True)
    assert st.next_layer() == ("B", 1)
    st2 = BoxState(tmp_path, "ignored-default")
    assert st2.current() == ("B", 1)
    st2.set_job("A")
    assert st2.next_layer() == ("A", 4)
