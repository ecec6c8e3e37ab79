"""Webcam model: pinhole pose over the plate, HR->webcam homography, webcam rendering, and LR registration."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class WebcamModel:
    """Intrinsics K, pose (R, t; world = plate frame in mm, origin at the plate centre) and image size."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    @property
    def center_mm(self) -> np.ndarray:
        """Camera centre in plate coordinates (mm)."""
        return -self.R.T @ self.t

    def H_plate_to_webcam(self) -> np.ndarray:
        """Homography from plate-plane mm (origin at the plate centre) to webcam pixels."""
        H = self.K @ np.column_stack([self.R[:, 0], self.R[:, 1], self.t])
        return H / H[2, 2]


def look_at_webcam(focal_px: float, width: int, height: int, distance_mm: float, tilt_deg: float,
                   azimuth_deg: float) -> WebcamModel:
    """Webcam at `distance_mm` from the plate centre, `tilt_deg` off the plate normal, aimed at the centre.

    Plate frame: x right, y along the recoater travel, z into the plate (so the camera sits at z < 0).
    """
    t_, a_ = math.radians(tilt_deg), math.radians(azimuth_deg)
    C = distance_mm * np.array([math.sin(t_) * math.cos(a_), math.sin(t_) * math.sin(a_), -math.cos(t_)])
    z_c = -C / np.linalg.norm(C)
    g = np.array([0.0, 0.0, 1.0]) if tilt_deg > 1e-3 else np.array([0.0, 1.0, 0.0])
    y_c = g - (g @ z_c) * z_c
    y_c /= np.linalg.norm(y_c)
    x_c = np.cross(y_c, z_c)
    R = np.vstack([x_c, y_c, z_c])
    t = -R @ C
    K = np.array([[focal_px, 0, (width - 1) / 2], [0, focal_px, (height - 1) / 2], [0, 0, 1.0]])
    return WebcamModel(K, R, t, width, height)


def hr_to_plate(n: int, plate_mm: float) -> np.ndarray:
    """Affine (3x3) from HR pixel coordinates (pixel centres at integers) to plate mm centred on the plate."""
    p = plate_mm / n
    return np.array([[p, 0, 0.5 * p - plate_mm / 2], [0, p, 0.5 * p - plate_mm / 2], [0, 0, 1.0]])


def lr_to_hr(scale: int) -> np.ndarray:
    """Affine (3x3) from LR pixel coordinates to HR pixel coordinates (pixel centres at integers)."""
    return np.array([[scale, 0, (scale - 1) / 2], [0, scale, (scale - 1) / 2], [0, 0, 1.0]])


