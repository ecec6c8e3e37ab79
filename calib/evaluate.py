"""Registration error on sim builds, where the true homography and the true LR images are known."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from calib.errors import CalibrationError
from calib.homography import project
from calib.register import Calibration, lr_to_hr


@dataclass(frozen=True)
class Distortion:
    """Radial lens distortion (OpenCV k1, k2 about the image centre, focal f px) added to sim webcam frames."""

    k1: float
    k2: float = 0.0
    f: float = 1400.0

    def _K(self, size: tuple[int, int]) -> np.ndarray:
        return np.array([[self.f, 0, (size[0] - 1) / 2], [0, self.f, (size[1] - 1) / 2], [0, 0, 1.0]])

    def _dist(self) -> np.ndarray:
        return np.array([self.k1, self.k2, 0.0, 0.0, 0.0])

    def distort_points(self, pts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Ideal (pinhole) webcam pixels -> distorted pixels."""
        K = self._K(size)
        xn = (pts - K[:2, 2]) / self.f
        r2 = (xn**2).sum(axis=1, keepdims=True)
        return xn * (1 + self.k1 * r2 + self.k2 * r2**2) * self.f + K[:2, 2]

    def undistort_points(self, pts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Distorted webcam pixels -> ideal pixels."""
        K = self._K(size)
        u = cv2.undistortPoints(pts.reshape(-1, 1, 2).astype(np.float64), K, self._dist(), P=K)
        return u.reshape(-1, 2)

    def apply(self, img: np.ndarray) -> np.ndarray:
        """Render the distorted version of an ideal webcam frame."""
        size = (img.shape[1], img.shape[0])
        ys, xs = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float64)
        src = self.undistort_points(np.column_stack([xs.ravel(), ys.ravel()]), size).astype(np.float32)
        return cv2.remap(img, src[:, 0].reshape(xs.shape), src[:, 1].reshape(xs.shape), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)


def true_homography(build_dir: str | Path) -> tuple[np.ndarray, dict]:
    """The sim's true HR->webcam homography and the build.json document."""
    meta = json.loads((Path(build_dir) / "build.json").read_text())
    try:
        return np.array(meta["cameras"]["webcam"]["H_hr_to_webcam"], dtype=np.float64), meta
    except KeyError as exc:
        raise CalibrationError(f"{build_dir}/build.json has no cameras.webcam.H_hr_to_webcam") from exc


def grid_error(cal: Calibration, H_true: np.ndarray, n_grid: int = 17, distortion: Distortion | None = None) -> dict:
    """Where LR grid points land under the calibration vs the truth, in LR pixels (RMS, max, corners)."""
    m = cal.lr_size
    g = np.linspace(0, m - 1, n_grid)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    corners = np.array([[-0.5, -0.5], [m - 0.5, -0.5], [m - 0.5, m - 0.5], [-0.5, m - 0.5]])
    inv_true = np.linalg.inv(H_true @ lr_to_hr(cal.scale))

    def err(p):
        w = cal.lr_to_webcam(p)
        if distortion is not None:
            w = distortion.undistort_points(w, cal.webcam_size)
        return np.linalg.norm(project(inv_true, w) - p, axis=1)

    e, ec = err(pts), err(corners)
    return {"grid_rms_lr_px": float(np.sqrt((e**2).mean())), "grid_max_lr_px": float(e.max()),
            "corner_rms_lr_px": float(np.sqrt((ec**2).mean()))}


def image_error(cal: Calibration, webcam: np.ndarray, lr_true: np.ndarray) -> dict:
    """Mean absolute error and PSNR of the registered image against the sim's true LR image (border 2 px excluded)."""
    out = cal.apply(webcam, flat=False).astype(np.float64)[2:-2, 2:-2]
    ref = lr_true.astype(np.float64)[2:-2, 2:-2]
    mse = float(((out - ref) ** 2).mean())
    return {"mae": float(np.abs(out - ref).mean()), "psnr_db": float(10 * np.log10(255**2 / max(mse, 1e-12)))}


def overlay(cal: Calibration, webcam: np.ndarray, lr_true: np.ndarray) -> np.ndarray:
    """Colour overlay: registered webcam magenta, true LR green (grey where they agree), beside the difference."""
    reg = cal.apply(webcam, flat=False)
    rgb = np.dstack([lr_true, reg, lr_true])  # BGR: B=true, G=registered, R=true -> magenta/green misfit
    diff = cv2.applyColorMap(np.clip(np.abs(reg.astype(np.int16) - lr_true) * 8, 0, 255).astype(np.uint8),
                             cv2.COLORMAP_INFERNO)
    return np.hstack([rgb, diff])
