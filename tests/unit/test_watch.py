"""The reference subscriber's logic: grouping by CorrelationData, sha256, LR-first stages, gaps, replays."""

from __future__ import annotations

import hashlib
import json

import pytest

from edge.watch.assemble import LayerAssembler, LayerMessage
from edge.watch.gaps import GapTracker, missing_ranges, replay_request
from edge.watch.output import alert_line, layer_line, write_stage
from edge.watch.subscriber import WatchError, parse_broker_url

LR, SR = b"\x89PNG-lr-bytes", b"\x89PNG-sr-bytes"


def _meta(stage: str, images: dict[str, bytes], **extra) -> bytes:
    info = {k: {"sha256": hashlib.sha256(v).hexdigest(), "bytes": len(v)} for k, v in images.items()}
    return json.dumps(
        {"stage": stage, "final": stage == "final", "images": info, "t_event_unix": 100.0, **extra}
    ).encode()


def _anomaly(state: str, flags: list[dict] | None = None) -> bytes:
    return json.dumps({"job": "J", "layer": 4, "layer_state": state, "flags": flags or []}).encode()


def _msg(
    kind: str,
    payload: bytes,
    stage: str | None = "final",
    corr: bytes | None = b"uuid-4",
    layer: int = 4,
    t: float = 101.0,
):
    return LayerMessage("box", "J", layer, kind, payload, corr, stage, t)


FLAG = {
    "type": "super_elevation",
    "severity": "critical",
    "score": 2.4,
    "bbox": [10, 10, 5, 5],
    "area_px": 20,
    "layers_persisted": 1,
}


def test_final_layer_completes_only_when_every_image_matches_meta():
    a = LayerAssembler()
    assert a.add(_msg("meta", _meta("final", {"lr": LR, "sr": SR}))) == []
    assert a.add(_msg("lr", LR)) == []
    assert a.add(_msg("sr", SR)) == []
    done = a.add(_msg("anomaly", _anomaly("ok")))
    assert len(done) == 1 and done[0].ok and done[0].stage == "final" and set(done[0].images) == {"lr", "sr"}
    assert a.add(_msg("anomaly", _anomaly("ok"))) == []  # a QoS 1 duplicate does not complete it twice


def test_lr_first_then_final_reuses_the_early_lr_image():
    """The final meta lists the LR image sent in the early stage; the final stage does not resend it."""
    a = LayerAssembler()
    a.add(_msg("meta", _meta("lr", {"lr": LR}), stage="lr"))
    a.add(_msg("lr", LR, stage="lr"))
    early = a.add(_msg("anomaly", _anomaly("critical", [FLAG]), stage="lr"))
    assert [d.stage for d in early] == ["lr"] and early[0].anomaly["layer_state"] == "critical"
    a.add(_msg("meta", _meta("final", {"lr": LR, "sr": SR})))
    a.add(_msg("sr", SR))
    final = a.add(_msg("anomaly", _anomaly("minor", [dict(FLAG, severity="minor", score=1.3)])))
    assert len(final) == 1 and final[0].ok and set(final[0].images) == {"lr", "sr"}
    line = layer_line(final[0], early[0])
    assert "MINOR" in line and "was critical on the webcam image" in line and "2.4" in line and "1.3" in line
    assert alert_line(early[0]).startswith("!!! ALERT CRITICAL") and alert_line(final[0]) is None


def test_sha256_mismatch_is_reported_after_the_settle_time():
    a = LayerAssembler(settle_s=5.0)
    a.add(_msg("meta", _meta("final", {"lr": LR, "sr": SR}), t=100.0))
    a.add(_msg("lr", LR))
    a.add(_msg("sr", SR + b"corrupt"))
    assert a.add(_msg("anomaly", _anomaly("ok"))) == []  # waits: the right payload could still come
    assert a.expire(104.0) == []
    done = a.expire(106.0)
    assert len(done) == 1 and not done[0].ok and set(done[0].images) == {"lr"}
    assert any("sr image sha256" in p for p in done[0].problems)
    assert "INCOMPLETE" in layer_line(done[0])


def test_a_replay_completes_a_layer_given_up_on():
    """Same CorrelationData, meta with replayed: true: the incomplete final stage is taken afresh."""
    a = LayerAssembler(settle_s=1.0)
    a.add(_msg("meta", _meta("final", {"lr": LR, "sr": SR}), t=100.0))
    a.add(_msg("anomaly", _anomaly("ok")))
    assert not a.expire(200.0)[0].ok
    a.add(_msg("meta", _meta("final", {"lr": LR, "sr": SR}, replayed=True), t=300.0))
    a.add(_msg("lr", LR))
    a.add(_msg("sr", SR))
    done = a.add(_msg("anomaly", _anomaly("ok")))
    assert len(done) == 1 and done[0].ok and done[0].replayed and "replayed" in layer_line(done[0])


def test_messages_are_grouped_by_correlation_data_not_arrival():
    """Two layers interleaved: each completes with its own images."""
    a = LayerAssembler()
    other_sr = b"\x89PNG-other"
    a.add(_msg("meta", _meta("final", {"sr": SR}), corr=b"A", layer=4))
    a.add(_msg("meta", _meta("final", {"sr": other_sr}), corr=b"B", layer=5))
    a.add(_msg("sr", other_sr, corr=b"B", layer=5))
    a.add(_msg("sr", SR, corr=b"A", layer=4))
    d5 = a.add(_msg("anomaly", _anomaly("ok"), corr=b"B", layer=5))
    d4 = a.add(_msg("anomaly", _anomaly("ok"), corr=b"A", layer=4))
    assert d5[0].layer == 5 and d5[0].ok and d4[0].layer == 4 and d4[0].ok


