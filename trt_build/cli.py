"""`lpbf-edge trt build|check`: FP16 engines for a model bundle's ONNX graphs, cached per device."""

from __future__ import annotations

from pathlib import Path

import typer

trt_app = typer.Typer(help="TensorRT engines (run on the Jetson/CUDA box).", no_args_is_help=True)


def _targets(path: Path, buckets: list[int]) -> list[tuple[Path, str, list]]:
    """(onnx file, engine name, profiles) for a model bundle's graphs (static LR tile size) or one static ONNX file."""
    from trt_build.build import bucket_profiles

    if path.is_file() and path.suffix == ".onnx":
        return [(path, path.stem, bucket_profiles(path, buckets))]
    if not (path / "manifest.json").exists():
        raise typer.BadParameter(f"{path}: not a model bundle (no manifest.json) nor an .onnx file")
    from edge.sr.bundle import load_bundle
    from edge.sr.runners_trt import TrtRunner, bundle_profiles

    bundle = load_bundle(path)
    return [(bundle.graph(g), f"{bundle.model_id}.{g}", bundle_profiles(bundle, g, buckets)) for g in TrtRunner.graphs_of(bundle)]


def _buckets(text: str) -> list[int]:
    """Parse '1,2,4' into batch sizes."""
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"--buckets must be comma-separated integers, got {text!r}") from exc
    if not out or min(out) < 1:
        raise typer.BadParameter(f"--buckets must be positive, got {text!r}")
    return out


@trt_app.command("build")
def build_cmd(
    bundle: Path = typer.Argument(..., help="Model bundle directory or one .onnx file."),
    cache: Path = typer.Option(Path("engines"), help="Engine cache directory."),
    buckets: str = typer.Option("1,4,8", help="Batch sizes to build optimisation profiles for."),
    fp32: bool = typer.Option(False, "--fp32", help="Build FP32 engines instead of FP16."),
    force: bool = typer.Option(False, help="Rebuild even when a matching engine is cached."),
) -> None:
    """Build (or reuse) an engine per ONNX graph; stale engines are refused and rebuilt."""
    from edge.sr.runners_trt import engine_for
    from trt_build.build import TensorRTUnavailable

    try:
        for onnx_path, name, profiles in _targets(bundle, _buckets(buckets)):
            path = engine_for(onnx_path, cache, fp16=not fp32, force=force, log=typer.echo, profiles=profiles, name=name)
            typer.echo(f"{onnx_path.name} -> {path}")
    except TensorRTUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@trt_app.command("check")
def check_cmd(
    bundle: Path = typer.Argument(..., help="Model bundle directory or one .onnx file."),
    cache: Path = typer.Option(Path("engines"), help="Engine cache directory."),
    buckets: str = typer.Option("1,4,8", help="Batch buckets the engines were built for."),
    fp32: bool = typer.Option(False, "--fp32", help="Check FP32 engines instead of FP16."),
    atol: float = typer.Option(5e-2, help="Absolute tolerance vs ONNX Runtime."),
    rtol: float = typer.Option(5e-2, help="Relative tolerance vs ONNX Runtime."),
) -> None:
    """Verify cached engines match this device and agree with ONNX Runtime within tolerance."""
    from trt_build.build import TensorRTUnavailable, device_facts
    from trt_build.cache import EngineCache, EngineKey, EngineMismatch, sha256_file
    from trt_build.parity import check_engine

    bad = 0
    try:
        trt_version, cc = device_facts()
        store = EngineCache(cache)
        for onnx_path, name, profiles in _targets(bundle, _buckets(buckets)):
            key = EngineKey(name=name, model_sha256=sha256_file(onnx_path), trt_version=trt_version,
                            compute_capability=cc, profiles=profiles, precision="fp32" if fp32 else "fp16")
            try:
                engine = store.check(key)
            except EngineMismatch as exc:
                typer.echo(f"REFUSED {onnx_path.name}: {exc} (run `lpbf-edge trt build`)")
                bad += 1
                continue
            shapes = {n: tuple(s[0]) for n, s in profiles[0].items()}
            for p in check_engine(onnx_path, engine, atol, rtol, shapes=shapes):
                typer.echo(f"{onnx_path.name}: {p}")
                bad += not p.ok
    except TensorRTUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(1 if bad else 0)


def register(app: typer.Typer) -> None:
    """Add the `trt` command group."""
    app.add_typer(trt_app, name="trt")
