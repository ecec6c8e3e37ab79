"""Layer edge detector on generated traces: counts, t_off accuracy, chunking, spikes, faults."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.config import BridgeConfig
from firmware_bridge.detector import LayerDetector, detect
from firmware_bridge.errors import BadSampleError
from firmware_bridge.traces import TraceSpec, generate_trace

RATE = 1000.0
_TRACE = generate_trace(2, seed=9)
_WHOLE = detect(_TRACE.t, _TRACE.v)


def _completes(events):
    return [e for e in events if e.event == "layer_complete"]


def _square(segments, total_s, rate=RATE, on_v=5.0):
    """Clean signal that is on during the given (start, end) intervals."""
    t = np.arange(int(total_s * rate)) / rate
    v = np.zeros_like(t)
    for a, b in segments:
        v[(t >= a) & (t < b)] = on_v
    return t, v


@pytest.mark.parametrize("seed", range(8))
def test_generated_traces_exact_count_and_toff_within_20ms(seed):
    tr = generate_trace(12, seed=seed)
    events = detect(tr.t, tr.v)
    done = _completes(events)
    assert [e.layer for e in done] == list(range(1, 13))
    err = np.abs(np.array([e.t_off_s for e in done]) - tr.layer_ends)
    assert err.max() < 0.020, err
    # detection happens min_off_s after the edge, never before it
    assert all(e.t_detected_s - e.t_off_s >= 1.0 - 1e-9 for e in done)


def test_harsh_trace_noise_dropouts_many_spikes_variable_power():
    spec = TraceSpec(noise_v=0.2, dropout_prob=0.02, spikes_per_recoat=(5, 10), power_v=(2.4, 10.0), pause_prob=0.15)
    tr = generate_trace(10, seed=42, spec=spec)
    done = _completes(detect(tr.t, tr.v))
    assert len(done) == 10
    assert np.abs(np.array([e.t_off_s for e in done]) - tr.layer_ends).max() < 0.020


@pytest.mark.parametrize("chunk", [1, 7, 256, 100000])
def test_chunk_size_invariance(chunk):
    tr = generate_trace(4, seed=5)
    whole = detect(tr.t, tr.v)
    det = LayerDetector(source="array")
    parts = []
    for i in range(0, tr.t.size, chunk):
        parts += det.feed(tr.t[i : i + chunk], tr.v[i : i + chunk])
    parts += det.finish()
    assert parts == whole


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=12, unique=True))
def test_any_chunking_gives_identical_events(cuts):
    t, v = _TRACE.t, _TRACE.v
    bounds = [0, *sorted(cuts), t.size]
    det = LayerDetector(source="array")
    got = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        got += det.feed(t[a:b], v[a:b])
    assert got + det.finish() == _WHOLE


def test_pause_inside_layer_does_not_split_but_min_off_does():
    # layer 1 has a 0.5 s pause; then a 1.2 s off ends it; layer 2 follows
    t, v = _square([(0.1, 1.0), (1.5, 2.0), (3.2, 4.0)], 6.0)
    done = _completes(detect(t, v))
    assert [e.layer for e in done] == [1, 2]
    assert done[0].t_off_s == pytest.approx(2.0, abs=0.002)
    assert done[1].t_off_s == pytest.approx(4.0, abs=0.002)


def test_short_spikes_during_recoat_make_no_layer():
    spikes = [(2.0 + k * 0.6, 2.0 + k * 0.6 + 0.004) for k in range(10)]  # 40 ms total, never 50 ms within 0.5 s
    t, v = _square([(0.1, 1.0)] + spikes + [(9.0, 10.0)], 12.0)
    done = _completes(detect(t, v))
    assert [e.layer for e in done] == [1, 2]
    assert done[0].t_off_s == pytest.approx(1.0, abs=0.002)


def test_spike_right_after_layer_end_does_not_move_t_off():
    t, v = _square([(0.1, 1.0), (1.3, 1.303)], 3.0)
    done = _completes(detect(t, v))
    assert len(done) == 1 and done[0].t_off_s == pytest.approx(1.0, abs=0.002)
    assert "spikes_ignored" in done[0].flags


def test_short_vector_after_a_galvo_jump_still_belongs_to_the_layer():
    # last vector is only 3 ms long but follows a 2 ms jump: the layer ends after it, not before
    t, v = _square([(0.1, 1.0), (1.002, 1.005)], 3.0)
    done = _completes(detect(t, v))
    assert len(done) == 1 and done[0].t_off_s == pytest.approx(1.005, abs=0.0015)


def test_single_sample_dropout_ignored_and_t_off_is_first_off_sample():
    t, v = _square([(0.1, 1.0)], 3.0)
    v[500] = 0.0  # dropout inside the layer
    ev = detect(t, v, BridgeConfig(min_off_s=0.0015, start_reset_s=0.001))
    done = _completes(ev)
    assert len(done) == 1
    assert done[0].t_off_s == t[np.nonzero(v > 2)[0][-1] + 1]


def test_min_on_time_is_cumulative():
    # four 20 ms vectors with 50 ms jumps: 80 ms on in total -> one layer
    t, v = _square([(0.1 + k * 0.07, 0.12 + k * 0.07) for k in range(4)], 3.0)
    assert len(_completes(detect(t, v))) == 1
    t, v = _square([(0.1, 0.13)], 3.0)  # 30 ms only -> no layer
    assert _completes(detect(t, v)) == []


def test_hysteresis_band_keeps_state():
    t = np.arange(3000) / RATE
    v = np.where(t < 1.0, 5.0, 0.0)
    v[(t >= 0.3) & (t < 0.8)] = 1.5  # between thresholds: still on
    done = _completes(detect(t, v))
    assert len(done) == 1 and done[0].t_off_s == pytest.approx(1.0, abs=0.002)


def test_recoat_done_after_delay_and_numbering():
    t, v = _square([(0.1, 1.0), (5.0, 6.0)], 9.0)
    ev = detect(t, v, BridgeConfig(recoat_delay_s=2.0))
    kinds = [(e.event, e.layer) for e in ev]
    assert kinds == [("layer_complete", 1), ("recoat_done", 1), ("layer_complete", 2), ("recoat_done", 2)]
    assert ev[1].t_detected_s == pytest.approx(3.0, abs=0.002) and ev[1].t_off_s == ev[0].t_off_s


def test_recoat_cut_short_by_next_layer_is_flagged():
    t, v = _square([(0.1, 1.0), (2.5, 3.0)], 5.0)
    ev = detect(t, v, BridgeConfig(recoat_delay_s=8.0))
    rec = [e for e in ev if e.event == "recoat_done"]
    assert rec[0].layer == 1 and "next_layer_started" in rec[0].flags


def test_recoat_delay_adapts_to_the_printers_gaps():
    # gaps from layer end to next start are 1.5 s; the configured 8 s would fire after the laser is back
    t, v = _square([(0.1, 1.0), (2.5, 3.0), (4.5, 5.0), (6.5, 7.0)], 9.0)
    ev = detect(t, v, BridgeConfig(recoat_delay_s=8.0, recoat_gap_fraction=0.8))
    rec = [e for e in ev if e.event == "recoat_done"]
    assert [e.layer for e in rec] == [1, 2, 3, 4]
    assert "next_layer_started" in rec[0].flags  # nothing learned yet
    for e in rec[1:]:  # then 0.8 x the shortest gap seen (1.5 s): before the next layer starts
        assert "delay_adapted" in e.flags and "next_layer_started" not in e.flags
        assert e.t_detected_s - e.t_off_s == pytest.approx(0.8 * 1.55, abs=0.01)  # start seen after min_on_s


def test_recoat_done_from_the_recoater_signal():
    t, v = _square([(0.1, 1.0), (6.0, 7.0)], 8.0)
    blade = np.zeros_like(t)
    blade[(t >= 1.5) & (t < 3.0)] = 5.0  # the blade moves 1.5-3.0 s after the layer end
    cfg = BridgeConfig(recoat_source="signal", recoat_settle_s=0.25, recoat_delay_s=0.5)
    det = LayerDetector(cfg)
    ev = det.feed(t, v, recoater=blade) + det.finish()
    rec = [e for e in ev if e.event == "recoat_done"]
    assert rec[0].layer == 1 and "recoater_signal" in rec[0].flags
    assert rec[0].t_detected_s == pytest.approx(3.25, abs=0.01)  # not the 0.5 s delay
    with pytest.raises(ValueError, match="recoater"):
        LayerDetector(cfg).feed(t, v, recoater=blade[:-1])


def test_start_layer_and_restart_keep_numbering():
    t, v = _square([(0.1, 1.0), (3.0, 3.5)], 3.4)
    det = LayerDetector(BridgeConfig(emit_recoat=False), start_layer=41)
    ev = det.feed(t, v)  # layer 41 done, layer 42 open when the source dies
    ev += det.reset_signal()
    t2, v2 = _square([(0.5, 1.0)], 3.0)  # new source, time restarts at 0
    ev += det.feed(t2, v2) + det.finish()
    assert [e.layer for e in ev] == [41, 42, 43]
    assert "source_restart" in ev[1].flags
    assert any(f.kind == "source_restart" for f in det.pop_faults())


def test_stuck_high_and_stuck_low_faults():
    cfg = BridgeConfig(stuck_high_s=2.0, stuck_low_s=3.0, emit_recoat=False)
    t, v = _square([(0.1, 3.0)], 8.0)
    det = LayerDetector(cfg)
    ev = det.feed(t, v)
    kinds = [f.kind for f in det.pop_faults()]
    assert kinds == ["stuck_high", "stuck_low"]
    assert ev[0].flags == ("stuck_high",)


def test_nan_and_backwards_time_are_skipped_and_flagged():
    t, v = _square([(0.1, 1.0)], 3.0)
    v[200] = math.nan
    t = t.copy()
    t[300] = t[299]  # repeated time stamp
    det = LayerDetector()
    ev = det.feed(t, v) + det.finish()
    assert len(_completes(ev)) == 1 and "skipped_samples" in ev[0].flags
    assert [f.kind for f in det.pop_faults()] == ["bad_sample", "bad_sample"]
    with pytest.raises(BadSampleError, match="non-finite"):
        LayerDetector(BridgeConfig(bad_samples="error")).feed(t, v)


def test_sample_gap_flagged():
    t, v = _square([(0.1, 1.0)], 3.0)
    t = np.where(t > 0.5, t + 0.4, t)  # 0.4 s without samples inside the layer
    det = LayerDetector()
    ev = det.feed(t, v)
    assert "sample_gap" in ev[0].flags
    assert det.pop_faults()[0].kind == "sample_gap"


def test_end_of_stream_closes_pending_layer_flagged():
    t, v = _square([(0.1, 1.0)], 1.5)  # only 0.5 s off before the data ends
    det = LayerDetector()
    assert det.feed(t, v) == []
    ev = det.finish()
    assert ev[0].layer == 1 and ev[0].flags == ("end_of_stream",) and ev[0].t_off_s == pytest.approx(1.0, abs=0.002)


def test_config_rejects_inverted_thresholds():
    with pytest.raises(ValueError, match="off_threshold_v"):
        BridgeConfig(on_threshold_v=1.0, off_threshold_v=2.0)


def test_detector_accuracy_report_counts_layers_and_edge_error():
    from firmware_bridge.accuracy import detector_accuracy

    rep = detector_accuracy(layers=6, seeds=2)
    assert (rep["traces"], rep["layers_per_trace"], rep["harsh"]) == (2, 6, False)
    assert rep["traces_with_wrong_count"] == 0
    assert 0 <= rep["t_off_err_ms_mean"] <= rep["t_off_err_ms_p99"] <= rep["t_off_err_ms_max"] < 20
