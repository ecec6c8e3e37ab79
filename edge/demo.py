"""`lpbf-edge demo`: a simulated printer drives the real box pipeline to an MQTT broker; HTML summary at the end.

The simulated printer (edge.sim.printer) plays the build's laser signal at a speed-up through the real edge
detector and serves the build's webcam frames per detected layer. Everything after that is the box itself:
calibration, super-resolution with the model bundle, analysis, archive, spool, MQTT.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import html
import json
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np

MOSQUITTO = "/usr/sbin/mosquitto"
INSTALL_HINT = "install a broker with `sudo apt-get install mosquitto` (or pass --broker mqtt://HOST:PORT)"


class DemoError(RuntimeError):
    """The demo cannot run; the message says what to do."""


def parse_broker(url: str) -> tuple[str, int]:
    """mqtt://HOST:PORT -> (host, port); DemoError for anything else."""
    u = urlparse(url)
    if u.scheme != "mqtt" or not u.hostname:
        raise DemoError(f"--broker {url!r}: expected mqtt://HOST:PORT (TLS brokers: use `lpbf-edge run` with a config)")
    return u.hostname, u.port or 1883


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    """Start mosquitto on a free loopback port with a generated config; DemoError with the install line if absent."""
    exe = MOSQUITTO if Path(MOSQUITTO).exists() else shutil.which("mosquitto")
    if not exe:
        raise DemoError(f"no MQTT broker given and mosquitto is not installed: {INSTALL_HINT}")
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser {getpass.getuser()}\n")
    log = open(folder / "mosquitto.log", "ab")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise DemoError(f"mosquitto exited at start; see {folder / 'mosquitto.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise DemoError(f"mosquitto did not listen on 127.0.0.1:{port}; see {folder / 'mosquitto.log'}")


@dataclass
class Watcher:
    """An MQTT subscriber that checks what a dashboard would get: every layer's images match meta's sha256."""

    host: str
    port: int
    base: str
    messages: dict[str, list[bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        import paho.mqtt.client as mqtt

        ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"lpbf-demo-watcher-{self.port}", protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"{self.base}/#", qos=1)
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._on_message
        c.connect_async(self.host, self.port, keepalive=30)
        c.loop_start()
        self.client = c
        if not ready.wait(10):
            raise DemoError(f"cannot subscribe on {self.host}:{self.port} (is the broker reachable?)")

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.setdefault(msg.topic, []).append(bytes(msg.payload))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def layer_report(self, job: str, layer: int) -> dict:
        """What arrived for one layer and whether the images match the sha256 in the last meta."""
        t = f"{self.base}/job/{job}/layer/{layer}"
        with self.lock:
            metas = [json.loads(p) for p in self.messages.get(f"{t}/meta", [])]
            anomalies = [json.loads(p) for p in self.messages.get(f"{t}/anomaly", [])]
            imgs = {k: self.messages.get(f"{t}/{k}", []) for k in ("lr", "sr")}
        final = next((m for m in reversed(metas) if m.get("final")), None)
        ok = final is not None and all(
            any(hashlib.sha256(p).hexdigest() == info["sha256"] for p in imgs[k]) for k, info in final.get("images", {}).items())
        return {"messages": len(metas) + len(anomalies) + sum(map(len, imgs.values())), "verified": ok,
                "anomaly": anomalies[-1] if anomalies else None}


def _thumb(path: Path, size: int = 256) -> str:
    """A PNG file as an embedded data URI, resized to `size` px wide."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return ""
    h, w = img.shape[:2]
    img = cv2.resize(img, (size, max(1, round(h * size / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", img)
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def _overlay(d: Path, flags: list[dict], state: str, size: int = 256) -> str:
    """SR (else LR) with part outlines and flag boxes drawn by edge.analyze.draw, as a data URI."""
    from edge.analyze.draw import draw_flags
    from edge.messages import AnomalyFlag

    base = d / "sr.png" if (d / "sr.png").exists() else d / "lr.png"
    img = cv2.imread(str(base), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return ""
    mask = cv2.imread(str(d / "mask.png"), cv2.IMREAD_GRAYSCALE)
    mask = mask > 0 if mask is not None and mask.shape == img.shape else None
    objs = [AnomalyFlag(f["type"], f["severity"], f["score"], tuple(f["bbox"]), f["area_px"], f.get("layers_persisted", 1)) for f in flags]
    drawn = draw_flags(img, mask, objs, state)
    h, w = drawn.shape[:2]
    drawn = cv2.resize(drawn, (size, max(1, round(h * size / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", drawn)
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def _detail(d: Path, size: int = 256) -> str:
    """Side by side at full SR resolution: an LR crop (pixels enlarged) and the same SR crop, as a data URI."""
    lr = cv2.imread(str(d / "lr.png"), cv2.IMREAD_GRAYSCALE)
    sr = cv2.imread(str(d / "sr.png"), cv2.IMREAD_GRAYSCALE)
    if lr is None or sr is None or sr.shape[0] % lr.shape[0]:
        return ""
    s = sr.shape[0] // lr.shape[0]
    c = max(1, size // s)
    y, x = (lr.shape[0] - c) // 2, (lr.shape[1] - c) // 2
    left = cv2.resize(lr[y:y + c, x:x + c], (c * s, c * s), interpolation=cv2.INTER_NEAREST)
    right = sr[y * s:(y + c) * s, x * s:(x + c) * s]
    ok, buf = cv2.imencode(".png", np.hstack([left, np.full((left.shape[0], 4), 255, np.uint8), right]))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def write_summary(out: Path, archive_root: Path, job: str, rows: list[dict], header: dict) -> Path:
    """Self-contained HTML: per layer LR and SR thumbnails, state, flags, timings, MQTT verification."""
    css = ("body{font-family:sans-serif;margin:2em}img{display:block}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px;"
           "vertical-align:top}.ok{color:#080}.minor{color:#b60}.critical,.capture_failed,.segmentation_failed{color:#c00}")
    head = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in header.items())
    trs = []
    for r in rows:
        d = archive_root / job / f"{r['layer']:06d}"
        flags = "<br>".join(html.escape(f"{f['type']} ({f['severity']}, score {f['score']:.2f}, bbox {f['bbox']})") for f in r["flags"]) or "none"
        imgs = "".join(f"<td><img src='{_thumb(d / f'{k}.png')}' alt='{k}'></td>" if (d / f"{k}.png").exists() else "<td>-</td>"
                       for k in ("lr", "sr"))
        imgs += f"<td><img src='{_overlay(d, r['flags'], r['state'])}' alt='flags'></td>"
        imgs += f"<td><img src='{_detail(d)}' alt='detail'></td>" if (d / "sr.png").exists() else "<td>-</td>"
        trs.append(f"<tr><td>{r['layer']}</td><td class='{r['state']}'>{r['state']}</td>{imgs}<td>{flags}</td>"
                   f"<td>{'<br>'.join(f'{html.escape(k)} {v:.2f}' for k, v in r['timings'].items())}</td><td>{'yes' if r['verified'] else 'NO'}</td></tr>")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>lpbf-edge demo</title><style>{css}</style></head><body>"
           f"<h1>lpbf-edge demo: simulated build</h1><ul>{head}</ul><table><tr><th>layer</th><th>state</th><th>LR</th><th>SR</th>"
           f"<th>parts and flags</th><th>plate centre at SR pitch: LR | SR</th><th>flags</th><th>timings (s)</th><th>received over MQTT, sha256 ok</th></tr>{''.join(trs)}</table>"
           "</body></html>")
    path = out / "summary.html"
    path.write_text(doc, encoding="utf-8")
    return path


def demo_config(out: Path, host: str, port: int, model: Path | None, build_dir: Path, calib_file: Path | None):
    """The box config the demo runs with (written to out/config.yaml for `lpbf-edge run` comparisons)."""
    from edge.config import Config

    return Config.model_validate({
        "node": {"node_id": "demo-box", "job": "demo-build"},
        "bridge": {"source": "sim", "emit_recoat": False},
        "capture": {"webcam": "none", "grab_on": ["layer_complete"], "timeout_s": 5.0},
        "calib": {"file": str(calib_file) if calib_file else None},
        "analyze": {"expected_masks_dir": str(build_dir / "masks")},
        "sr": {"model": str(model) if model else None, "samples": 1},  # the box's default SR profile (fast)
        "store": {"root": str(out / "box"), "health_interval_s": 2.0},
        "mqtt": {"host": host, "port": port, "stats_interval_s": 5.0, "reconnect_min_s": 0.5, "reconnect_max_s": 5.0},
    })


def calibrate(build_dir: Path, out: Path) -> Path:
    """Calibrate the webcam on the build's first frame with the real calibration (plate fiducial dots -> homography)."""
    from calib.register import register

    img = cv2.imread(str(build_dir / "webcam" / "00001.png"), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise DemoError(f"cannot read {build_dir / 'webcam' / '00001.png'}")
    build = json.loads((build_dir / "build.json").read_text())
    cal = register(img, hr_size=int(build["image_size_px"]["hr"][0]), scale=int(build["scale"]),
                   points_hr=np.asarray(build["fiducials_hr"], dtype=np.float64))
    return cal.save(out / "calibration.json")


def _log_to(path: Path) -> None:
    """The box's structured JSON logs go to a file so the console shows progress only."""
    import logging

    from edge.service import JsonFormatter

    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def run_demo(layers: int, broker: str | None, out: Path, seed: int = 7, speed: float = 4.0, model: Path | None = None,
             hr_size: int = 1024) -> dict:
    """Run the whole demo; returns the summary dict (also printed)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edge.capture.capture import LayerCapture
    from edge.service import BoxService, bridge_events, real_stages
    from edge.sim.build import generate_build
    from edge.sim.config import SimConfig
    from edge.sim.printer import SimPrinter

    console = Console()
    out = Path(out)
    if (out / "box").exists():
        shutil.rmtree(out / "box")  # a demo run starts from an empty box
    out.mkdir(parents=True, exist_ok=True)
    _log_to(out / "box.log")
    t_start = time.monotonic()
    with console.status(f"simulating a {layers}-layer build..."):
        build_dir = generate_build(out / "build", layers, seed, SimConfig(hr_size_px=hr_size, scale=4), overwrite=True)
        printer = SimPrinter(build_dir, speedup=speed, seed=seed)
        try:
            calib_file = calibrate(build_dir, out)
        except ValueError as exc:
            raise DemoError(f"calibration of the simulated webcam failed: {exc}") from exc
    console.print(f"[green]build[/] {build_dir} ({layers} layers, LR {hr_size // 4}x{hr_size // 4}), calibration {calib_file}; "
                  f"simulated printer: {printer.duration_s:.0f} s of printing at {speed:g}x")
    proc = None
    if broker is None:
        proc, port = start_local_broker(out / "mosquitto")
        host = "127.0.0.1"
        console.print(f"[green]broker[/] local mosquitto on mqtt://{host}:{port} (config {out / 'mosquitto' / 'mosquitto.conf'})")
    else:
        host, port = parse_broker(broker)
    cfg = demo_config(out, host, port, model, build_dir, calib_file)
    (out / "config.json").write_text(cfg.model_dump_json(indent=1))
    base = f"{cfg.mqtt.prefix}/{cfg.node.node_id}"
    watcher = Watcher(host, port, base)
    cap = None
    try:
        watcher.start()
        cap = LayerCapture([printer.camera("webcam")], cfg.capture.timeout_s)
        cap.open()
        with console.status("loading the super-resolution model..."):
            try:
                stages = real_stages(cfg, cap.capture)
            except (RuntimeError, ValueError, OSError) as exc:
                raise DemoError(f"cannot load the super-resolution model: {exc}") from exc
        events = bridge_events(cfg, printer.laser_source, restart=False)
        svc = BoxService(cfg, stages, events)
        rows: list[dict] = []
        progress = Progress(TextColumn("[bold]layers"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)

        def layer_done(job: str, n: int, meta: dict) -> None:
            svc._layer_done(job, n, meta)
            anomaly = json.loads((svc.archive.layer_dir(job, n) / "anomaly.json").read_text())
            rows.append({"layer": n, "state": anomaly["layer_state"], "flags": anomaly["flags"], "timings": meta["timings_s"]})
            sr_s = meta["timings_s"].get("sr", 0.0)
            progress.console.print(f"layer {n}: [bold]{anomaly['layer_state']}[/] ({len(anomaly['flags'])} flags), "
                                   f"SR {sr_s:.1f} s, model {meta.get('model_id')}, spooled for MQTT")
            progress.advance(task)

        svc.pipeline.on_layer_done = layer_done
        with progress:
            task = progress.add_task("layers", total=layers)
            svc.start()
            while not svc.source_done.wait(0.2):
                pass
            svc.pipeline.drain(600)
            svc.publisher.wait_drained(60)
        svc.stop()
        time.sleep(0.5)
        for r in rows:
            rep = watcher.layer_report(cfg.node.job, r["layer"])
            r["verified"] = rep["verified"]
        rows.sort(key=lambda r: r["layer"])
        stats = svc.pipeline.stats_dict()
        header = {"layers": layers, "published and verified over MQTT": sum(r["verified"] for r in rows),
                  "broker": f"mqtt://{host}:{port}", "topics": f"{base}/#", "model": svc.pipeline.model_id,
                  "printer speed-up": speed, "wall time (s)": round(time.monotonic() - t_start, 1),
                  "mean SR time (s)": stats["latency"].get("sr", {}).get("mean_s"),
                  "layers published LR-first (SR behind)": stats["counters"].get("layers_lr_first", 0),
                  # a layer published LR-first is one whose predecessor's SR was not out before it started
                  "sr_late_layers": stats["counters"].get("layers_lr_first", 0)}
        html_path = write_summary(out, Path(cfg.store.root) / "archive", cfg.node.job, rows, header)
    finally:
        if cap is not None:
            cap.close()
        watcher.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(5)
    summary = {"html": str(html_path), **header, "rows": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    console.print(f"[bold green]done[/]: {header['published and verified over MQTT']}/{layers} layers published and verified "
                  f"over MQTT in {header['wall time (s)']} s. Summary: {html_path}  Archive: {Path(cfg.store.root) / 'archive'}  "
                  f"Build: {build_dir}  Logs/config: {out}  SR late: {header['sr_late_layers']} layer(s)")
    return summary
