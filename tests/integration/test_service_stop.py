"""SIGTERM to a real service process with layers queued behind a slow SR: it exits within its stop budget, logs what
stays for the next start, and the next start delivers every layer (issue 16.8: stop took 30+30+8 s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.mqtt_tools import final_layers
from tests.reliability import layer_counts, record
from tests.waiting import wait_until

HERE = Path(__file__).resolve()
N_LAYERS = 8
SR_S = 1.0
BUDGET_S = 3.0


def _child(root: str, port: int, stop_timeout_s: float, feed: int) -> int:
    """Service process: the printer sends `feed` layers 50 ms apart; SR takes SR_S per layer."""
    import cv2

    from edge.config import Config
    from edge.messages import LayerEvent, SRLayer
    from edge.pipeline import Stages
    from edge.service import BoxService, setup_json_logging
    from tests.unit.test_pipeline import _stages

    base = _stages()

    def slow_sr(reg):
        time.sleep(SR_S)
        return SRLayer(reg.event, cv2.resize(reg.lr, (64, 64), interpolation=cv2.INTER_CUBIC), None, "cubic-test")

    cfg = Config.model_validate({
        "node": {"node_id": "stop", "job": "J"},
        "store": {"root": root, "health_interval_s": 0.2},
        "mqtt": {"port": port, "reconnect_min_s": 0.5, "reconnect_max_s": 1, "keepalive_s": 5},
        "service": {"stop_timeout_s": stop_timeout_s},
    })
    stages = Stages(base.capture, base.register, slow_sr, base.analyze_sr, base.analyze_lr)
    svc = BoxService(cfg, stages, None)

    def printer(submit, stop):
        for n in range(1, feed + 1):
            if stop.wait(0.05):
                return
            submit(LayerEvent("layer_complete", n, float(n), float(n), "test-printer"))
        if feed == 0:  # restart run: wait for the recovered layers, then end like a finished build
            svc.pipeline.drain(60)
            svc.publisher.wait_drained(30)
        else:
            stop.wait()

    svc.events = printer
    setup_json_logging()
    return svc.run_forever(exit_when_source_ends=True)


def _spawn(root: Path, port: int, stop_timeout_s: float, feed: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[2]))
    return subprocess.Popen([sys.executable, str(HERE), str(root), str(port), str(stop_timeout_s), str(feed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))


def test_sigterm_finishes_within_the_stop_budget_and_loses_nothing(tmp_path, mosquitto, subscribe):
    broker = mosquitto()
    sub = subscribe(broker.port, "lpbf/v1/stop/job/#")
    root, log = tmp_path / "box", tmp_path / "service.log"
    root.mkdir()
    proc = _spawn(root, broker.port, BUDGET_S, N_LAYERS, log)
    try:
        assert wait_until(lambda: (root / f"archive/J/{N_LAYERS:06d}/lr.png").exists(), 30), log.read_text()[-3000:]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = [json.loads(ln) for ln in log.read_text().splitlines() if '"service_stopped"' in ln][-1]
    assert code == 3 and took < BUDGET_S + 2.5, (code, took)
    assert stopped["unfinished_layers"] and stopped["level"] == "warning"
    proc = _spawn(root, broker.port, 30.0, 0, log)
    try:
        assert proc.wait(90) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    produced = list(range(1, N_LAYERS + 1))
    assert sub.wait_for(lambda ms: sorted(set(final_layers(ms, "J"))) == produced, 10)
    counts = layer_counts(produced, final_layers(sub.messages, "J"))
    assert counts["lost"] == 0 and not list((root / "spool/pending").iterdir())
    record(f"SIGTERM with {N_LAYERS} layers queued behind a {SR_S:g} s SR (stop budget {BUDGET_S:g} s)", "shutdown",
           f"exited after {took:.1f} s: {stopped['msg']}", exit_code=code, **counts)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
