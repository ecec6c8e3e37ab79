"""SR quality on held-out data, per source: bicubic, the pixel CNN, the default quality path (DPM-Solver++ 15, one
sample and mean of 8), the box's fast path (2-step student + light decoder + light encoder), optional baselines.

Real sets, one per source of ../shared/realdata (bench/sr_sets.py): crops of that source's held-out photographs,
LR by the paper recipe at x4. Sim: the held-out sim build with its registered simulated-webcam LR; --sim-paper adds
the same crops with paper-recipe LR (diagnostic). With --train-sim the linear MMSE estimator of
bench/sr_fidelity_bound.py is fitted and measured on every set (the sim fidelity target of issue 20). Writes a
markdown report with the issue-20 targets per set, a JSON file and one side-by-side PNG per set
(bicubic | one sample | mean of 8 | fast path | ground truth).

    .venv/bin/python bench/sr_quality.py --model models/default --sim-build runs/data/sim_s3 \
        --realdata ../shared/realdata --crops 4 --json docs/sr_quality.json --out docs/sr_quality_tables.md
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sr_sets import (  # noqa: E402
    crop_metrics,
    highpass_kurtosis,
    holdout_photos,
    paper_lr,
    side_by_side,
    sim_crops,
    source_crops,
    summarise,
    texture_stats,
)

from edge.sr.bundle import load_bundle  # noqa: E402

METHODS = ("bicubic", "linear_mmse", "pixel_regression", "pixel_diffusion", "reference", "default", "default_nocap",
           "mean8", "mean8_indep", "fast", "fast_nocap", "fast_mean8", "ae_mean", "ae_sample")
LABELS = {"bicubic": "bicubic", "linear_mmse": "linear MMSE estimator (bench/sr_fidelity_bound.py)",
          "pixel_regression": "pixel CNN, L1 (the estimate the denoiser is conditioned on)",
          "pixel_diffusion": "pixel-space diffusion (paper Table 2 baseline), 1 sample",
          "reference": "DDPM 200 steps (reference)",
          "default": "quality path (DPM-Solver++ 15), 1 sample",
          "default_nocap": "quality path, 1 sample, grain cap off", "mean8": "quality path, mean of 8 (antithetic)",
          "mean8_indep": "quality path, mean of 8 independent chains",
          "fast": "fast path (box default: student2 + light decoder + light encoder), 1 sample",
          "fast_nocap": "fast path, 1 sample, grain cap off", "fast_mean8": "fast path, mean of 8",
          "ae_mean": "ceiling: HR autoencoder, mean decoder (sees the HR)",
          "ae_sample": "ceiling: HR autoencoder, sample decoder (sees the HR)"}
SHORT = {"bicubic": "bicubic", "default": "quality: one sample", "mean8": "quality: mean of 8",
         "fast": "box: one sample",
         "fast_mean8": "box: mean of 8"}
SHOWN = ("bicubic", "default", "mean8", "fast", "fast_mean8")
SIM_SETS = ("sim", "sim_paper")


THREADS: dict[str, int | None] = {"n": None}  # backend threads (None: the runners' default, all physical cores)
PATHS: dict[str, tuple[str, ...]] = {"run": ("default", "fast")}  # which SR paths run (--paths)


@functools.lru_cache(maxsize=2)
def _resolvers(model: Path, tile: int | None) -> dict:
    """The SuperResolvers the methods run (opened once per model): quality path and the box's fast path."""
    return resolvers(model, 0, tile)


def resolvers(model: Path, seed: int, tile: int | None) -> dict:
    """The SuperResolvers the methods run: the quality profile and the box's default profile (fast: the bundle's fast
    path), with the settings edge.sr.profile gives the box (only the thread count may differ, --threads)."""
    from edge.sr.bundle import load_bundle
    from edge.sr.config import SRConfig
    from edge.sr.profile import effective_settings
    from edge.sr.resolver import SuperResolver

    bundle, out = load_bundle(model, verify=False), {}
    for key in PATHS["run"]:
        profile = "quality" if key == "default" else SRConfig().profile
        if key == "fast" and not bundle.manifest.fast_path:
            continue
        cfg, _ = effective_settings(SRConfig(model=str(model), profile=profile, seed=seed, tile=tile), bundle)
        opts = {"precision": cfg.openvino_precision} if cfg.backend == "openvino" else {}
        if THREADS["n"]:
            opts["threads"] = THREADS["n"]
        out[key] = SuperResolver.from_bundle(model, backend=cfg.backend, steps=cfg.steps, seed=seed,
                                             sampler=cfg.sampler, tile=cfg.tile, overlap=cfg.overlap, batch=cfg.batch,
                                             fused=bool(cfg.fused), decoder=cfg.decoder, grain_cap=cfg.grain_cap,
                                             encoder=cfg.encoder, **opts)
    return out


