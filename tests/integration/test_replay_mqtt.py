"""Lost layers can be replayed (issue 16.9): a subscriber whose broker lost its queue asks `<p>/cmd/replay` and gets
the archived layers again, with their original CorrelationData and `"replayed": true`, rate-limited."""

from __future__ import annotations

import json
import time

from edge.config import Config
from edge.messages import LayerEvent
from edge.service import BoxService
from tests.integration.mqtt_tools import final_layers, send_command
from tests.reliability import layer_counts, record
from tests.unit.test_pipeline import _stages

NODE = "rp"
BASE = f"lpbf/v1/{NODE}"
REPLY = f"{BASE}/reply/historian"


def _service(root, port: int) -> BoxService:
    cfg = Config.model_validate({
        "node": {"node_id": NODE, "job": "J"},
        "store": {"root": str(root), "fsync": False, "health_interval_s": 0.2},
        "mqtt": {"port": port, "reconnect_min_s": 0.5, "reconnect_max_s": 1, "keepalive_s": 5,
                 "replay_layers_per_s": 10},
    })
    svc = BoxService(cfg, _stages(), None)
    svc.start()
    return svc


def _layers(svc: BoxService, numbers) -> None:
    for n in numbers:
        svc.pipeline.submit(LayerEvent("layer_complete", n, float(n), float(n), "test"))
    assert svc.pipeline.drain(20) and svc.publisher.wait_drained(20)


def _offline(sub) -> None:
    """Disconnect a persistent-session subscriber (the broker keeps its session and queues for it)."""
    sub.client.disconnect()
    sub.client.loop_stop()


def _online(sub) -> None:
    sub.ready.clear()
    sub.client.reconnect()
    sub.client.loop_start()
    assert sub.ready.wait(10)


def _gaps(have: set[int], produced: list[int]) -> list[tuple[int, int]]:
    """Contiguous (from, to) ranges of produced layers not in `have`."""
    out: list[list[int]] = []
    for n in produced:
        if n in have:
            continue
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return [tuple(g) for g in out]


def _replay_missing(sub, port: int, produced: list[int], answers) -> tuple[list[dict], float]:
    """What `lpbf-edge watch --replay-missing` does: ask for each gap (replies on `answers`), wait for the layers."""
    before = set(final_layers(sub.messages, "J"))
    replies, t0 = [], time.monotonic()
    for i, (a, b) in enumerate(_gaps(before, produced)):
        corr = f"gap-{i}".encode()
        send_command(port, f"{BASE}/cmd/replay", json.dumps({"job": "J", "from": a, "to": b}).encode(),
                     response_topic=REPLY, correlation=corr)
        assert answers.wait_for(lambda ms, corr=corr: any(m.correlation == corr for m in ms), 10)
        replies.append(json.loads(next(m.payload for m in answers.messages if m.correlation == corr)))
    got = lambda ms: set(final_layers(ms, "J"))  # noqa: E731
    assert sub.wait_for(lambda ms: got(ms) >= set(produced), 30), sorted(got(sub.messages))
    return replies, time.monotonic() - t0


def _check_replayed(sub, root, produced_missing: set[int]) -> None:
    """Replayed layers carry the archived layer UUID as CorrelationData and `replayed: true` in meta."""
    metas = [(m, json.loads(m.payload)) for m in sub.messages if m.topic.endswith("/meta") and "/job/J/" in m.topic]
    replayed = {d["layer"]: (m, d) for m, d in metas if d.get("replayed")}
    assert set(replayed) == produced_missing
    for n, (m, d) in replayed.items():
        archived = json.loads((root / "archive" / "J" / f"{n:06d}" / "meta.json").read_text())
        assert m.correlation == archived["layer_uuid"].encode() and d == dict(archived, replayed=True)
        sr = next(x for x in sub.messages if x.topic == f"{BASE}/job/J/layer/{n}/sr" and x.correlation == m.correlation)
        assert sr.payload == (root / "archive" / "J" / f"{n:06d}" / "sr.png").read_bytes()
    latest = [json.loads(m.payload)["layer"] for m in sub.messages if m.topic == f"{BASE}/anomaly/latest"]
    assert latest == sorted(latest)  # replays never move anomaly/latest back (empty when not subscribed)


