"""SR quality on held-out data: bicubic, regression, 200-step DDPM reference, default single sample, mean of 8.

Real crops: the held-out photograph, LR by the paper recipe at x4 (area downsample, Gaussian blur k=3).
Sim crops: the held-out sim build, LR = its registered webcam view (lr/). Sim, paper-recipe LR (`--sim-paper`):
the same sim crops with LR made from their HR by the paper recipe, to separate what the model does on sim
content from what the simulated webcam leaves in the LR. Writes a markdown report with the targets of issue 3,
a JSON file and side-by-side PNGs.

    .venv/bin/python bench/sr_quality.py --model models/default --sim-build runs/data/sim_s3 \
        --realdata ../shared/realdata --out docs/sr_quality.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.analyze.metrics import CVDSettings, hf_energy_ratio, mae, psnr, ssim, wph_coeffs  # noqa: E402
from edge.data.datasets import read_gray, sim_source  # noqa: E402
from edge.data.degrade import paper_degrade  # noqa: E402

METHODS = ("bicubic", "regression", "pixel_regression", "pixel_diffusion", "reference", "default", "default_nocap", "mean8", "mean8_indep",
           "ae_mean", "ae_sample")
LABELS = {"bicubic": "bicubic", "regression": "regression (L1 U-Net)",
          "pixel_regression": "regression (pixel CNN, L1; the estimate the denoiser is conditioned on)",
          "pixel_diffusion": "pixel-space diffusion (paper Table 2 baseline), 1 sample",
          "reference": "DDPM 200 steps (reference)",
          "default": "default sampler, 1 sample",
          "default_nocap": "default sampler, 1 sample, grain cap off (`--no-grain-cap`)", "mean8": "default sampler, mean of 8 (4 antithetic pairs)",
          "mean8_indep": "default sampler, mean of 8 independent chains",
          "ae_mean": "ceiling: HR autoencoder, mean decoder (sees the HR)",
          "ae_sample": "ceiling: HR autoencoder, sample decoder (sees the HR)"}
SHOWN = ("bicubic", "regression", "pixel_regression", "pixel_diffusion", "reference", "default", "mean8")  # columns of the side-by-side images
SET_NOTES = {"real": "Held-out photograph, LR by the paper recipe.\n",
             "sim": "Held-out sim build, LR = its registered simulated-webcam view (the set issue 3's sim targets are judged on).\n",
             "sim_paper": "Diagnostic: the same sim crops, LR remade from their HR by the paper recipe (what the model does "
                          "on sim content when the LR carries the band the simulated webcam loses).\n"}
WPH = CVDSettings(size=128, j=3, l_angles=4)


def texture_stats(img: np.ndarray) -> np.ndarray:
    """pywph phase-harmonic coefficients averaged over the 128x128 tiles of an image (no resampling)."""
    t = WPH.size
    tiles = [img[y:y + t, x:x + t] for y in range(0, img.shape[0] - t + 1, t) for x in range(0, img.shape[1] - t + 1, t)]
    return np.mean([np.abs(wph_coeffs(x.astype(np.float32), WPH)) for x in tiles], axis=0)


def texture_distance(img: np.ndarray, ref_stats: np.ndarray) -> float:
    """Relative L2 distance of the phase-harmonic statistics to the ground truth's."""
    return float(np.linalg.norm(texture_stats(img) - ref_stats) / np.linalg.norm(ref_stats))


def read_photo(photo: Path) -> np.ndarray:
    """A shared photograph at the working size (the PBLM photographs are used at half size)."""
    img = read_gray(photo)
    if photo.parent.name.lower() == "pblm":
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return img


def real_crops(photo: Path, n: int, lr: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR, HR) crops of a held-out photograph; LR by the paper recipe (n=4, k=3)."""
    img = read_photo(photo)
    rng = np.random.default_rng(seed)
    out, hs = [], lr * 4
    while len(out) < n:
        y, x = int(rng.integers(0, img.shape[0] - hs)), int(rng.integers(0, img.shape[1] - hs))
        hr = np.ascontiguousarray(img[y:y + hs, x:x + hs])
        if hr.std() < 8:  # skip flat background
            continue
        out.append((f"{photo.name}@{y},{x}", paper_degrade(hr, 4, 3), hr))
    return out


def paper_lr(crops: list[tuple[str, np.ndarray, np.ndarray]]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The same (name, LR, HR) crops with the LR remade from the HR by the paper recipe (n=4, k=3)."""
    return [(name, paper_degrade(hr, 4, 3), hr) for name, _, hr in crops]


