"""Calibration: fiducial homography, the paper's Hough deformation map, flat field, file format, faults, CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from calib.config import CalibConfig
from calib.errors import CalibrationError
from calib.evaluate import Distortion, grid_error, image_error
from calib.flatfield import fit_flat, gain_map, uniformity
from calib.homography import fit_homography, project
from calib.register import Calibration, lr_to_hr, register
from edge import calib_cli

N, S = 512, 4  # HR grid and scale of the hand-made plates below
WEB = (800, 600)


def _plate(seed=0, rings=True):
    """HR plate: powder texture, 4 bright fiducials near the corners, dark ring parts on a 3x3 grid."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.normal(110, 12, (N, N)).astype(np.float32), (0, 0), 1.0)
    fid = np.array([[30.0, 30.0], [N - 31.0, 30.0], [N - 31.0, N - 31.0], [30.0, N - 31.0]])
    if rings:
        for i, cx in enumerate((120, 256, 392)):
            for j, cy in enumerate((120, 256, 392)):
                r = 26 + 4 * ((i + j) % 3)
                cv2.circle(img, (cx * 16, cy * 16), r * 16, 60.0, 9, cv2.LINE_AA, 4)
    for x, y in fid:
        cv2.circle(img, (int(x * 16), int(y * 16)), 10 * 16, 235.0, -1, cv2.LINE_AA, 4)
    return np.clip(img, 0, 255).astype(np.uint8), fid


def _H_true():
    """A perspective view of the plate that fits in an 800x600 webcam frame."""
    src = np.array([[-0.5, -0.5], [N - 0.5, -0.5], [N - 0.5, N - 0.5], [-0.5, N - 0.5]])
    dst = np.array([[250.0, 120.0], [600.0, 90.0], [690.0, 470.0], [180.0, 500.0]])
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def _webcam(hr, H, distortion=None, seed=1):
    rng = np.random.default_rng(seed)
    w = cv2.warpPerspective(cv2.GaussianBlur(hr, (0, 0), 0.8), H, WEB, flags=cv2.INTER_LINEAR, borderValue=40)
    if distortion is not None:
        w = distortion.apply(w)
    return np.clip(w + rng.normal(0, 1.5, w.shape), 0, 255).astype(np.uint8)


def _lr_truth(web, H):
    return Calibration(H, WEB, N, S).apply(web)


@pytest.fixture(scope="module")
def scene():
    hr, fid = _plate()
    H = _H_true()
    return hr, fid, H, _webcam(hr, H)


def test_fiducial_homography_is_subpixel_in_lr(scene):
    hr, fid, H, web = scene
    cal = register(web, N, S, CalibConfig(hough="off"), points_hr=fid)
    err = grid_error(cal, H)
    assert err["grid_rms_lr_px"] < 0.1 and err["corner_rms_lr_px"] < 0.15
    assert cal.method == "fiducials" and cal.fit["points"] == 4
    assert image_error(cal, web, _lr_truth(web, H))["mae"] < 0.5
    assert cal.pitch_um == pytest.approx(100_000 / 128)


