"""`watch --replay-missing` against the real box (BoxService with cheap stages) over a real mosquitto: layers the
watcher missed while it was offline are asked for on `<p>/cmd/replay`, replayed by the box from its archive and
saved."""

from __future__ import annotations

import json
import threading
import time

import pytest

from edge.config import Config
from edge.messages import LayerEvent
from edge.service import BoxService
from tests.unit.test_pipeline import _stages

pytest.importorskip("paho.mqtt")

NODE = "wr"


def _submit(svc: BoxService, numbers) -> None:
    """Let the box produce and publish these layers."""
    for n in numbers:
        svc.pipeline.submit(LayerEvent("layer_complete", n, float(n), float(n), "test"))
    assert svc.pipeline.drain(20) and svc.publisher.wait_drained(20)


def _wait(cond, lines: list[str], timeout: float = 20.0) -> None:
    """Wait for cond() or fail with what the watcher printed."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "\n".join(lines)
        time.sleep(0.05)


def test_watch_gets_missed_layers_back_from_the_box(tmp_path, mosquitto):
    """Layers 2-3 go out while the watcher is offline: it asks once, the box replays them with their original
    CorrelationData and `replayed: true`, and the watcher saves byte-identical files for all five layers."""
    from edge.watch.subscriber import Broker, Watcher

    broker = mosquitto()
    cfg = Config.model_validate({
        "node": {"node_id": NODE, "job": "JR"},
        "store": {"root": str(tmp_path / "box"), "fsync": False, "health_interval_s": 0.2},
        "mqtt": {"port": broker.port, "reconnect_min_s": 0.5, "reconnect_max_s": 1, "replay_layers_per_s": 10},
    })
    svc = BoxService(cfg, _stages(), None)
    svc.start()
    lines: list[str] = []
    w = Watcher(Broker("127.0.0.1", broker.port), node=NODE, out=tmp_path / "w", replay_missing=True,
                echo=lines.append, settle_s=0.5, gap_settle_s=0.5, retry_s=60.0)
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    try:
        w.start()
        t.start()
        _submit(svc, [1])
        _wait(lambda: (NODE, "JR", 1) in w.finals, lines)
        w.client.disconnect()  # clean session: what the box sends now never reaches this watcher
        w.client.loop_stop()
        _submit(svc, [2, 3])
        w._subscribed.clear()
        w.client.reconnect()
        w.client.loop_start()
        assert w._subscribed.wait(10)
        _submit(svc, [4, 5])
        _wait(lambda: all((NODE, "JR", n) in w.finals and w.finals[(NODE, "JR", n)].ok for n in range(1, 6)), lines)
    finally:
        stop.set()
        t.join(5)
        w.stop()
        svc.stop(timeout=10)
    assert w.summary.replay_requests == 1, lines
    assert any("asking box wr to send layers 2-3 of job JR again" in line for line in lines), lines
    assert any(line.startswith("box accepted the replay of layers 2-3") for line in lines), lines
    assert [n for n in range(1, 6) if w.finals[(NODE, "JR", n)].replayed] == [2, 3]
    for n in range(1, 6):
        d, a = tmp_path / "w" / "JR" / str(n), tmp_path / f"box/archive/JR/{n:06d}"
        assert (d / "sr.png").read_bytes() == (a / "sr.png").read_bytes()
        assert (d / "lr.png").read_bytes() == (a / "lr.png").read_bytes()
        assert json.loads((d / "meta.json").read_text()).get("replayed", False) == (n in (2, 3))
