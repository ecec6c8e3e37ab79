"""The `lpbf-edge` command: each area registers its own subcommands."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="lpbf-edge",
    help="LPBF edge box: layer capture, latent-diffusion super-resolution, layer analysis, MQTT publishing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module exposes `register(app: typer.Typer) -> None`.
COMMAND_MODULES = (
    "edge.config_cli",
    "edge.sim.cli",
    "firmware_bridge.cli",
    "edge.capture.cli",
    "calib.cli",
    "edge.train.cli",
    "edge.sr.cli",
    "edge.bench_cli",
    "edge.sr.trt_cli",
    "edge.analyze.cli",
    "edge.service_cli",
    "edge.watch.cli",
    "edge.web.cli",
)


def _register_all() -> None:
    """Import every command module and let it add its commands."""
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
