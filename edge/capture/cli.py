"""`lpbf-edge capture grab|paired`: grab a frame from a camera; record paired frames per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge.config_cli import load_config_or_exit


def grab(
    out: Annotated[Path, typer.Argument(help="PNG file to write.")],
    config: Annotated[Path | None, typer.Option("--config", help="Box YAML config (capture section).")] = None,
    camera: Annotated[str, typer.Option(help="Camera name from the config: webcam or basler.")] = "webcam",
) -> None:
    """Open one configured camera, grab a frame, write it as PNG."""
    import cv2

    from edge.capture.base import CaptureError, LayerAwareCamera
    from edge.capture.factory import build_cameras
    from edge.messages import LayerEvent

    cfg = load_config_or_exit(config).capture
    cams = {c.name: c for c in build_cameras(cfg)}
    if camera not in cams:
        typer.echo(f"error: camera {camera!r} is not configured (have: {', '.join(cams) or 'none'})", err=True)
        raise typer.Exit(2)
    cam = cams[camera]
    try:
        cam.open()
        if isinstance(cam, LayerAwareCamera):
            cam.select(LayerEvent("layer_complete", 1, 0.0, 0.0, "cli"))
        frame = cam.grab(cfg.timeout_s)
    except CaptureError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        cam.close()
    cv2.imwrite(str(out), frame.image)
    typer.echo(f"{out}: {frame.image.shape[1]}x{frame.image.shape[0]} {frame.bit_depth}-bit from {camera}")


def paired(
    out: Annotated[Path, typer.Option("--out", help="Folder for <camera>/<layer>.png and index.jsonl.")],
    trace: Annotated[Path | None, typer.Option(
        "--trace", help="Replay this laser trace CSV instead of bridge.source.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Box YAML config (bridge and capture sections).")] = None,
) -> None:
    """Record both cameras' frames at every layer event (the paper's acquisition of training pairs)."""
    from edge.app import laser_source
    from edge.capture.capture import LayerCapture
    from edge.capture.factory import build_cameras
    from edge.capture.paired import PairedWriter, run_paired
    from firmware_bridge.bridge import run_bridge
    from firmware_bridge.detector import LayerDetector
    from firmware_bridge.errors import BridgeError

    cfg = load_config_or_exit(config)
    try:  # --trace replays as fast as possible; else bridge.source with its own speed-up
        laser = laser_source(cfg, trace=trace, speed=0.0 if trace is not None else None)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    capture = LayerCapture(build_cameras(cfg.capture), timeout_s=cfg.capture.timeout_s)
    capture.open()
    try:
        events = run_bridge(laser.make, LayerDetector(cfg.bridge, source="paired"),
                            max_restarts=-1 if laser.restartable else 0)
        n = run_paired(events, capture, PairedWriter(out), cfg.capture.grab_on)
    except BridgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        capture.close()
    typer.echo(f"{out}: {n} events recorded")


COMMANDS = {"grab": grab, "paired": paired}


def register(app: typer.Typer) -> None:
    """Add the `capture` command group."""
    cap_app = typer.Typer(help="Cameras: grab frames, record paired webcam/Basler frames per layer.",
                          no_args_is_help=True)
    for name, command in COMMANDS.items():
        cap_app.command(name)(command)
    app.add_typer(cap_app, name="capture")