def project(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a homography to Nx2 points."""
    q = np.column_stack([pts, np.ones(len(pts))]) @ H.T
    return q[:, :2] / q[:, 2:3]


def webcam_pitch_um(H_hr_to_webcam: np.ndarray, n: int, plate_mm: float) -> float:
    """Plate distance per webcam pixel (µm) at the plate centre, from the local Jacobian of the homography."""
    c = np.array([[n / 2, n / 2], [n / 2 + 1, n / 2], [n / 2, n / 2 + 1]])
    w = project(H_hr_to_webcam, c)
    (ax, ay), (bx, by) = w[1] - w[0], w[2] - w[0]
    area = abs(ax * by - ay * bx)
    return float(plate_mm / n * 1000 / math.sqrt(area))


def chamber_background(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Low-resolution chamber floor around the plate (float32 grey levels), spanning 3 plate widths."""
    t = np.linspace(-1, 1, size, dtype=np.float32)
    xs, ys = t[None, :], t[:, None]
    base = 45 + 12 * xs + 8 * ys - 20 * (xs**2 + ys**2)
    noise = cv2.resize(rng.standard_normal((size // 16, size // 16), dtype=np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC)
    bg = base + 6 * noise
    # the plate sits in a brighter machined frame one tenth of a plate wide
    lo, hi = int(size * (1 / 3 - 1 / 30)), int(size * (2 / 3 + 1 / 30))
    bg[lo:hi, lo:hi] = 95 + 4 * noise[lo:hi, lo:hi]
    return bg.astype(np.float32)


def render_webcam(
    hr: np.ndarray,
    background: np.ndarray,
    H_hr: np.ndarray,
    plate_mm: float,
    cam: WebcamModel,
    rng: np.random.Generator,
    blur_px: float,
    resolution_loss: float,
    noise_std: float,
    vignetting: float,
    jpeg_quality: int,
) -> np.ndarray:
    """What the webcam sees: the HR plate in perspective over the chamber, blurred, vignetted, noisy and JPEG'd."""
    n = hr.shape[0]
    size = (cam.width, cam.height)
    # anti-alias the HR image to the webcam sampling before warping it
    hr_per_cam = 1.0 / max(math.sqrt(abs(np.linalg.det(_jac(H_hr, n)))), 1e-6)
    src = cv2.GaussianBlur(hr.astype(np.float32), (0, 0), max(0.5 * hr_per_cam * resolution_loss, 0.3))
    plate = cv2.warpPerspective(src, H_hr, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    cover = cv2.warpPerspective(np.ones((n, n), np.float32), H_hr, size, flags=cv2.INTER_LINEAR, borderValue=0)
    bs = background.shape[0]
    bg_to_plate = np.array([[3 * plate_mm / bs, 0, -1.5 * plate_mm + 1.5 * plate_mm / bs],
                            [0, 3 * plate_mm / bs, -1.5 * plate_mm + 1.5 * plate_mm / bs], [0, 0, 1]])
    H_bg = cam.H_plate_to_webcam() @ bg_to_plate
    bgw = cv2.warpPerspective(background, H_bg, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    img = cover * plate + (1 - cover) * bgw
    if resolution_loss > 1.0:
        small = (int(cam.width / resolution_loss), int(cam.height / resolution_loss))
        img = cv2.resize(cv2.resize(img, small, interpolation=cv2.INTER_AREA), size, interpolation=cv2.INTER_LINEAR)
    if blur_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_px)
    xs = (np.arange(cam.width, dtype=np.float32) - cam.K[0, 2]) / (cam.width / 2)
    ys = (np.arange(cam.height, dtype=np.float32) - cam.K[1, 2]) / (cam.width / 2)
    r2 = xs[None, :] ** 2 + ys[:, None] ** 2
    r2max = 1.0 + (cam.height / cam.width) ** 2
    img *= 1.0 - vignetting * (r2 / r2max)
    # colour sensor: a grey scene seen through the Bayer filter (white-balance gains per site), noise on
    # the raw mosaic, demosaic, then the colour frame converted to grey as the box does
    raw = img * _bayer_gains(cam.height, cam.width)
    shot = np.sqrt(np.clip(raw, 0, None) * 0.25 + noise_std**2)
    raw += rng.standard_normal(raw.shape, dtype=np.float32) * shot
    bgr = cv2.demosaicing(np.clip(np.rint(raw), 0, 255).astype(np.uint8), cv2.COLOR_BayerBG2BGR)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    ok, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise RuntimeError("JPEG encoding of the webcam frame failed")
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


# Relative sensitivity of the red, green and blue Bayer sites to the chamber light (slightly warm).
BAYER_GAINS = (1.05, 1.0, 0.85)


def _bayer_gains(h: int, w: int) -> np.ndarray:
    """Per-pixel gain of an RGGB-style mosaic in OpenCV's BayerBG layout (B at odd rows and columns)."""
    r, g, b = BAYER_GAINS
    gains = np.full((h, w), g, np.float32)
    gains[0::2, 0::2] = r
    gains[1::2, 1::2] = b
    return gains


def _jac(H: np.ndarray, n: int) -> np.ndarray:
    """2x2 Jacobian of a homography at the HR image centre."""
    c = np.array([[n / 2, n / 2], [n / 2 + 1, n / 2], [n / 2, n / 2 + 1]])
    w = project(H, c)
    return np.column_stack([w[1] - w[0], w[2] - w[0]])


def webcam_to_lr(webcam: np.ndarray, H_hr_to_webcam: np.ndarray, n: int, scale: int) -> np.ndarray:
    """Register the webcam view onto the HR grid (inverse-warp by the homography), then area-average to 1/scale."""
    on_hr = cv2.warpPerspective(webcam, H_hr_to_webcam, (n, n), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(on_hr, (n // scale, n // scale), interpolation=cv2.INTER_AREA)
