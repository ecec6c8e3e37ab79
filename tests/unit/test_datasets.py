"""Datasets: leak-free splits (layer, part, photo, hold-out build), patch pairing, determinism, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.data.datasets import (
    DataError,
    DegradeMix,
    PartDataset,
    PatchDataset,
    SplitSpec,
    load_sources,
    patch_units,
    photo_sources,
    random_subcrop,
    read_gray,
    sim_source,
)
from edge.data.degrade import paper_degrade


def _fake_build(d: Path, layers: int, seed: int) -> Path:
    """A tiny sim build in the generator's layout: hr/ 128^2, lr/ 32^2, masks/ with two parts."""
    rng = np.random.default_rng(seed)
    for sub in ("hr", "lr", "masks"):
        (d / sub).mkdir(parents=True)
    (d / "build.json").write_text(json.dumps({"format": "lpbf-edge-sim-build/1", "scale": 4}))
    for k in range(1, layers + 1):
        hr = rng.integers(60, 200, (128, 128), dtype=np.uint8)
        m = np.zeros((128, 128), np.uint8)
        m[10:40, 10:50], m[70:120, 60:100] = 1, 2
        cv2.imwrite(str(d / "hr" / f"{k:05d}.png"), hr)
        cv2.imwrite(str(d / "lr" / f"{k:05d}.png"), cv2.resize(hr, (32, 32), interpolation=cv2.INTER_AREA))
        cv2.imwrite(str(d / "masks" / f"{k:05d}.png"), m)
    return d


@pytest.fixture
def sources(tmp_path: Path):
    b1, b2 = _fake_build(tmp_path / "b1", 12, 1), _fake_build(tmp_path / "b2", 6, 2)
    photos = tmp_path / "photos"
    (photos / "pblm").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name in ("a.png", "held.png", "val.png"):
        cv2.imwrite(str(photos / name), rng.integers(0, 255, (160, 200, 3), dtype=np.uint8))  # colour -> gray
    cv2.imwrite(str(photos / "pblm" / "p.jpg"), rng.integers(0, 255, (300, 300), dtype=np.uint8))
    spec = SplitSpec(holdout_builds=("b2",), holdout_photos=("held.png",), val_photos=("val.png",), val_every=4)
    return load_sources([b1, b2], photos), spec


def test_patch_splits_leak_nothing(sources):
    srcs, spec = sources
    units = {s: {(u.name, k) for u, k in patch_units(srcs, spec, s)} for s in ("train", "val", "holdout")}
    assert not (units["train"] & units["val"]) and not (units["train"] & units["holdout"])
    assert not (units["val"] & units["holdout"])
    assert sum(map(len, units.values())) == 12 + 6 + 4  # every unit in exactly one split
    assert {n for n, _ in units["holdout"]} == {"b2", "held.png"}  # the hold-out build and photo, entirely
    assert {(n, k) for n, k in units["val"] if n == "b1"} == {("b1", 4), ("b1", 8), ("b1", 12)}  # split by layer
    photo_splits = {n: s for s, us in units.items() for n, _ in us if n.endswith((".png", ".jpg"))}
    assert photo_splits == {"a.png": "train", "p.jpg": "train", "val.png": "val", "held.png": "holdout"}


def test_part_split_keeps_each_part_in_one_split(sources):
    srcs, spec = sources
    seen: dict[tuple[str, int], str] = {}
    total = 0
    for split in ("train", "val", "holdout"):
        ds = PartDataset(srcs, split, spec, size=64)
        total += len(ds)
        for src, _, lab in ds.items:
            assert seen.setdefault((src.name, lab), split) == split
    assert total == (12 + 6) * 2
    item = PartDataset(srcs, "holdout", spec, size=64)[0]
    assert item["hr"].shape == (64, 64) and item["lr"].shape == (16, 16)


def test_patches_pair_lr_and_hr(sources):
    srcs, spec = sources
    ds = PatchDataset(srcs, "train", spec, per_unit=3, lr_patch=16, mix=DegradeMix(sim_native=1.0, paper=1.0))
    for i in range(len(ds)):
        it = ds[i]
        assert it["lr"].shape == (16, 16) and it["hr"].shape == (64, 64) and it["lr"].dtype == np.uint8
        src, layer = ds.unit_of(i)
        if it["degrade"] == "native":  # the build's own LR at the same place
            lr_img = read_gray(src.path / "lr" / f"{layer:05d}.png")
            assert np.array_equal(it["lr"], lr_img[it["y"]:it["y"] + 16, it["x"]:it["x"] + 16])
        else:
            assert it["degrade"] == "paper" and np.array_equal(it["lr"], paper_degrade(it["hr"], 4, 3))
    assert {ds[i]["degrade"] for i in range(len(ds))} == {"native", "paper"}


