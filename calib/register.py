"""Webcam-to-plate registration: compute it (fiducials/corners + paper's Hough refinement), store it, apply it."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from calib.config import CalibConfig
from calib.deform import dense_field, estimate_deformation
from calib.errors import CalibrationError
from calib.fiducials import cyclic_candidates, detect_dots
from calib.flatfield import fit_flat, gain_map
from calib.homography import fit_homography, project, reprojection_rms
from lpbf_common.messages import LayerFrames, RegisteredLayer

FORMAT = "lpbf-edge-calib"
VERSION = 1


def lr_to_hr(scale: int) -> np.ndarray:
    """Affine LR pixel -> HR pixel (pixel centres at integers; LR pixel = mean of scale x scale HR pixels)."""
    return np.array([[scale, 0, (scale - 1) / 2], [0, scale, (scale - 1) / 2], [0, 0, 1.0]])


def hr_corners(hr_size: int) -> np.ndarray:
    """Outer corners of the HR grid (TL, TR, BR, BL) in HR pixel coordinates."""
    n = hr_size
    return np.array([[-0.5, -0.5], [n - 0.5, -0.5], [n - 0.5, n - 0.5], [-0.5, n - 0.5]])


@dataclass
class Calibration:
    """A stored registration: homography HR grid -> webcam, optional deformation map and flat field."""

    H_hr_to_webcam: np.ndarray
    webcam_size: tuple[int, int]
    hr_size: int
    scale: int
    plate_mm: float = 100.0
    method: str = "homography"
    deformation: np.ndarray | None = None
    deform_step: int = 8
    flat_coef: np.ndarray | None = None
    flat_degree: int = 4
    fit: dict = field(default_factory=dict)
    _maps: tuple | None = field(default=None, repr=False, compare=False)
    _gain: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def lr_size(self) -> int:
        """Side of the registered LR image in pixels."""
        return self.hr_size // self.scale

    @property
    def pitch_um(self) -> float:
        """Plate distance per LR pixel in micrometres."""
        return self.plate_mm * 1000.0 / self.lr_size

    @property
    def webcam_pitch_um(self) -> float:
        """Plate distance per webcam pixel at the plate centre (µm), from the homography's Jacobian."""
        n = self.hr_size
        w = project(self.H_hr_to_webcam, np.array([[n / 2, n / 2], [n / 2 + 1, n / 2], [n / 2, n / 2 + 1]]))
        (ax, ay), (bx, by) = w[1] - w[0], w[2] - w[0]
        return self.plate_mm * 1000.0 / n / math.sqrt(abs(ax * by - ay * bx))

    # ---- mapping ----------------------------------------------------------------------------

    def lr_to_webcam(self, pts_lr: np.ndarray) -> np.ndarray:
        """Webcam pixel seen at LR pixel positions (Nx2), including the deformation map."""
        pts = np.asarray(pts_lr, dtype=np.float64).reshape(-1, 2)
        if self.deformation is not None:
            g = self.deformation
            x = np.clip(pts[:, 0] / self.deform_step, 0, g.shape[1] - 1)
            y = np.clip(pts[:, 1] / self.deform_step, 0, g.shape[0] - 1)
            xs, ys = x.astype(np.float32)[None], y.astype(np.float32)[None]
            d = np.stack([cv2.remap(g[..., k].astype(np.float32), xs, ys, cv2.INTER_LINEAR)[0] for k in range(2)],
                         axis=1)
            pts = pts + d
        return project(self.H_hr_to_webcam @ lr_to_hr(self.scale), pts)

    def _remap_maps(self):
        """Cached fixed-point remap tables: for each HR-grid pixel, where to sample the webcam frame."""
        if self._maps is None:
            n, s = self.hr_size, self.scale
            xs = np.arange(n, dtype=np.float64)
            gx, gy = np.meshgrid(xs, xs)
            if self.deformation is not None:
                d = dense_field(self.deformation, self.deform_step, self.lr_size)
                d_hr = cv2.resize(d, (n, n), interpolation=cv2.INTER_LINEAR).astype(np.float64)
                gx, gy = gx + s * d_hr[..., 0], gy + s * d_hr[..., 1]
            H = self.H_hr_to_webcam
            den = H[2, 0] * gx + H[2, 1] * gy + H[2, 2]
            mx = ((H[0, 0] * gx + H[0, 1] * gy + H[0, 2]) / den).astype(np.float32)
            my = ((H[1, 0] * gx + H[1, 1] * gy + H[1, 2]) / den).astype(np.float32)
            self._maps = cv2.convertMaps(mx, my, cv2.CV_16SC2)
        return self._maps

    def apply(self, webcam: np.ndarray, flat: bool = True) -> np.ndarray:
        """Webcam frame (uint8 mono) -> registered LR image (uint8) on the plate grid."""
        if webcam is None or webcam.ndim != 2 or webcam.dtype != np.uint8:
            raise CalibrationError("calibration applies to 8-bit mono webcam frames, got "
                                   f"{getattr(webcam, 'shape', None)} {getattr(webcam, 'dtype', None)}")
        if (webcam.shape[1], webcam.shape[0]) != tuple(self.webcam_size):
            raise CalibrationError(f"frame is {webcam.shape[1]}x{webcam.shape[0]} but the calibration was made for "
                                   f"{self.webcam_size[0]}x{self.webcam_size[1]}; "
                                   "recalibrate or fix the webcam resolution")
        m1, m2 = self._remap_maps()
        on_hr = cv2.remap(webcam, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        m = self.lr_size
        lr = cv2.resize(on_hr, (m, m), interpolation=cv2.INTER_AREA)
        if flat and self.flat_coef is not None:
            if self._gain is None:
                self._gain = gain_map(self.flat_coef, (m, m), self.flat_degree)
            lr = np.clip(lr.astype(np.float32) * self._gain + 0.5, 0, 255).astype(np.uint8)
        return lr

    def register_layer(self, frames: LayerFrames, camera: str = "webcam") -> RegisteredLayer:
        """Registered LR image of a layer's webcam frame (CalibrationError when the frame is missing)."""
        if camera not in frames.frames:
            why = frames.failed.get(camera, "no frame")
            raise CalibrationError(f"layer {frames.event.layer}: no {camera} frame to register ({why})")
        lr = self.apply(frames.frames[camera].image)
        return RegisteredLayer(event=frames.event, lr=lr, pitch_um=self.pitch_um, raw=frames)

    # ---- file -------------------------------------------------------------------------------

    def to_json(self) -> dict:
        """Versioned JSON document."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "method": self.method,
            "webcam_size": list(self.webcam_size),
            "hr_size": self.hr_size,
            "scale": self.scale,
            "lr_size": self.lr_size,
            "plate_mm": self.plate_mm,
            "pitch_um": {"lr": round(self.pitch_um, 4), "hr": round(self.plate_mm * 1000 / self.hr_size, 4),
                         "webcam_center": round(self.webcam_pitch_um, 4)},
            "H_hr_to_webcam": np.asarray(self.H_hr_to_webcam).tolist(),
            "deformation": None if self.deformation is None else {
                "step_lr_px": self.deform_step, "dx": self.deformation[..., 0].tolist(),
                "dy": self.deformation[..., 1].tolist()},
            "flat_field": (None if self.flat_coef is None
                           else {"degree": self.flat_degree, "coef": self.flat_coef.tolist()}),
            "fit": self.fit,
        }

    def save(self, path: str | Path) -> Path:
        """Write the calibration file atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read and validate a calibration file; CalibrationError names the file and the bad key."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CalibrationError(f"{path}: cannot read calibration file: {exc.strerror or exc}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise CalibrationError(f"{path}: not an lpbf-edge calibration file (format must be {FORMAT!r})")
        if doc.get("version") != VERSION:
            raise CalibrationError(f"{path}: calibration version {doc.get('version')!r} is not supported "
                                   f"(this software reads {VERSION})")
        try:
            H = np.array(doc["H_hr_to_webcam"], dtype=np.float64)
            if H.shape != (3, 3) or not np.isfinite(H).all():
                raise ValueError("H_hr_to_webcam must be a finite 3x3 matrix")
            ws = tuple(int(v) for v in doc["webcam_size"])
            hr, sc = int(doc["hr_size"]), int(doc["scale"])
            if len(ws) != 2 or min(ws) < 1 or hr < 1 or sc < 1 or hr % sc:
                raise ValueError("webcam_size, hr_size, scale must be positive and hr_size divisible by scale")
            deform, step = None, 8
            if doc.get("deformation"):
                step = int(doc["deformation"]["step_lr_px"])
                deform = np.stack([np.array(doc["deformation"]["dx"]), np.array(doc["deformation"]["dy"])], axis=-1)
                if deform.ndim != 3 or not np.isfinite(deform).all():
                    raise ValueError("deformation dx/dy must be equal-size finite 2-D grids")
            flat, deg = None, 4
            if doc.get("flat_field"):
                deg = int(doc["flat_field"]["degree"])
                flat = np.array(doc["flat_field"]["coef"], dtype=np.float64)
                if flat.size != (deg + 1) * (deg + 2) // 2:
                    raise ValueError(f"flat_field.coef must have {(deg + 1) * (deg + 2) // 2} terms for degree {deg}")
            return cls(H, ws, hr, sc, float(doc.get("plate_mm", 100.0)), str(doc.get("method", "homography")),
                       deform, step, flat, deg, dict(doc.get("fit", {})))
        except KeyError as exc:
            raise CalibrationError(f"{path}: missing key {exc.args[0]!r}") from exc
        except (ValueError, TypeError) as exc:
            raise CalibrationError(f"{path}: {exc}") from exc


# ---- computing a calibration ----------------------------------------------------------------


def reference_points_hr(reference: np.ndarray, hr_size: int, cfg: CalibConfig) -> np.ndarray:
    """Fiducial centres detected in a reference image (HR or LR grid), in HR pixel coordinates."""
    if reference.shape[0] != reference.shape[1] or hr_size % reference.shape[0]:
        raise CalibrationError(f"reference image must be square on the plate grid (HR {hr_size} px or a divisor), "
                               f"got {reference.shape}")
    k = hr_size // reference.shape[0]
    lo, hi = cfg.fiducial_radius_px
    pts = detect_dots(reference, min_radius_px=max(1.5, lo / k), max_radius_px=hi / k * 2)
    if len(pts) < 4:
        raise CalibrationError(f"found {len(pts)} fiducial dots in the reference image (need at least 4)")
    return project(lr_to_hr(k), pts) if k > 1 else pts


def _to_lr(reference: np.ndarray, lr_size: int) -> np.ndarray:
    """Reference image resampled to the LR grid (area average)."""
    if reference.shape[0] == lr_size:
        return reference
    return cv2.resize(reference, (lr_size, lr_size), interpolation=cv2.INTER_AREA)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two same-size images (high-passed, so lighting does not dominate)."""
    def hp(x):
        x = x.astype(np.float32)
        return x - cv2.GaussianBlur(x, (0, 0), 8)
    a, b = hp(a), hp(b)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-9))


def _rotation_deg(H: np.ndarray, n: int) -> float:
    """In-plane rotation (degrees) of the HR x axis as seen in the webcam at the plate centre."""
    w = project(H, np.array([[n / 2, n / 2], [n / 2 + 1, n / 2]]))
    d = w[1] - w[0]
    return math.degrees(math.atan2(d[1], d[0]))


def register(
    webcam: np.ndarray,
    hr_size: int,
    scale: int,
    cfg: CalibConfig | None = None,
    reference: np.ndarray | None = None,
    points_hr: np.ndarray | None = None,
    points_webcam: np.ndarray | None = None,
    flat_image: np.ndarray | None = None,
) -> Calibration:
    """Compute a calibration from one webcam frame.

    Correspondences: `points_webcam` with `points_hr` (e.g. clicked plate corners), or fiducial dots detected in
    the webcam frame matched to `points_hr` or to dots detected in `reference` (HR or LR plate image). With a
    reference, the paper's Hough-circle deformation map refines the homography (cfg.hough).
    """
    cfg = cfg or CalibConfig()
    if webcam.ndim != 2 or webcam.dtype != np.uint8:
        raise CalibrationError(f"webcam image must be 8-bit mono, got {webcam.shape} {webcam.dtype}")
    if hr_size % scale:
        raise CalibrationError(f"hr_size ({hr_size}) must be divisible by scale ({scale})")
    size = (webcam.shape[1], webcam.shape[0])
    fit: dict = {}
    if points_webcam is not None:
        if points_hr is None:
            if len(points_webcam) != 4:
                raise CalibrationError("without HR points, exactly 4 webcam plate corners (TL, TR, BR, BL) are needed")
            points_hr = hr_corners(hr_size)
        H, inl = fit_homography(points_hr, points_webcam, cfg.ransac_px)
        method = "corners" if len(points_webcam) == 4 else "points"
        src, dst = np.asarray(points_hr), np.asarray(points_webcam)
    else:
        if points_hr is None:
            if reference is None:
                raise CalibrationError("need a reference image, HR fiducial positions or webcam corner points")
            points_hr = reference_points_hr(reference, hr_size, cfg)
        points_hr = np.asarray(points_hr, dtype=np.float64).reshape(-1, 2)
        lo, hi = cfg.fiducial_radius_px
        found = detect_dots(webcam, min_radius_px=lo, max_radius_px=hi, count=len(points_hr))
        if len(found) < 4:
            raise CalibrationError(f"found {len(found)} fiducial dots in the webcam image "
                                   "(need 4; check lighting and focus)")
        if len(found) < len(points_hr):
            raise CalibrationError(f"found {len(found)} fiducial dots in the webcam image "
                                   f"but the reference has {len(points_hr)}")
        best, last_err = None, None
        ref_lr = _to_lr(reference, hr_size // scale) if reference is not None else None
        for perm in cyclic_candidates(points_hr, found):
            try:
                Hc, inl = fit_homography(points_hr, found[perm], cfg.ransac_px)
            except CalibrationError as exc:
                last_err = exc
                continue
            if ref_lr is not None:
                score = _ncc(Calibration(Hc, size, hr_size, scale).apply(webcam), ref_lr)
            else:
                score = -abs(_rotation_deg(Hc, hr_size))  # no reference: the orientation closest to upright
            if best is None or score > best[0]:
                best = (score, Hc, inl, perm)
        if best is None:
            raise CalibrationError(f"no ordering of the detected fiducials gives a valid homography: {last_err}")
        _, H, inl, perm = best
        method, src, dst = "fiducials", points_hr, found[perm]
    fit.update({"points": int(len(src)), "inliers": int(inl.sum()),
                "rms_reprojection_webcam_px": round(reprojection_rms(H, src[inl], dst[inl]), 4),
                "points_hr": np.round(src, 3).tolist(), "points_webcam": np.round(dst, 3).tolist()})
    cal = Calibration(H, size, hr_size, scale, cfg.plate_mm, method, fit=fit)
    if reference is not None and cfg.hough != "off":
        to_lr = np.linalg.inv(lr_to_hr(scale))
        a_lr = project(to_lr, src[inl])
        anchors = (a_lr, project(np.linalg.inv(H @ lr_to_hr(scale)), dst[inl]) - a_lr)
        _refine(cal, webcam, _to_lr(reference, cal.lr_size), cfg, anchors)
    if flat_image is not None:
        lr_flat = cal.apply(flat_image, flat=False)
        cal.flat_coef, cal.flat_degree = fit_flat(lr_flat, cfg.flat_degree), cfg.flat_degree
    return cal


def _refine(cal: Calibration, webcam: np.ndarray, ref_lr: np.ndarray, cfg: CalibConfig,
            anchors: np.ndarray | None) -> None:
    """Add the paper's deformation map when circles allow it and it improves agreement with the reference."""
    px_mm = cal.lr_size / cal.plate_mm
    lo, hi = cfg.ring_radius_mm
    before = cal.apply(webcam, flat=False)
    try:
        grid, info = estimate_deformation(before, ref_lr, max(3, int(lo * px_mm)), int(math.ceil(hi * px_mm)),
                                          cfg.min_circles, cfg.max_shift_mm * px_mm, cfg.deform_step_px, anchors)
    except CalibrationError as exc:
        if cfg.hough == "on":
            raise
        cal.fit["deformation"] = f"skipped: {exc}"
        return
    ncc0 = _ncc(before, ref_lr)
    trial = Calibration(cal.H_hr_to_webcam, cal.webcam_size, cal.hr_size, cal.scale, cal.plate_mm,
                        deformation=grid, deform_step=cfg.deform_step_px)
    ncc1 = _ncc(trial.apply(webcam, flat=False), ref_lr)
    info.update({"ncc_before": round(ncc0, 4), "ncc_after": round(ncc1, 4)})
    if ncc1 > ncc0 or cfg.hough == "on":
        cal.deformation, cal.deform_step = grid, cfg.deform_step_px
        cal.method += "+hough"
        cal._maps = None
        info["used"] = True
    else:
        info["used"] = False
    cal.fit["deformation"] = info
