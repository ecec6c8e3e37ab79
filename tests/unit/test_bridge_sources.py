"""Trace replay CSV, the `bridge replay` command, source restarts and the DAQ's missing-driver error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edge import bridge_cli
from firmware_bridge.bridge import run_bridge
from firmware_bridge.config import BridgeConfig, DaqConfig
from firmware_bridge.detector import LayerDetector
from firmware_bridge.errors import DaqUnavailableError, SourceError, TraceError
from firmware_bridge.sources.replay import TraceReplaySource, read_trace
from firmware_bridge.traces import generate_trace


def _app() -> typer.Typer:
    app = typer.Typer()
    bridge_cli.register(app)
    return app


def test_cli_replay_prints_one_json_line_per_event(tmp_path):
    tr = generate_trace(3, seed=1)
    csv = tr.to_csv(tmp_path / "trace.csv")
    res = CliRunner().invoke(_app(), ["bridge", "replay", str(csv)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    done = [x for x in lines if x["event"] == "layer_complete"]
    assert [x["layer"] for x in done] == [1, 2, 3]
    assert np.abs(np.array([x["t_off_s"] for x in done]) - tr.layer_ends).max() < 0.02
    assert {"event", "layer", "t_off_s", "t_detected_s", "source", "flags"} <= set(lines[0])


def test_cli_replay_uses_config_file(tmp_path):
    tr = generate_trace(2, seed=2)
    csv = tr.to_csv(tmp_path / "trace.csv")
    cfg = tmp_path / "box.yaml"
    cfg.write_text("bridge:\n  emit_recoat: false\n  start_layer: 7\n")
    res = CliRunner().invoke(_app(), ["bridge", "replay", str(csv), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["layer"] for x in res.stdout.splitlines()] == [7, 8]


@pytest.mark.parametrize("command", [["replay", "trace.csv"], ["daq"]])
def test_cli_bad_config_names_line_and_key_without_traceback(tmp_path, command):
    cfg = tmp_path / "box.yaml"
    cfg.write_text("bridge:\n  emit_recoat: false\n  min_off_z: 2\n")
    res = CliRunner().invoke(_app(), ["bridge", *command, "--config", str(cfg)])
    assert res.exit_code == 2, res.output
    assert f"{cfg}:line 3: bridge.min_off_z" in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    "body, where, what",
    [
        ("time_s,laser_v\n0.0,0.1\n0.001,abc\n", ":3:", "bad row"),
        ("time_s,laser_v\n0.0,0.1\n0.0,0.2\n", ":3:", "does not increase"),
        ("t,v\n0.0,0.1\n", ":1:", "time_s"),
        ("", ":1:", "empty"),
        ("time_s,laser_v\n0.0,nan\n", ":2:", "non-finite"),
    ],
)
def test_bad_trace_names_file_and_line(tmp_path, body, where, what):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(TraceError, match=what) as exc:
        read_trace(p)
    assert f"bad.csv{where}" in str(exc.value)
    res = CliRunner().invoke(_app(), ["bridge", "replay", str(p)])
    assert res.exit_code == 1 and "bad.csv" in res.output


def test_missing_trace_file_is_clear(tmp_path):
    with pytest.raises(TraceError, match="cannot open"):
        read_trace(tmp_path / "nope.csv")


def test_replay_columns_in_any_order_and_extra_columns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("laser_v,galvo_x,time_s\n0.5,1,0.0\n5.0,2,0.001\n")
    t, v = read_trace(p)
    assert t.tolist() == [0.0, 0.001] and v.tolist() == [0.5, 5.0]


class _DyingSource:
    """A source that yields part of a trace then fails (fake used only in this test)."""

    def __init__(self, t, v, fail_at):
        self.name, self.t, self.v, self.fail_at = "dying", t, v, fail_at

    def chunks(self):
        for i in range(0, self.t.size, 500):
            if self.fail_at is not None and i >= self.fail_at:
                raise SourceError("device vanished")
            yield self.t[i : i + 500], self.v[i : i + 500]

    def close(self):
        pass


def test_bridge_restarts_dead_source_and_numbering_never_repeats():
    tr = generate_trace(3, seed=4)
    plan = [(tr.t, tr.v, 7000), (tr.t, tr.v, None)]  # dies inside layer 2, the replacement replays all 3
    sources = iter([_DyingSource(*p) for p in plan])
    sleeps = []
    det = LayerDetector(BridgeConfig(emit_recoat=False))
    events = list(run_bridge(lambda: next(sources), det, max_restarts=1, sleep=sleeps.append))
    assert [e.layer for e in events] == [1, 2, 3, 4, 5]
    assert events[1].flags == ("source_restart",) and "source_restart" not in events[2].flags
    assert sleeps == [1.0]


def test_bridge_gives_up_after_max_restarts():
    tr = generate_trace(1, seed=4)
    det = LayerDetector()
    with pytest.raises(SourceError, match="vanished"):
        list(run_bridge(lambda: _DyingSource(tr.t, tr.v, 0), det, max_restarts=2, sleep=lambda s: None))


def test_replay_source_chunks_cover_the_file(tmp_path):
    tr = generate_trace(1, seed=3)
    src = TraceReplaySource(tr.to_csv(tmp_path / "x.csv"), chunk=333)
    t = np.concatenate([c[0] for c in src.chunks()])
    assert np.allclose(t, tr.t, atol=1e-6)


def test_daq_without_driver_names_what_is_missing():
    from firmware_bridge.sources.daq import DaqSource, _import_nidaqmx

    try:
        _import_nidaqmx()
    except DaqUnavailableError as exc:
        assert "NI-DAQmx" in str(exc) or "nidaqmx" in str(exc)
        with pytest.raises(DaqUnavailableError):
            next(DaqSource(DaqConfig()).chunks())
    else:
        pytest.skip("an NI-DAQmx driver with a device is present; see tests/daq")


class _FakeDaqError(Exception):
    """Stands in for nidaqmx.errors.DaqError (test only): carries an error_code."""

    def __init__(self, code):
        super().__init__(f"DAQmx error {code}")
        self.error_code = code


def test_daq_overrun_and_silence_become_source_errors(monkeypatch):
    from firmware_bridge.sources.daq import DaqSource

    src = DaqSource(DaqConfig(mode="analog"))
    monkeypatch.setattr(src, "_open", lambda: None)  # the driver callbacks are replaced by queue items below
    src._q.put((np.array([0.0, 0.001]), np.array([0.1, 0.2])))
    src._q.put(_FakeDaqError(-200279))
    it = src.chunks()
    t, v = next(it)
    assert t.tolist() == [0.0, 0.001]
    with pytest.raises(SourceError, match=r"buffer overrun \(-200279\)"):
        next(it)


def test_daq_digital_mode_repeats_state_between_edges(monkeypatch):
    from firmware_bridge.sources import daq as daq_mod

    monkeypatch.setattr(daq_mod, "_HEARTBEAT_S", 0.01)
    src = daq_mod.DaqSource(DaqConfig(mode="digital", digital_on_v=5.0))
    monkeypatch.setattr(src, "_open", lambda: None)
    src._q.put((np.array([1.0]), np.array([5.0])))
    it = src.chunks()
    assert next(it)[1].tolist() == [5.0]
    t2, v2 = next(it)  # no edge queued: the heartbeat repeats the last state
    assert v2.tolist() == [5.0]


def test_source_factory_from_config(tmp_path):
    from firmware_bridge.sources.factory import source_factory

    csv = generate_trace(1, seed=0).to_csv(tmp_path / "t.csv")
    make = source_factory(BridgeConfig(source="replay", trace_file=str(csv), speedup=0))
    assert make().name == "replay:t.csv"
    assert make().name.startswith("replay")  # a fresh source each call (restartable)
    with pytest.raises(ValueError, match="trace_file"):
        source_factory(BridgeConfig(source="replay"))
    with pytest.raises(ValueError, match="sim_build_dir"):
        source_factory(BridgeConfig(source="sim"))
    sim = lambda: TraceReplaySource(csv)  # noqa: E731  (the simulated printer's laser source, owned by edge)
    assert source_factory(BridgeConfig(source="sim"), sim_source=sim) is sim
    assert source_factory(BridgeConfig(source="replay", trace_file=str(csv)), sim_source=sim) is not sim
    assert type(source_factory(BridgeConfig(source="daq"))()).__name__ == "DaqSource"
