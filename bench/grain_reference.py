"""Would an HR reference per printer set the grain? Three measurements for docs/sr_quality.md (issue 20).

1. Per photograph: how much fine detail the HR really has against what the bundle's grain-cap predictor expects from
   its LR (paper recipe at x4): the median over 32-px LR windows of true / predicted detail energy, per band and in
   total. A printer whose photographs agree could be calibrated from one reference close-up; photographs of one
   printer that disagree could not.
2. The box's one sample (the bundle's fast path) on the held-out crops of bench/sr_sets.py with the bundle's cap,
   and with the cap calibrated from that source's other photographs (the install-time reference: predicted energy
   x the reference's per-band ratio), once lowering only and once allowed to raise detail up to 2x.
3. For a grain-conditioned bundle: how far the grain descriptor steers the model. The descriptor's three log band
   energies are shifted by -1.5 .. +1.5 (a 20x range of energy) and the HF energy ratio of the uncapped sample is
   measured.

    .venv/bin/python bench/grain_reference.py --model models/default --sim-build runs/data/sim_s3 \
        --sim-reference runs/data/sim_s1 --crops 8 --json docs/grain_reference_prev.json \
        --plot docs/img/grain_reference.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import sr_quality  # noqa: E402
from sr_sets import (  # noqa: E402
    PHOTO_EXTS,
    crop_metrics,
    highpass_kurtosis,
    holdout_photos,
    photo_group,
    psnr,
    read_photo,
    sim_crops,
    source_crops,
    summarise,
    texture_distance,
    texture_stats,
)

from edge.analyze.metrics import hf_energy_ratio  # noqa: E402
from edge.data.datasets import read_gray  # noqa: E402
from edge.data.degrade import paper_degrade  # noqa: E402
from edge.sr.grain import ENERGY_FLOOR, GrainCap, band_energies, grain_descriptor, predict_log_energy  # noqa: E402

REAL_SETS = ("pblm", "pblm_classes", "risheng_melt", "risheng_recoat")
FRESH_POWDER = {"pblm_classes": "No_Defect"}  # sources with classes: the reference is a plate without defects
SHIFTS = (-1.5, -0.75, 0.0, 0.75, 1.5)
Pair = tuple[np.ndarray, np.ndarray]  # (LR window, HR window), uint8


def window_pairs(hr: np.ndarray, lr: np.ndarray | None, win: int, n: int, rng: np.random.Generator) -> list[Pair]:
    """n random (LR, HR) windows of win LR px; LR by the paper recipe unless a registered LR image is given."""
    out = []
    for _ in range(n):
        y = int(rng.integers(0, hr.shape[0] // 4 - win + 1))
        x = int(rng.integers(0, hr.shape[1] // 4 - win + 1))
        h = np.ascontiguousarray(hr[4 * y:4 * (y + win), 4 * x:4 * (x + win)])
        out.append((paper_degrade(h, 4, 3) if lr is None else lr[y:y + win, x:x + win], h))
    return out


def log_ratios(cap: GrainCap, pairs: list[Pair]) -> np.ndarray:
    """[windows, bands] log(true / predicted) detail energy."""
    return np.stack([np.log(band_energies(h, cap.sigmas) + ENERGY_FLOOR) - predict_log_energy(cap, lr)
                     for lr, h in pairs])


def photos_of(realdata: Path, group: str) -> list[Path]:
    """Every photograph of one source, sorted."""
    return [p for p in sorted(realdata.rglob("*"))
            if p.is_file() and p.suffix.lower() in PHOTO_EXTS and photo_group(p, realdata) == group]


def per_photo(cap: GrainCap, realdata: Path, win: int, n: int) -> dict[str, list[dict]]:
    """Measurement 1: per source, per photograph, the median true / predicted detail energy (total and per band)."""
    held = {p for ps in holdout_photos(realdata).values() for p in ps}
    out: dict[str, list[dict]] = {}
    for g in REAL_SETS:
        for p in tqdm(photos_of(realdata, g), desc=f"ratios {g}", mininterval=5.0):
            r = log_ratios(cap, window_pairs(read_photo(p, realdata), None, win, n, np.random.default_rng(0)))
            out.setdefault(g, []).append({"photo": f"{p.parent.name}/{p.name}", "held_out": p in held,
                                          "total": float(np.exp(np.median(r.mean(1)))),
                                          "bands": [float(v) for v in np.exp(np.median(r, 0))]})
    return out


def reference_factors(cap: GrainCap, realdata: Path, sim_reference: Path | None, win: int, n: int) -> dict:
    """Per set, the per-band calibration factor (median true / predicted) from that source's photographs that the
    model did not hold out (pblm_classes: its defect-free plates only); sim: the reference build's registered LR."""
    held = {p for ps in holdout_photos(realdata).values() for p in ps}
    out = {}
    for g in REAL_SETS:
        refs = [p for p in photos_of(realdata, g) if p not in held
                and (g not in FRESH_POWDER or p.parent.name == FRESH_POWDER[g])]
        pairs = [w for i, p in enumerate(refs)
                 for w in window_pairs(read_photo(p, realdata), None, win, max(20, n // len(refs)),
                                       np.random.default_rng(i))]
        out[g] = {"photos": [p.name for p in refs], "factors": np.exp(np.median(log_ratios(cap, pairs), 0))}
    if sim_reference is not None:
        layers = sorted((sim_reference / "hr").glob("*.png"))
        layers = [layers[i] for i in np.linspace(0, len(layers) - 1, 8).astype(int)]
        pairs = [w for i, k in enumerate(layers) for w in window_pairs(read_gray(k), read_gray(sim_reference / "lr" /
                                                                                              k.name), win, n // 8,
                                                                        np.random.default_rng(i))]
        out["sim"] = {"photos": [sim_reference.name], "factors": np.exp(np.median(log_ratios(cap, pairs), 0))}
    return out


def calibrated(cap: GrainCap, factors: np.ndarray, max_gain: float) -> GrainCap:
    """The cap with its predicted energy multiplied by the reference's per-band factors."""
    return dataclasses.replace(cap, bias=tuple(float(b) for b in np.asarray(cap.bias) + np.log(factors)),
                               max_gain=float(max_gain))


def one_sample(sr, crops: list, grain_of=None) -> dict[str, float]:
    """Issue-20 metrics of the box's one sample over crops, plus how often the cap acted; grain_of(lr, hr), when
    given, is the grain condition's input for each crop (default: what the box measures from the LR)."""
    rows, share = [], []
    for _, lr, hr in crops:
        res = sr.upscale(lr, grain=None if grain_of is None else grain_of(lr, hr))
        bic = cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
        st = texture_stats(hr)
        m = crop_metrics(res.sr, hr, st, highpass_kurtosis(hr))
        m["psnr_vs_bicubic"] = m["psnr"] - psnr(bic, hr)
        m["texture_vs_bicubic"] = m["texture"] / texture_distance(bic, st)
        rows.append(m)
        share.append(float(np.mean(res.cap_gains < 0.99)) if res.cap_gains is not None else 0.0)
    return {**summarise(rows), "cap_share": float(np.mean(share))}


def calibration_table(sr, sets: dict, refs: dict) -> dict:
    """Measurement 2: per set, the bundle's cap vs the reference-calibrated cap (lowering only / up to 2x)."""
    cap0, out = sr.grain_cap, {}
    try:
        for g, crops in tqdm(sets.items(), desc="calibrated cap", mininterval=5.0):
            out[g] = {}
            for name, cap in (("bundle", cap0), ("reference", calibrated(cap0, refs[g]["factors"], cap0.max_gain)),
                              ("reference_up2", calibrated(cap0, refs[g]["factors"], 2.0))):
                sr.grain_cap = cap
                out[g][name] = one_sample(sr, crops)
    finally:
        sr.grain_cap = cap0
    return out


def steer_table(sr, sets: dict) -> dict:
    """Measurement 3: HF ratio of the uncapped sample against the shift of the descriptor's log band energies."""
    cap0, out = sr.grain_cap, {}
    sr.grain_cap = None
    try:
        for g, crops in tqdm(sets.items(), desc="descriptor steer", mininterval=5.0):
            out[g] = {f"{s:+.2f}": float(np.mean([hf_energy_ratio(sr.upscale(lr, grain=_shifted(lr, s)).sr, hr)
                                                   for _, lr, hr in crops])) for s in SHIFTS}
    finally:
        sr.grain_cap = cap0
    return out


def _shifted(lr: np.ndarray, shift: float) -> np.ndarray:
    """The LR's grain descriptor with its three log band energies shifted."""
    d = grain_descriptor(lr).copy()
    d[:3] += shift
    return d


def plot(ratios: dict[str, list[dict]], path: Path) -> None:
    """Strip plot: true / predicted detail energy per photograph, one column per source, one colour per folder
    (pblm_classes: its classes), photographs held out from the SR models as crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours: dict[str, str] = {}
    for i, rows in enumerate(ratios.values()):
        jitter = np.linspace(-0.3, 0.3, len(rows)) if len(rows) > 1 else np.zeros(1)
        for x, r in zip(i + jitter, rows, strict=True):
            folder = r["photo"].split("/")[0]
            new = folder not in colours
            c = colours.setdefault(folder, f"C{len(colours) % 10}")
            ax.scatter(x, r["total"], c=c, s=22 if r["held_out"] else 12, marker="x" if r["held_out"] else "o",
                       label=folder if new else None)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(ratios)), list(ratios))
    ax.set_ylabel("true / predicted HR detail energy")
    ax.set_title("grain-cap predictor per photograph (x: held out from the SR models)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def box_bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options every box-sample bench on the held-out sets shares (model, data, crops, threads, JSON out)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--sim-build", type=Path, default=None, help="held-out sim build (the sim set)")
    ap.add_argument("--crops", type=int, default=8, help="held-out crops per set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    return ap


def box_resolver(ap: argparse.ArgumentParser, a: argparse.Namespace):
    """The box's default-profile resolver (the bundle's fast path) for parsed box_bench_parser options; argparse
    errors for missing photographs or a bundle without a fast path."""
    if not a.realdata.is_dir():
        ap.error(f"{a.realdata}: no shared photographs here (--realdata)")
    sr_quality.PATHS["run"], sr_quality.THREADS["n"] = ("fast",), a.threads
    sr = sr_quality.resolvers(a.model, 0, None).get("fast")
    if sr is None:
        ap.error(f"{a.model}: the bundle has no fast path (the box's default profile)")
    return sr


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements; print tables, write JSON and the plot."""
    ap = box_bench_parser(__doc__)
    ap.add_argument("--sim-reference", type=Path, default=None, help="another build of the same simulated printer")
    ap.add_argument("--windows", type=int, default=400, help="32-px LR windows per photograph / reference")
    ap.add_argument("--plot", type=Path, default=None)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    sr = box_resolver(ap, a)
    cap = sr.grain_cap
    if cap is None:
        ap.error(f"{a.model}: the bundle has no grain cap to calibrate")
    ratios = per_photo(cap, a.realdata, cap.window, a.windows // 4)
    refs = reference_factors(cap, a.realdata, a.sim_reference if a.sim_build else None, cap.window, a.windows)
    sets = {g: source_crops(a.realdata, g, a.crops, 64, 0) for g in REAL_SETS}
    if a.sim_build is not None and a.sim_reference is not None:
        sets["sim"] = sim_crops(a.sim_build, a.crops, 64, 0)
    res = {"model_id": sr.model_id, "command": " ".join(sys.argv), "per_photo": ratios,
           "reference": {g: {"photos": r["photos"], "factors": [float(v) for v in r["factors"]]}
                         for g, r in refs.items()},
           "calibrated_cap": calibration_table(sr, sets, refs)}
    if sr.grain_condition is not None:
        res["descriptor_steer"] = steer_table(sr, sets)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(report(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    if a.plot:
        plot(ratios, a.plot)
    return 0


def report(res: dict) -> str:
    """Markdown tables of the three measurements."""
    lines = [f"model {res['model_id']}", "", "| source | photographs: true / predicted detail energy (* held out) |",
             "|---|---|"]
    for g, rows in res["per_photo"].items():
        lines.append(f"| {g} | " + ", ".join(f"{r['total']:.2f}{'*' if r['held_out'] else ''}" for r in rows) + " |")
    lines += ["", "| set | reference factors per band | cap | HF | kurt | texture / bicubic's | PSNR - bicubic | "
              "cap acts |", "|---|---|---|---|---|---|---|---|"]
    for g, rows in res["calibrated_cap"].items():
        f = ", ".join(f"{v:.2f}" for v in res["reference"][g]["factors"])
        for name, m in rows.items():
            lines.append(f"| {g} | {f} | {name} | {m['hf_ratio']:.2f} | {m['kurt_log_ratio']:.2f} | "
                         f"{m['texture_vs_bicubic']:.2f} | {m['psnr_vs_bicubic']:+.2f} | {m['cap_share']:.0%} |")
    if "descriptor_steer" in res:
        lines += ["", "| set | HF ratio, cap off, at descriptor shift " + " / ".join(f"{s:+.2f}" for s in SHIFTS)
                  + " |", "|---|---|"]
        for g, row in res["descriptor_steer"].items():
            lines.append(f"| {g} | " + " / ".join(f"{v:.2f}" for v in row.values()) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
