"""`lpbf-edge demo`: a simulated printer drives the real box pipeline to an MQTT broker; HTML summary at the end.

The simulated printer (edge.sim.printer) plays the build's laser signal at a speed-up through the real edge
detector and serves the build's webcam frames per detected layer. Everything after that is the box itself:
calibration, super-resolution with the model bundle, analysis, archive, spool, MQTT.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

import cv2
import numpy as np

from edge.analyze.display import fmt_seconds
from edge.demo_summary import write_summary

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


def demo_config(out: Path, host: str, port: int, model: Path | None, build_dir: Path, calib_file: Path | None,
                speed: float = 4.0):
    """The box config the demo runs with (written to out/config.json for `lpbf-edge run` comparisons)."""
    from edge.config import Config

    return Config.model_validate({
        "node": {"node_id": "demo-box", "job": "demo-build"},
        "bridge": {"source": "sim", "emit_recoat": False, "sim_build_dir": str(build_dir), "speedup": speed},
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

    from edge.app import build_box
    from edge.service import BoxService
    from edge.sim.build import generate_build
    from edge.sim.config import SimConfig

    console = Console()
    out = Path(out)
    if (out / "box").exists():
        shutil.rmtree(out / "box")  # a demo run starts from an empty box
    out.mkdir(parents=True, exist_ok=True)
    _log_to(out / "box.log")
    t_start = time.monotonic()
    with console.status(f"simulating a {layers}-layer build..."):
        build_dir = generate_build(out / "build", layers, seed, SimConfig(hr_size_px=hr_size, scale=4), overwrite=True)
        try:
            calib_file = calibrate(build_dir, out)
        except ValueError as exc:
            raise DemoError(f"calibration of the simulated webcam failed: {exc}") from exc
    console.print(f"[green]build[/] {build_dir} ({layers} layers, LR {hr_size // 4}x{hr_size // 4}), "
                  f"calibration {calib_file}")
    proc = None
    if broker is None:
        proc, port = start_local_broker(out / "mosquitto")
        host = "127.0.0.1"
        console.print(f"[green]broker[/] local mosquitto on mqtt://{host}:{port} (config "
                      f"{out / 'mosquitto' / 'mosquitto.conf'})")
    else:
        host, port = parse_broker(broker)
    cfg = demo_config(out, host, port, model, build_dir, calib_file, speed)
    (out / "config.json").write_text(cfg.model_dump_json(indent=1))
    base = f"{cfg.mqtt.prefix}/{cfg.node.node_id}"
    watch: DemoWatch | None = None
    box = None
    try:
        watch = start_watcher(host, port, cfg, out, console)
        with console.status("loading the super-resolution model..."):
            try:  # the same wiring as `lpbf-edge run` with bridge.source sim
                box = build_box(cfg)
            except (RuntimeError, ValueError, OSError) as exc:
                raise DemoError(f"cannot load the super-resolution model: {exc}") from exc
        console.print(f"[green]simulated printer[/] {box.laser.printer.duration_s:.0f} s of printing at {speed:g}x")
        svc = BoxService(cfg, box.stages, box.events)
        rows: list[dict] = []
        progress = Progress(TextColumn("[bold]layers"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console)

        def layer_done(job: str, n: int, meta: dict) -> None:
            """The service's own hook, then a console line and a row for the summary."""
            svc._layer_done(job, n, meta)
            anomaly = json.loads((svc.archive.layer_dir(job, n) / "anomaly.json").read_text())
            rows.append({"layer": n, "state": anomaly["layer_state"], "flags": len(anomaly["flags"]),
                         "timings_s": meta["timings_s"]})
            progress.console.print(f"layer {n}: [bold]{anomaly['layer_state']}[/] ({len(anomaly['flags'])} flags), "
                                   f"SR {fmt_seconds(meta['timings_s'].get('sr'))}, spooled for MQTT")
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
        _mark_verified(rows, watch.watcher, cfg.node.node_id, cfg.node.job)
        wall_s = time.monotonic() - t_start
        summary = _summary_doc(svc.pipeline.stats_dict(), rows, svc.pipeline.model_id, speed, wall_s)
        header = _header_lines(summary, f"mqtt://{host}:{port}", f"{base}/#", out)
        html_path = write_summary(out, Path(cfg.store.root) / "archive", cfg.node.job,
                                  {r["layer"]: r["verified"] for r in rows}, header)
        summary["html"] = str(html_path)
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    finally:
        if box is not None:
            box.close()
        if watch is not None:
            watch.close()
        if proc is not None:
            proc.terminate()
            proc.wait(5)
    console.print(f"[bold green]done[/]: {summary['verified_over_mqtt']}/{layers} layers published and verified "
                  f"over MQTT in {fmt_seconds(summary['wall_time_s'])}. Summary: {html_path}  Archive: "
                  f"{Path(cfg.store.root) / 'archive'}  Subscriber's copy: {out / 'watched'} ({out / 'watch.log'})  "
                  f"Build: {build_dir}  Logs/config: {out}  SR late: {summary['sr_late_layers']} layer(s)")
    return summary


