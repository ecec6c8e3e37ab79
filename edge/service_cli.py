"""`lpbf-edge run | health | demo`: the box service, its health check for updates, and the end-to-end demo."""

from __future__ import annotations

from pathlib import Path

import typer

from edge.config_cli import load_config_or_exit


def register(app: typer.Typer) -> None:
    """Add `run`, `health` and `demo`."""

    @app.command("run")
    def run(
        config: Path = typer.Option(..., "--config", help="Box YAML config."),
        trace: Path | None = typer.Option(None, "--trace", help="Replay this laser trace CSV (bridge.source replay)."),
        speed: float | None = typer.Option(None, "--speed", help="With --trace/--sim-build: this many times real time "
                                           "(default: as fast as possible)."),
        sim_build: Path | None = typer.Option(
            None, "--sim-build",
            help="With bridge.source=sim: the sim build folder to print (default: bridge.sim_build_dir)."),
    ) -> None:
        """Run the box service until SIGTERM (systemd: Type=notify, JSON logs on stderr).

        Exit 0: everything done and sent; 1: the laser-signal source failed (e.g. a broken trace);
        3: stopped with layers or spooled messages left for the next start (logged).
        """
        from edge.app import build_box
        from edge.service import BoxService, setup_json_logging

        cfg = load_config_or_exit(config)
        setup_json_logging()
        try:  # no --speed: a replayed trace or the sim runs as fast as possible
            box = build_box(cfg, trace=trace, speed=0.0 if speed is None else speed, sim_build=sim_build)
        except (ValueError, OSError, ImportError, RuntimeError) as exc:
            typer.echo(f"lpbf-edge run: cannot start: {exc}", err=True)
            raise typer.Exit(1) from exc
        try:
            code = BoxService(cfg, box.stages, box.events).run_forever(exit_when_source_ends=not box.laser.restartable)
        finally:
            box.close()
        raise typer.Exit(code)

    @app.command("health")
    def health(
        config: Path = typer.Option(..., "--config", help="Box YAML config (store.root locates the health file)."),
        as_json: bool = typer.Option(False, "--json", help="Also print the whole health.json after the line."),
    ) -> None:
        """Exit 0 when the running service reports itself healthy, else 1 (also when degraded); one line saying why."""
        from edge.health import HEALTH_FILE, check_health

        cfg = load_config_or_exit(config)
        ok, reason = check_health(cfg.store.root, cfg.store.health_max_age_s)
        typer.echo(reason)
        if as_json:
            try:
                typer.echo((Path(cfg.store.root) / HEALTH_FILE).read_text(encoding="utf-8").rstrip())
            except OSError:
                pass
        raise typer.Exit(0 if ok else 1)

    @app.command("demo")
    def demo(
        layers: int = typer.Option(6, "--layers", min=1, max=200, help="Layers of the simulated build."),
        broker: str | None = typer.Option(None, "--broker", help="mqtt://HOST:PORT of a broker to use; none starts a "
                                          "local mosquitto."),
        out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the build, archive, logs and "
                                 "summary.html."),
        seed: int = typer.Option(7, "--seed", help="Seed of the simulated build."),
        speed: float = typer.Option(4.0, "--speed", help="Simulated printer speed-up over real time."),
        model: Path | None = typer.Option(None, "--model", help="SR model bundle (default: the shipped default "
                                          "model)."),
        hr_size: int = typer.Option(1024, "--hr-size", min=256, help="Side of the simulated HR plate in pixels (LR is "
                                    "a quarter)."),
    ) -> None:
        """A simulated build through the real pipeline to an MQTT broker, with an HTML summary."""
        from edge.demo import DemoError, run_demo

        try:
            run_demo(layers=layers, broker=broker, out=out, seed=seed, speed=speed, model=model, hr_size=hr_size)
        except DemoError as exc:
            typer.echo(f"lpbf-edge demo: {exc}", err=True)
            raise typer.Exit(1) from exc
