"""`lpbf-edge trt build|check|lint`: a bundle's TensorRT engines, built before the service starts (by Ansible)."""

from __future__ import annotations

from pathlib import Path

import typer

trt_app = typer.Typer(help="TensorRT engines (build and check run on the Jetson box; lint runs anywhere).",
                      no_args_is_help=True)

MODEL = typer.Argument(..., help="Model bundle directory.")
ENGINES = typer.Option(None, "--engines", help="Engine folder; default <model>/engines (where the runtime looks).")


def _bundle(path: Path):
    """A verified bundle, or a clear exit."""
    from edge.sr.bundle import BundleError, load_bundle

    try:
        return load_bundle(path)
    except BundleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@trt_app.command("build")
def build_cmd(
    model: Path = MODEL,
    engines: Path | None = ENGINES,
    buckets: str = typer.Option("", help="Batch buckets, e.g. 1,2,4,8; default trt_build.recipe.DEFAULT_BUCKETS."),
    fp32: bool = typer.Option(False, "--fp32", help="Build FP32 engines instead of FP16 with FP32 islands."),
    force: bool = typer.Option(False, help="Rebuild even when a matching engine exists."),
) -> None:
    """Build (or keep, when the key matches) every engine of a bundle; stale engines are replaced."""
    from edge.sr.trt_engines import build_engines
    from trt_build.build import EngineBuildError
    from trt_build.device import TensorRTUnavailable
    from trt_build.recipe import DEFAULT_BUCKETS, parse_buckets

    try:
        sizes = parse_buckets(buckets) if buckets else DEFAULT_BUCKETS
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    bundle = _bundle(model)
    try:
        build_engines(bundle, engines, sizes, "fp32" if fp32 else "fp16", force, log=typer.echo)
    except (TensorRTUnavailable, EngineBuildError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@trt_app.command("check")
def check_cmd(
    model: Path = MODEL,
    engines: Path | None = ENGINES,
    fp32: bool = typer.Option(False, "--fp32", help="Check FP32 engines instead of FP16."),
    atol: float = typer.Option(5e-2, help="Absolute tolerance vs ONNX Runtime on the same graph."),
    rtol: float = typer.Option(5e-2, help="Relative tolerance vs ONNX Runtime on the same graph."),
) -> None:
    """Verify the runtime accepts every engine for this device and that each agrees with ONNX Runtime."""
    import tempfile

    from edge.sr.trt_engines import EnginesMissing, engine_specs, open_engines, prepare_spec, spec_shapes
    from trt_build.device import TensorRTUnavailable
    from trt_build.parity import check_engine

    bundle, bad = _bundle(model), 0
    try:
        with tempfile.TemporaryDirectory(prefix="lpbf-trt-check-") as tmp:
            for spec in engine_specs(bundle):
                try:
                    (path, buckets), = open_engines(bundle, [spec], engines, "fp32" if fp32 else "fp16").values()
                except EnginesMissing as exc:
                    typer.echo(f"REFUSED {spec.name}: {exc}")
                    bad += 1
                    continue
                prepared = prepare_spec(bundle, spec, Path(tmp))
                shapes = {n: tuple(s) for n, s in spec_shapes(bundle, spec, buckets[0]).items()}
                for p in check_engine(prepared.path, path, atol, rtol, shapes=shapes):
                    typer.echo(f"{spec.name}: {p}")
                    bad += not p.ok
    except TensorRTUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(1 if bad else 0)


@trt_app.command("lint")
def lint_cmd(
    target: Path = typer.Argument(..., help="Model bundle directory (its prepared engine graphs) or one .onnx file."),
    raw: bool = typer.Option(False, "--raw", help="Lint the bundle's graphs as shipped, without preparing them."),
) -> None:
    """Check graphs against the TensorRT 10.3 parser (opset <= 20, operators, restrictions); exit 1 on an error."""
    import tempfile

    from edge.sr.trt_engines import engine_specs, prepare_spec
    from trt_build.lint import errors, lint_file

    findings = []
    if target.is_file():
        findings = lint_file(target)
    else:
        bundle = _bundle(target)
        with tempfile.TemporaryDirectory(prefix="lpbf-trt-lint-") as tmp:
            for spec in engine_specs(bundle):
                if raw:
                    findings += lint_file(bundle.path / spec.file)
                    continue
                from edge.sr.bundle import BundleError

                try:
                    prepared = prepare_spec(bundle, spec, Path(tmp))
                except BundleError as exc:
                    typer.echo(f"ERROR {spec.name}: {exc}")
                    raise typer.Exit(1) from exc
                findings += lint_file(prepared.path)
                typer.echo(f"{spec.name}: opset {prepared.opset}, {prepared.group_norms} GroupNorm decomposed, "
                           f"{len(prepared.fp32_names)} FP32-marked nodes")
    for f in findings:
        typer.echo(str(f))
    typer.echo(f"{len(errors(findings))} errors, {len(findings) - len(errors(findings))} warnings")
    raise typer.Exit(1 if errors(findings) else 0)


def register(app: typer.Typer) -> None:
    """Add the `trt` command group."""
    app.add_typer(trt_app, name="trt")
