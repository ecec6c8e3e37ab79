"""The web view in the service (web.enabled) and as `lpbf-edge serve`, over HTTP and in headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.browser import Chromium, chromium_path
from tests.integration.conftest import free_port

pytest.importorskip("bottle")
pytest.importorskip("waitress")


class _Analysis:
    """A part in the middle of the plate with one super_elevation flag of the severity the test picks."""

    def __init__(self, img: np.ndarray, severity: str, score: float):
        from edge.messages import AnomalyFlag

        h, w = img.shape
        self.mask = np.zeros((h, w), bool)
        self.mask[h // 4 : h // 2, w // 4 : w // 2] = True
        self.layer_state, self.timings_s = severity, {}
        self.flags = (AnomalyFlag("super_elevation", severity, score, (w // 4, h // 4, w // 8, h // 8), 40),)


def _plate(n: int) -> np.ndarray:
    """A grey plate with a dark square part and some grain."""
    rng = np.random.default_rng(n)
    img = np.full((48, 48), 150, np.uint8)
    img[12:24, 12:24] = 70
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _service(root: Path, port: int, layers: int):
    """A BoxService (no MQTT) with the web view on; SR is slow so later layers go out early (critical on LR)."""
    from edge.config import Config
    from edge.messages import Frame, LayerEvent, LayerFrames, RegisteredLayer, SRLayer
    from edge.pipeline import Stages
    from edge.service import BoxService

    def sr(reg):
        time.sleep(0.5)
        return SRLayer(reg.event, cv2.resize(reg.lr, (192, 192), interpolation=cv2.INTER_CUBIC), None, "cubic-test")

    stages = Stages(
        lambda ev: LayerFrames(ev, {"webcam": Frame("webcam", _plate(ev.layer), time.time())}),
        lambda fr: RegisteredLayer(fr.event, fr.frames["webcam"].image, 400.0),
        sr,
        lambda i, n, s: _Analysis(i, "minor", 1.4),
        lambda i, n, s: _Analysis(i, "critical", 2.3),
    )

    def printer(submit, stop):
        for n in range(1, layers + 1):
            submit(LayerEvent("layer_complete", n, float(n), float(n), "test-printer"))
            if stop.wait(0.1):
                return

    cfg = Config.model_validate(
        {
            "node": {"node_id": "webbox", "job": "W"},
            "mqtt": {"enabled": False},
            "store": {"root": str(root), "fsync": False, "health_interval_s": 0.5},
            "web": {"enabled": True, "port": port},
        }
    )
    return BoxService(cfg, stages, printer)


def _get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET."""
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def test_service_web_view_api_images_and_page(tmp_path):
    """/api/layers lists the archive newest first, image URLs work; the page fits 1400 px, tells the history."""
    port = free_port()
    svc = _service(tmp_path / "box", port, 3)
    svc.start()
    try:
        assert svc.source_done.wait(20) and svc.pipeline.drain(30)
        base = f"http://127.0.0.1:{port}"
        status, ctype, body = _get(base + "/api/layers")
        assert status == 200 and ctype.startswith("application/json")
        layers = json.loads(body)
        assert [e["layer"] for e in layers] == [3, 2, 1] and {e["job"] for e in layers} == {"W"}
        assert all(e["state"] == "minor" and e["stage"] == "final" and e["flag_count"] == 1 for e in layers)
        assert any(
            e["early_state"] == "critical" for e in layers
        )  # SR was busy: the early state came from the webcam image
        for name in ("lr", "sr", "overview", "zoom_lr", "zoom_sr"):
            status, ctype, png = _get(base + layers[0]["images"][name])
            img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
            assert status == 200 and ctype == "image/png" and img is not None, name
        assert cv2.imdecode(np.frombuffer(_get(base + layers[0]["images"]["sr"])[2], np.uint8), 0).shape == (192, 192)
        assert json.loads(_get(base + "/layers/W/1/meta.json")[2])["final"] is True
        assert _get(base + "/layers/W/99/lr.png")[0] == 404 and _get(base + "/layers/W/1/secret.png")[0] == 404
        assert _get(base + "/layers/..%2F..%2Fetc/1/lr.png")[0] == 404
        assert _post_status(base + "/") == 405  # read-only
        health = json.loads(_get(base + "/api/health")[2])
        assert health["ok"] and health["status"] == "running"
        if chromium_path() is None:
            pytest.skip("chromium not installed")
        early_layer = next(e["layer"] for e in layers if e["early_state"] == "critical")
        with Chromium(1400, 900) as c:
            c.open(base + "/")
            assert c.overflow_px() == 0
            assert c.evaluate("document.querySelectorAll('.timeline a').length") == 3
            assert c.evaluate("document.querySelector('.card h2').textContent").startswith("Layer 3")
            assert c.evaluate("Array.from(document.images).every(i => i.naturalWidth > 0)")
            c.open(f"{base}/?job=W&layer={early_layer}")
            text = c.evaluate("document.body.innerText")
            assert "Why it changed: super elevation: 2.3\u00d7 threshold on the webcam image (critical)" in text
            assert "Box running and healthy" in text
    finally:
        svc.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def _post_status(url: str) -> int:
    """Status of a POST (the view is GET-only)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_serve_cli_password_and_refusals(tmp_path):
    """`lpbf-edge serve`: basic auth when a password is set; no password off loopback and a wrong store are refused."""
    root = tmp_path / "box"
    (root / "archive" / "J" / "000001").mkdir(parents=True)
    (root / "archive" / "J" / "000001" / "anomaly.json").write_text(
        '{"job": "J", "layer": 1, "layer_state": "ok", "flags": []}'
    )
    exe = Path(sys.executable).with_name("lpbf-edge")
    port = free_port()
    env = dict(os.environ, LPBF_WEB_PASSWORD="s3cret")
    p = subprocess.Popen(
        [str(exe), "serve", "--store", str(root), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                status = _get(f"http://127.0.0.1:{port}/api/layers")[0]
                break
            except OSError:
                time.sleep(0.2)
        assert status == 401
        assert _get(f"http://127.0.0.1:{port}/api/layers", ("lpbf", "wrong"))[0] == 401
        status, _, body = _get(f"http://127.0.0.1:{port}/api/layers", ("lpbf", "s3cret"))
        assert status == 200 and json.loads(body)[0]["layer"] == 1
    finally:
        p.terminate()
        p.wait(10)
    env.pop("LPBF_WEB_PASSWORD")
    r = subprocess.run(
        [str(exe), "serve", "--store", str(root), "--bind", "0.0.0.0", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "needs a password" in r.stderr and "docs/operator.md" in r.stderr
    r = subprocess.run(
        [str(exe), "serve", "--store", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "not a store root" in r.stderr


def test_empty_store_and_a_layer_still_in_sr(tmp_path):
    """A store with no layers says so; a layer whose SR is pending shows its early state from the webcam image."""
    from edge.web.config import WebConfig
    from edge.web.server import WebError, WebServer

    root = tmp_path / "box"
    (root / "archive").mkdir(parents=True)
    web = WebServer(root, WebConfig(enabled=True, port=free_port())).start()
    try:
        status, _, body = _get(web.url)
        assert status == 200 and b"No layers archived yet" in body
        assert json.loads(_get(web.url + "api/layers")[2]) == []
        d = root / "archive" / "J" / "000001"
        d.mkdir(parents=True)
        cv2.imwrite(str(d / "lr.png"), _plate(1))
        (d / "anomaly_lr.json").write_text(json.dumps({"job": "J", "layer": 1, "layer_state": "critical", "flags": []}))
        (d / "meta.json").write_text(json.dumps({"stage": "lr", "final": False, "flags_image": "lr"}))
        (entry,) = json.loads(_get(web.url + "api/layers")[2])
        assert (entry["stage"], entry["state"], sorted(entry["images"])) == ("early", "critical", ["lr", "overview"])
        status, _, body = _get(web.url)
        assert status == 200 and b"SR pending" in body and b"critical" in body
    finally:
        web.stop()
    with pytest.raises(WebError, match="needs a password"):
        WebServer(root, WebConfig(enabled=True, bind="0.0.0.0", password_env=None))