@dataclass
class DemoWatch:
    """The reference subscriber running in a thread for the demo, and its log file."""

    watcher: object
    stop: threading.Event
    thread: threading.Thread
    log: TextIO

    def close(self) -> None:
        """Stop the thread, disconnect, close the log."""
        self.stop.set()
        self.thread.join(5)
        self.watcher.stop()
        self.log.close()


def start_watcher(host: str, port: int, cfg, out: Path, console) -> DemoWatch:
    """The reference subscriber (edge.watch) in a thread: lines to out/watch.log, alerts also on the console."""
    from edge.watch.subscriber import Broker, Watcher, WatchError

    log = open(out / "watch.log", "w", encoding="utf-8")

    def echo(line: str) -> None:
        """A subscriber line to the log; alerts also to the console."""
        log.write(line + "\n")
        log.flush()
        if line.startswith("!!!"):
            console.print(line, style="bold red", markup=False, highlight=False)

    w = Watcher(Broker(host, port), prefix=cfg.mqtt.prefix, node=cfg.node.node_id, out=out / "watched", echo=echo,
                settle_s=30.0)
    try:
        w.start()
    except WatchError as exc:
        log.close()
        raise DemoError(f"the demo's subscriber: {exc}") from exc
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), name="demo-watch", daemon=True)
    t.start()
    return DemoWatch(w, stop, t, log)


def _mark_verified(rows: list[dict], watcher, node: str, job: str, wait_s: float = 30.0) -> None:
    """Set each row's `verified` from what the subscriber received complete (waiting up to wait_s for the last ones)."""
    end = time.monotonic() + wait_s
    while len(watcher.finals) < len(rows) and time.monotonic() < end:
        time.sleep(0.1)
    for r in rows:
        got = watcher.finals.get((node, job, r["layer"]))
        r["verified"] = bool(got is not None and got.ok)
    rows.sort(key=lambda r: r["layer"])


def _summary_doc(stats: dict, rows: list[dict], model_id: str, speed: float, wall_s: float) -> dict:
    """summary.json: the run's numbers, rounded to what matters."""
    sr = stats["latency"].get("sr", {})
    return {"layers": len(rows), "verified_over_mqtt": sum(r["verified"] for r in rows), "model": model_id,
            "printer_speedup": speed, "wall_time_s": round(wall_s, 1),
            "sr_s_mean": round(sr["mean_s"], 1) if sr.get("mean_s") is not None else None,
            "layers_lr_first": stats["counters"].get("layers_lr_first", 0),
            # issue 17's pace target: layers whose predecessor's SR was not published before they started
            "sr_late_layers": stats["counters"].get("layers_lr_first", 0),
            "states": {s: sum(r["state"] == s for r in rows) for s in sorted({r["state"] for r in rows})}, "rows": rows}


def _header_lines(summary: dict, broker: str, topics: str, out: Path) -> dict[str, str]:
    """The summary page's label: value lines, in words."""
    early = summary["sr_late_layers"]
    return {
        "super-resolution model": summary["model"],
        "super-resolution time": f"{fmt_seconds(summary['sr_s_mean'])} per layer on average (2-core CPU)",
        "kept pace with the printer": (
            f"no: {early} of {summary['layers']} layers went out first with the webcam image and the flags found on "
            "it, because super-resolution was still busy with the layer before; their final state followed "
            f"(sr_late_layers {early})"
            if early else "yes: every layer's super-resolved image was ready before the next layer came "
                          "(sr_late_layers 0)"),
        "simulated printer": f"{summary['printer_speedup']:g}\u00d7 real time",
        "whole run": fmt_seconds(summary["wall_time_s"]),
        "MQTT": f"{broker}, topics {topics}; the subscriber's copy and its log are in {out / 'watched'} and "
                f"{out / 'watch.log'}",
    }
