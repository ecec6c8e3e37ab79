"""Webcam model: the stored homography really maps HR to webcam, LR is the registered webcam, optics effects."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.sim.build import generate_build
from edge.sim.camera import BAYER_GAINS, hr_to_plate, look_at_webcam, project, render_webcam
from edge.sim.config import SimConfig


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """One 512-px layer on disk, read back as the consumers of build.json would."""
    out = generate_build(tmp_path_factory.mktemp("cam") / "b", 1, 7, SimConfig(hr_size_px=512, defect_rate=0.0))
    meta = json.loads((out / "build.json").read_text())
    imgs = {d: cv2.imread(str(out / d / "00001.png"), cv2.IMREAD_GRAYSCALE) for d in ("hr", "webcam", "lr")}
    return meta, imgs


def test_fiducials_appear_in_the_webcam_where_the_homography_puts_them(build):
    meta, imgs = build
    H = np.array(meta["cameras"]["webcam"]["H_hr_to_webcam"])
    expected = project(H, np.array(meta["fiducials_hr"]))
    web = imgs["webcam"]
    _, bw = cv2.threshold(web, 190, 255, cv2.THRESH_BINARY)
    n, _, stats, cents = cv2.connectedComponentsWithStats(bw)
    blobs = cents[1:][stats[1:, cv2.CC_STAT_AREA] > 30]
    for e in expected:
        d = np.hypot(*(blobs - e).T).min()
        assert d < 1.5, (e, d)


def test_homography_is_the_stored_camera_model(build):
    meta, _ = build
    cam = meta["cameras"]["webcam"]
    K, R, t = np.array(cam["K"]), np.array(cam["R_plate_to_cam"]), np.array(cam["t_plate_to_cam_mm"])
    n = meta["image_size_px"]["hr"][0]
    H = K @ np.column_stack([R[:, 0], R[:, 1], t]) @ hr_to_plate(n, meta["plate_mm"][0])
    H /= H[2, 2]
    assert np.allclose(H, np.array(cam["H_hr_to_webcam"]), rtol=1e-5, atol=1e-6)
    corners = project(H, np.array([[-0.5, -0.5], [n - 0.5, -0.5], [n - 0.5, n - 0.5], [-0.5, n - 0.5]]))
    assert np.allclose(corners, cam["plate_corners_webcam"], atol=1e-2)
    assert np.linalg.det(R) == pytest.approx(1.0) and np.allclose(R @ R.T, np.eye(3), atol=1e-8)


def test_lr_is_the_webcam_resampled_through_the_stored_homography(build):
    meta, imgs = build
    H = np.array(meta["cameras"]["webcam"]["H_hr_to_webcam"])
    s = meta["scale"]
    lr = imgs["lr"].astype(np.float64)
    m = lr.shape[0]
    # independent resampling: LR pixel centres -> HR -> webcam, sample a lightly smoothed webcam there
    u = (np.arange(m) + 0.5) * s - 0.5
    grid = np.stack(np.meshgrid(u, u), -1).reshape(-1, 2)
    pts = project(H, grid).astype(np.float32).reshape(m, m, 2)
    smooth = cv2.GaussianBlur(imgs["webcam"].astype(np.float32), (0, 0), 1.2)
    sampled = cv2.remap(smooth, pts[..., 0], pts[..., 1], cv2.INTER_LINEAR).astype(np.float64)
    inner = slice(2, m - 2)
    a, b = lr[inner, inner].ravel(), sampled[inner, inner].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.95
    assert np.abs(a - b).mean() < 4.0
    # and it is a registration of the plate, not of something else: LR correlates with the HR downsampled
    hr_small = cv2.resize(imgs["hr"], (m, m), interpolation=cv2.INTER_AREA).astype(np.float64)
    vig = cv2.GaussianBlur(lr, (0, 0), 8) / cv2.GaussianBlur(hr_small, (0, 0), 8)  # vignetting and JPEG aside
    assert np.corrcoef((lr / vig).ravel(), hr_small.ravel())[0, 1] > 0.8
    win = cv2.createHanningWindow((m, m), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(hr_small.astype(np.float32), lr.astype(np.float32), win)
    assert abs(dx) < 0.1 and abs(dy) < 0.1  # registered to a tenth of an LR pixel: no half-pixel convention slip


def test_webcam_optics_vignetting_noise_and_jpeg():
    cam = look_at_webcam(1400, 1920, 1080, 210, 35, 110)
    n = 256
    H = cam.H_plate_to_webcam() @ hr_to_plate(n, 100.0)
    flat = np.full((n, n), 120, np.uint8)
    bg = np.full((64, 64), 120, np.float32)
    rng = np.random.default_rng(0)
    clean = render_webcam(flat, bg, H, 100.0, cam, rng, 1.0, 1.5, 0.0, 0.35, 100).astype(np.float64)
    centre, corner = clean[500:580, 900:1020].mean(), clean[:60, :60].mean()
    assert corner < 0.75 * centre  # vignetting darkens the corners
    noisy = render_webcam(flat, bg, H, 100.0, cam, np.random.default_rng(0), 1.0, 1.5, 8.0, 0.35,
                          100).astype(np.float64)

    def grain(img):
        return (img - cv2.GaussianBlur(img, (0, 0), 3))[500:580, 900:1020].std()

    assert 2.0 < grain(clean) < 8.0  # shot noise of a ~110 grey-level plate, smoothed by demosaicing
    assert grain(noisy) > 1.3 * grain(clean)  # read noise adds on top
    jpeg = render_webcam(flat, bg, H, 100.0, cam, np.random.default_rng(0), 1.0, 1.5, 4.0, 0.35, 20).astype(np.float64)
    assert np.abs(jpeg - noisy).mean() > 0.5  # compression changed the frame


def test_plate_outside_the_frame_is_a_clear_config_error():
    from edge.sim.build import plan_build

    with pytest.raises(ValueError, match="outside the webcam frame"):
        plan_build(1, 0, SimConfig(hr_size_px=256, webcam_distance_mm=60.0))


def test_colour_sensor_path_leaves_no_bayer_pattern_on_a_grey_scene():
    cam = look_at_webcam(1400, 1920, 1080, 210, 35, 110)
    flat = np.full((256, 256), 120, np.uint8)
    H = cam.H_plate_to_webcam() @ hr_to_plate(256, 100.0)
    out = render_webcam(flat, np.full((64, 64), 120, np.float32), H, 100.0, cam, np.random.default_rng(1), 0.0, 1.0,
                        0.0, 0.0, 100)
    centre = out[500:580, 900:1020].astype(np.float64)
    assert abs(centre[0::2, 0::2].mean() - centre[1::2, 1::2].mean()) < 1.0  # R and B sites balanced after demosaic
    r, g, b = BAYER_GAINS
    # BGR2GRAY of the tinted scene
    assert centre.mean() == pytest.approx(120 * (0.299 * r + 0.587 * g + 0.114 * b), abs=1.5)