def carry_over(res: dict, path: Path) -> None:
    """Fill methods this run did not compute from an earlier JSON of the same crops, marked as carried (in place)."""
    old = json.loads(path.read_text())
    for set_name, r in res.items():
        prev = old.get(set_name, {})
        if prev.get("crops") != r["crops"]:
            continue  # other crops: nothing comparable to carry
        for m in METHODS:
            if m not in r and m in prev:
                r[m] = {**prev[m], "carried_from": str(path)}


def sim_crops(build: Path, n: int, lr: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR, HR) crops of a held-out sim build; LR = the build's registered webcam view."""
    src = sim_source(build)
    rng = np.random.default_rng(seed)
    out = []
    layers = [src.layers[i] for i in np.linspace(0, len(src.layers) - 1, n).astype(int)]
    for k in layers:
        hr_img, lr_img = read_gray(build / "hr" / f"{k:05d}.png"), read_gray(build / "lr" / f"{k:05d}.png")
        y, x = int(rng.integers(4, lr_img.shape[0] - lr - 4)), int(rng.integers(4, lr_img.shape[1] - lr - 4))
        out.append((f"{build.name}/{k:05d}@{y},{x}", lr_img[y:y + lr, x:x + lr].copy(),
                    hr_img[4 * y:4 * (y + lr), 4 * x:4 * (x + lr)].copy()))
    return out


class Regression:
    """The bundle's regression baseline through ONNX Runtime: lr_encoder -> regression -> hr_decoder."""

    def __init__(self, bundle_dir: Path) -> None:
        """Open the three sessions."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.s = {g: ort.InferenceSession(str(bundle_dir / f"{g}.onnx"), opts, providers=["CPUExecutionProvider"])
                  for g in ("lr_encoder", "regression", "hr_decoder")}

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        """uint8 LR -> uint8 HR."""
        x = (lr.astype(np.float32) / 127.5 - 1)[None, None]
        c = self.s["lr_encoder"].run(None, {"lr": x})[0]
        z = self.s["regression"].run(None, {"cond": c})[0]
        y = self.s["hr_decoder"].run(None, {"latent": z})[0][0, 0]
        return np.clip(np.round((y + 1) * 127.5), 0, 255).astype(np.uint8)


class TorchRegression:
    """The latent regression baseline from its checkpoints (for bundles whose lr_encoder is estimate-conditioned)."""

    def __init__(self, ckpt: Path, ae: Path) -> None:
        """Load `train regression` best.pt and the ae.pt it was trained on."""
        import torch

        from edge.models import RegressionNet
        from edge.train.common import load_checkpoint
        from edge.train.diffusion import load_autoencoders

        self.hr, self.lr, s = load_autoencoders(ae)
        r = load_checkpoint(ckpt)
        if r.get("kind") != "regression-ema":
            raise ValueError(f"{ckpt}: not a regression export (best.pt/final.pt of `lpbf-edge train regression`)")
        self.net = RegressionNet(r["arch"]).eval()
        self.net.load_state_dict(r["net"])
        self.scales, self.torch = s["scales"], torch

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        """uint8 LR (sides a multiple of 4) -> uint8 HR, the whole crop at once."""
        torch = self.torch
        x = torch.from_numpy((lr.astype(np.float32) / 127.5 - 1)[None, None])
        with torch.no_grad():
            z = self.net(self.lr.encode(x) * self.scales["cond_scale_factor"])
            y = self.hr.decode(z / self.scales["latent_scale_factor"])[0, 0].numpy()
        return np.clip(np.round((y + 1) * 127.5), 0, 255).astype(np.uint8)


def pixel_regression(bundle_dir: Path, lr: np.ndarray) -> np.ndarray:
    """The bundle's pixel-space regression CNN (the denoiser's estimate) on a whole LR crop: uint8 LR -> uint8 HR."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(bundle_dir / "pixel_regression.onnx"), providers=["CPUExecutionProvider"])
    y = s.run(None, {"lr": (lr.astype(np.float32) / 127.5 - 1)[None, None]})[0][0, 0]
    return np.clip(np.round((y + 1) * 127.5), 0, 255).astype(np.uint8)


