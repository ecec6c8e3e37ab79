"""`lpbf-edge evaluate`: the paper's tables for a build as Markdown, CSV and plots.

Tables: patch metrics, part metrics, roughness.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from edge.analyze import metrics as mt
from edge.analyze import roughness as rg
from edge.analyze import volume as vo
from edge.analyze.build_io import Build, open_build
from edge.analyze.config import AnalyzeConfig
from edge.analyze.segment import Segmenter
from edge.analyze.upscale import bicubic, make_upscaler

WINDOWS = (3, 6, 12, 24, 48)


def _crops(mask: np.ndarray, k: int, size: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to k top-left corners of size x size crops centred on part pixels (plate centre if no parts)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask > 0)
    if ys.size == 0:
        ys, xs = np.array([h // 2]), np.array([w // 2])
    idx = rng.choice(ys.size, size=min(k, ys.size), replace=False)
    return [(int(np.clip(ys[i] - size // 2, 0, h - size)), int(np.clip(xs[i] - size // 2, 0, w - size))) for i in idx]


def roughness_part(gt_masks: list[np.ndarray], part_ids: list[int]) -> int:
    """The largest part whose outer contour is nearly convex (polar profiles need a star-shaped outline)."""
    import cv2

    best, best_area = part_ids[0], -1
    for k in part_ids:
        m = next((g == k for g in gt_masks if (g == k).any()), None)
        if m is None:
            continue
        cs, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        c = max(cs, key=cv2.contourArea)
        area, hull = cv2.contourArea(c), cv2.contourArea(cv2.convexHull(c))
        if hull > 0 and area / hull > 0.92 and area > best_area:
            best, best_area = k, area
    return best


def _write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts to CSV (header from the first row)."""
    if not rows:
        path.write_text("", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _col_mean(rows: list[dict], key: str) -> float:
    """NaN-ignoring mean of one column over the rows that have it (NaN when none has it)."""
    vals = [r[key] for r in rows if key in r]
    return float(np.nanmean(vals)) if vals else float("nan")


def _fmt(v: float) -> str:
    """Number for a Markdown table."""
    return "-" if v is None or not np.isfinite(v) else (f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}")


def _assign_parts(pred: np.ndarray, gt: np.ndarray) -> dict[int, np.ndarray]:
    """Split a binary prediction into parts by the nearest ground-truth part label."""
    if not gt.any():
        return {}
    _, (iy, ix) = ndimage.distance_transform_edt(gt == 0, return_indices=True)
    nearest = gt[iy, ix]
    return {int(k): pred & (nearest == k) for k in np.unique(gt) if k > 0}


def evaluate_build(build_dir: str | Path, out: str | Path, cfg: AnalyzeConfig, max_layers: int = 0,
                   cvd_patches: int = 4,
                   echo: Callable[[str], None] = print, bundle: str | Path | None = None, sr_cfg=None) -> Path:
    """Every table and plot for a build (SR: the box's `sr_cfg` settings over `bundle`); returns the Markdown file."""
    b = open_build(build_dir, max_layers)
    if not (b.has("hr") and b.has("masks")):
        raise FileNotFoundError(f"{b.path}: evaluate needs hr/ and masks/ (ground truth) besides lr/")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    up = make_upscaler(b.scale, bundle, sr_cfg)
    echo(up.note)
    seg = Segmenter(cfg, registered=True)  # build layers are plate frames
    rng = np.random.default_rng(0)
    cvd_set = mt.CVDSettings(size=cfg.cvd_size, l_angles=cfg.cvd_angles)
    patch_rows, masks = [], {"ground truth": [], "HR": [], up.name: [], "bicubic": []}
    sources = ("bicubic", up.name) if up.is_model else ("bicubic",)
    for i, L in enumerate(b.layers):
        hr, lr, gt = b.image("hr", L), b.image("lr", L), b.mask(L)
        imgs = {"bicubic": bicubic(lr, b.scale)}
        geo = dict(imgs)  # what segmentation reads: the model's geometry estimate (edge.sr_stage), else the image
        if up.is_model:
            v = up.analysis_input(lr)
            imgs[up.name] = v["image"]
            geo[up.name] = v["estimate"] if v["estimate"] is not None else v["image"]
        for name in sources:
            row = {"layer": L, "source": name, **mt.patch_metrics(imgs[name], hr)}
            if i < 2 and cvd_patches > 0:  # the CVD is slow (pywph): a few part-centred patches on the first layers
                vals = [mt.cvd(imgs[name][y : y + 128, x : x + 128], hr[y : y + 128, x : x + 128], cvd_set)
                        for y, x in _crops(gt, cvd_patches, 128, rng)]
                row["cvd"], row["cvd_norm"] = float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals]))
            patch_rows.append(row)
        masks["ground truth"].append(gt)
        masks["HR"].append(seg.segment(hr).mask)
        for name in sources:
            masks[name].append(seg.segment(geo[name]).mask)
        echo(f"layer {L}: metrics and segmentation done")
    if not up.is_model:
        masks.pop(up.name, None)
    _write_csv(out / "patch_metrics.csv", patch_rows)

    # part metrics: per part, predicted volume (nearest-part assignment) against the ground-truth volume
    part_ids = vo.part_ids(masks["ground truth"])
    part_rows, rough_rows, curves = [], [], {}
    pitch, lt = b.hr_pitch_um, b.layer_um
    for name in [n for n in masks if n != "ground truth"]:
        per_layer = [_assign_parts(p, g) for p, g in zip(masks[name], masks["ground truth"], strict=False)]
        for k in part_ids:
            ref = vo.stack_masks(masks["ground truth"], part=k)
            pred = np.stack([d.get(k, np.zeros_like(ref[0])) for d in per_layer])
            hd_mean, hd_max = vo.hausdorff_volume_um(pred, ref, pitch)
            part_rows.append({"source": name, "part": k, "iou_3d": vo.iou_3d(pred, ref),
                              "voxel_mismatch": vo.voxel_mismatch(pred, ref),
                              "hausdorff_mean_um": hd_mean, "hausdorff_max_um": hd_max})
    _write_csv(out / "part_metrics.csv", part_rows)

    # roughness of the largest part, per source, against the low-pass window
    if part_ids:
        big = roughness_part(masks["ground truth"], part_ids)
        for name, ms in masks.items():
            if name == "ground truth":
                layer_masks = [g == big for g in ms]
            else:
                layer_masks = [_assign_parts(p, g).get(big, np.zeros(g.shape, bool))
                               for p, g in zip(ms, masks["ground truth"], strict=False)]
            curves[name] = rg.roughness_vs_window(layer_masks, list(WINDOWS), pitch)
            for w, r in curves[name].items():
                rough_rows.append({"source": name, "part": big, "window_deg": w, "ra_um": r.ra_um, "rq_um": r.rq_um,
                                   "rz_um": r.rz_um})
        rg.plot_roughness_vs_window(curves, out / "roughness_vs_window.png",
                                    f"part {big}: roughness vs low-pass window")
    _write_csv(out / "roughness.csv", rough_rows)

    # 3D preview and mesh of the HR segmentation
    meshes = []
    for k in part_ids:
        per_layer = [_assign_parts(p, g).get(k) for p, g in zip(masks["HR"], masks["ground truth"], strict=False)]
        vol = np.stack([m if m is not None else np.zeros(masks["HR"][0].shape, bool) for m in per_layer])
        if vol.sum() > 0 and vol.shape[0] >= 2:
            meshes.append(vo.mesh_from_volume(vol, pitch, lt))
    if meshes:
        import trimesh

        vo.export_mesh(trimesh.util.concatenate(meshes), out / "parts_hr.stl")
        vo.render_preview(meshes, out / "preview_3d.png", "parts segmented from HR layers")

    md = _markdown(b, up.note, patch_rows, part_rows, rough_rows, sources)
    (out / "evaluation.md").write_text(md, encoding="utf-8")
    return out / "evaluation.md"