def test_capture_failed_layer_has_no_images_and_alerts():
    a = LayerAssembler()
    a.add(
        _msg(
            "meta",
            json.dumps({"stage": "final", "final": True, "images": {}, "failure": "capture_failed: timeout"}).encode(),
        )
    )
    done = a.add(_msg("anomaly", _anomaly("capture_failed")))
    assert done[0].ok and "capture_failed: timeout" in alert_line(done[0])


def test_write_stage_files(tmp_path):
    a = LayerAssembler()
    a.add(_msg("meta", _meta("lr", {"lr": LR}), stage="lr"))
    a.add(_msg("lr", LR, stage="lr"))
    early = a.add(_msg("anomaly", _anomaly("critical", [FLAG]), stage="lr"))[0]
    write_stage(tmp_path, early)
    a.add(_msg("meta", _meta("final", {"lr": LR, "sr": SR})))
    a.add(_msg("sr", SR))
    final = a.add(_msg("anomaly", _anomaly("minor")))[0]
    d = write_stage(tmp_path, final, early)
    assert d == tmp_path / "J" / "4"
    assert (d / "lr.png").read_bytes() == LR and (d / "sr.png").read_bytes() == SR
    assert json.loads((d / "anomaly.json").read_text())["layer_state"] == "minor"
    assert json.loads((d / "anomaly_lr.json").read_text())["layer_state"] == "critical"
    assert json.loads((d / "meta.json").read_text())["stage"] == "final"
    assert [h["layer_state"] for h in json.loads((d / "history.json").read_text())] == ["critical", "minor"]


def test_missing_ranges():
    assert missing_ranges({1, 2, 5, 9}, 1, 10) == [(3, 4), (6, 8), (10, 10)]
    assert missing_ranges({3}, 3, 3) == []


def test_gap_tracker_asks_after_settle_and_retries_a_bounded_number_of_times():
    g = GapTracker(settle_s=5.0, retry_s=30.0, max_tries=2)
    for n in (3, 4, 7):
        g.finished("box", "J", n, True, now=0.0)
    g.finished("box", "J", 8, False, now=0.0)  # arrived with a bad checksum
    assert g.due(now=1.0) == [("box", "J", 8, 8)]  # 5 and 6 just noticed; 8 already waited in the assembler
    assert g.due(now=6.5) == [("box", "J", 5, 6)]
    assert g.due(now=20.0) == []  # asked recently
    assert sorted(g.due(now=40.0)) == [("box", "J", 5, 6), ("box", "J", 8, 8)]
    assert g.due(now=100.0) == []  # max_tries reached
    g.finished("box", "J", 5, True, now=101.0)
    assert g.missing() == [("box", "J", 6), ("box", "J", 8)]


def test_gap_tracker_ignores_layers_before_the_first_seen():
    """A subscriber started at layer 10 does not ask for layers 1-9."""
    g = GapTracker(settle_s=0.0)
    g.seen("box", "J", 10)
    g.finished("box", "J", 10, True, now=0.0)
    g.finished("box", "J", 12, True, now=0.0)
    assert g.due(now=1.0) == [("box", "J", 11, 11)]


def test_replay_request_topic_payload_and_response_topic():
    req = replay_request("lpbf/v1/box", "J", 5, 6, "watch-1a2b")
    assert req.topic == "lpbf/v1/box/cmd/replay"
    assert json.loads(req.payload) == {"job": "J", "from": 5, "to": 6}
    assert req.response_topic == "lpbf/v1/box/reply/watch-1a2b/replay" and len(req.correlation) == 16
    with pytest.raises(ValueError, match="wildcards|reply tag"):
        replay_request("lpbf/v1/box", "J", 1, 1, "a+b")
    with pytest.raises(ValueError, match="job"):
        replay_request("lpbf/v1/box", "J/x", 1, 1, "t")
    with pytest.raises(ValueError, match="from <= to"):
        replay_request("lpbf/v1/box", "J", 4, 3, "t")


def test_broker_url():
    b = parse_broker_url("mqtts://ops@broker.lan")
    assert (b.host, b.port, b.tls, b.username) == ("broker.lan", 8883, True, "ops")
    assert parse_broker_url("mqtt://127.0.0.1:1884").port == 1884
    with pytest.raises(WatchError, match="LPBF_MQTT_PASSWORD"):
        parse_broker_url("mqtt://u:secret@h")
    with pytest.raises(WatchError, match="mqtt://HOST:PORT"):
        parse_broker_url("http://h")


def test_two_boxes_with_one_job_id_do_not_mix_their_files(tmp_path):
    """Without --node, a second box publishing the same job is reported once and not written over the first."""
    from edge.watch.assemble import StageDone
    from edge.watch.subscriber import Broker, Watcher

    lines: list[str] = []
    w = Watcher(Broker("127.0.0.1", 1), out=tmp_path, echo=lines.append)
    meta = {"stage": "final", "final": True, "images": {}}
    for node, n in (("box-a", 1), ("box-b", 1), ("box-b", 2), ("box-a", 2)):
        anomaly = {"job": "J", "layer": n, "layer_state": "ok", "flags": [], "from": node}
        w._done(StageDone(node, "J", n, "final", meta, anomaly, {}, [], 0.0))
    assert json.loads((tmp_path / "J/1/anomaly.json").read_text())["from"] == "box-a"
    assert json.loads((tmp_path / "J/2/anomaly.json").read_text())["from"] == "box-a"
    assert sum("box box-b also publishes job J" in line for line in lines) == 1
    assert len(w.finals) == 4 and w.summary.final_ok == 4