def test_replay_after_the_broker_restarted_without_persistence(tmp_path, mosquitto, subscribe):
    broker = mosquitto()
    broker.stop()
    broker.conf.write_text(broker.conf.read_text().replace("persistence true", "persistence false"))
    broker.start()
    sub = subscribe(broker.port, f"{BASE}/#")
    answers = subscribe(broker.port, REPLY)
    svc = _service(tmp_path / "box", broker.port)
    produced = list(range(1, 11))
    try:
        assert svc.publisher.subscribed.wait(10)
        _layers(svc, produced[:3])
        assert sub.wait_for(lambda ms: set(final_layers(ms, "J")) >= {1, 2, 3}, 10)
        _offline(sub)
        _layers(svc, produced[3:8])  # queued by the broker for the offline subscriber...
        broker.stop()
        broker.start()  # ...and lost: no persistence
        assert svc.publisher.connected.wait(15)
        _online(sub)
        _layers(svc, produced[8:])
        assert sub.wait_for(lambda ms: set(final_layers(ms, "J")) >= {9, 10}, 10)
        before = sorted(set(final_layers(sub.messages, "J")))
        assert before == [1, 2, 3, 9, 10]
        replies, took = _replay_missing(sub, broker.port, produced, answers)
    finally:
        svc.stop(5)
    assert replies == [{"command": "replay", "ok": True, "job": "J", "from": 4, "to": 8, "layers": [4, 5, 6, 7, 8],
                        "pending": [], "missing": [], "queued_ahead": 0, "layers_per_s": 10.0}]
    assert took >= 0.4  # 5 layers at 10 per second
    _check_replayed(sub, tmp_path / "box", {4, 5, 6, 7, 8})
    counts = layer_counts(produced, final_layers(sub.messages, "J"))
    assert counts["lost"] == 0
    record("subscriber's broker restarted without persistence (layers 4-8 dropped)", "replay",
           f"before replay {len(before)} of {len(produced)} received; replay 4..8 re-sent {len(replies[0]['layers'])} "
           f"layers in {took:.1f} s", exit_code=None, **counts)


def test_replay_after_the_subscriber_queue_overflowed(tmp_path, mosquitto, subscribe):
    broker = mosquitto()
    broker.stop()
    broker.conf.write_text(broker.conf.read_text() + "max_queued_messages 30\n")
    broker.start()
    sub = subscribe(broker.port, f"{BASE}/job/#")
    answers = subscribe(broker.port, REPLY)
    svc = _service(tmp_path / "box", broker.port)
    produced = list(range(1, 15))
    try:
        assert svc.publisher.subscribed.wait(10)
        _offline(sub)
        _layers(svc, produced)  # 14 layers x 4 messages: the broker queues 30 for the offline subscriber, drops more
        _online(sub)
        time.sleep(1.0)
        before = sorted(set(final_layers(sub.messages, "J")))
        assert 0 < len(before) < len(produced)
        replies, took = _replay_missing(sub, broker.port, produced, answers)
    finally:
        svc.stop(5)
    assert all(r["ok"] and r["missing"] == [] for r in replies)
    missing = set(produced) - set(before)
    _check_replayed(sub, tmp_path / "box", missing)
    counts = layer_counts(produced, final_layers(sub.messages, "J"))
    assert counts["lost"] == 0
    record("offline subscriber's queue overflowed (max_queued_messages 30)", "replay",
           f"before replay {len(before)} of {len(produced)} received; {len(replies)} replay request(s) re-sent "
           f"{len(missing)} layers in {took:.1f} s", **counts)


def test_replay_reply_goes_only_under_the_reply_prefix(tmp_path, mosquitto, subscribe):
    broker = mosquitto()
    sub = subscribe(broker.port, "#")
    svc = _service(tmp_path / "box", broker.port)
    try:
        assert svc.publisher.subscribed.wait(10)
        _layers(svc, [1])
        send_command(broker.port, f"{BASE}/cmd/replay", b'{"job": "J", "from": 1, "to": 1}',
                     response_topic="historian/in", correlation=b"x")
        assert sub.wait_for(lambda ms: any(m.topic == f"{BASE}/cmd/result" for m in ms), 10)
        time.sleep(0.5)
    finally:
        svc.stop(5)
    res = json.loads(next(m.payload for m in sub.messages if m.topic == f"{BASE}/cmd/result"))
    assert res["ok"] is False and "not under" in res["error"]
    assert not any(m.topic.startswith("historian") for m in sub.messages)
    assert not any(json.loads(m.payload).get("replayed") for m in sub.messages if m.topic.endswith("/meta"))