def _markdown(b: Build, note: str, patch_rows: list[dict], part_rows: list[dict], rough_rows: list[dict],
              sources: tuple) -> str:
    """The tables as Markdown."""
    lines = [f"# Evaluation of {b.path.name}", "",
             f"Layers {b.layers[0]}..{b.layers[-1]} ({len(b.layers)}), scale {b.scale}, "
             f"HR pitch {b.hr_pitch_um} µm, layer {b.layer_um} µm.", "", f"**SR source:** {note}", "",
             "## Patch metrics (against HR, mean over layers)", "",
             "| source | MAE | PSNR (dB) | SSIM | HF energy ratio | CVD | CVD (norm.) |",
             "|---|---|---|---|---|---|---|"]
    for name in sources:
        rows = [r for r in patch_rows if r["source"] == name]
        cells = " | ".join(_fmt(_col_mean(rows, k)) for k in ("mae", "psnr", "ssim", "hf_ratio", "cvd", "cvd_norm"))
        lines.append(f"| {name} | {cells} |")
    lines += ["", "## Part metrics (segmented volume vs ground-truth volume, mean over parts)", "",
              "| source | 3D IoU | voxel mismatch | Hausdorff mean (µm) | Hausdorff max (µm) |",
              "|---|---|---|---|---|"]
    for name in dict.fromkeys(r["source"] for r in part_rows):
        rows = [r for r in part_rows if r["source"] == name]
        cells = " | ".join(_fmt(_col_mean(rows, k)) for k in ("iou_3d", "voxel_mismatch", "hausdorff_mean_um",
                                                              "hausdorff_max_um"))
        lines.append(f"| {name} | {cells} |")
    if rough_rows:
        lines += ["",
                  f"## Roughness of part {rough_rows[0]['part']} "
                  "(µm; Rz = mean of 5 sampling-length peak-to-valley, ISO 4287)", "",
                  "| source | window (deg) | Ra | Rq | Rz |", "|---|---|---|---|---|"]
        for r in rough_rows:
            lines.append(f"| {r['source']} | {r['window_deg']} | {_fmt(r['ra_um'])} | {_fmt(r['rq_um'])} "
                         f"| {_fmt(r['rz_um'])} |")
        lines += ["", "![roughness](roughness_vs_window.png)"]
    lines += ["", "![3D preview](preview_3d.png)", ""]
    return "\n".join(lines)