def cap_action(gains: np.ndarray | None) -> dict[str, float]:
    """How often and how much the grain cap acted: share of (band, window) gains below 0.99, their mean gain."""
    if gains is None:
        return {}
    acting = gains < 0.99
    return {"cap_share": float(acting.mean()), "cap_gain": float(gains[acting].mean()) if acting.any() else 1.0}


def run_methods(model: Path, lr: np.ndarray, seed: int, tile: int | None, opts: dict, hr: np.ndarray,
                mmse=None) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Every method's uint8 HR output for one LR crop, and per-method extras (grain-cap action)."""
    from bench_baselines import autoencode, pixel_regression

    out = {"bicubic": cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)}
    extra: dict[str, dict] = {}
    if mmse is not None:
        out["linear_mmse"] = mmse(lr)
    if (model / "pixel_regression.onnx").is_file():
        out["pixel_regression"] = pixel_regression(model, lr)
    if opts.get("pixel_diffusion") is not None:
        from edge.train.pixel_diffusion import load_pixel_diffusion, pixel_diffusion_upscale

        net, export = load_pixel_diffusion(opts["pixel_diffusion"])
        out["pixel_diffusion"] = pixel_diffusion_upscale(net, export, lr, {"name": "dpmpp_2m", "steps": 15}, seed)
    if opts.get("ceilings"):
        out["ae_mean"] = autoencode(model, hr, "hr_decoder")
        out["ae_sample"] = autoencode(model, hr, "hr_decoder_sample")
    for key, sr in _resolvers(model, tile).items():
        sr.seed, sr.antithetic = int(seed), True
        one = sr.upscale(lr)
        out[key], extra[key] = one.sr, cap_action(one.cap_gains)
        out[f"{key}_mean8" if key == "fast" else "mean8"] = sr.upscale(lr, samples=8, reduce="mean").sr
        if sr.grain_cap is not None:  # the same sample without the cap: what the model itself paints
            sr.grain_cap, cap = None, sr.grain_cap
            out[f"{key}_nocap"] = sr.upscale(lr).sr
            sr.grain_cap = cap
        if key == "default" and opts.get("indep"):
            sr.antithetic = False
            out["mean8_indep"] = sr.upscale(lr, samples=8, reduce="mean").sr
    if opts.get("reference"):
        from edge.sr.resolver import SuperResolver

        th = {"threads": THREADS["n"]} if THREADS["n"] else {}
        out["reference"] = SuperResolver.from_bundle(model, backend="ort", seed=seed, sampler="reference",
                                                     tile=tile, **th).upscale(lr).sr
    return out, extra


def evaluate(sets: dict[str, list], model: Path, img_dir: Path | None, seed: int, tile: int | None, ref_crops: int,
             opts: dict, mmse: dict | None = None) -> dict:
    """Per-set, per-method metrics (mean over crops; kurtosis log-ratio: median); side-by-side PNG per set."""
    res: dict[str, dict] = {}
    for set_name, crops in sets.items():
        rows: dict[str, list[dict]] = {m: [] for m in METHODS}
        shown = []
        for i, (name, lr, hr) in enumerate(crops):
            t0 = time.time()
            est = None if mmse is None else mmse[set_name if set_name in SIM_SETS else "real"]
            outs, extra = run_methods(model, lr, seed + i, tile, {**opts, "reference": i < ref_crops}, hr, est)
            ref, kurt = texture_stats(hr), highpass_kurtosis(hr)
            for m, img in outs.items():
                rows[m].append({**crop_metrics(img, hr, ref, kurt), **extra.get(m, {})})
            if i < 2:
                shown.append((outs, hr))
            print(f"{set_name} {i + 1}/{len(crops)} {name}: "
                  + " ".join(f"{m}={rows[m][-1]['psnr']:.2f}dB" for m in outs) + f" ({time.time() - t0:.0f}s)",
                  flush=True)
        if img_dir is not None and shown:
            img_dir.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(img_dir / f"sr_{set_name}.png"), side_by_side(shown, SHOWN, SHORT))
        res[set_name] = {m: summarise(v) for m, v in rows.items() if v}
        res[set_name]["crops"] = [c[0] for c in crops]
    return res


