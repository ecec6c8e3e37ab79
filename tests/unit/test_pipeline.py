"""LayerPipeline with cheap in-test stages: ordering, LR-first when SR lags, capture failures, crash recovery."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np

from edge.messages import AnomalyFlag, Frame, LayerEvent, LayerFrames, RegisteredLayer, SRLayer
from edge.pipeline import LayerPipeline, Stages
from edge.publish.payloads import sha256_hex
from edge.publish.topics import Topics
from edge.store.archive import LayerArchive
from edge.store.spool import PublishSpool
from edge.store.state import BoxState


class _Analysis:
    def __init__(self, img: np.ndarray):
        self.mask = img > 128
        bright = int(self.mask.sum())
        self.flags = (AnomalyFlag("debris", "minor", 1.0, (0, 0, 4, 4), bright),) if bright else ()
        self.layer_state = "minor" if bright else "ok"
        self.timings_s = {}


def _stages(gate: threading.Event | None = None, fail_layers: set[int] = frozenset()) -> Stages:
    rng = np.random.default_rng(0)

    def capture(ev: LayerEvent) -> LayerFrames:
        if ev.layer in fail_layers:
            raise TimeoutError("no frame within 5 s")
        return LayerFrames(ev, {"webcam": Frame("webcam", rng.integers(0, 255, (48, 64), dtype=np.uint8), time.time())})

    def register(fr: LayerFrames) -> RegisteredLayer:
        return RegisteredLayer(fr.event, cv2.resize(fr.frames["webcam"].image, (16, 16), interpolation=cv2.INTER_AREA),
                               400.0)

    def sr(reg: RegisteredLayer) -> SRLayer:
        if gate is not None:
            assert gate.wait(10)
        return SRLayer(reg.event, cv2.resize(reg.lr, (64, 64), interpolation=cv2.INTER_CUBIC), None, "cubic-test")

    return Stages(capture, register, sr, lambda img, n, std: _Analysis(img), lambda img, n, std: _Analysis(img))


def _pipeline(tmp_path, stages: Stages) -> LayerPipeline:
    return LayerPipeline(stages, LayerArchive(tmp_path, fsync=False), PublishSpool(tmp_path, fsync=False),
                         BoxState(tmp_path, "J"), Topics("lpbf/v1", "n1"), version="t")


def _ev(n: int, kind: str = "layer_complete") -> LayerEvent:
    return LayerEvent(kind, n, float(n), float(n) + 0.01, "test")


def _spooled(p: LayerPipeline) -> list:
    return [p.spool.load(n).message for n in p.spool.pending_names()]


def test_layers_flow_in_order_with_contract_messages(tmp_path):
    """Each layer gives meta, lr, sr, anomaly, latest in order with one correlation id; meta hashes match the images."""
    p = _pipeline(tmp_path, _stages())
    p.start()
    for n in (1, 2, 3):
        p.submit(_ev(n))
        assert p.drain(5)  # SR keeps up: every layer goes out in one piece
    p.submit(_ev(3, "recoat_done"))
    assert p.stop(10)
    msgs = _spooled(p)
    kinds = [(m.layer, m.kind) for m in msgs]
    assert kinds == [(n, k) for n in (1, 2, 3) for k in ("meta", "lr", "sr", "anomaly", "latest")] + [(3, "recoat")]
    for n in (1, 2, 3):
        layer = [m for m in msgs if m.layer == n]
        assert len({m.correlation for m in layer}) == 1
        meta = json.loads(layer[0].payload)
        assert meta["final"] and meta["model_id"] == "cubic-test"
        assert meta["layer_uuid"].encode() == layer[0].correlation
        assert meta["images"]["sr"]["sha256"] == sha256_hex(layer[2].payload)
        assert layer[2].payload == (tmp_path / "archive/J" / f"{n:06d}" / "sr.png").read_bytes()
        assert json.loads(layer[3].payload)["layer_state"] in ("ok", "minor")
    assert p.stats.snapshot()["counters"]["layers_done"] == 3
    assert (tmp_path / "archive/J/000003/recoat_lr.png").exists()


def test_recoat_frame_is_analysed_and_its_flags_published(tmp_path):
    """With a recoat analyser the post-spreading frame gets its own anomaly JSON, same correlation as its layer."""
    from dataclasses import replace

    from edge.analyze.recoat import RecoatAnalyzer

    analyzer = RecoatAnalyzer()
    p = _pipeline(tmp_path, replace(_stages(), analyze_recoat=lambda img, n, std: analyzer.analyze(img, n)))
    p.start()
    p.submit(_ev(1))
    assert p.drain(5)
    p.submit(_ev(1, "recoat_done"))
    assert p.stop(10)
    msgs = _spooled(p)
    assert [m.kind for m in msgs][-2:] == ["recoat", "recoat_anomaly"]
    doc = json.loads(msgs[-1].payload)
    assert doc["job"] == "J" and doc["layer"] == 1 and doc["layer_state"] in ("ok", "minor", "critical")
    assert msgs[-1].correlation == msgs[0].correlation and msgs[-1].topic.endswith("/layer/1/recoat_anomaly")
    assert json.loads((tmp_path / "archive/J/000001/recoat_anomaly.json").read_text()) == doc


def test_slow_sr_publishes_lr_first_and_never_blocks_submit(tmp_path):
    """While SR is stuck, later layers go out as LR + LR flags; the SR layer and updated anomaly follow."""
    gate = threading.Event()
    p = _pipeline(tmp_path, _stages(gate))
    p.start()
    t = time.monotonic()
    for n in range(1, 5):
        p.submit(_ev(n))
    assert time.monotonic() - t < 0.05
    end = time.monotonic() + 10
    while time.monotonic() < end and sum(m.kind == "anomaly" for m in _spooled(p)) < 3:
        time.sleep(0.02)
    early = _spooled(p)
    assert [(m.layer, m.kind) for m in early if m.kind == "anomaly"] == [(2, "anomaly"), (3, "anomaly"), (4, "anomaly")]
    assert not any(m.kind == "sr" for m in early)
    assert json.loads(early[0].payload)["stage"] == "lr" and early[2].stage == "lr" and early[2].kind == "anomaly"
    assert set(json.loads(early[2].payload)) == {"job", "layer", "layer_state", "flags"}
    gate.set()
    assert p.stop(10)
    msgs = _spooled(p)
    sr_layers = [m.layer for m in msgs if m.kind == "sr"]
    assert sr_layers == [1, 2, 3, 4]
    lr_layers = [m.layer for m in msgs if m.kind == "lr"]
    assert sorted(lr_layers) == [1, 2, 3, 4]  # each LR published exactly once
    final_anom = [json.loads(m.payload) for m in msgs if m.kind == "anomaly" and m.stage == "final"]
    assert [a["layer"] for a in final_anom] == [1, 2, 3, 4]
    assert p.stats.snapshot()["counters"]["layers_lr_first"] == 3


def test_capture_failure_is_published_and_next_layer_continues(tmp_path):
    """A layer without a frame still gets meta + anomaly (capture_failed); numbering continues."""
    p = _pipeline(tmp_path, _stages(fail_layers={2}))
    p.start()
    for n in (1, 2, 3):
        p.submit(_ev(n))
    assert p.stop(10)
    msgs = _spooled(p)
    l2 = [m for m in msgs if m.layer == 2]
    assert [m.kind for m in l2][:2] == ["meta", "anomaly"]  # + latest unless layer 3 went out LR-first before it
    assert json.loads(l2[1].payload)["layer_state"] == "capture_failed"
    assert "no frame" in json.loads(l2[0].payload)["failure"]
    assert [m.layer for m in msgs if m.kind == "sr"] == [1, 3]


def test_recovery_finishes_half_done_layers(tmp_path):
    """After a crash: a layer with LR on disk is super-resolved, one with only a number is published capture_failed."""
    stuck = threading.Event()
    p = _pipeline(tmp_path, _stages(gate=stuck))  # SR never finishes: simulates a kill during SR
    p.start()
    p.submit(_ev(1))
    time.sleep(0.3)
    assert (tmp_path / "archive/J/000001/lr.png").exists()
    p._stop.set()
    state = BoxState(tmp_path, "J")
    assert state.next_layer() == ("J", 2)  # number allocated, then "killed" before anything was archived
    p2 = _pipeline(tmp_path, _stages())
    p2.start()
    assert p2.stop(10)
    msgs = _spooled(p2)
    assert [m.layer for m in msgs if m.kind == "sr"] == [1]
    anomaly = [m for m in msgs if m.layer == 2 and m.kind == "anomaly"][0]
    assert json.loads(anomaly.payload)["layer_state"] == "capture_failed"
    assert p2.archive.incomplete_layers() == []
    stuck.set()
    uuid1 = json.loads((tmp_path / "archive/J/000001/event.json").read_text())["layer_uuid"]
    assert {m.correlation for m in msgs if m.layer == 1} == {uuid1.encode()}


def test_sr_estimate_and_lr_reach_the_sr_analysis(tmp_path):
    """An SR layer with a geometry estimate hands it and the registered LR to the SR analyser; the published SR image
    stays the sample (edge.sr_stage)."""
    from dataclasses import replace

    seen = []

    def sr(reg: RegisteredLayer) -> SRLayer:
        up = cv2.resize(reg.lr, (64, 64), interpolation=cv2.INTER_CUBIC)
        return SRLayer(reg.event, up, None, "cubic-test", {}, np.full_like(up, 7))

    def analyze_sr(img, n, std, estimate=None, lr=None):
        seen.append((img.copy(), estimate, lr))
        return _Analysis(img)

    p = _pipeline(tmp_path, replace(_stages(), super_resolve=sr, analyze_sr=analyze_sr))
    p.start()
    p.submit(_ev(1))
    assert p.drain(5)
    assert p.stop(10)
    img, estimate, lr = seen[0]
    assert estimate is not None and (estimate == 7).all() and not (img == 7).all()
    archived_lr = cv2.imread(str(tmp_path / "archive/J/000001/lr.png"), cv2.IMREAD_GRAYSCALE)
    assert lr is not None and np.array_equal(lr, archived_lr)
    assert np.array_equal(cv2.imread(str(tmp_path / "archive/J/000001/sr.png"), cv2.IMREAD_GRAYSCALE), img)
