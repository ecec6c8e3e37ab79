"""Synthetic build generator: file contract, determinism, masks vs pixels, 3D parts, clean-layer rate."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edge.sim.build import build_json, generate_build, load_plan, plan_build, render_layer
from edge.sim.config import SimConfig
from edge.sim.geometry import render_mask

SMALL = SimConfig(hr_size_px=256)


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    """A 3-layer 256-px build on disk."""
    return generate_build(tmp_path_factory.mktemp("b") / "build", 3, 11, SMALL)


def _read(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def test_build_folder_follows_the_output_contract(small_build):
    meta = json.loads((small_build / "build.json").read_text())
    for key in ("plate_mm", "pixel_pitch_um", "layer_thickness_um", "scale", "seed", "parts", "defects", "fiducials_hr",
                "cameras"):
        assert key in meta, key
    assert meta["pixel_pitch_um"]["lr"] == pytest.approx(4 * meta["pixel_pitch_um"]["hr"])
    assert {p["kind"] for p in meta["parts"]} == {"ring", "dogbone", "square", "lattice", "thin_wall", "overhang"}
    web = meta["cameras"]["webcam"]
    assert np.array(web["H_hr_to_webcam"]).shape == (3, 3) and np.array(web["K"]).shape == (3, 3)
    assert len(web["plate_corners_webcam"]) == 4 and len(meta["fiducials_hr"]) == 4
    for layer in (1, 2, 3):
        name = f"{layer:05d}"
        hr, web_img, lr, mask = (_read(small_build / d / f"{name}.png") for d in ("hr", "webcam", "lr", "masks"))
        assert hr.shape == (256, 256) and hr.dtype == np.uint8
        assert web_img.shape == (1080, 1920) and web_img.dtype == np.uint8
        assert lr.shape == (64, 64) and lr.dtype == np.uint8
        assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0} | {p["id"] for p in meta["parts"]}
        labels = json.loads((small_build / "labels" / f"{name}.json").read_text())
        assert isinstance(labels, list)
        for lab in labels:
            assert lab["layer"] == layer and lab["severity"] in ("minor", "critical") and len(lab["bbox"]) == 4


def test_default_hr_image_is_at_least_1024_and_webcam_sits_between_hr_and_lr():
    cfg = SimConfig()
    assert cfg.hr_size_px >= 1024 and cfg.hr_size_px % cfg.scale == 0
    pitch = build_json(plan_build(1, 0, cfg))["pixel_pitch_um"]
    assert pitch["hr"] < pitch["webcam"] < pitch["lr"]  # webcam coarser than the Basler, finer than the LR grid
    with pytest.raises(ValueError, match="divisible"):
        SimConfig(hr_size_px=1026, scale=4)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(small_build, tmp_path):
    again = generate_build(tmp_path / "again", 3, 11, SMALL)
    for rel in ["build.json"] + [f"{d}/{i:05d}.{e}" for d, e in (("hr", "png"), ("webcam", "png"), ("lr", "png"),
                                                                 ("masks", "png"),
                                                                 ("labels", "json")) for i in (1, 2, 3)]:
        assert (small_build / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = render_layer(plan_build(3, 12, SMALL), 1)
    assert not np.array_equal(other.hr, _read(small_build / "hr" / "00001.png"))


def test_render_layer_in_memory_matches_files_and_load_plan_recreates_the_build(small_build):
    plan = load_plan(small_build)
    imgs = render_layer(plan, 2)
    assert np.array_equal(imgs.hr, _read(small_build / "hr" / "00002.png"))
    assert np.array_equal(imgs.lr, _read(small_build / "lr" / "00002.png"))
    assert np.array_equal(imgs.mask, _read(small_build / "masks" / "00002.png"))
    with pytest.raises(ValueError, match="outside"):
        render_layer(plan, 4)


def test_a_different_build_in_the_folder_is_refused_unless_overwritten(tmp_path):
    out = generate_build(tmp_path / "b", 2, 1, SMALL)
    generate_build(out, 2, 1, SMALL)  # the same build again is fine (idempotent)
    with pytest.raises(FileExistsError, match="different sim build"):
        generate_build(out, 1, 2, SMALL)
    generate_build(out, 1, 2, SMALL, overwrite=True)
    assert sorted(p.name for p in (out / "hr").iterdir()) == ["00001.png"]  # no stale layer 2
    assert json.loads((out / "build.json").read_text())["seed"] == 2


def test_load_plan_names_a_broken_build_json(tmp_path):
    (tmp_path / "build.json").write_text("{not json")
    with pytest.raises(ValueError, match="build.json"):
        load_plan(tmp_path)


def test_masks_agree_with_rendered_parts():
    cfg = SimConfig(hr_size_px=512, defect_rate=0.0)
    plan = plan_build(4, 3, cfg)
    imgs = render_layer(plan, 2)
    hr = imgs.hr.astype(np.float64)
    ids = [i for i in np.unique(imgs.mask) if i]
    assert len(ids) == 12
    k = np.ones((3, 3), np.uint8)
    for pid in ids:
        part = (imgs.mask == pid).astype(np.uint8)
        core = cv2.erode(part, k) > 0
        ring = (cv2.dilate(part, k, iterations=6) > 0) & ~(cv2.dilate(part, k, iterations=2) > 0) & (imgs.mask == 0)
        gap = np.median(hr[ring]) - np.median(hr[core])  # medians: rim glints are sparse outliers
        se = 1.25 * np.sqrt(hr[ring].var() / ring.sum() + hr[core].var() / core.sum())
        assert gap > 4 * se and gap > 6, (pid, gap, se)  # fused parts are darker than the powder around them
    # and nothing part-like where the mask says powder: powder far from parts is uniform grain
    far = cv2.dilate((imgs.mask > 0).astype(np.uint8), k, iterations=8) == 0
    assert abs(np.median(hr[far]) - np.median(hr[(imgs.mask == 0)])) < 6


def test_part_sections_change_with_z_so_the_stack_is_a_3d_solid():
    plan = plan_build(200, 5, SimConfig(hr_size_px=512, defect_rate=0.0))
    n, p = plan.n, plan.pitch_mm
    low = render_mask(plan.parts, plan.z_mm(1), n, p)
    high = render_mask(plan.parts, plan.z_mm(plan.layers // 2), n, p)
    changed = {part.kind for part in plan.parts if not np.array_equal(low == part.id, high == part.id)}
    assert {"ring", "square", "lattice", "overhang", "dogbone"} <= changed
    over = next(q for q in plan.parts if q.kind == "overhang")
    assert (high == over.id).sum() > (low == over.id).sum()  # the overhang grows outward
    top = render_mask(plan.parts, max(q.height_mm for q in plan.parts) + 0.01, n, p)
    assert not top.any()  # above every part only powder remains


def test_default_defect_rate_leaves_most_layers_clean():
    plan = plan_build(300, 1, SimConfig(hr_size_px=256))
    busy = {layer for ev in plan.defects for layer in range(ev.first_layer, ev.last_layer + 1)}
    assert 0.1 * 300 < len(busy) < 0.35 * 300  # defects do occur, but most layers are clean
    assert not plan_build(50, 1, SimConfig(hr_size_px=256, defect_rate=0.0)).defects


def test_cli_sim_build_writes_a_build_and_reports_bad_options(tmp_path):
    app = typer.Typer()
    from edge.sim.cli import register

    register(app)

    @app.command("noop")
    def _noop() -> None:
        """Keeps typer in multi-command mode."""

    runner = CliRunner()
    res = runner.invoke(app, ["sim", "build", "--out", str(tmp_path / "o"), "--layers", "1", "--seed", "2", "--hr-size",
                              "256"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "webcam" / "00001.png").exists() and (tmp_path / "o" / "build.json").exists()
    res = runner.invoke(app, ["sim", "build", "--out", str(tmp_path / "o"), "--layers", "1", "--seed", "3", "--hr-size",
                              "256"])
    assert res.exit_code == 1 and "different sim build" in res.output
    res = runner.invoke(app, ["sim", "build", "--out", str(tmp_path / "p"), "--hr-size", "100"])
    assert res.exit_code == 2 and "hr_size_px" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("sim:\n  hr_size_px: 512\n  powder_colour: 3\n")
    res = runner.invoke(app, ["sim", "build", "--out", str(tmp_path / "q"), "--config", str(bad)])
    assert res.exit_code == 2 and "line 3" in res.output and "powder_colour" in res.output


def test_scan_islands_are_about_island_mm_and_hatch_turns_each_layer():
    from edge.sim.scan import hex_islands, scan_modulation

    pitch, island = 0.1, 10.0  # 100 px islands
    q, r = hex_islands(600, island / pitch / np.sqrt(3), (0.0, 0.0))
    cells = q.astype(np.int64) * 100000 + r
    _, counts = np.unique(cells, return_counts=True)
    full = np.median(np.sort(counts)[-5:])
    assert full == pytest.approx(np.sqrt(3) / 2 * (island / pitch) ** 2, rel=0.1)  # hexagon area, flat-to-flat 10 mm

    def angle(layer: int) -> float:
        mod = scan_modulation(256, layer, pitch, 1000.0, 67.0, np.random.default_rng(0))  # one huge island
        f = np.abs(np.fft.fft2(mod - mod.mean()))
        f[0, 0] = 0
        ky, kx = np.unravel_index(np.argmax(f[:, : 128]), f[:, :128].shape)
        ky = ky - 256 if ky > 128 else ky
        return float(np.degrees(np.arctan2(ky, kx)) % 180)

    turn = (angle(2) - angle(1)) % 180
    assert min(abs(turn - 67), abs(turn - 67 - 90), abs(turn - 67 + 90)) < 6  # 67° per layer (90° ambiguity of islands)


def test_tall_builds_render_past_layer_25_without_integer_overflow():
    plan = plan_build(60, 5, SimConfig(hr_size_px=256))
    a, b = render_layer(plan, 59, cameras=False), render_layer(plan, 60, cameras=False)
    assert a.hr.shape == (256, 256) and not np.array_equal(a.hr, b.hr)