def test_reference_image_finds_fiducials_and_ordering(scene):
    hr, fid, H, web = scene
    for ref in (hr, cv2.resize(hr, (N // S, N // S), interpolation=cv2.INTER_AREA)):
        cal = register(web, N, S, CalibConfig(hough="off"), reference=ref)
        assert grid_error(cal, H)["grid_rms_lr_px"] < 0.25


def test_hough_deformation_map_corrects_lens_distortion():
    hr, fid = _plate(seed=3)
    H, dist = _H_true(), Distortion(k1=-0.6, f=700.0)
    web = _webcam(hr, H, dist)
    plain = register(web, N, S, CalibConfig(hough="off", plate_mm=100.0), reference=hr)
    refined = register(web, N, S, CalibConfig(hough="on", plate_mm=100.0), reference=hr)
    e0 = grid_error(plain, H, distortion=dist)["grid_rms_lr_px"]
    e1 = grid_error(refined, H, distortion=dist)["grid_rms_lr_px"]
    assert refined.method == "fiducials+hough" and refined.fit["deformation"]["matched"] >= 6
    assert e0 > 0.3 and e1 < 0.6 * e0, (e0, e1)


def test_too_few_circles_is_a_clear_error_or_skipped():
    hr, fid = _plate(rings=False)
    H = _H_true()
    web = _webcam(hr, H)
    with pytest.raises(CalibrationError, match="too few circles"):
        register(web, N, S, CalibConfig(hough="on"), reference=hr)
    cal = register(web, N, S, CalibConfig(hough="auto"), reference=hr)
    assert cal.method == "fiducials" and cal.fit["deformation"].startswith("skipped: too few circles")


@pytest.mark.parametrize(
    "src, match",
    [
        (np.array([[0, 0], [10, 10], [20, 20], [30, 30.0]]), "collinear"),
        (np.array([[0, 0], [100, 0], [0, 100.0]]), "at least 4"),
        (np.array([[0, 0], [0, 0], [0, 0], [0, 0.0]]), "collinear"),
        (np.array([[0, 0], [100, 0], [100, np.nan], [0, 100.0]]), "NaN"),
    ],
)
def test_degenerate_homography_errors(src, match):
    dst = np.array([[0, 0], [50, 0], [50, 50], [0, 50.0]])[: len(src)]
    with pytest.raises(CalibrationError, match=match):
        fit_homography(src, dst)


def test_no_fiducials_in_webcam_frame():
    hr, fid = _plate()
    blank = np.full((600, 800), 90, np.uint8)
    with pytest.raises(CalibrationError, match="fiducial dots in the webcam image"):
        register(blank, N, S, points_hr=fid)


def test_manual_corners_homography(scene):
    hr, fid, H, web = scene
    corners = project(H, np.array([[-0.5, -0.5], [N - 0.5, -0.5], [N - 0.5, N - 0.5], [-0.5, N - 0.5]]))
    cal = register(web, N, S, points_webcam=corners)
    assert cal.method == "corners" and grid_error(cal, H)["grid_rms_lr_px"] < 1e-3


def test_save_load_roundtrip_gives_same_image(tmp_path):
    hr, fid = _plate(seed=3)
    H, dist = _H_true(), Distortion(k1=-0.6, f=700.0)
    web = _webcam(hr, H, dist)
    cal = register(web, N, S, CalibConfig(hough="on"), reference=hr, flat_image=web)
    p = cal.save(tmp_path / "calib.json")
    back = Calibration.load(p)
    assert np.array_equal(back.apply(web), cal.apply(web))
    doc = json.loads(p.read_text())
    assert doc["format"] == "lpbf-edge-calib" and doc["version"] == 1 and doc["lr_size"] == 128


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("H_hr_to_webcam"), "missing key 'H_hr_to_webcam'"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(format="other"), "not an lpbf-edge calibration"),
        (lambda d: d.update(H_hr_to_webcam=[[1, 0], [0, 1]]), "3x3"),
        (lambda d: d.update(scale=3), "divisible"),
    ],
)
def test_bad_calibration_files(tmp_path, scene, mutate, match):
    hr, fid, H, web = scene
    doc = Calibration(H, WEB, N, S).to_json()
    mutate(doc)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match=match) as exc:
        Calibration.load(p)
    assert "c.json" in str(exc.value)


def test_not_json_and_missing_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("{nope")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        Calibration.load(p)
    with pytest.raises(CalibrationError, match="cannot read"):
        Calibration.load(tmp_path / "missing.json")


def test_apply_rejects_wrong_frame_size(scene):
    hr, fid, H, web = scene
    with pytest.raises(CalibrationError, match="800x600"):
        Calibration(H, WEB, N, S).apply(web[:100, :100].copy())


def test_flat_field_removes_vignetting():
    rng = np.random.default_rng(0)
    m = 128
    yy, xx = np.mgrid[0:m, 0:m] / (m - 1) * 2 - 1
    vign = 1 - 0.35 * (xx**2 + yy**2) / 2 + 0.1 * xx
    img = np.clip(110 * vign + rng.normal(0, 8, (m, m)), 0, 255).astype(np.uint8)
    img[40:60, 40:60] = 60  # a part must not bend the fit
    coef = fit_flat(img, degree=4)
    flat = np.clip(img * gain_map(coef, img.shape, 4), 0, 255)
    clean = np.clip(110 * vign, 0, 255) * gain_map(coef, img.shape, 4)
    assert uniformity(np.clip(110 * vign, 0, 255)) > 0.08
    assert uniformity(clean) < 0.01
    assert abs(float(flat[80:, 80:].mean()) - float(flat[:30, :30].mean())) < 3


def test_cli_register_and_apply(tmp_path, scene):
    hr, fid, H, web = scene
    cv2.imwrite(str(tmp_path / "web.png"), web)
    cv2.imwrite(str(tmp_path / "hr.png"), hr)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    app = typer.Typer()
    calib_cli.register(app)
    r = CliRunner().invoke(app, ["calib", "register", str(tmp_path / "web.png"), "--hr-size", str(N), "--scale", str(S),
                                 "--reference", str(tmp_path / "hr.png"), "--out", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    assert "LR 128x128" in r.output
    r = CliRunner().invoke(app, ["calib", "apply", str(tmp_path / "c.json"), str(tmp_path / "bad.png"),
                                 str(tmp_path / "web.png"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and "bad.png" in r.output
    out = cv2.imread(str(tmp_path / "out" / "web.png"), cv2.IMREAD_GRAYSCALE)
    assert out.shape == (128, 128) and np.abs(out.astype(int) - _lr_truth(web, H)).mean() < 1.0
    r = CliRunner().invoke(app, ["calib", "register", str(tmp_path / "web.png"), "--hr-size", str(N), "--scale", "4",
                                 "--fiducials", "1,1;2,2;3,3;4,4", "--out", str(tmp_path / "d.json")])
    assert r.exit_code == 1 and "collinear" in r.output


def test_lr_to_hr_convention():
    assert project(lr_to_hr(4), np.array([[0.0, 0.0]])).tolist() == [[1.5, 1.5]]
