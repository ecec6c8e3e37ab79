"""Recoat (spreading) defect detection on real labelled plates: clean false alarms and per-class recall, zero-config
and with printer baselines made from clean frames that are not scored.

Usage: .venv/bin/python bench/recoat_eval.py [--realdata ../shared/realdata] [--path recoat|analyze] [--sensitivity]
       [--json F] [--plot F.png]
Paths: `recoat` = the box's recoat-frame analyser (RecoatAnalyzer), `analyze` = what `lpbf-edge analyze` runs
(LayerAnalyzer: segmentation, then the same powder judge on the powder outside any parts). Default config.
Protocols: zero-config (each plate by itself); leave-one-out (each clean plate against a baseline of the other 7;
defective plate k against the baseline that leaves out clean plate k mod 8); 3-frame baselines (rotation i uses
clean plates i, i+1, i+2 mod 8 and scores the other 5 clean plates; defective plate k uses rotation k mod 8).
A plate counts as flagged when its layer state is not ok (severity `info` flags never count).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.analyze.baseline import learn_baseline
from edge.analyze.config import AnalyzeConfig
from edge.analyze.recoat import clean_scores

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("No_Defect", "Powder_Uneven", "Deformation_With_Scratch", "Powder_Uneven_With_Scratch")
OTHER = (
    "risheng_slm/10002.png",
    "risheng_slm/10018.png",
    "risheng_slm/10448.png",
    "pblm/PowderRecoat_20210909_143308.jpg",
    "pblm/PowderRecoat_20210913_103813.jpg",
    "pblm/PowderRecoat_20210915_111858.jpg",
    "pblm/PowderRecoat_20210916_103848.jpg",
    "pblm/PowderRecoat_20211125_135551.jpg",
)


def load(realdata: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Plates per class (name, grey image)."""
    out = {}
    for c in CLASSES:
        files = sorted((realdata / "pblm_classes" / c).glob("*.jpg"))
        if not files:
            raise SystemExit(f"no plates in {realdata / 'pblm_classes' / c}")
        out[c] = [(f.name, cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)) for f in files]
    return out


def analyse(path: str, cfg: AnalyzeConfig, base, img: np.ndarray):
    """One plate through the chosen box path (fresh analyser: no history)."""
    if path == "recoat":
        from edge.analyze.recoat import RecoatAnalyzer

        return RecoatAnalyzer(cfg, base).analyze(img, 1)
    from edge.analyze.layer import LayerAnalyzer

    return LayerAnalyzer(cfg, baseline=base).analyze(img, 1)


def baselines(clean: list[np.ndarray], cfg: AnalyzeConfig, k: int) -> list[tuple[list[int], object]]:
    """Rotation i: (clean indices in the baseline, baseline); k = 7 is leave-one-out."""
    n, out = len(clean), []
    for i in range(n):
        idx = [j for j in range(n) if j != i] if k == n - 1 else [(i + d) % n for d in range(k)]
        out.append((idx, learn_baseline([clean[j] for j in idx], cfg, lambda g, b: clean_scores(g, b, cfg))))
    return out


def protocol(plates: dict, cfg: AnalyzeConfig, path: str, k: int | None, rots: list | None = None) -> dict:
    """Flag rates per class for one protocol (k None: zero-config; else k-frame baselines, learned here unless given:
    a baseline holds raw detector statistics, so one set serves every threshold setting)."""
    clean = [im for _, im in plates["No_Defect"]]
    rots = (rots or baselines(clean, cfg, k)) if k else None
    res: dict[str, dict] = {}
    jobs = []
    for c in CLASSES:
        for pi, (name, im) in enumerate(plates[c]):
            if rots is None:
                jobs.append((c, name, im, None))
            elif c == "No_Defect":
                jobs += [(c, name, im, b) for idx, b in rots if pi not in idx]
            else:
                jobs.append((c, name, im, rots[pi % len(rots)][1]))
    for c, name, im, b in tqdm(jobs, desc=f"{path} k={k or 'zero-config'}", file=sys.stderr, leave=False):
        a = analyse(path, cfg, b, im)
        r = res.setdefault(c, {"n": 0, "flagged": 0, "types": Counter(), "plates": []})
        r["n"] += 1
        r["flagged"] += a.layer_state != "ok"
        r["types"].update({f.type for f in a.flags if f.severity != "info"})
        r["plates"].append([name, a.layer_state])
    for r in res.values():
        r["rate"] = r["flagged"] / r["n"]
        r["types"] = dict(r["types"])
    defective = [res[c] for c in CLASSES[1:]]
    return {
        "per_class": res,
        "clean_false_alarm_rate": res["No_Defect"]["rate"],
        "defective_recall": sum(r["flagged"] for r in defective) / sum(r["n"] for r in defective),
    }


SENSITIVITY = {  # protocol -> thresholds scaled one at a time
    "leave_one_out": (
        "powder_line_contrast",
        "powder_mark_contrast",
        "powder_level_contrast",
        "powder_level_min_rel",
        "baseline_clean_margin",
    ),
    "zero_config": (
        "powder_line_contrast",
        "powder_mark_contrast",
        "powder_level_contrast",
        "zero_config_level_min_rel",
        "zero_config_margin",
    ),
}
FACTORS = (0.67, 0.8, 1.25, 1.5)


