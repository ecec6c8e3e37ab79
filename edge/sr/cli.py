"""`lpbf-edge sr`: super-resolve PNG/JPEG layers with a model bundle (docs/sr_runtime.md) and the box's SR settings."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edge.image_limits import DEFAULT_MAX_MP, MAX_MP_HELP

SR_HELP = " ".join((
    "Super-resolve each INPUT into OUT/<name>.png, `scale` times larger, 8-bit gray, with the box's SR settings.",
    "\n\n--profile fast (the default, as on the box): every option you leave out comes from the bundle's measured",
    "fast path (manifest fast_path.box_config). For models/default that is the 2-step distilled student with the",
    "light condition encoder and the light decoder, on OpenVINO bf16 where the CPU reports bf16, else on the fused",
    "ONNX Runtime loop; a bundle without a fast path runs its own sampler. --profile quality: the bundle's own",
    "sampler (models/default: DPM-Solver++ 15 steps) with the full encoder and decoder on ONNX Runtime (fused loop).",
    "Options you give always win. The first line printed names exactly what runs.",
))


def register(app: typer.Typer) -> None:
    """Add the `sr` command."""
    app.command("sr", help=SR_HELP)(sr_command)


def sr_command(
    inputs: list[Path] = typer.Argument(..., help="LR images (PNG/JPEG, 8-bit, any size)."),
    out: Path = typer.Option(..., "--out", help="Output directory: <name>.png (and <name>.std.png)."),
    model: Path | None = typer.Option(None, "--model", help="Model bundle directory (default: $LPBF_MODEL or "
                                                            "models/default)."),
    profile: str = typer.Option("fast", "--profile", help="fast | quality (what each runs: see above)."),
    backend: str | None = typer.Option(None, "--backend", help="ort | openvino | torch | tensorrt."),
    precision: str | None = typer.Option(None, "--precision", help="OpenVINO precision: f32 | bf16."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Sampler steps (default: the sampler's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler noise."),
    samples: int = typer.Option(1, "--samples", min=1, help="Samples per image."),
    reduce: str = typer.Option("sample", "--reduce", help="sample (first sample) | mean (mean of the samples)."),
    uncertainty: bool = typer.Option(False, "--uncertainty", help="Also write <name>.std.png (4 x per-pixel std; "
                                                                  ">= 2 samples, 4 if fewer asked)."),
    sampler: str | None = typer.Option(None, "--sampler", help="ddpm | ddim | dpmpp_2m | reference | studentN "
                                                               "(a distilled student the bundle ships)."),
    tile: int | None = typer.Option(None, "--tile", min=4, help="LR tile size (default: the bundle's lr_patch)."),
    overlap: int | None = typer.Option(None, "--overlap", min=0, help="LR tile overlap (default: tile/4)."),
    batch: int | None = typer.Option(None, "--batch", min=1, help="Tiles x samples per backend call (default 64)."),
    fused: bool | None = typer.Option(None, "--fused/--no-fused", help="ort/openvino: one fused graph call per "
                                                                       "sampler step (default on)."),
    decoder: str | None = typer.Option(None, "--decoder", help="full | light (the bundle's distilled light decoder)."),
    encoder: str | None = typer.Option(None, "--encoder", help="full | light (the bundle's distilled light condition "
                                                               "encoder)."),
    grain_cap: bool = typer.Option(True, "--grain-cap/--no-grain-cap",
                                   help="Apply the bundle's grain cap (lower detail the LR does not support)."),
    max_mp: float = typer.Option(DEFAULT_MAX_MP, "--max-mp", min=0.001, help=MAX_MP_HELP),
) -> None:
    """Super-resolve each INPUT into OUT/<name>.png, `scale` times larger, 8-bit gray (help: SR_HELP)."""
    from edge.sr.bundle import BundleError
    from edge.sr.resolver import SuperResolver
    from edge.sr.runners import BackendUnavailable

    if reduce not in ("sample", "mean"):
        _die(f"--reduce {reduce!r}: use 'sample' or 'mean'")
    if uncertainty and samples < 2:
        samples = 4
    given = {"model": None if model is None else str(model), "profile": profile, "backend": backend,
             "openvino_precision": precision, "steps": steps, "seed": seed, "sampler": sampler, "tile": tile,
             "overlap": overlap, "batch": batch, "fused": fused, "decoder": decoder, "encoder": encoder,
             "grain_cap": grain_cap}
    try:
        resolver = SuperResolver.from_config(_config({k: v for k, v in given.items() if v is not None}))
    except (BundleError, BackendUnavailable, ValueError) as exc:
        _die(str(exc))
    typer.echo(f"SR: {resolver.describe()} [{resolver.settings_note}]")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _die(f"{out}: cannot create output directory ({exc.strerror})")
    failed = _run_all(resolver, inputs, out, samples, reduce, uncertainty, max_mp)
    if failed:
        print(f"{failed} of {len(inputs)} input(s) failed", file=sys.stderr)
        raise typer.Exit(1)


def _config(options: dict):
    """The `sr` settings from the options given (unset ones stay unset, so the profile fills them)."""
    from pydantic import ValidationError

    from edge.sr.config import SRConfig

    try:
        return SRConfig(**options)
    except ValidationError as exc:
        err = exc.errors()[0]
        _die(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']} (got {err.get('input')!r})")


def _run_all(resolver, inputs: list[Path], out: Path, samples: int, reduce: str, uncertainty: bool,
             max_mp: float = DEFAULT_MAX_MP) -> int:
    """Super-resolve every input (a progress bar per tile batch on a terminal); returns how many failed.

    A file that fails (unreadable, over --max-mp, out of memory, a backend error, an unwritable output, or an output
    name an earlier input already took) gets one line on stderr naming it and the reason; the rest go on.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    failed, seen = 0, set[str]()
    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tiles"),
                   TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)
    with bar:
        for src in inputs:
            task = bar.add_task(src.name, total=None)
            try:
                why = _one(resolver, src, out, seen, (samples, reduce, uncertainty), max_mp,
                           lambda done, total, t=task: bar.update(t, completed=done, total=total))
            finally:
                bar.remove_task(task)
            if why:
                failed += 1
                print(f"{src}: {why}", file=sys.stderr)
    return failed


