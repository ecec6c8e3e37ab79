"""anomaly/latest only moves forward within a job (issue 16.8: it went 2, 3, 4, 1, 5 after LR-first layers)."""

from __future__ import annotations

import json
import threading
import time

from tests.unit.test_pipeline import _ev, _pipeline, _spooled, _stages


def test_latest_never_goes_back_within_a_job(tmp_path):
    gate = threading.Event()
    p = _pipeline(tmp_path, _stages(gate))
    p.start()
    for n in range(1, 5):
        p.submit(_ev(n))
    end = time.monotonic() + 10
    while time.monotonic() < end and sum(m.kind == "anomaly" for m in _spooled(p)) < 3:
        time.sleep(0.02)
    gate.set()
    assert p.drain(10)
    p.state.set_job("B")
    p.submit(_ev(5))
    p.submit(_ev(6))
    assert p.stop(10)
    msgs = _spooled(p)
    latest = [(m.job, json.loads(m.payload)["layer"]) for m in msgs if m.kind == "latest"]
    assert latest[:3] == [("J", 2), ("J", 3), ("J", 4)]  # LR-first layers 2..4 while SR was stuck on layer 1
    assert ("J", 1) not in latest and latest[-1] == ("B", 2)  # a new job starts over
    for job in ("J", "B"):
        seq = [n for j, n in latest if j == job]
        assert seq == sorted(seq)
    finals = [json.loads(m.payload)["layer"] for m in msgs
              if m.kind == "anomaly" and m.stage == "final" and m.job == "J"]
    assert finals == [1, 2, 3, 4]  # every layer still has its own final anomaly