def sensitivity(plates: dict, cfg: AnalyzeConfig, path: str) -> list[dict]:
    """Clean false alarms and defective recall with each main threshold scaled by FACTORS (one at a time), for the
    leave-one-out baselines and for zero-config; margins are floored at 1."""
    rows = []
    rots = baselines([im for _, im in plates["No_Defect"]], cfg, 7)
    jobs = [(proto, key, f) for proto, keys in SENSITIVITY.items() for key in keys for f in FACTORS]
    for proto, key, f in tqdm(jobs, desc="sensitivity", file=sys.stderr):
        v = getattr(cfg, key) * f
        if key.endswith("margin"):
            v = max(1.0, v)
        c = cfg.model_copy(update={key: v})
        p = protocol(plates, c, path, 7, rots) if proto == "leave_one_out" else protocol(plates, c, path, None)
        rows.append(
            {
                "protocol": proto,
                "key": key,
                "factor": f,
                "value": v,
                "fa": p["clean_false_alarm_rate"],
                "recall": p["defective_recall"],
            }
        )
    return rows


def plot_sensitivity(rows: list[dict], base: dict, path: Path) -> None:
    """Recall and clean false alarms against the threshold factor, one panel per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, proto in zip(axes, SENSITIVITY, strict=False):
        for key in SENSITIVITY[proto]:
            pts = sorted(
                [(1.0, base[proto]["defective_recall"], base[proto]["clean_false_alarm_rate"])]
                + [(r["factor"], r["recall"], r["fa"]) for r in rows if r["protocol"] == proto and r["key"] == key]
            )
            x = [p[0] for p in pts]
            line = ax.plot(x, [p[1] for p in pts], "o-", label=f"{key} recall")[0]
            ax.plot(x, [p[2] for p in pts], "s--", color=line.get_color(), alpha=0.7, label=f"{key} clean FA")
        ax.axhline(0.8, color="grey", lw=0.6)
        ax.axhline(0.05 if proto == "leave_one_out" else 0.2, color="red", lw=0.6)
        flat = all(
            r["recall"] == base[proto]["defective_recall"] and r["fa"] == base[proto]["clean_false_alarm_rate"]
            for r in rows
            if r["protocol"] == proto
        )
        ax.set_title(f"pblm_classes, {proto.replace('_', '-')}" + (" (every curve flat)" if flat else ""))
        ax.set_xlabel("threshold x factor (1 = default)")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(sorted(set(FACTORS) | {1.0}))
        ax.set_xticklabels([f"{f:g}" for f in sorted(set(FACTORS) | {1.0})])
    axes[0].set_ylabel("defective recall (solid) / clean false alarms (dashed)")
    axes[1].legend(fontsize=6.5, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def other_photos(realdata: Path, cfg: AnalyzeConfig, path: str) -> list[dict]:
    """Zero-config results on unlabelled recoat photographs of other printers (false-alarm sanity)."""
    rows = []
    for rel in OTHER:
        p = realdata / rel
        if not p.exists():
            continue
        im = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if im.shape[1] > 2048:
            im = cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA)
        a = analyse(path, cfg, None, im)
        rows.append(
            {"photo": rel, "state": a.layer_state, "types": sorted({f.type for f in a.flags if f.severity != "info"})}
        )
    return rows


def print_protocol(name: str, p: dict) -> None:
    """One Markdown table row per class."""
    print(
        f"\n**{name}**: clean false alarms {p['clean_false_alarm_rate']:.1%}, "
        f"defective recall {p['defective_recall']:.2f}\n"
    )
    print("| class | scored | flagged | rate | flag types |\n|---|---|---|---|---|")
    for c in CLASSES:
        r = p["per_class"][c]
        types = ", ".join(f"{k} {v}" for k, v in sorted(r["types"].items()))
        print(f"| {c} | {r['n']} | {r['flagged']} | {r['rate']:.2f} | {types} |")


def main() -> None:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--path", choices=("recoat", "analyze"), default="recoat")
    ap.add_argument(
        "--sensitivity",
        action="store_true",
        help="Also rerun leave-one-out and zero-config with each main threshold x0.67 .. x1.5.",
    )
    ap.add_argument("--plot", type=Path, default=None, help="PNG of the sensitivity curves (with --sensitivity).")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cfg, t = AnalyzeConfig(), time.time()
    plates = load(a.realdata)
    out = {
        "path": a.path,
        "zero_config": protocol(plates, cfg, a.path, None),
        "leave_one_out": protocol(plates, cfg, a.path, 7),
        "three_frame": protocol(plates, cfg, a.path, 3),
    }
    print_protocol("zero-config", out["zero_config"])
    print_protocol("baseline of the other 7 clean plates (leave-one-out)", out["leave_one_out"])
    print_protocol("baseline of 3 clean plates (8 rotations)", out["three_frame"])
    if a.sensitivity:
        out["sensitivity"] = sensitivity(plates, cfg, a.path)
        print("\n| protocol | key | x | value | clean FA | recall |\n|---|---|---|---|---|---|")
        for r in out["sensitivity"]:
            print(
                f"| {r['protocol']} | {r['key']} | {r['factor']} | {r['value']:.3g} | {r['fa']:.1%} | "
                f"{r['recall']:.2f} |"
            )
        if a.plot:
            plot_sensitivity(out["sensitivity"], out, a.plot)
    out["other_photos"] = other_photos(a.realdata, cfg, a.path)
    print("\n| other photo (zero-config, no labels) | state | flag types |\n|---|---|---|")
    for r in out["other_photos"]:
        print(f"| {r['photo']} | {r['state']} | {', '.join(r['types']) or '-'} |")
    out["seconds"] = round(time.time() - t, 1)
    print(f"\n{out['seconds']} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
