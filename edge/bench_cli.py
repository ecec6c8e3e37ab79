"""`lpbf-edge bench`: the box's own SuperResolver against the 200-step reference of the same bundle, and a plate.

Every number comes from `SuperResolver` with the box's configuration (SRConfig defaults, or the `sr` section of
--config): the fast path is what the box runs, the reference is the same bundle's paper-faithful DDPM (torch eager,
full encoder and decoder) on the same LR crops, and the plate is a whole LR plate through the same runtime in a fresh
process (its peak RSS is the box runtime's, without the torch the reference needs).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import typer

from edge.bench_measure import floor_rate, flops_per_sample, matmul_rate, quality, texture_coeffs
from edge.sr.tiling import tile_starts


@dataclass
class PathResult:
    """Measured speed (per model tile) and quality of one SuperResolver configuration on the bench crops."""

    name: str
    settings: str
    s_per_sample: float
    samples: int
    psnr_db: float
    ssim: float
    texture_distance: float
    flops_per_sample: int
    flops_by_part: dict = field(default_factory=dict)
    bf16: bool = False
    s_per_crop: float = float("nan")
    floor_s_per_sample: float = float("nan")
    floor_fraction: float = float("nan")
    speedup: float = float("nan")
    psnr_delta_db: float = float("nan")
    texture_ratio: float = float("nan")
    timings_s: dict = field(default_factory=dict)
    per_seed: list = field(default_factory=list)


def sub_tiles(images: np.ndarray, side: int) -> list[np.ndarray]:
    """Non-overlapping side x side sub-tiles of HR crops [N, H, W] (quality is scored on the model's HR tile size)."""
    return [im[y:y + side, x:x + side] for im in images for y in range(0, im.shape[0] - side + 1, side)
            for x in range(0, im.shape[1] - side + 1, side)]


def model_tiles(res, crop: int) -> int:
    """Model tiles (samples) SuperResolver runs for one crop x crop LR image."""
    return len(tile_starts(max(crop, res.tile), res.tile, res.overlap)) ** 2


def time_resolver(res, lr: np.ndarray, repeats: int, warmup: int | None = None,
                  seeds: tuple[int, ...] = (0,)) -> tuple[list[np.ndarray], float, dict]:
    """(SR crops per seed, best seconds per crop over all timed passes, that pass's timings) of upscale_many over the
    crops: `repeats` passes with the first seed, one with each other seed, after one untimed pass over `warmup` crops
    (default: enough for a full batch, which compiles the static shapes)."""
    res.upscale_many(list(lr[: warmup or max(1, -(-res.batch // model_tiles(res, lr.shape[1])))]))
    best, outs, timings = float("inf"), [], {}
    for i, seed in enumerate(seeds):
        res.seed = int(seed)
        for _ in range(repeats if i == 0 else 1):
            t0 = time.perf_counter()
            out = res.upscale_many(list(lr))
            s = (time.perf_counter() - t0) / len(lr)
            if s < best:
                best, timings = s, dict(out[0].timings_s)
        outs.append(np.stack([r.sr for r in out]))
    return outs, best, timings


def mean_quality(outs: list[np.ndarray], hr: np.ndarray, side: int, coeffs: np.ndarray) -> dict[str, float]:
    """Quality of each seed's crops against ground truth (on side x side sub-tiles), averaged over the seeds: one
    sample per seed is a noisy estimate of a sampler's quality (about 0.1 dB and 5% texture between seeds)."""
    qs = [quality(sub_tiles(o, side), sub_tiles(hr[: len(o)], side), truth_coeffs=coeffs) for o in outs]
    return {**{k: float(np.mean([q[k] for q in qs])) for k in qs[0]}, "per_seed": qs}


def measure_path(name: str, res, lr: np.ndarray, hr: np.ndarray, hr_coeffs: np.ndarray, n_ref: int, repeats: int,
                 modules: dict, warmup: int | None = None, seeds: tuple[int, ...] = (0,)) -> tuple[PathResult, dict]:
    """Time and score one resolver on the LR crops; returns (result, quality on the reference's crops).

    s_per_sample is per model tile (one LR tile through encoder, sampler and decoder): the crop's time over the
    number of overlapping tiles SuperResolver runs for it, so it compares with the plate's time per tile."""
    outs, s_crop, timings = time_resolver(res, lr, repeats, warmup, seeds)
    side = res.tile * res.scale
    q = mean_quality(outs, hr, side, hr_coeffs)
    flops = flops_per_sample(res, modules)
    bf16 = getattr(res.runner, "precision", None) == "bf16"
    r = PathResult(name, res.describe(), s_crop / model_tiles(res, lr.shape[1]), len(lr) * len(seeds), q["psnr_db"],
                   q["ssim"], q["texture_distance"], flops["total"], flops, bf16, s_crop,
                   timings_s={k: round(v, 4) for k, v in timings.items()}, per_seed=q["per_seed"])
    return r, mean_quality([o[:n_ref] for o in outs], hr, side, hr_coeffs)


def reference_path(model, cfg, lr, hr, hr_coeffs, modules, echo, seeds: tuple[int, ...] = (0,),
                   probe: int = 2) -> tuple[PathResult, int]:
    """The bundle's reference sampler (200-step DDPM) on torch eager through SuperResolver, at its fastest thread
    count (probed on `probe` single tiles: torch's spinning threads can collapse on a busy machine, and a slow
    reference would flatter every ratio), then timed on all the reference crops."""
    from edge.sr.resolver import SuperResolver
    from edge.sr.runners import inference_threads

    def resolver(threads: int):
        return SuperResolver.from_bundle(model, backend="torch", sampler="reference", seed=cfg.seed, batch=cfg.batch,
                                         grain_cap=cfg.grain_cap, threads=threads)

    speeds = {}
    for threads in sorted({1, inference_threads()}):
        res = resolver(threads)
        speeds[threads] = time_resolver(res, lr[:probe, :res.tile, :res.tile], 1, warmup=1)[1]
    threads = min(speeds, key=speeds.get)
    res = resolver(threads)
    echo(f"reference: {res.describe()}, {len(lr)} crops x {len(seeds)} seeds, torch threads {threads} "
         f"(probe s/tile {speeds}) ...")
    return measure_path("reference", res, lr, hr, hr_coeffs, len(lr), 1, modules, warmup=1, seeds=seeds)[0], threads


def plate_measure(cfg, lr_size: int, seed: int = 0, timeout_s: float = 1800) -> dict:
    """Whole-plate figures of the box runtime (edge.bench_plate), measured in a fresh process: its peak RSS is what
    the box's SR needs, not this process's (which holds torch for the reference)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "edge.bench_plate", cfg.model_dump_json(), str(lr_size), str(seed)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"the {lr_size}x{lr_size} plate did not finish in {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"plate run failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def extra_paths(cfg) -> list[tuple[str, object]]:
    """Other configurations measured by the full bench (each through SuperResolver): the CPU fallback, the quality
    profile, the numpy loop and a small batch."""
    return [
        ("fast path on ONNX Runtime (the fallback without bf16)", cfg.model_copy(update={"backend": "ort"})),
        ("fast path, numpy loop", cfg.model_copy(update={"fused": False})),
        ("fast path, 8 tiles per call", cfg.model_copy(update={"batch": 8})),
        ("quality profile", cfg.model_copy(update={"profile": "quality"})),
    ]


def run_bench(model: Path, quick: bool, crops: int | None = None, ref_crops: int | None = None, seed: int = 0,
              cfg=None, plate_lr: int = 1024, repeats: int | None = None, echo=print, modules: dict | None = None,
              extra: bool | None = None, crop: int = 64, seeds: int | None = None) -> dict:
    """Run the benchmark and return the JSON-able report (modules: the bundle's torch modules, if at hand).

    The bench images are `crop` x `crop` LR crops of the real photographs (LR by the paper's recipe): SuperResolver
    cuts them into overlapping tiles, blends and grain-caps them as it does a layer (the cap's window is 32 LR px)."""
    import platform

    import torch

    from edge.data.tiles import bench_pairs
    from edge.sr.bundle import load_bundle
    from edge.sr.config import SRConfig
    from edge.sr.resolver import SuperResolver
    from edge.sr.torch_modules import load_torch_modules

    bundle = load_bundle(model)  # verifies every file's sha256
    cfg = (cfg or SRConfig()).model_copy(update={"model": str(model)})
    modules = modules or load_torch_modules(bundle)
    n = crops or (8 if quick else 32)
    n_ref = min(n, ref_crops or (2 if quick else 16))
    repeats = repeats or (2 if quick else 3)
    seed_list = tuple(range(seed, seed + (seeds or (1 if quick else 2))))
    lr, hr = bench_pairs(n, crop * bundle.scale, bundle.scale, seed=seed)
    load0 = os.getloadavg()[0]
    rate, rate_bf16 = matmul_rate("float32"), matmul_rate("bfloat16")
    echo(f"matmul rate: {rate / 1e9:.1f} GFLOP/s fp32, {rate_bf16 / 1e9:.1f} bf16; load average {load0:.1f}")
    side = bundle.lr_patch * bundle.scale
    hr_coeffs = texture_coeffs(sub_tiles(hr, side))
    ref, torch_threads = reference_path(model, cfg, lr[:n_ref], hr[:n_ref], hr_coeffs, modules, echo, seed_list)
    ref_q = {"psnr_db": ref.psnr_db, "texture_distance": ref.texture_distance}
    fast_res = SuperResolver.from_config(cfg)
    echo(f"fast: {fast_res.describe()} [{fast_res.settings_note}], {n} crops ...")
    fast, fast_q = measure_path("fast (box default)", fast_res, lr, hr, hr_coeffs, n_ref, repeats, modules,
                                seeds=seed_list)
    paths = [fast]
    if (not quick) if extra is None else extra:
        for name, c in extra_paths(cfg):
            res = SuperResolver.from_config(c)
            echo(f"{name}: {res.describe()} ...")
            r, q = measure_path(name, res, lr, hr, hr_coeffs, n_ref, repeats, modules, seeds=seed_list)
            paths.append(r)
            _deltas(r, q, ref, ref_q)
    _deltas(fast, fast_q, ref, ref_q)
    echo(f"plate: {plate_lr}x{plate_lr} LR through the same runtime in a fresh process ...")
    plate = plate_measure(cfg, plate_lr, seed)
    rate = max(rate, matmul_rate("float32"))  # a second measurement: the machine may have been busy at the start
    rate_bf16 = max(rate_bf16, matmul_rate("bfloat16"))
    for r in [ref, *paths]:
        r.floor_s_per_sample = r.flops_per_sample / floor_rate(r.bf16, rate, rate_bf16)
        r.floor_fraction = r.floor_s_per_sample / r.s_per_sample
    plate["floor_fraction"] = fast.floor_s_per_sample * plate["tiles"] / plate["s"]
    from rich.console import Console

    Console(width=200).print(_table(ref, paths, plate))
    report = {
        "runtime": "SuperResolver",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "matmul_gflops_fp32": rate / 1e9, "matmul_gflops_bf16": rate_bf16 / 1e9,
                    "load_avg_1min_start": load0, "load_avg_1min_end": os.getloadavg()[0]},
        "model": {"path": str(model), "model_id": bundle.model_id, "lr_patch": bundle.lr_patch, "scale": bundle.scale},
        "setup": {"quick": quick, "crop": crop, "crops": n, "reference_crops": n_ref,
                  "tiles_per_crop": model_tiles(fast_res, crop), "repeats": repeats, "seeds": list(seed_list),
                  "torch_threads": torch_threads, "config": json.loads(cfg.model_dump_json()),
                  "fast_settings_note": fast_res.settings_note},
        "reference": asdict(ref),
        "fast": asdict(fast),
        "speedup": fast.speedup,
        "floor": {"s_per_sample": fast.floor_s_per_sample, "fraction_achieved": fast.floor_fraction,
                  "flops_per_sample": fast.flops_per_sample, "flops_by_part": fast.flops_by_part,
                  "rate_gflops": floor_rate(fast.bf16, rate, rate_bf16) / 1e9,
                  "precision": "bf16" if fast.bf16 else "fp32"},
        "plate": plate,
        "targets": targets(fast, plate),
        "paths": [asdict(r) for r in paths[1:]],
    }
    return report


def _deltas(r: PathResult, q: dict, ref: PathResult, ref_q: dict) -> None:
    """Speed-up and quality against the reference, on the crops the reference saw."""
    r.speedup = ref.s_per_sample / r.s_per_sample
    r.psnr_delta_db = q["psnr_db"] - ref_q["psnr_db"]
    r.texture_ratio = q["texture_distance"] / ref_q["texture_distance"]


def targets(fast: PathResult, plate: dict) -> dict[str, bool]:
    """Issue 17's targets, each true or false."""
    return {
        "speedup_200x": fast.speedup >= 200,
        "psnr_within_0.3db": fast.psnr_delta_db >= -0.3,
        "texture_ratio_0.9_to_1.1": 0.9 <= fast.texture_ratio <= 1.1,
        "floor_fraction_0.5": fast.floor_fraction >= 0.5,
        "plate_per_tile_within_1.5x": plate["s_per_tile"] <= 1.5 * fast.s_per_sample,
        "plate_peak_rss_1gb": plate["peak_rss_mb"] <= 1024,
    }


def _table(ref: PathResult, paths: list[PathResult], plate: dict):
    """Rich table: the reference, the box's fast path and the other paths, then the plate."""
    from rich.table import Table

    t = Table(title="lpbf-edge bench: SuperResolver (per-tile time; quality vs ground truth)")
    for col in ("path", "s/sample", "speed-up", "PSNR dB", "dPSNR", "texture", "tex/ref", "GFLOP", "floor frac"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for r in [ref, *paths]:
        t.add_row(r.name, f"{r.s_per_sample:.4f}", f"{r.speedup:.1f}x" if r is not ref else "1.0x", f"{r.psnr_db:.2f}",
                  f"{r.psnr_delta_db:+.2f}" if r is not ref else "", f"{r.texture_distance:.4f}",
                  f"{r.texture_ratio:.2f}" if r is not ref else "", f"{r.flops_per_sample / 1e9:.2f}",
                  f"{r.floor_fraction:.3f}")
    t.add_row(f"plate {plate['lr']}x{plate['lr']} LR ({plate['tiles']} tiles, peak RSS {plate['peak_rss_mb']:.0f} MB)",
              f"{plate['s_per_tile']:.4f}", "", "", "", "", "", "", f"{plate['floor_fraction']:.3f}")
    return t


def bench_cmd(
    quick: bool = typer.Option(False, "--quick", help="8 crops (2 for the reference), no extra paths."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON here."),
    model: Path | None = typer.Option(None, help="Model bundle (default: the config's sr.model, else $LPBF_MODEL, "
                                                     "else the shipped models/default)."),
    config: Path | None = typer.Option(None, "--config", help="Box config whose `sr` section to measure (default: "
                                                              "the box defaults)."),
    crops: int | None = typer.Option(None, help="LR crops for the fast paths (default 8 quick / 32 full)."),
    ref_crops: int | None = typer.Option(None, help="LR crops for the slow reference (default 2 quick / 16 full)."),
    seeds: int | None = typer.Option(None, help="Samples (seeds) per crop whose quality is averaged (default 1 quick "
                                                "/ 2 full)."),
    crop: int = typer.Option(64, help="Side of the LR crops (at least the grain cap's 32 px window)."),
    plate_lr: int = typer.Option(1024, "--plate-lr", help="Side of the LR plate run through the runtime."),
    repeats: int | None = typer.Option(None, help="Timed passes per fast path, best kept (default 2 quick / 3)."),
    seed: int = typer.Option(0, help="Crop selection seed and first sampler seed."),
) -> None:
    """Speed and quality of the box's SuperResolver against the 200-step reference, and a whole plate."""
    from edge.config_cli import load_config_or_exit
    from edge.sr.bundle import BundleError, resolve_bundle_path
    from edge.sr.runners import BackendUnavailable

    cfg = load_config_or_exit(config).sr if config is not None else None
    bundle, _ = resolve_bundle_path(model or (cfg.model if cfg is not None else None))
    try:
        report = run_bench(bundle, quick, crops, ref_crops, seed, cfg, plate_lr, repeats, echo=typer.echo, crop=crop,
                           seeds=seeds)
    except (BundleError, BackendUnavailable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    f = report["fast"]
    typer.echo(f"fast path: {report['speedup']:.1f}x faster than the reference, PSNR {f['psnr_delta_db']:+.2f} dB, "
               f"texture x{f['texture_ratio']:.2f}, {report['floor']['fraction_achieved']:.3f} of the arithmetic "
               f"floor; plate {report['plate']['s']:.1f} s ({report['plate']['s_per_tile'] * 1e3:.2f} ms/tile, "
               f"peak RSS {report['plate']['peak_rss_mb']:.0f} MB); targets {report['targets']}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, default=float))
        typer.echo(f"wrote {json_out}")


def register(app: typer.Typer) -> None:
    """Add the `bench` command."""
    app.command("bench")(bench_cmd)
