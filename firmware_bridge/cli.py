"""`lpbf-edge bridge replay|trace|daq`: layer events from a trace file, a synthetic trace, or the DAQ."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `bridge` command group."""
    bridge_app = typer.Typer(help="Laser-signal layer detection (NI DAQ, trace replay).", no_args_is_help=True)

    @bridge_app.command("replay")
    def replay(
        trace: Path = typer.Argument(..., help="CSV with a header and columns time_s, laser_v."),
        config: Path | None = typer.Option(None, "--config", help="Box YAML config (bridge section is used)."),
        faults: bool = typer.Option(True, help="Also print fault records (stuck signal, gaps) to stderr as JSON."),
    ) -> None:
        """Print one JSON line per detected layer event in TRACE.csv."""
        from edge.config import ConfigError, load_config
        from firmware_bridge.bridge import run_bridge
        from firmware_bridge.detector import LayerDetector
        from firmware_bridge.errors import BridgeError
        from firmware_bridge.sources.replay import TraceReplaySource

        try:
            cfg = load_config(config).bridge
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from exc
        source = TraceReplaySource(trace, chunk=cfg.replay_chunk)
        det = LayerDetector(cfg, source=source.name)
        on_fault = (lambda f: typer.echo(json.dumps(f.to_json_dict()), err=True)) if faults else (lambda f: None)
        try:
            for ev in run_bridge(lambda: source, det, on_fault=on_fault):
                sys.stdout.write(json.dumps(ev.to_json_dict()) + "\n")
                sys.stdout.flush()
        except BridgeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc

    @bridge_app.command("trace")
    def trace_cmd(
        out: Path = typer.Argument(..., help="CSV file to write (time_s, laser_v)."),
        layers: int = typer.Option(5, min=1, help="Number of layers."),
        seed: int = typer.Option(0, help="Random seed."),
        truth: Path | None = typer.Option(None, help="Also write the true layer-end times as JSON here."),
    ) -> None:
        """Write a synthetic laser trace (vectors, jumps, pauses, recoat, spikes, noise, dropouts)."""
        from firmware_bridge.traces import generate_trace

        tr = generate_trace(layers, seed=seed)
        tr.to_csv(out)
        if truth is not None:
            truth.write_text(json.dumps({"layer_ends_s": tr.layer_ends.round(6).tolist()}))
        typer.echo(f"{out}: {tr.t.size} samples, {layers} layers")

    @bridge_app.command("sim")
    def sim(
        build: Path = typer.Argument(..., help="Sim build folder (from `lpbf-edge sim build`)."),
        speedup: float = typer.Option(10.0, help="Printer time runs this many times faster than real time (0: no pacing)."),
        config: Path | None = typer.Option(None, "--config", help="Box YAML config (bridge section)."),
    ) -> None:
        """Run the simulated printer's laser signal through the detector; one JSON line per event."""
        from edge.config import load_config
        from edge.sim.printer import SimPrinter
        from firmware_bridge.bridge import run_bridge
        from firmware_bridge.detector import LayerDetector

        cfg = load_config(config).bridge
        try:
            printer = SimPrinter(build, speedup=speedup or None)
        except (ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        for ev in run_bridge(printer.laser_source, LayerDetector(cfg, source="sim-printer")):
            out = ev.to_json_dict()
            if ev.event == "layer_complete":
                out["true_t_off_s"] = round(printer.layer_ends[ev.layer - cfg.start_layer], 6)
            typer.echo(json.dumps(out))

    @bridge_app.command("accuracy")
    def accuracy(
        layers: int = typer.Option(50, min=1, help="Layers per generated trace."),
        seeds: int = typer.Option(5, min=1, help="Number of traces (seeds 0..N-1)."),
        harsh: bool = typer.Option(False, help="Heavier noise, dropouts, spikes and pauses."),
    ) -> None:
        """Detector accuracy on generated traces: layer-count errors and t_off_s error vs ground truth."""
        import numpy as np

        from firmware_bridge.detector import detect
        from firmware_bridge.traces import TraceSpec, generate_trace

        spec = TraceSpec(noise_v=0.2, dropout_prob=0.02, spikes_per_recoat=(5, 10), pause_prob=0.15) if harsh else TraceSpec()
        errs, count_bad = [], 0
        for seed in range(seeds):
            tr = generate_trace(layers, seed=seed, spec=spec)
            done = [e for e in detect(tr.t, tr.v) if e.event == "layer_complete"]
            if len(done) != layers:
                count_bad += 1
                continue
            errs.append(np.abs(np.array([e.t_off_s for e in done]) - tr.layer_ends))
        e = np.concatenate(errs) * 1000 if errs else np.zeros(1)
        typer.echo(json.dumps({"traces": seeds, "layers_per_trace": layers, "harsh": harsh,
                               "traces_with_wrong_count": count_bad, "t_off_err_ms_mean": round(float(e.mean()), 3),
                               "t_off_err_ms_p99": round(float(np.percentile(e, 99)), 3), "t_off_err_ms_max": round(float(e.max()), 3)}))

    @bridge_app.command("daq")
    def daq(config: Path | None = typer.Option(None, "--config", help="Box YAML config (bridge.daq section).")) -> None:
        """Watch the NI DAQ and print one JSON line per layer event (Ctrl-C to stop)."""
        from edge.config import load_config
        from firmware_bridge.bridge import run_bridge
        from firmware_bridge.detector import LayerDetector
        from firmware_bridge.errors import BridgeError
        from firmware_bridge.sources.daq import DaqSource

        cfg = load_config(config).bridge
        det = LayerDetector(cfg, source=f"daq:{cfg.daq.channel}")
        try:
            for ev in run_bridge(lambda: DaqSource(cfg.daq), det, max_restarts=-1, backoff_s=cfg.restart_backoff_s):
                typer.echo(json.dumps(ev.to_json_dict()))
        except BridgeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        except KeyboardInterrupt:
            raise typer.Exit(0) from None

    app.add_typer(bridge_app, name="bridge")
