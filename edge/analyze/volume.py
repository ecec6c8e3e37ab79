"""Layer masks stacked into per-part voxel volumes: 3D IoU, voxel mismatch, contour Hausdorff, meshes, previews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage


def stack_masks(masks: list[np.ndarray], part: int | None = None) -> np.ndarray:
    """(layers, H, W) bool volume; with `part`, only pixels labelled `part` in label images."""
    if not masks:
        raise ValueError("no layer masks to stack")
    shape = masks[0].shape
    for i, m in enumerate(masks):
        if m.shape != shape:
            raise ValueError(f"layer mask {i} has shape {m.shape}, expected {shape} like layer 0")
    return np.stack([(m == part) if part is not None else (m > 0) for m in masks])


def part_ids(masks: list[np.ndarray]) -> list[int]:
    """Part labels (>0) present in any label image."""
    ids: set[int] = set()
    for m in masks:
        ids.update(int(v) for v in np.unique(m) if v > 0)
    return sorted(ids)


def iou_3d(a: np.ndarray, b: np.ndarray) -> float:
    """Voxel intersection over union (1 when both empty)."""
    if a.shape != b.shape:
        raise ValueError(f"volumes differ in shape: {a.shape} vs {b.shape}")
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 1.0


def voxel_mismatch(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mismatched voxels (false positive + false negative) as a fraction of the reference voxels."""
    if pred.shape != ref.shape:
        raise ValueError(f"volumes differ in shape: {pred.shape} vs {ref.shape}")
    n = ref.sum()
    return float(np.logical_xor(pred, ref).sum() / n) if n else float(pred.sum() > 0)


def largest_contour(mask: np.ndarray) -> np.ndarray | None:
    """(N, 2) row/col points of the longest iso-contour of a mask, or None when empty."""
    from skimage.measure import find_contours

    if not mask.any():
        return None
    cs = find_contours(np.pad(mask.astype(float), 1), 0.5)
    return (max(cs, key=len) - 1.0) if cs else None


def hausdorff_px(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Hausdorff distance (px) between the largest contours of two masks (nan if one is empty)."""
    from scipy.spatial.distance import directed_hausdorff

    ca, cb = largest_contour(a), largest_contour(b)
    if ca is None or cb is None:
        return float("nan")
    return float(max(directed_hausdorff(ca, cb)[0], directed_hausdorff(cb, ca)[0]))


def hausdorff_volume_um(pred: np.ndarray, ref: np.ndarray, pitch_um: float) -> tuple[float, float]:
    """(mean, max) over layers of the per-layer contour Hausdorff distance, in micrometres."""
    d = [hausdorff_px(p, r) for p, r in zip(pred, ref, strict=False) if p.any() and r.any()]
    if not d:
        return float("nan"), float("nan")
    return float(np.mean(d) * pitch_um), float(np.max(d) * pitch_um)


def mesh_from_volume(vol: np.ndarray, pitch_um: float, layer_um: float):
    """Closed marching-cubes surface (trimesh.Trimesh) in millimetres; z = build direction."""
    import trimesh
    from skimage.measure import marching_cubes

    if vol.sum() == 0:
        raise ValueError("empty volume: no part voxels to mesh")
    padded = np.pad(vol.astype(np.float32), 1)
    smooth = ndimage.gaussian_filter(padded, 0.5)
    spacing = (layer_um / 1000.0, pitch_um / 1000.0, pitch_um / 1000.0)
    verts, faces, _normals, _ = marching_cubes(smooth, 0.5, spacing=spacing)
    verts = verts - np.array(spacing)  # undo the padding offset
    # (z, y, x) -> (x, y, z) so z is the build direction; fix_normals makes the winding point outwards
    mesh = trimesh.Trimesh(vertices=verts[:, [2, 1, 0]], faces=faces, process=True)
    mesh.fix_normals()
    return mesh


def export_mesh(mesh, path: str | Path) -> Path:
    """Write the mesh as STL or PLY (by suffix)."""
    p = Path(path)
    if p.suffix.lower() not in (".stl", ".ply"):
        raise ValueError(f"mesh file must end in .stl or .ply, got {p.name}")
    p.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(p)
    return p


def render_preview(meshes: list, path: str | Path, title: str = "") -> Path:
    """Matplotlib 3D rendering of one or more meshes to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    fig = plt.figure(figsize=(5, 4), dpi=100)
    ax = fig.add_subplot(projection="3d")
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    cmap = plt.get_cmap("tab10")
    for i, m in enumerate(meshes):
        tri = m.vertices[m.faces]
        if len(tri) > 20000:  # keep rendering fast
            tri = tri[:: len(tri) // 20000 + 1]
        ax.add_collection3d(Poly3DCollection(tri, facecolor=cmap(i % 10), edgecolor="none", alpha=0.9))
        lo, hi = np.minimum(lo, m.bounds[0]), np.maximum(hi, m.bounds[1])
    if np.isfinite(lo).all():
        c, r = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-3)
        ax.set_xlim(c[0] - r, c[0] + r)
        ax.set_ylim(c[1] - r, c[1] + r)
        ax.set_zlim(lo[2], max(hi[2], lo[2] + 1e-3))  # z keeps its own range so thin builds stay visible
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_zlabel("z (mm)")
    ax.set_title(title)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, bbox_inches="tight")
    plt.close(fig)
    return p
