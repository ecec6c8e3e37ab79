"""`lpbf-edge sr`: super-resolve PNG/JPEG layers with a model bundle (DESIGN.md §4)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edge.image_limits import DEFAULT_MAX_MP, MAX_MP_HELP


def register(app: typer.Typer) -> None:
    """Add the `sr` command."""
    app.command("sr")(sr_command)


def sr_command(
    inputs: list[Path] = typer.Argument(..., help="LR images (PNG/JPEG, 8-bit, any size)."),
    out: Path = typer.Option(..., "--out", help="Output directory: <name>.png (and <name>.std.png)."),
    model: Path | None = typer.Option(None, "--model", help="Model bundle directory (default: $LPBF_MODEL or models/default)."),
    backend: str = typer.Option("ort", "--backend", help="ort | openvino | torch | tensorrt."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Sampler steps (default: the bundle's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler noise."),
    samples: int = typer.Option(1, "--samples", min=1, help="Samples per image."),
    reduce: str = typer.Option("sample", "--reduce", help="sample (first sample) | mean (mean of the samples)."),
    uncertainty: bool = typer.Option(False, "--uncertainty", help="Also write <name>.std.png (4 x per-pixel std; >= 2 samples, 4 if fewer asked)."),
    sampler: str | None = typer.Option(None, "--sampler", help="ddpm | ddim | dpmpp_2m | reference | studentN (a distilled student the bundle ships; default: the bundle's fast sampler)."),
    tile: int | None = typer.Option(None, "--tile", min=4, help="LR tile size (default: the bundle's lr_patch)."),
    overlap: int | None = typer.Option(None, "--overlap", min=0, help="LR tile overlap (default: tile/4)."),
    fused: bool = typer.Option(False, "--fused", help="ort only: one fused graph call per sampler step."),
    decoder: str = typer.Option("full", "--decoder", help="full | light (the bundle's distilled light decoder, ONNX backends)."),
    encoder: str = typer.Option("full", "--encoder", help="full | light (the bundle's distilled light condition encoder, ONNX backends)."),
    grain_cap: bool = typer.Option(True, "--grain-cap/--no-grain-cap",
                                   help="Apply the bundle's grain cap (lower detail the LR does not support) when it has one."),
    max_mp: float = typer.Option(DEFAULT_MAX_MP, "--max-mp", min=0.001, help=MAX_MP_HELP),
) -> None:
    """Super-resolve each INPUT into OUT/<name>.png, `scale` times larger, 8-bit gray."""
    from edge.sr.bundle import BundleError
    from edge.sr.imageio import InputImageError, read_gray8, write_png
    from edge.sr.resolver import STD_PNG_GAIN, SuperResolver
    from edge.sr.runners import BACKENDS, BackendUnavailable

    if backend not in BACKENDS:
        _die(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if reduce not in ("sample", "mean"):
        _die(f"--reduce {reduce!r}: use 'sample' or 'mean'")
    if uncertainty and samples < 2:
        samples = 4
    try:
        resolver = SuperResolver.from_bundle(model, backend=backend, steps=steps, seed=seed, sampler=sampler,
                                             tile=tile, overlap=overlap, fused=fused, decoder=decoder,
                                             grain_cap=grain_cap, encoder=encoder)
    except (BundleError, BackendUnavailable, ValueError) as exc:
        _die(str(exc))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _die(f"{out}: cannot create output directory ({exc.strerror})")
    failed, seen = 0, set()
    for src in inputs:
        name = src.stem + ".png"
        try:
            if name in seen:
                raise InputImageError(f"output {name} already written for an earlier input with the same name")
            lr = read_gray8(src, max_mp)
            res = resolver.upscale(lr, samples=samples, reduce=reduce, uncertainty=uncertainty)  # type: ignore[arg-type]
            write_png(out / name, res.sr)
            if res.std is not None:
                write_png(out / f"{src.stem}.std.png", (res.std * STD_PNG_GAIN).clip(0, 255).round().astype("uint8"))
            seen.add(name)
            typer.echo(f"{src} -> {out / name} ({lr.shape[1]}x{lr.shape[0]} -> {res.sr.shape[1]}x{res.sr.shape[0]}, "
                       f"{res.timings_s['total']:.2f} s)")
        except InputImageError as exc:
            failed += 1
            print(f"{src}: {exc}", file=sys.stderr)
        except MemoryError:
            failed += 1
            print(f"{src}: out of memory during super-resolution (lower --max-mp or use a smaller --tile)",
                  file=sys.stderr)
        except OSError as exc:
            failed += 1
            print(f"{src}: cannot write output ({exc})", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a backend failure on one file must not stop the others
            failed += 1
            print(f"{src}: super-resolution failed ({type(exc).__name__}: {exc})", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(inputs)} input(s) failed", file=sys.stderr)
        raise typer.Exit(1)


def _die(msg: str) -> None:
    """One error line on stderr, exit 2."""
    print(f"error: {msg}", file=sys.stderr)
    raise typer.Exit(2)