def targets(set_name: str, r: dict, one: str = "default", mean: str = "mean8") -> list[tuple[str, bool, str]]:
    """Issue-20 targets of one set for a (one sample, mean of 8) pair of methods: (target, met, numbers)."""
    b, m8, d = r["bicubic"], r[mean], r[one]
    if set_name == "sim" and "linear_mmse" in r:
        fid = ("mean of 8: PSNR >= linear MMSE", m8["psnr"] >= r["linear_mmse"]["psnr"],
               f"{m8['psnr']:.2f} vs {r['linear_mmse']['psnr']:.2f}")
    else:
        gain = 0.5 if set_name in SIM_SETS else 1.0
        fid = (f"mean of 8: PSNR >= bicubic + {gain} dB", m8["psnr"] >= b["psnr"] + gain,
               f"{m8['psnr']:.2f} vs {b['psnr']:.2f}")
    return [
        fid,
        ("mean of 8: MAE < bicubic", m8["mae"] < b["mae"], f"{m8['mae']:.2f} vs {b['mae']:.2f}"),
        ("mean of 8: SSIM > bicubic", m8["ssim"] > b["ssim"], f"{m8['ssim']:.3f} vs {b['ssim']:.3f}"),
        ("1 sample: texture distance <= 0.5 x bicubic", d["texture"] <= 0.5 * b["texture"],
         f"{d['texture']:.3f} vs {b['texture']:.3f}"),
        ("1 sample: HF energy ratio in [0.6, 1.5]", 0.6 <= d["hf_ratio"] <= 1.5, f"{d['hf_ratio']:.2f}"),
        ("1 sample: high-pass kurtosis log-ratio <= 0.3", d["kurt_log_ratio"] <= 0.3, f"{d['kurt_log_ratio']:.2f}"),
        ("1 sample: PSNR >= bicubic - 3 dB", d["psnr"] >= b["psnr"] - 3, f"{d['psnr']:.2f} vs {b['psnr']:.2f}"),
    ]