def _one(resolver, src: Path, out: Path, seen: set[str], how: tuple, max_mp: float, progress) -> str | None:
    """Super-resolve one file into out/<stem>.png (and .std.png); None when written, else why it failed."""
    from edge.sr.imageio import InputImageError, read_gray8, write_png
    from edge.sr.resolver import STD_PNG_GAIN

    samples, reduce, uncertainty = how
    name = src.stem + ".png"
    try:
        if name in seen:
            raise InputImageError(f"output {name} already written for an earlier input with the same name")
        lr = read_gray8(src, max_mp)
        res = resolver.upscale(lr, samples=samples, reduce=reduce, uncertainty=uncertainty, progress=progress)
        write_png(out / name, res.sr)
        if res.std is not None:
            write_png(out / f"{src.stem}.std.png", (res.std * STD_PNG_GAIN).clip(0, 255).round().astype("uint8"))
    except InputImageError as exc:
        return str(exc)
    except MemoryError:
        return "out of memory during super-resolution (lower --max-mp or use a smaller --tile)"
    except OSError as exc:
        return f"cannot write output ({exc})"
    except Exception as exc:  # noqa: BLE001 - a backend failure on one file must not stop the others
        return f"super-resolution failed ({type(exc).__name__}: {exc})"
    seen.add(name)
    typer.echo(f"{src} -> {out / name} ({lr.shape[1]}x{lr.shape[0]} -> {res.sr.shape[1]}x{res.sr.shape[0]}, "
               f"{res.timings_s['total']:.2f} s)")
    return None


def _die(msg: str) -> None:
    """One error line on stderr, exit 2."""
    print(f"error: {msg}", file=sys.stderr)
    raise typer.Exit(2)
