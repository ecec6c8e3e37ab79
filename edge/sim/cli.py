"""`lpbf-edge sim build`: write a synthetic LPBF build to disk."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `sim` command group."""
    sim_app = typer.Typer(help="Synthetic LPBF builds (plate images, webcam views, masks, defect labels).",
                          no_args_is_help=True)

    @sim_app.command("build")
    def build(
        out: Path = typer.Option(..., "--out", help="Output folder (created; a different build there needs "
                                 "--overwrite)."),
        layers: int = typer.Option(10, "--layers", min=1, help="Number of layers to render."),
        seed: int = typer.Option(0, "--seed", help="Seed: the same seed and config give byte-identical files."),
        config: Path | None = typer.Option(None, "--config", help="YAML config file; its `sim` section is used."),
        hr_size: int | None = typer.Option(None, "--hr-size", help="Override sim.hr_size_px (HR image side in "
                                           "pixels)."),
        defect_rate: float | None = typer.Option(None, "--defect-rate", help="Override sim.defect_rate (new defects "
                                                 "per layer)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different build already in OUT (its layer "
                                       "files are deleted)."),
    ) -> None:
        """Render N layers: build.json, hr/, webcam/, lr/, masks/, labels/ under OUT."""
        from pydantic import ValidationError

        from edge.config_cli import load_config_or_exit
        from edge.sim.build import generate_build
        from edge.sim.config import SimConfig

        cfg = load_config_or_exit(config).sim
        try:
            overrides = {k: v for k, v in (("hr_size_px", hr_size), ("defect_rate", defect_rate)) if v is not None}
            if overrides:
                cfg = SimConfig(**{**cfg.model_dump(), **overrides})
        except ValidationError as exc:
            err = exc.errors()[0]
            typer.echo(f"sim option {'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}", err=True)
            raise typer.Exit(2) from exc
        try:
            path = generate_build(out, layers, seed, cfg, progress=True, overwrite=overwrite)
        except FileExistsError as exc:
            typer.echo(f"sim build refused: {exc} (--overwrite)", err=True)
            raise typer.Exit(1) from exc
        except (OSError, ValueError) as exc:
            typer.echo(f"sim build failed: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"wrote {layers} layers to {path} (build.json, hr/, webcam/, lr/, masks/, labels/)")

    app.add_typer(sim_app, name="sim")