def autoencode(model: Path, hr: np.ndarray, graph: str) -> np.ndarray:
    """HR -> HR latent -> HR through a bundle decoder, per 64x64 tile: the ceiling any sampler can reach."""
    from edge.sr.bundle import load_bundle
    from edge.sr.runners import OrtRunner

    runner = OrtRunner(load_bundle(model))
    t = 4 * runner.bundle.lr_patch
    x = (hr.astype(np.float32) / 127.5 - 1)
    tiles = np.stack([x[y:y + t, c:c + t] for y in range(0, hr.shape[0], t) for c in range(0, hr.shape[1], t)])[:, None]
    dec = runner.decode(runner.encode_hr(tiles), graph)[:, 0]
    n = hr.shape[1] // t
    out = np.vstack([np.hstack(list(dec[r * n:(r + 1) * n])) for r in range(hr.shape[0] // t)])
    return np.clip(np.round((out + 1) * 127.5), 0, 255).astype(np.uint8)


def run_methods(model: Path, lr: np.ndarray, seed: int, tile: int | None, skip_reference: bool,
                hr: np.ndarray | None = None, pixel_diffusion: Path | None = None,
                regression: TorchRegression | None = None) -> dict[str, np.ndarray]:
    """Every method's uint8 HR output for one LR crop (plus the autoencoder ceilings when `hr` is given)."""
    from edge.sr.bundle import load_bundle
    from edge.sr.resolver import SuperResolver

    out = {"bicubic": cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)}
    if pixel_diffusion is not None:
        from edge.train.pixel_diffusion import load_pixel_diffusion, pixel_diffusion_upscale

        net, export = load_pixel_diffusion(pixel_diffusion)
        out["pixel_diffusion"] = pixel_diffusion_upscale(net, export, lr, {"name": "dpmpp_2m", "steps": 15}, seed)
    if hr is not None:
        out["ae_mean"] = autoencode(model, hr, "hr_decoder")
        if load_bundle(model).has_graph("hr_decoder_sample"):
            out["ae_sample"] = autoencode(model, hr, "hr_decoder_sample")
    if regression is not None:
        out["regression"] = regression(lr)
    elif (model / "regression.onnx").is_file():
        out["regression"] = Regression(model)(lr)
    if (model / "pixel_regression.onnx").is_file():
        out["pixel_regression"] = pixel_regression(model, lr)
    fast = SuperResolver.from_bundle(model, backend="ort", seed=seed, tile=tile)
    out["default"] = fast.upscale(lr).sr
    if fast.grain_cap is not None:
        fast.grain_cap, cap = None, fast.grain_cap
        out["default_nocap"] = fast.upscale(lr).sr
        fast.grain_cap = cap
    out["mean8"] = fast.upscale(lr, samples=8, reduce="mean").sr
    fast.antithetic = False
    out["mean8_indep"] = fast.upscale(lr, samples=8, reduce="mean").sr
    if not skip_reference:
        out["reference"] = SuperResolver.from_bundle(model, backend="ort", seed=seed, sampler="reference",
                                                     tile=tile).upscale(lr).sr
    return out


def label(img: np.ndarray, text: str) -> np.ndarray:
    """Image with a caption strip on top."""
    strip = np.full((18, img.shape[1]), 255, np.uint8)
    cv2.putText(strip, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
    return np.vstack([strip, img])


def side_by_side(lr: np.ndarray, outs: dict[str, np.ndarray], hr: np.ndarray) -> np.ndarray:
    """LR (nearest x4) | each method | ground truth, captioned."""
    cols = [label(cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST), "LR input")]
    cols += [label(outs[m], m) for m in SHOWN if m in outs]
    cols.append(label(hr, "ground truth"))
    sep = np.full((cols[0].shape[0], 4), 255, np.uint8)
    return np.hstack([c for col in cols for c in (col, sep)][:-1])


def evaluate(sets: dict[str, list], model: Path, img_dir: Path, seed: int, tile: int | None, ref_crops: int,
             pixel_diffusion: Path | None = None, regression: TorchRegression | None = None) -> dict:
    """Per-set, per-method mean metrics; writes side-by-side PNGs of the first two crops of each set."""
    res: dict[str, dict] = {}
    for set_name, crops in sets.items():
        rows: dict[str, list[dict]] = {m: [] for m in METHODS}
        for i, (name, lr, hr) in enumerate(crops):
            t0 = time.time()
            outs = run_methods(model, lr, seed + i, tile, skip_reference=i >= ref_crops, hr=hr,
                               pixel_diffusion=pixel_diffusion, regression=regression)
            ref = texture_stats(hr)
            for m, img in outs.items():
                rows[m].append({"mae": mae(img, hr), "psnr": psnr(img, hr), "ssim": ssim(img, hr),
                                "hf_ratio": hf_energy_ratio(img, hr), "texture": texture_distance(img, ref)})
            if i < 2:
                img_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(img_dir / f"sr_{set_name}_{i}.png"), side_by_side(lr, outs, hr))
            print(f"{set_name} {i + 1}/{len(crops)} {name}: "
                  + " ".join(f"{m}={rows[m][-1]['psnr']:.2f}dB" for m in outs) + f" ({time.time() - t0:.0f}s)", flush=True)
        res[set_name] = {m: {k: float(np.mean([r[k] for r in v])) for k in v[0]} | {"n": len(v)}  # type: ignore[misc]
                         for m, v in rows.items() if v}
        res[set_name]["crops"] = [c[0] for c in crops]
    return res


def targets(r: dict) -> list[tuple[str, bool, str]]:
    """Issue-3 quality targets for one set: (target, met, numbers)."""
    b, m8, d = r["bicubic"], r["mean8"], r["default"]
    return [
        ("mean of 8: PSNR >= bicubic + 0.5 dB", m8["psnr"] >= b["psnr"] + 0.5, f"{m8['psnr']:.2f} vs {b['psnr']:.2f}"),
        ("mean of 8: MAE < bicubic", m8["mae"] < b["mae"], f"{m8['mae']:.2f} vs {b['mae']:.2f}"),
        ("mean of 8: SSIM > bicubic", m8["ssim"] > b["ssim"], f"{m8['ssim']:.3f} vs {b['ssim']:.3f}"),
        ("1 sample: texture distance <= 0.5 x bicubic", d["texture"] <= 0.5 * b["texture"],
         f"{d['texture']:.3f} vs {b['texture']:.3f}"),
        ("1 sample: HF energy ratio in [0.6, 1.5]", 0.6 <= d["hf_ratio"] <= 1.5, f"{d['hf_ratio']:.2f}"),
        ("1 sample: PSNR >= bicubic - 3 dB", d["psnr"] >= b["psnr"] - 3, f"{d['psnr']:.2f} vs {b['psnr']:.2f}"),
    ]


def markdown(res: dict, manifest: dict, cmd: str, wall: float) -> str:
    """The report."""
    lines = ["# Super-resolution quality (x4) on held-out data", "",
             f"Model `{manifest['model_id']}` (sampler {json.dumps(manifest['sampler'])}, reference "
             f"{json.dumps(manifest['reference'])}). Produced by:", "", "```", cmd, "```", "",
             f"({wall / 60:.1f} min on the shared 2-core CPU.) Texture distance: relative L2 distance of pywph wavelet "
             f"phase-harmonic statistics (J={WPH.j}, L={WPH.l_angles}, averaged over 128x128 tiles of each 256x256 crop: "
             "the paper's CVD at a smaller working size so it runs on the CPU). HF ratio: spectral energy above 1/4 "
             "Nyquist relative to the ground truth.", ""]
    for set_name, r in res.items():
        lines += [f"## {set_name}", "", SET_NOTES.get(set_name, ""), f"Crops: {', '.join(r['crops'])}", "",
                  "| method | n | MAE | PSNR dB | SSIM | texture dist | HF ratio |", "|---|---|---|---|---|---|---|"]
        for m in METHODS:
            if m in r:
                v = r[m]
                note = f" (carried over from `{v['carried_from']}`: same crops, checkpoint not given)" if "carried_from" in v else ""
                lines.append(f"| {LABELS[m]}{note} | {v['n']} | {v['mae']:.2f} | {v['psnr']:.2f} | {v['ssim']:.3f} | "
                             f"{v['texture']:.3f} | {v['hf_ratio']:.2f} |")
        lines += ["", "| target (issue 3) | met | numbers |", "|---|---|---|"]
        lines += [f"| {t} | {'yes' if ok else '**no**'} | {n} |" for t, ok, n in targets(r)]
        lines += ["", f"![{set_name} side by side](img/sr_{set_name}_0.png)", "",
                  f"![{set_name} side by side](img/sr_{set_name}_1.png)", ""]
    tr = manifest.get("training", {})
    lines += ["## How the shipped model was trained", "",
              f"Data: `{json.dumps(tr.get('data'))}`", "", "| stage | steps | wall s | command |", "|---|---|---|---|"]
    for k, c in (tr.get("command") or {}).items():
        key = {"autoencoder": "ae"}.get(k, k)  # build_bundle records the autoencoder's steps under "ae"
        lines.append(f"| {k} | {tr.get('steps', {}).get(key, '')} | {tr.get('wall_s', {}).get(key, '')} | `{c}` |")
    lines += ["", f"Validation at the end of training (val split, LR 16x16 crops): "
                  f"`{json.dumps(manifest.get('metrics', {}).get('validation'))}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model bundle (default: $LPBF_MODEL, else models/default)")
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--photo", default="risheng_slm/S05.jpg", help="held-out photograph, relative to --realdata")
    ap.add_argument("--sim-build", type=Path, required=True, help="held-out sim build folder")
    ap.add_argument("--crops", type=int, default=6, help="crops per set")
    ap.add_argument("--ref-crops", type=int, default=3, help="crops per set that also run the 200-step reference")
    ap.add_argument("--lr-size", type=int, default=64)
    ap.add_argument("--tile", type=int, default=None, help="LR tile size (default: the bundle's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "sr_quality.md")
    ap.add_argument("--img-dir", type=Path, default=REPO / "docs" / "img")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--pixel-diffusion", type=Path, default=None,
                    help="best.pt of `lpbf-edge train pixel-diffusion`: add the pixel-space diffusion baseline (DPM-Solver++ 15)")
    ap.add_argument("--regression", type=Path, default=None,
                    help="best.pt of `lpbf-edge train regression` (with --ae): the latent regression baseline from its "
                         "checkpoints, for bundles that do not ship regression.onnx")
    ap.add_argument("--ae", type=Path, default=None, help="ae.pt the --regression checkpoint was trained on")
    ap.add_argument("--sim-paper", action="store_true",
                    help="also the sim crops with LR by the paper recipe (set 'sim_paper'; diagnostic, not issue 3's sim set)")
    ap.add_argument("--carry", type=Path, default=None,
                    help="earlier --json of the same crops: rows for baselines whose checkpoints are not given this run "
                         "are copied from it and marked as carried over")
    a = ap.parse_args(argv)
    from edge.sr.bundle import resolve_bundle_path

    a.model, _ = resolve_bundle_path(a.model)
    if (a.regression is None) != (a.ae is None):
        ap.error("--regression and --ae go together")
    t0 = time.time()
    sets = {"real": real_crops(a.realdata / a.photo, a.crops, a.lr_size, a.seed),
            "sim": sim_crops(a.sim_build, a.crops, a.lr_size, a.seed)}
    if a.sim_paper:
        sets["sim_paper"] = paper_lr(sets["sim"])
    reg = TorchRegression(a.regression, a.ae) if a.regression else None
    res = evaluate(sets, a.model, a.img_dir, a.seed, a.tile, a.ref_crops, a.pixel_diffusion, reg)
    if a.carry:
        carry_over(res, a.carry)
    manifest = json.loads((a.model / "manifest.json").read_text())
    cmd = "nice -n 5 .venv/bin/python bench/sr_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    a.out.write_text(markdown(res, manifest, cmd, time.time() - t0))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    for s, r in res.items():
        for t, ok, n in targets(r):
            print(f"{s}: {t}: {'MET' if ok else 'not met'} ({n})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