def test_grain_augmentation_rescales_synthetic_hr_and_makes_lr_from_it(sources):
    srcs, spec = sources
    mix = DegradeMix(sim_native=0.5, paper=1.0, grain_prob=1.0, grain_gain=(2.0, 2.0))
    plain = PatchDataset(srcs, "train", spec, per_unit=3, lr_patch=16, mix=DegradeMix(sim_native=0.5, paper=1.0))
    aug = PatchDataset(srcs, "train", spec, per_unit=3, lr_patch=16, mix=mix)
    modes = set()
    for i in range(len(aug)):
        a, p = aug[i], plain[i]
        modes.add(a["degrade"])
        if a["degrade"] == "paper":  # ground truth is the rescaled HR, and the LR is made from it
            assert a["hr"].std() > p["hr"].std() * 1.2 and np.array_equal(a["lr"], paper_degrade(a["hr"], 4, 3))
    assert "paper" in modes
    with pytest.raises(ValueError, match="grain_gain"):
        DegradeMix(grain_gain=(0.0, 2.0))
    with pytest.raises(ValueError, match="grain_prob"):
        DegradeMix(grain_prob=1.5)


def test_patches_are_deterministic_per_seed_and_epoch(sources):
    srcs, spec = sources
    a = PatchDataset(srcs, "train", spec, lr_patch=16, seed=5)
    b = PatchDataset(srcs, "train", spec, lr_patch=16, seed=5)
    assert all(np.array_equal(a[i]["hr"], b[i]["hr"]) for i in range(0, len(a), 7))
    b.set_epoch(1)
    assert any(not np.array_equal(a[i]["hr"], b[i]["hr"]) for i in range(0, len(a), 7))


def test_subcrop_matches_scale():
    lr, hr = np.arange(24 * 24).reshape(24, 24), np.arange(96 * 96).reshape(96, 96)
    slr, shr = random_subcrop(lr, hr, 8, 4, np.random.default_rng(0))
    y, x = divmod(int(slr[0, 0]), 24)
    assert slr.shape == (8, 8) and shr.shape == (32, 32) and shr[0, 0] == hr[4 * y, 4 * x]


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match="broken.png"):
        read_gray(bad)
    with pytest.raises(DataError, match="no build.json"):
        sim_source(tmp_path)
    with pytest.raises(DataError, match="not found"):
        photo_sources(tmp_path / "nope")


def test_real_photographs_are_indexed(realdata):
    srcs = photo_sources(realdata)
    names = {s.name: s for s in srcs}
    assert "S05.jpg" in names and names["S05.jpg"].prescale == 1
    assert all(s.prescale == 2 for s in srcs if s.path.parent.name == "pblm")


def test_bench_pairs_leave_out_the_excluded_photographs(tmp_path, monkeypatch):
    """bench_pairs(exclude=...) draws no tile from a named photograph (the SR models' held-out ones)."""
    from edge.data.tiles import bench_pairs

    (tmp_path / "src").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "keep.png"), np.full((96, 96), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "src" / "held.png"), np.full((96, 96), 30, np.uint8))
    monkeypatch.setenv("LPBF_REALDATA", str(tmp_path))
    _, hr = bench_pairs(8, 32, 4, seed=0)
    assert {int(v) for v in np.unique(hr)} == {30, 200}
    _, hr = bench_pairs(8, 32, 4, seed=0, exclude=("held.png",))
    assert {int(v) for v in np.unique(hr)} == {200}


def _fake_sim_build(root, value_seed: int = 0):
    """A sim build folder whose HR is its LR blown up 4x by pixel repetition (alignment is checkable)."""
    rng = np.random.default_rng(value_seed)
    (root / "hr").mkdir(parents=True)
    (root / "lr").mkdir()
    (root / "build.json").write_text("{}")
    for k in (1, 2):
        lr = rng.integers(0, 100, (40, 48)).astype(np.uint8)
        cv2.imwrite(str(root / "lr" / f"{k:05d}.png"), lr)
        cv2.imwrite(str(root / "hr" / f"{k:05d}.png"), np.kron(lr, np.ones((4, 4), np.uint8)))
    return root


def test_sim_build_pairs_cut_the_hr_exactly_under_the_lr(tmp_path):
    """Each sim pair is an LR window of the registered webcam view and the HR window 4x under it."""
    from edge.data.tiles import sim_build_pairs

    lr, hr = sim_build_pairs((_fake_sim_build(tmp_path / "b"),), 12, 32, 4, seed=3)
    assert lr.shape == (12, 8, 8) and hr.shape == (12, 32, 32)
    assert np.array_equal(hr[:, ::4, ::4], lr) and np.array_equal(hr[:, 3::4, 2::4], lr)
    assert len({t.tobytes() for t in lr}) > 6  # windows spread over layers and positions


def test_hr_tiles_take_the_sim_share_from_the_sim_builds(tmp_path, monkeypatch):
    """hr_tiles(sims=..., sim_share=0.25): a quarter of the tiles from the builds, the rest from the photographs."""
    from edge.train.distill_io import hr_tiles

    (tmp_path / "src").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "keep.png"), np.full((96, 96), 200, np.uint8))
    monkeypatch.setenv("LPBF_REALDATA", str(tmp_path))
    _, hr = hr_tiles(8, 32, 4, seed=0, sims=(_fake_sim_build(tmp_path / "b"),), sim_share=0.25)
    assert (hr[:6] == 200).all() and (hr[6:] < 100).all()
    with pytest.raises(ValueError, match="needs sim build folders"):
        hr_tiles(8, 32, 4, seed=0, sim_share=0.25)
