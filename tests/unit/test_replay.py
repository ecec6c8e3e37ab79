"""LayerReplayer over a real archive made by the pipeline: what is replayed, with which ids, how fast, how bounded."""

from __future__ import annotations

import json
import time

import pytest

from edge.publish.commands import CommandError, parse_command
from edge.publish.replay import LayerReplayer
from tests.unit.test_pipeline import _ev, _pipeline, _stages


@pytest.fixture
def built(tmp_path):
    """Pipeline archive of 6 finished layers of job J (spool emptied as if published), layer 7 unfinished."""
    p = _pipeline(tmp_path, _stages())
    p.start()
    for n in range(1, 7):
        p.submit(_ev(n))
    assert p.stop(10)
    for name in p.spool.pending_names():
        p.spool.ack(p.spool.load(name))
    p.archive.put_json("J", 7, "event", {"job": "J", "layer": 7, "layer_uuid": "u7"})
    return p


def _wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_replay_republishes_archived_layers_with_their_ids(built):
    r = LayerReplayer(built.archive, built.spool, built.topics, layers_per_s=50)
    r.start()
    try:
        reply = r.request("J", 2, 9)
        assert reply["layers"] == [2, 3, 4, 5, 6] and reply["pending"] == [7] and reply["missing"] == [8, 9]
        assert _wait(lambda: not r.busy())
    finally:
        r.stop()
    msgs = [built.spool.load(n).message for n in built.spool.pending_names()]
    assert {m.kind for m in msgs} == {"meta", "lr", "sr", "anomaly"}  # never anomaly/latest
    assert sorted({m.layer for m in msgs}) == [2, 3, 4, 5, 6]
    for n in range(2, 7):
        mine = [m for m in msgs if m.layer == n]
        meta = json.loads(mine[0].payload)
        archived = built.archive.get_json("J", n, "meta")
        assert mine[0].kind == "meta" and meta == dict(archived, replayed=True)
        assert {m.correlation for m in mine} == {archived["layer_uuid"].encode()}
        assert next(m for m in mine if m.kind == "sr").payload == built.archive.get_bytes("J", n, "sr.png")
        anomaly = next(m for m in mine if m.kind == "anomaly")
        assert json.loads(anomaly.payload) == built.archive.get_json("J", n, "anomaly")
        assert all(m.stage == "final" and m.qos == 1 and not m.retain for m in mine)


def test_replay_is_rate_limited_and_waits_for_the_spool(built):
    r = LayerReplayer(built.archive, built.spool, built.topics, layers_per_s=10, high_water=9)
    r.start()
    try:
        t0 = time.monotonic()
        r.request("J", 1, 6)
        assert _wait(lambda: len({n.split("+")[2] for n in built.spool.pending_names()}) >= 2)
        time.sleep(0.5)
        stalled = built.spool.counts()["pending"]
        assert stalled <= 9 + 4  # stops adding while the spool holds high_water messages (plus the layer in hand)
        for name in built.spool.pending_names():  # the publisher sends them
            built.spool.ack(built.spool.load(name))
        assert _wait(lambda: not r.busy())
        took = time.monotonic() - t0
    finally:
        r.stop()
    assert took >= 0.5 + 0.45 and r.replayed == 6  # 6 layers at 10/s, plus the stall


def test_replay_requests_are_bounded(built):
    r = LayerReplayer(built.archive, built.spool, built.topics, layers_per_s=1, max_layers=4, max_requests=2)
    with pytest.raises(CommandError, match="at most 4"):
        r.request("J", 1, 5)
    r.request("J", 1, 2)
    r.request("J", 3, 4)
    with pytest.raises(CommandError, match="already queued"):
        r.request("J", 5, 6)
    assert r.request("J", 8, 9)["missing"] == [8, 9]  # nothing to send: never refused
    assert r.stop() == ["J 1..2: 2 layers", "J 3..4: 2 layers"]


def test_replay_command_payload():
    cmd = parse_command("replay", b'{"job": "J", "from": 3, "to": 5}')
    assert (cmd.job, cmd.first, cmd.last) == ("J", 3, 5)
    for payload, word in [(b'{"job": "J", "from": 5, "to": 3}', "before"),
                          (b'{"job": "..", "from": 1, "to": 2}', "job"), (b'{"job": "J", "from": 0, "to": 2}', "from"),
                          (b'{"job": "J", "first": 1, "to": 2}', "first"), (b'{"job": "J", "from": 1}', "to")]:
        with pytest.raises(CommandError, match=word):
            parse_command("replay", payload)
