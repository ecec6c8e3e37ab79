"""Per-layer overhead of the box except super-resolution.

Stages timed: event -> capture -> register -> analyse -> archive + spool -> PUBACK.

Real parts: a simulated build's webcam frames through the directory-replay camera, the box's own stages
(edge.app.real_stages: calibration, analysers), the on-disk archive and spool (fsync on), paho + a real
mosquitto on loopback.
SR is replaced by a bicubic x4 resize whose time is reported and subtracted. Layers are sent one at a
time (no queueing), so each number is one layer's own latency.

    .venv/bin/python bench/overhead.py --layers 8 --json bench/overhead.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hr-size", type=int, default=1024, help="HR plate side in px (LR is a quarter)")
    ap.add_argument("--no-analysis", action="store_true", help="skip the analyser (measures the plumbing alone)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from rich.console import Console

    from edge.app import real_stages
    from edge.capture.capture import LayerCapture
    from edge.capture.replay import DirectoryReplayCamera
    from edge.config import Config
    from edge.demo import calibrate, start_local_broker
    from edge.messages import LayerEvent, SRLayer
    from edge.pipeline import LayerPipeline
    from edge.publish.client import MqttPublisher
    from edge.publish.topics import Topics
    from edge.sim.build import generate_build
    from edge.sim.config import SimConfig
    from edge.store.archive import LayerArchive
    from edge.store.spool import PublishSpool
    from edge.store.state import BoxState

    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="lpbf-overhead-"))
    with console.status("simulating build + calibrating..."):
        build = generate_build(tmp / "build", args.layers, 3, SimConfig(hr_size_px=args.hr_size, scale=4))
        cal = calibrate(build, tmp)
    cfg = Config.model_validate({"calib": {"file": str(cal)}, "store": {"root": str(tmp / "box")}})
    proc, port = start_local_broker(tmp / "mosquitto")
    cap = LayerCapture([DirectoryReplayCamera(build / "webcam", name="webcam")], 5.0)
    cap.open()
    sr_times: dict[int, float] = {}

    def sr(reg):
        t = time.perf_counter()
        up = cv2.resize(reg.lr, (reg.lr.shape[1] * 4, reg.lr.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
        sr_times[reg.event.layer] = time.perf_counter() - t
        return SRLayer(reg.event, up, None, "bicubic-bench")

    class _NoAnalysis:
        layer_state, flags, timings_s = "ok", (), {}

        def __init__(self, img):
            self.mask = img[:0, :0]

    stages = real_stages(cfg, cap.capture, super_resolve=sr)  # the box's stages, SR replaced by the stand-in
    if args.no_analysis:
        stages = dataclasses.replace(stages, analyze_sr=lambda img, n, std: _NoAnalysis(img), analyze_lr=None)
    root = tmp / "box"
    spool = PublishSpool(root, fsync=True)
    topics = Topics("lpbf/v1", "bench")
    acked: dict[int, float] = {}
    acked_wall: dict[int, float] = {}
    done = threading.Event()

    def on_ack(entry):
        if entry.message.kind == "latest":  # the last message of a layer
            acked[entry.message.layer] = time.perf_counter()
            acked_wall[entry.message.layer] = time.time()
            done.set()

    pub = MqttPublisher(cfg.mqtt.model_copy(update={"port": port}), "bench", spool, on_ack=on_ack)
    pub.start()
    pub.connected.wait(10)
    pipe = LayerPipeline(stages, LayerArchive(root, fsync=True), spool, BoxState(root, "bench"), topics, keep_raw=True)
    pipe.start()
    rows = []
    try:
        for n in range(1, args.layers + 1):
            done.clear()
            t0 = time.perf_counter()
            pipe.submit(LayerEvent("layer_complete", n, float(n), float(n), "bench"))
            if not done.wait(600):
                raise SystemExit(f"layer {n}: no PUBACK within 600 s")
            meta = json.loads((root / "archive/bench" / f"{n:06d}" / "meta.json").read_text())
            t = meta["timings_s"]
            total = acked[n] - t0
            rows.append({"layer": n, "capture": t["capture"], "register": t["register"], "analyze": t["analyze"],
                         "sr_standin": sr_times[n], "to_puback_total": total, "without_sr": total - sr_times[n],
                         "without_sr_and_analysis": total - sr_times[n] - t["analyze"],
                         "spool_to_puback": acked_wall[n] - meta["t_meta_unix"]})
            rows[-1]["archive_images"] = (rows[-1]["without_sr_and_analysis"] - t["capture"] - t["register"]
                                          - rows[-1]["spool_to_puback"])
    finally:
        pipe.stop(5)
        pub.stop(5)
        cap.close()
        proc.terminate()
    keys = ["capture", "register", "archive_images", "spool_to_puback", "analyze", "without_sr_and_analysis",
            "without_sr"]
    summary = {k: {"median_s": statistics.median(r[k] for r in rows), "max_s": max(r[k] for r in rows)} for k in keys}
    console.print(_table(summary, f"per-layer overhead except SR ({args.layers} layers, LR {args.hr_size // 4} px, "
                                  "fsync on, mosquitto loopback)"))
    if args.json:
        args.json.write_text(json.dumps({"layers": args.layers, "hr_size": args.hr_size, "summary": summary,
                                         "rows": rows}, indent=1))
    return 0


def _table(summary: dict, title: str):
    """The summary as a rich table in milliseconds, one row per stage."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("stage")
    table.add_column("median ms", justify="right")
    table.add_column("max ms", justify="right")
    for k, v in summary.items():
        table.add_row(k, f"{v['median_s'] * 1e3:.1f}", f"{v['max_s'] * 1e3:.1f}")
    return table


if __name__ == "__main__":
    sys.exit(main())
