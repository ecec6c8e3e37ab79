"""`lpbf-edge segment | analyze | evaluate | report`: layer analysis commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edge.config_cli import load_config_or_exit
from edge.image_limits import DEFAULT_MAX_MP, MAX_MP_HELP


def _each_file(paths: list[Path], work, read_error: type[Exception], what: str) -> None:
    """Run work(path) per file; any failure (MemoryError too) is one line naming the file, the rest still run.

    Exits 1 after the batch when any file failed.
    """
    failed = 0
    for p in paths:
        try:
            work(p)
        except read_error as exc:
            failed += 1
            typer.echo(f"error: {exc}", err=True)
        except MemoryError:
            failed += 1
            typer.echo(f"error: {p}: out of memory during {what} (lower --max-mp or free memory)", err=True)
        except OSError as exc:
            failed += 1
            typer.echo(f"error: {p}: cannot write output ({exc})", err=True)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
            failed += 1
            typer.echo(f"error: {p}: {what} failed ({type(exc).__name__}: {exc})", err=True)
    if failed:
        typer.echo(f"{failed} of {len(paths)} input(s) failed", err=True)
        raise typer.Exit(1)


MODEL_HELP = ("SR model bundle (default: the config's sr.model, else $LPBF_MODEL, else the shipped models/default; "
              "the SR runs with the config's sr settings, as on the box).")


def _calib_group(app: typer.Typer) -> typer.Typer:
    """The `calib` command group (registered by edge.calib_cli), or a new one."""
    for group in app.registered_groups:
        if group.name == "calib" and group.typer_instance is not None:
            return group.typer_instance
    calib_app = typer.Typer(help="Camera calibration and the printer's baseline.", no_args_is_help=True)
    app.add_typer(calib_app, name="calib")
    return calib_app


def load_baseline_or_exit(path: Path | str | None):
    """The baseline at path (None: none), or exit 1 with the reason."""
    if not path:
        return None
    from edge.analyze.baseline import BaselineError, load_baseline

    try:
        return load_baseline(path)
    except BaselineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def register_baseline(app: typer.Typer) -> None:
    """Add `calib baseline`."""

    @_calib_group(app).command("baseline")
    def baseline(
        frames: list[Path] = typer.Argument(
            ..., help="Clean frames of this printer and camera (3 or more recommended): recoat or layer images."),
        out: Path = typer.Option(..., "--out", help="Baseline JSON to write."),
        config: Path | None = typer.Option(None, "--config", help="Box config YAML (analyze section)."),
        registered: bool = typer.Option(
            False, "--registered",
            help="Frames registered to the plate (the box's own frames); default: photographs that may show walls."),
    ) -> None:
        """Learn the printer's normal (expected powder, plate region, recoater axis, clean scores) from clean frames."""
        from edge.analyze.baseline import BaselineError, learn_baseline, save_baseline
        from edge.analyze.imageio import ImageReadError, read_gray
        from edge.analyze.recoat import clean_scores

        cfg = load_config_or_exit(config).analyze
        images, failed = [], 0
        for p in frames:
            try:
                images.append(read_gray(p))
            except ImageReadError as exc:
                typer.echo(f"error: {exc}", err=True)
                failed += 1
        try:
            base = learn_baseline(images, cfg, lambda g, b: clean_scores(g, b, cfg, registered))
        except BaselineError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        save_baseline(base, out)
        scores = ", ".join(f"{k} {v:.1f}" for k, v in sorted(base.clean_scores.items())) or "none (one frame)"
        typer.echo(f"{out}: {base.n_frames} frames, recoater travel along {'y' if base.travel_axis == 0 else 'x'}, "
                   f"clean scores (robust sigmas, leave-one-out): {scores}")
        if failed:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the analysis commands."""
    register_baseline(app)

    @app.command("segment")
    def segment(
        images: list[Path] = typer.Argument(..., help="Layer images (PNG/JPEG)."),
        out: Path = typer.Option(..., "--out", help="Output folder for 0/255 mask PNGs (same names)."),
        config: Path | None = typer.Option(None, "--config", help="Box config YAML (uses its analyze section)."),
        pixel_scale: float | None = typer.Option(None, "--pixel-scale", help="Fixed length scale of pixel thresholds "
                                                 "(for crops)."),
        max_mp: float = typer.Option(DEFAULT_MAX_MP, "--max-mp", min=0.001, help=MAX_MP_HELP),
        registered: bool = typer.Option(
            False, "--registered",
            help="Images registered to the plate (the box's frames, sim builds); default: photographs."),
    ) -> None:
        """Write one 0/255 part mask PNG per input image, same size and name."""
        from edge.analyze.imageio import ImageReadError, read_gray, write_png
        from edge.analyze.segment import Segmenter

        cfg = load_config_or_exit(config).analyze
        if pixel_scale:
            cfg = cfg.model_copy(update={"pixel_scale": pixel_scale})
        seg = Segmenter(cfg, registered=registered)

        def one(p: Path) -> None:
            res = seg.segment(read_gray(p, max_mp))
            write_png(out / (p.stem + ".png"), (res.mask * 255).astype("uint8"))
            typer.echo(f"{p.name}: {len(res.areas)} parts, {int(res.mask.sum())} px")

        _each_file(images, one, ImageReadError, "segmentation")

    @app.command("analyze")
    def analyze(
        images: list[Path] = typer.Argument(..., help="Layer images (PNG/JPEG), each analysed on its own."),
        out: Path = typer.Option(..., "--out", help="Output folder: <name>.json anomaly JSON and <name>.png with flags "
                                 "drawn."),
        config: Path | None = typer.Option(None, "--config", help="Box config YAML (analyze section and node.job)."),
        pixel_scale: float | None = typer.Option(None, "--pixel-scale", help="Fixed length scale of pixel thresholds "
                                                 "(for crops)."),
        max_mp: float = typer.Option(DEFAULT_MAX_MP, "--max-mp", min=0.001, help=MAX_MP_HELP),
        baseline: Path | None = typer.Option(
            None, "--baseline",
            help="Printer baseline (`lpbf-edge calib baseline`); default: the config's analyze.baseline_path, "
            "else zero-config."),
        registered: bool = typer.Option(
            False, "--registered",
            help="Images registered to the plate (the box's frames, sim builds): nothing outside the plate is in "
            "view. Default: photographs, whose walls, plate edges and fixtures are found and left out."),
    ) -> None:
        """Single-layer analysis of each image (no build history)."""
        from edge.analyze.draw import draw_flags
        from edge.analyze.imageio import ImageReadError, layer_number, read_gray, write_png
        from edge.analyze.layer import LayerAnalyzer

        full = load_config_or_exit(config)
        cfg = full.analyze if not pixel_scale else full.analyze.model_copy(update={"pixel_scale": pixel_scale})
        base = load_baseline_or_exit(baseline or cfg.baseline_path)
        out.mkdir(parents=True, exist_ok=True)
        index = {p: i for i, p in enumerate(images, start=1)}

        def one(p: Path) -> None:
            img = read_gray(p, max_mp)
            layer = layer_number(p, index[p])
            res = LayerAnalyzer(cfg, baseline=base, registered=registered).analyze(img, layer)
            doc = res.anomaly_json(full.node.job, layer)
            (out / (p.stem + ".json")).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
            write_png(out / (p.stem + ".png"), draw_flags(img, res.mask, res.flags, res.layer_state))
            kinds = ", ".join(sorted({f.type for f in res.flags})) or "no flags"
            typer.echo(f"{p.name}: {res.layer_state} ({kinds})")

        _each_file(images, one, ImageReadError, "analysis")

    register_reports(app)


def register_reports(app: typer.Typer) -> None:
    """Add `evaluate` and `report`."""

    @app.command("evaluate")
    def evaluate(
        build: Path = typer.Argument(..., help="Sim build folder (build.json, hr/, lr/, masks/)."),
        out: Path | None = typer.Option(None, "--out", help="Output folder for the paper's tables (Markdown, CSV) "
                                        "and plots (needed without --paths)."),
        config: Path | None = typer.Option(None, "--config", help="Box config YAML (analyze and sr sections)."),
        max_layers: int = typer.Option(0, "--max-layers", help="Evaluate at most this many layers (0 = all)."),
        cvd_patches: int = typer.Option(4, "--cvd-patches", help="Patches per source for the (slow) wavelet covariance "
                                        "distance."),
        model: Path | None = typer.Option(None, "--model", help=MODEL_HELP),
        paths: str | None = typer.Option(None, "--paths", help="Compare the box's analysis on image paths, "
                                         "comma-separated from hr, bicubic, sr (sr = the box's configured SR stage): "
                                         "IoU 2D/3D, roughness, critical recall and clean false alarms with and "
                                         "without CAD masks (docs/analysis.md)."),
        json_out: Path | None = typer.Option(None, "--json", help="With --paths: write the numbers to this JSON file."),
        install_frames: int = typer.Option(3, "--install-frames", help="With --paths on a sim build: clean spread "
                                           "frames the printer baseline is learned from, per path (0 = zero-config)."),
    ) -> None:
        """The paper's tables for a build (--out), or the box's analysis on each image path (--paths, --json)."""
        from edge.analyze.evaluate import evaluate_build
        from edge.sr.bundle import BundleError

        full = load_config_or_exit(config)
        if paths is not None:
            _evaluate_paths(build, paths, full, model, max_layers, install_frames, json_out)
            return
        if out is None:
            typer.echo("error: give --out DIR (the paper's tables) or --paths hr,bicubic,sr [--json FILE]", err=True)
            raise typer.Exit(2)
        try:
            res = evaluate_build(build, out, full.analyze, max_layers=max_layers, cvd_patches=cvd_patches,
                                 echo=typer.echo, bundle=model, sr_cfg=full.sr)
        except (FileNotFoundError, ValueError, BundleError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"wrote {res}")

    @app.command("report")
    def report(
        build: Path = typer.Argument(..., help="Sim or recorded build folder."),
        out: Path | None = typer.Option(None, "--out", help="HTML file to write (default BUILD/report.html)."),
        config: Path | None = typer.Option(None, "--config", help="Box config YAML."),
        max_layers: int = typer.Option(0, "--max-layers", help="Report at most this many layers (0 = all)."),
        model: Path | None = typer.Option(None, "--model", help=MODEL_HELP),
    ) -> None:
        """One self-contained HTML report per build (images embedded; opens offline)."""
        from edge.analyze.report import write_report
        from edge.sr.bundle import BundleError

        full = load_config_or_exit(config)
        target = out or (build / "report.html")
        try:
            p = write_report(build, target, full.analyze, job=full.node.job, max_layers=max_layers, echo=typer.echo,
                             bundle=model, sr_cfg=full.sr)
        except (FileNotFoundError, ValueError, BundleError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"wrote {p}")


def _evaluate_paths(build: Path, paths: str, full, model: Path | None, max_layers: int, install_frames: int,
                    json_out: Path | None) -> None:
    """`evaluate --paths`: the box's analysis on each path; prints the numbers, writes --json."""
    import json

    from edge.analyze.paths_eval import evaluate_paths, parse_paths
    from edge.sr.bundle import BundleError

    try:
        names = parse_paths(paths)
        sr_cfg = full.sr if model is None else full.sr.model_copy(update={"model": str(model)})
        doc = evaluate_paths(build, names, full.analyze, sr_cfg, max_layers=max_layers, install_k=install_frames,
                             echo=typer.echo)
    except (FileNotFoundError, ValueError, BundleError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    text = json.dumps(doc, indent=1)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_out.with_name(json_out.name + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(json_out)
        typer.echo(f"wrote {json_out}")
    else:
        typer.echo(text)
