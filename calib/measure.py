"""Register on a sim build's first layer and report errors over all its layers (used by `calib measure`)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from calib.config import CalibConfig
from calib.evaluate import Distortion, grid_error, image_error, overlay, true_homography
from calib.flatfield import fit_flat, gain_map, uniformity
from calib.register import Calibration, register


def measure_build(build_dir: str | Path, calib_file: str | Path | None = None, k1: float = 0.0, hough: str = "auto",
                  overlay_path: str | Path | None = None) -> dict:
    """Numbers for docs/calibration.md: grid/corner error (LR px) and image error vs lr/ per layer."""
    build = Path(build_dir)
    H_true, meta = true_homography(build)
    n, scale = meta["image_size_px"]["hr"][0], int(meta["scale"])
    layers = sorted((build / "webcam").glob("*.png"))
    dist = Distortion(k1) if k1 else None

    def webcam(p):
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        return dist.apply(img) if dist else img

    first = layers[0].name
    t0 = time.perf_counter()
    if calib_file is not None:
        cal = Calibration.load(calib_file)
    else:
        cfg = CalibConfig(plate_mm=float(meta["plate_mm"][0]), hough=hough)
        reference = cv2.imread(str(build / "hr" / first), cv2.IMREAD_GRAYSCALE)
        cal = register(webcam(layers[0]), n, scale, cfg, reference=reference)
    t_reg = time.perf_counter() - t0
    truth = Calibration(H_true, cal.webcam_size, n, scale, cal.plate_mm)
    per_layer, base = [], []
    t_apply = []
    for p in layers:
        w, lr = webcam(p), cv2.imread(str(build / "lr" / p.name), cv2.IMREAD_GRAYSCALE)
        t = time.perf_counter()
        per_layer.append(image_error(cal, w, lr))
        t_apply.append(time.perf_counter() - t)
        base.append(image_error(truth, w, lr))
    if overlay_path is not None:
        w, lr = webcam(layers[-1]), cv2.imread(str(build / "lr" / layers[-1].name), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(overlay_path), overlay(cal, w, lr))
    # flat field fitted on the first layer's registered frame, checked on the last layer's
    first_lr = cal.apply(webcam(layers[0]), flat=False)
    gain = gain_map(fit_flat(first_lr, 4), first_lr.shape, 4)
    last_lr = cal.apply(webcam(layers[-1]), flat=False).astype(np.float32)
    flat_before, flat_after = uniformity(last_lr), uniformity(last_lr * gain)
    deform = cal.fit.get("deformation")
    return {
        "build": str(build), "layers": len(layers), "k1": k1, "method": cal.method,
        "register_s": round(t_reg, 3), "apply_ms": round(1000 * float(np.median(t_apply)), 2),
        "pitch_um_lr": round(cal.pitch_um, 3), "webcam_pitch_um_center": round(cal.webcam_pitch_um, 3),
        **{k: round(v, 4) for k, v in grid_error(cal, H_true, distortion=dist).items()},
        "image_mae": round(float(np.mean([r["mae"] for r in per_layer])), 4),
        "image_psnr_db": round(float(np.mean([r["psnr_db"] for r in per_layer])), 3),
        "flat_uniformity_before": round(flat_before, 4), "flat_uniformity_after": round(flat_after, 4),
        "true_H_image_mae": round(float(np.mean([r["mae"] for r in base])), 4),
        "deformation": ({k: v for k, v in deform.items() if k not in ("points", "shifts")}
                        if isinstance(deform, dict) else deform),
    }