def markdown(res: dict, model_id: str, cmd: str, wall: float) -> str:
    """The report: one table per set, its targets for the quality path and the fast path, the image."""
    lines = [f"Model `{model_id}`. Produced by:", "", "```", cmd, "```", "",
             f"({wall / 60:.1f} min of bench time on the shared 2-core CPU.)", ""]
    for set_name, r in res.items():
        lines += [f"### {set_name}", "", f"Crops: {', '.join(r['crops'])}", "",
                  "| method | n | MAE | PSNR dB | SSIM | texture dist | HF ratio | kurt log-ratio | cap acts / gain |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for m in METHODS:
            if m in r:
                v = r[m]
                cap = f"{v['cap_share']:.2f} / {v['cap_gain']:.2f}" if "cap_share" in v else ""
                lines.append(f"| {LABELS[m]} | {v['n']} | {v['mae']:.2f} | {v['psnr']:.2f} | {v['ssim']:.3f} | "
                             f"{v['texture']:.3f} | {v['hf_ratio']:.2f} | {v['kurt_log_ratio']:.2f} | {cap} |")
        paths = [(p, one, mean) for p, one, mean in (("quality path", "default", "mean8"),
                                                     ("fast path", "fast", "fast_mean8")) if one in r]
        lines += ["", "| target (issue 20) | " + " | ".join(p for p, _, _ in paths) + " |",
                  "|---|" + "---|" * len(paths)]
        rows = [targets(set_name, r, one, mean) for _, one, mean in paths]
        for k, (t, _, _) in enumerate(rows[0]):
            lines.append(f"| {t} | " + " | ".join(f"{'yes' if row[k][1] else '**no**'} ({row[k][2]})" for row in rows)
                         + " |")
        lines += ["", f"![{set_name}: bicubic, one sample, mean of 8, fast path, ground "
                  f"truth](img/sr_{set_name}.png)", ""]
    return "\n".join(lines)


def build_sets(a) -> dict[str, list]:
    """The crop sets a run measures: each source's held-out photographs, the held-out sim build(s)."""
    sets = {}
    groups = a.source or sorted(holdout_photos(a.realdata))
    for g in groups:
        sets[g] = source_crops(a.realdata, g, a.crops, a.lr_size, a.seed)
    if a.sim_build is not None:
        sets["sim"] = sim_crops(a.sim_build, a.crops, a.lr_size, a.seed)
        if a.sim_paper:
            sets["sim_paper"] = paper_lr(sets["sim"])
    return sets


def merge(files: list[Path], model: Path, out: Path | None, json_out: Path | None) -> int:
    """Merge the per-set results of several runs on one model into one report (their commands listed)."""
    res, cmds, wall = {}, [], 0.0
    for f in files:
        d = json.loads(f.read_text())
        cmds.append(d.pop("command"))
        wall += float(d.pop("wall_s", 0.0))
        d.pop("model_id", None)
        res.update(d)
    model_id = load_bundle(model, verify=False).model_id
    if out:
        out.write_text(markdown(res, model_id, "\n".join(cmds), wall))
    if json_out:
        json_out.write_text(json.dumps({"model_id": model_id, "command": cmds, **res}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model bundle (default: $LPBF_MODEL, else models/default)")
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--source", action="append", default=[], help="real source to measure (repeat; default: all)")
    ap.add_argument("--sim-build", type=Path, default=None, help="held-out sim build folder")
    ap.add_argument("--sim-paper", action="store_true", help="also the sim crops with paper-recipe LR (diagnostic)")
    ap.add_argument("--train-sim", type=Path, action="append", default=[],
                    help="training sim build (repeat): fit and measure the linear MMSE estimator on every set")
    ap.add_argument("--crops", type=int, default=4, help="crops per set")
    ap.add_argument("--ref-crops", type=int, default=0, help="crops per set that also run the 200-step reference")
    ap.add_argument("--lr-size", type=int, default=64)
    ap.add_argument("--tile", type=int, default=None, help="LR tile size (default: the bundle's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ceilings", action="store_true", help="also the autoencoder ceilings (decode the HR's latent)")
    ap.add_argument("--indep", action="store_true", help="also the mean of 8 independent chains")
    ap.add_argument("--pixel-diffusion", type=Path, default=None, help="best.pt of `train pixel-diffusion`")
    ap.add_argument("--out", type=Path, default=None, help="markdown report")
    ap.add_argument("--img-dir", type=Path, default=None, help="folder for the side-by-side PNGs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="backend threads (default: all physical cores; 1 on a machine shared with training)")
    ap.add_argument("--paths", default="default,fast",
                    help="SR paths to run, comma-separated: default (profile quality), fast (the box's default)")
    ap.add_argument("--from-json", type=Path, action="append", default=[],
                    help="measure nothing: merge these --json files of one model (sets run in parallel) into --out")
    a = ap.parse_args(argv)
    from edge.sr.bundle import resolve_bundle_path

    a.model, _ = resolve_bundle_path(a.model)
    THREADS["n"] = a.threads
    PATHS["run"] = tuple(p for p in a.paths.split(",") if p)
    if not PATHS["run"] or set(PATHS["run"]) - {"default", "fast"}:
        ap.error(f"--paths takes default and/or fast, got {a.paths!r}")
    if a.from_json:
        return merge(a.from_json, a.model, a.out, a.json)
    t0 = time.time()
    sets = build_sets(a)
    mmse = None
    if a.train_sim:
        from sr_fidelity_bound import fit_estimators

        mmse = fit_estimators(a.train_sim, a.realdata, 4, a.seed)
    opts = {"ceilings": a.ceilings, "indep": a.indep, "pixel_diffusion": a.pixel_diffusion}
    res = evaluate(sets, a.model, a.img_dir, a.seed, a.tile, a.ref_crops, opts, mmse)
    model_id = load_bundle(a.model, verify=False).model_id
    cmd = ".venv/bin/python bench/sr_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if a.out:
        a.out.write_text(markdown(res, model_id, cmd, time.time() - t0))
    if a.json:
        a.json.write_text(json.dumps({"model_id": model_id, "command": cmd,
                                      "wall_s": round(time.time() - t0, 1), **res}, indent=1))
    for s, r in res.items():
        for label_, one, mean in (("quality", "default", "mean8"), ("fast", "fast", "fast_mean8")):
            if one in r:
                met = [ok for _, ok, _ in targets(s, r, one, mean)]
                print(f"{s} {label_} path: {sum(met)} of {len(met)} targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
