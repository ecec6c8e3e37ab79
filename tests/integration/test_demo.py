"""`lpbf-edge demo` end to end: sim build, laser trace, detector, replay camera, calibration, real SR bundle
(the tiny test bundle), analysis, archive, spool, a local mosquitto started by the demo, HTML summary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge.demo import DemoError, parse_broker


def test_demo_two_layers_through_local_broker(tmp_path, tiny_bundle, capsys):
    """Two layers come out of the real pipeline, are verified over MQTT and land in a self-contained summary."""
    from edge.demo import MOSQUITTO, run_demo

    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")

    out = tmp_path / "demo"
    res = run_demo(layers=2, broker=None, out=out, seed=3, speed=20.0, model=tiny_bundle, hr_size=512)
    assert res["verified_over_mqtt"] == 2 and json.loads((out / "summary.json").read_text())["verified_over_mqtt"] == 2
    assert [r["layer"] for r in res["rows"]] == [1, 2] and all(r["verified"] for r in res["rows"])
    assert res["model"].startswith("tiny-test")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sr_late_layers"] == res["sr_late_layers"] == res["layers_lr_first"]
    assert isinstance(summary["sr_late_layers"], int) and 0 <= summary["sr_late_layers"] <= 2
    page = (out / "summary.html").read_text()
    assert "sr_late_layers" in page
    # per layer: flagged overview + LR and SR zoom crops; no external resources
    assert page.count("data:image/png;base64,") >= 6 and not re.search(r"src=['\"]http", page)
    assert "id='layer-1'" in page and "id='layer-2'" in page and "webcam (LR)" in page
    # the reference subscriber (edge.watch) ran inside the demo and saved what it verified
    for n in (1, 2):
        got = out / "watched" / "demo-build" / str(n)
        assert (got / "sr.png").read_bytes() == (out / "box/archive/demo-build" / f"{n:06d}" / "sr.png").read_bytes()
        assert json.loads((got / "meta.json").read_text())["final"]
    assert "demo-build layer 2" in (out / "watch.log").read_text()
    for n in (1, 2):
        d = out / "box/archive/demo-build" / f"{n:06d}"
        assert (d / "sr.png").exists() and (d / "lr.png").exists()
        meta = json.loads((d / "meta.json").read_text())
        assert meta["final"] and meta["images"]["sr"]["height"] == 4 * meta["images"]["lr"]["height"] == 512
    assert not list((out / "box/spool/pending").iterdir())
    assert "summary.html" in capsys.readouterr().out


def test_broker_url_is_checked():
    """Only mqtt://HOST:PORT is accepted, with a clear message."""
    assert parse_broker("mqtt://10.0.0.5:1884") == ("10.0.0.5", 1884)
    with pytest.raises(DemoError, match="mqtt://HOST:PORT"):
        parse_broker("http://x")


def test_missing_broker_says_how_to_install(tmp_path, monkeypatch):
    """Without --broker and without mosquitto the demo names the package to install."""
    import edge.demo as demo

    monkeypatch.setattr(demo, "MOSQUITTO", str(tmp_path / "nope"))
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    with pytest.raises(DemoError, match="apt-get install mosquitto"):
        demo.start_local_broker(tmp_path)
