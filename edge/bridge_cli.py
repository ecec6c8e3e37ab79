"""`lpbf-edge bridge replay|trace|sim|accuracy|daq`: layer events from a trace, a synthetic trace, the sim or the DAQ.

The commands drive firmware_bridge through its public functions; the bridge itself knows nothing of the box's
config file or of the simulated printer (both are edge's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from edge.config_cli import load_config_or_exit

BridgeConfigFile = Annotated[
    Path | None, typer.Option("--config", help="Box YAML config (its bridge section is used).")
]


def _bridge_config(file: Path | None):
    """The bridge section of the box config (defaults when None); a bad file exits 2 naming line and key."""
    return load_config_or_exit(file).bridge


def _echo_events(events, extra=None) -> None:
    """Print one JSON line per event (flushed, so a pipe sees each layer at once)."""
    for ev in events:
        doc = ev.to_json_dict()
        if extra is not None:
            doc.update(extra(ev))
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()


def replay(
    trace: Annotated[Path, typer.Argument(help="CSV with a header and columns time_s, laser_v.")],
    config: BridgeConfigFile = None,
    faults: Annotated[bool, typer.Option(
        help="Also print fault records (stuck signal, gaps) to stderr as JSON.")] = True,
) -> None:
    """Print one JSON line per detected layer event in TRACE.csv."""
    from firmware_bridge.bridge import run_bridge
    from firmware_bridge.detector import LayerDetector
    from firmware_bridge.errors import BridgeError
    from firmware_bridge.sources.replay import TraceReplaySource

    cfg = _bridge_config(config)
    source = TraceReplaySource(trace, chunk=cfg.replay_chunk)
    det = LayerDetector(cfg, source=source.name)
    on_fault = (lambda f: typer.echo(json.dumps(f.to_json_dict()), err=True)) if faults else (lambda f: None)
    try:
        _echo_events(run_bridge(lambda: source, det, on_fault=on_fault))
    except BridgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def trace(
    out: Annotated[Path, typer.Argument(help="CSV file to write (time_s, laser_v).")],
    layers: Annotated[int, typer.Option(min=1, help="Number of layers.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    truth: Annotated[Path | None, typer.Option(help="Also write the true layer-end times as JSON here.")] = None,
) -> None:
    """Write a synthetic laser trace (vectors, jumps, pauses, recoat, spikes, noise, dropouts)."""
    from firmware_bridge.traces import generate_trace

    tr = generate_trace(layers, seed=seed)
    tr.to_csv(out)
    if truth is not None:
        truth.write_text(json.dumps({"layer_ends_s": tr.layer_ends.round(6).tolist()}))
    typer.echo(f"{out}: {tr.t.size} samples, {layers} layers")


def sim(
    build: Annotated[Path, typer.Argument(help="Sim build folder (from `lpbf-edge sim build`).")],
    speedup: Annotated[float, typer.Option(
        help="Printer time runs this many times faster than real time (0: no pacing).")] = 10.0,
    config: BridgeConfigFile = None,
) -> None:
    """Run the simulated printer's laser signal through the detector; one JSON line per event."""
    from edge.sim.printer import SimPrinter
    from firmware_bridge.bridge import run_bridge
    from firmware_bridge.detector import LayerDetector

    cfg = _bridge_config(config)
    try:
        printer = SimPrinter(build, speedup=speedup or None)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc

    def truth(ev) -> dict:
        """The printer's true laser-off time of a completed layer."""
        if ev.event != "layer_complete":
            return {}
        return {"true_t_off_s": round(printer.layer_ends[ev.layer - cfg.start_layer], 6)}

    _echo_events(run_bridge(printer.laser_source, LayerDetector(cfg, source="sim-printer")), extra=truth)


def accuracy(
    layers: Annotated[int, typer.Option(min=1, help="Layers per generated trace.")] = 50,
    seeds: Annotated[int, typer.Option(min=1, help="Number of traces (seeds 0..N-1).")] = 5,
    harsh: Annotated[bool, typer.Option(help="Heavier noise, dropouts, spikes and pauses.")] = False,
) -> None:
    """Detector accuracy on generated traces: layer-count errors and t_off_s error vs ground truth."""
    from firmware_bridge.accuracy import detector_accuracy

    typer.echo(json.dumps(detector_accuracy(layers, seeds, harsh)))


def daq(config: BridgeConfigFile = None) -> None:
    """Watch the NI DAQ and print one JSON line per layer event (Ctrl-C to stop)."""
    from firmware_bridge.bridge import run_bridge
    from firmware_bridge.detector import LayerDetector
    from firmware_bridge.errors import BridgeError
    from firmware_bridge.sources.daq import DaqSource

    cfg = _bridge_config(config)
    det = LayerDetector(cfg, source=f"daq:{cfg.daq.channel}")
    try:
        _echo_events(run_bridge(lambda: DaqSource(cfg.daq), det, max_restarts=-1, backoff_s=cfg.restart_backoff_s))
    except BridgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


COMMANDS = {"replay": replay, "trace": trace, "sim": sim, "accuracy": accuracy, "daq": daq}


def register(app: typer.Typer) -> None:
    """Add the `bridge` command group."""
    bridge_app = typer.Typer(help="Laser-signal layer detection (NI DAQ, trace replay).", no_args_is_help=True)
    for name, command in COMMANDS.items():
        bridge_app.command(name)(command)
    app.add_typer(bridge_app, name="bridge")
