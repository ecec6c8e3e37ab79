"""3D stack metrics and meshes on cylinders with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from edge.analyze import volume as v


def _disk(n: int, r: float, cx: float, cy: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _cylinder(layers: int, r: float, cx: float = 32, n: int = 64) -> list[np.ndarray]:
    return [_disk(n, r, cx, 32).astype(np.uint8) * 2 for _ in range(layers)]


def test_stack_and_identical_volume_metrics():
    masks = _cylinder(10, 12)
    assert v.part_ids(masks) == [2]
    vol = v.stack_masks(masks, part=2)
    assert vol.shape == (10, 64, 64) and vol.sum() == pytest.approx(10 * np.pi * 144, rel=0.03)
    assert v.iou_3d(vol, vol) == 1.0 and v.voxel_mismatch(vol, vol) == 0.0


def test_shifted_cylinder_iou_matches_circle_overlap_formula():
    r, d = 12.0, 6.0
    a = v.stack_masks(_cylinder(5, r, 32), 2)
    b = v.stack_masks(_cylinder(5, r, 32 + d), 2)
    inter = 2 * r * r * np.arccos(d / (2 * r)) - d / 2 * np.sqrt(4 * r * r - d * d)
    expected = inter / (2 * np.pi * r * r - inter)
    assert v.iou_3d(a, b) == pytest.approx(expected, abs=0.02)
    assert v.voxel_mismatch(b, a) == pytest.approx(2 * (np.pi * r * r - inter) / (np.pi * r * r), abs=0.03)


def test_hausdorff_between_concentric_circles():
    a, b = _disk(64, 10, 32, 32), _disk(64, 13, 32, 32)
    assert v.hausdorff_px(a, b) == pytest.approx(3.0, abs=0.6)
    mean_um, max_um = v.hausdorff_volume_um(np.stack([a, a]), np.stack([b, b]), pitch_um=50)
    assert mean_um == pytest.approx(150, abs=30) and max_um >= mean_um
    assert np.isnan(v.hausdorff_px(a, np.zeros_like(a)))


def test_wrong_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="layer mask 1"):
        v.stack_masks([np.zeros((4, 4)), np.zeros((5, 4))])
    with pytest.raises(ValueError, match="empty volume"):
        v.mesh_from_volume(np.zeros((3, 8, 8), bool), 50, 40)


def test_cylinder_mesh_volume_export_and_preview(tmp_path):
    r, layers, pitch, lt = 12.0, 20, 50.0, 40.0
    vol = v.stack_masks(_cylinder(layers, r), 2)
    mesh = v.mesh_from_volume(vol, pitch, lt)
    assert mesh.is_watertight
    true_mm3 = np.pi * (r * pitch / 1000) ** 2 * (layers * lt / 1000)
    assert mesh.volume == pytest.approx(true_mm3, rel=0.12)
    ext = mesh.bounds[1] - mesh.bounds[0]
    assert ext[2] == pytest.approx(layers * lt / 1000, rel=0.12)
    assert ext[0] == pytest.approx(2 * r * pitch / 1000, rel=0.1)
    for suffix in ("stl", "ply"):
        p = v.export_mesh(mesh, tmp_path / f"c.{suffix}")
        back = trimesh.load(p)
        assert len(back.faces) == len(mesh.faces)
    png = v.render_preview([mesh], tmp_path / "p.png", "cyl")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
