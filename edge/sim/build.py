"""Synthetic LPBF build: plan a seeded build, render any layer in memory, or write the whole build to disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.sim.camera import (
    WebcamModel,
    chamber_background,
    hr_to_plate,
    look_at_webcam,
    project,
    render_webcam,
    webcam_pitch_um,
    webcam_to_lr,
)
from edge.sim.config import SimConfig
from edge.sim.defects import DefectEvent, apply_geometry_deviations, apply_surface_defects, schedule_defects
from edge.sim.geometry import Part, layout_parts, render_mask
from edge.sim.powder import add_spatter, lighting_gain, powder_texture
from edge.sim.scan import add_glints, contour_track, scan_modulation

FIDUCIAL_INSET_MM = 6.0
FIDUCIAL_RADIUS_MM = 2.0
_BUILD_STREAM = 0xB01D
_DEFECT_STREAM = 0xDEFEC7
_INSTALL_STREAM = 0x1257A11


@dataclass(frozen=True)
class BuildPlan:
    """Everything fixed for a build: config, seed, parts, defect events, lighting, webcam and its homography."""

    cfg: SimConfig
    seed: int
    layers: int
    parts: list[Part]
    defects: list[DefectEvent]
    light: np.ndarray
    background: np.ndarray
    webcam: WebcamModel
    H_hr_to_webcam: np.ndarray
    fiducials_hr: np.ndarray

    @property
    def n(self) -> int:
        """HR image side in pixels."""
        return self.cfg.hr_size_px

    @property
    def pitch_mm(self) -> float:
        """HR pixel pitch in millimetres."""
        return self.cfg.plate_mm / self.cfg.hr_size_px

    def z_mm(self, layer: int) -> float:
        """Height of the section exposed on `layer` (1-based), in mm above the plate."""
        return (layer - 0.5) * self.cfg.layer_thickness_um / 1000.0


@dataclass(frozen=True)
class LayerImages:
    """One rendered layer: HR plate image, webcam frame, registered LR, label mask and defect labels."""

    layer: int
    hr: np.ndarray
    webcam: np.ndarray | None
    lr: np.ndarray | None
    mask: np.ndarray
    labels: list[dict]


def plan_build(layers: int, seed: int, cfg: SimConfig | None = None) -> BuildPlan:
    """Fix the build's parts, defect schedule, lighting and webcam pose from the seed."""
    cfg = cfg or SimConfig()
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    rng = np.random.default_rng([int(seed), _BUILD_STREAM])
    n, pitch = cfg.hr_size_px, cfg.plate_mm / cfg.hr_size_px
    parts = layout_parts(rng, cfg.plate_mm, max(layers * cfg.layer_thickness_um / 1000.0, 0.1))
    # own stream: the same seed with another defect rate gives the same plate, lighting and camera
    drng = np.random.default_rng([int(seed), _DEFECT_STREAM])
    defects = schedule_defects(drng, layers, cfg.defect_rate, [p.id for p in parts], n, pitch)
    light = lighting_gain(n, *rng.uniform(-0.2, 0.2, 2), rng.uniform(0.05, 0.2))
    background = chamber_background(rng)
    cam = look_at_webcam(cfg.webcam_focal_px, cfg.webcam_width_px, cfg.webcam_height_px, cfg.webcam_distance_mm,
                         cfg.webcam_tilt_deg, cfg.webcam_azimuth_deg + rng.uniform(-5, 5))
    H = cam.H_plate_to_webcam() @ hr_to_plate(n, cfg.plate_mm)
    H = H / H[2, 2]
    ins = FIDUCIAL_INSET_MM * cfg.plate_mm / 100.0 / pitch - 0.5
    fid = np.array([[ins, ins], [n - 1 - ins, ins], [n - 1 - ins, n - 1 - ins], [ins, n - 1 - ins]])
    _check_visible(H, n, cam)
    return BuildPlan(cfg, int(seed), int(layers), parts, defects, light, background, cam, H, fid)


def _check_visible(H: np.ndarray, n: int, cam: WebcamModel) -> None:
    """The whole plate must fall inside the webcam frame, else the camera settings are unusable."""
    corners = project(H, np.array([[-0.5, -0.5], [n - 0.5, -0.5], [n - 0.5, n - 0.5], [-0.5, n - 0.5]]))
    if corners.min() < 0 or (corners[:, 0] > cam.width - 1).any() or (corners[:, 1] > cam.height - 1).any():
        raise ValueError(
            "sim webcam settings put part of the plate outside the webcam frame "
            f"(plate corners at {np.round(corners).tolist()}); increase webcam_distance_mm or lower webcam_focal_px"
        )


def render_layer(plan: BuildPlan, layer: int, cameras: bool = True) -> LayerImages:
    """Render one layer (1-based) in memory; depends only on (seed, config, layers, layer).

    cameras=False skips the webcam view and its LR registration (webcam and lr are None): HR-only uses.
    """
    if not 1 <= layer <= plan.layers:
        raise ValueError(f"layer {layer} outside the build's 1..{plan.layers}")
    cfg, n, pitch = plan.cfg, plan.n, plan.pitch_mm
    rng = np.random.default_rng([plan.seed, layer])
    mask = render_mask(plan.parts, plan.z_mm(layer), n, pitch)
    geo_labels, bulge = apply_geometry_deviations(mask, plan.defects, layer, pitch)
    fused = mask > 0

    img = powder_texture(rng, n, cfg.powder_mean, cfg.powder_grain_std)
    add_spatter(img, rng, mask, cfg.spatter_per_mpx, 0.9 * cfg.powder_mean, pitch)
    if fused.any():
        img = _compose_parts(img, mask, bulge, rng, layer, cfg, pitch)
    labels = geo_labels + apply_surface_defects(img, mask, plan.defects, layer, pitch, cfg.powder_mean, rng)
    img *= plan.light
    _draw_fiducials(img, plan)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)  # Basler optics
    hr = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    labels = sorted(labels, key=lambda d: d["defect_id"])
    if not cameras:
        return LayerImages(layer, hr, None, None, mask, labels)

    webcam = render_webcam(hr, plan.background, plan.H_hr_to_webcam, cfg.plate_mm, plan.webcam, rng,
                           cfg.webcam_blur_px, cfg.webcam_resolution_loss, cfg.webcam_noise_std,
                           cfg.webcam_vignetting, cfg.webcam_jpeg_quality)
    lr = webcam_to_lr(webcam, plan.H_hr_to_webcam, n, cfg.scale)
    return LayerImages(layer, hr, webcam, lr, mask, labels)


def render_powder_frame(plan: BuildPlan, index: int, cameras: bool = True) -> LayerImages:
    """A freshly spread powder layer with nothing exposed yet (layer 0, no defects): the clean frames a box takes at
    install to learn the printer's normal (`calib baseline`). Same plate, lighting and cameras as the build; `index`
    (0, 1, ...) draws another spread."""
    cfg, n, pitch = plan.cfg, plan.n, plan.pitch_mm
    rng = np.random.default_rng([plan.seed, _INSTALL_STREAM, int(index)])
    mask = np.zeros((n, n), np.uint8)
    img = powder_texture(rng, n, cfg.powder_mean, cfg.powder_grain_std)
    add_spatter(img, rng, mask, cfg.spatter_per_mpx, 0.9 * cfg.powder_mean, pitch)
    img *= plan.light
    _draw_fiducials(img, plan)
    hr = np.clip(np.rint(cv2.GaussianBlur(img, (0, 0), 0.6)), 0, 255).astype(np.uint8)
    if not cameras:
        return LayerImages(0, hr, None, None, mask, [])
    webcam = render_webcam(hr, plan.background, plan.H_hr_to_webcam, cfg.plate_mm, plan.webcam, rng,
                           cfg.webcam_blur_px, cfg.webcam_resolution_loss, cfg.webcam_noise_std,
                           cfg.webcam_vignetting, cfg.webcam_jpeg_quality)
    return LayerImages(0, hr, webcam, webcam_to_lr(webcam, plan.H_hr_to_webcam, n, cfg.scale), mask, [])


def _compose_parts(
    img: np.ndarray, mask: np.ndarray, bulge: np.ndarray, rng: np.random.Generator, layer: int, cfg: SimConfig,
    pitch: float
) -> np.ndarray:
    """Fused regions over the powder: scan texture, rough speckle, edge glints, a spatter-darkened halo, soft edges."""
    n, mean = mask.shape[0], cfg.powder_mean
    fused = mask > 0
    scan = scan_modulation(n, layer, pitch, cfg.island_mm, cfg.hatch_rotation_deg, rng)
    u = rng.random((n, n), dtype=np.float32)
    rough = cv2.GaussianBlur(rng.standard_normal((n, n), dtype=np.float32), (0, 0), 0.8)
    # parts fuse a little differently
    per_part = (1.0 + np.clip(0.03 * rng.standard_normal(256), -0.06, 0.06)).astype(np.float32)
    solid = cfg.part_brightness * mean * scan * per_part[mask] + 0.4 * (img - mean) + 0.15 * mean * rough
    edge_band = cv2.dilate(contour_track(mask).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    solid[edge_band] -= 0.06 * mean  # contour/hatch overlap and sintered particles darken the rim
    if bulge.any():  # swollen material stands proud: brighter, smoother
        solid[bulge] = 1.15 * mean + 0.5 * (solid[bulge] - solid[bulge].mean())
    add_glints(solid, u, fused, density=0.008, amp=1.8 * mean)
    add_glints(solid, u, fused & edge_band, density=0.04, amp=2.2 * mean)
    dist = cv2.distanceTransform((~fused).astype(np.uint8), cv2.DIST_L2, 3)
    halo = 1.0 - 0.08 * np.exp(-dist * pitch / 1.5)
    alpha = cv2.GaussianBlur(fused.astype(np.float32), (0, 0), 0.7)
    return alpha * solid + (1.0 - alpha) * img * halo


def _draw_fiducials(img: np.ndarray, plan: BuildPlan) -> None:
    """Bright round registration dots near the plate corners, in place."""
    r = FIDUCIAL_RADIUS_MM * plan.cfg.plate_mm / 100.0 / plan.pitch_mm
    for x, y in plan.fiducials_hr:
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), int(round(r * 16)), 235.0, -1, cv2.LINE_AA, 4)


def build_json(plan: BuildPlan) -> dict:
    """Contents of build.json: plate, pitches, layers, scale, seed, parts, defects, webcam model, fiducials."""
    cfg, n = plan.cfg, plan.n
    H = plan.H_hr_to_webcam
    corners = project(H, np.array([[-0.5, -0.5], [n - 0.5, -0.5], [n - 0.5, n - 0.5], [-0.5, n - 0.5]]))
    hr_um = cfg.plate_mm * 1000.0 / n

    def r(a, d=6):
        return np.round(np.asarray(a, dtype=np.float64), d).tolist()

    return {
        "format": "lpbf-edge-sim-build/1",
        "seed": plan.seed,
        "layers": plan.layers,
        "plate_mm": [cfg.plate_mm, cfg.plate_mm],
        "layer_thickness_um": cfg.layer_thickness_um,
        "scale": cfg.scale,
        "image_size_px": {"hr": [n, n], "lr": [n // cfg.scale, n // cfg.scale],
                          "webcam": [cfg.webcam_width_px, cfg.webcam_height_px]},
        "pixel_pitch_um": {"hr": round(hr_um, 4), "lr": round(hr_um * cfg.scale, 4),
                           "webcam": round(webcam_pitch_um(H, n, cfg.plate_mm), 4), "webcam_note": "at the plate "
                           "centre; varies with perspective"},
        "coordinates": "HR pixel (u, v) has its centre at plate mm ((u + 0.5) * pitch, (v + 0.5) * pitch) from the "
        "top-left plate corner; "
                       "the recoater travels along +v (top to bottom); z is mm above the plate, layer k exposes z = (k "
                       "- 0.5) * thickness",
        "recoater_direction": [0, 1],
        "parts": [p.to_json() for p in plan.parts],
        "defects": [d.to_json() for d in plan.defects],
        "fiducials_hr": r(plan.fiducials_hr, 3),
        "fiducial_radius_mm": FIDUCIAL_RADIUS_MM * cfg.plate_mm / 100.0,
        "cameras": {
            "webcam": {
                "H_hr_to_webcam": r(H, 9),
                "K": r(plan.webcam.K, 4),
                "dist_coeffs": [0.0, 0.0, 0.0, 0.0, 0.0],
                "R_plate_to_cam": r(plan.webcam.R, 9),
                "t_plate_to_cam_mm": r(plan.webcam.t, 6),
                "position_mm": r(plan.webcam.center_mm, 4),
                "plate_frame": "origin at the plate centre, x right, y along recoater travel, z into the plate (mm)",
                "plate_corners_webcam": r(corners, 3),
                "width": cfg.webcam_width_px,
                "height": cfg.webcam_height_px,
            },
            "hr": {"kind": "basler-like top view", "pixel_pitch_um": round(hr_um, 4)},
        },
        "sim_config": cfg.model_dump(),
    }


def _write_png(path: Path, img: np.ndarray, level: int) -> None:
    """Write a PNG atomically (temp file + rename) so readers never see half a file."""
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)


def _write_json(path: Path, obj: object) -> None:
    """Write JSON atomically with sorted keys (byte-identical for identical content)."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_layer(out: Path, imgs: LayerImages, png_level: int = 1) -> None:
    """Write one rendered layer's five files under `out`."""
    name = f"{imgs.layer:05d}"
    for sub, arr in (("hr", imgs.hr), ("webcam", imgs.webcam), ("lr", imgs.lr), ("masks", imgs.mask)):
        _write_png(out / sub / f"{name}.png", arr, png_level)
    _write_json(out / "labels" / f"{name}.json", imgs.labels)


_SUBDIRS = ("hr", "webcam", "lr", "masks", "labels")


def _prepare_out(out: Path, meta: dict, overwrite: bool) -> None:
    """Create the folders; refuse to mix with a different build already there unless overwrite.

    With overwrite, the existing build's layers are cleared."""
    old = out / "build.json"
    if old.exists():
        try:
            same = json.loads(old.read_text(encoding="utf-8")) == json.loads(json.dumps(meta))
        except (OSError, ValueError):
            same = False
        if not same and not overwrite:
            raise FileExistsError(f"{out} already holds a different sim build; choose another output folder or "
                                  "overwrite it")
        if not same:
            for sub in _SUBDIRS:
                for f in (out / sub).glob("[0-9][0-9][0-9][0-9][0-9].*"):
                    f.unlink()
    for sub in _SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)


def generate_build(
    out_dir: str | Path, layers: int, seed: int, cfg: SimConfig | None = None, progress: bool = False,
    overwrite: bool = False
) -> Path:
    """Render a whole build to `out_dir` (build.json + hr/ webcam/ lr/ masks/ labels/); return the folder.

    A folder holding a different build is refused (FileExistsError) unless overwrite=True, which first
    deletes that build's numbered layer files so no stale layer survives.
    """
    plan = plan_build(layers, seed, cfg)
    out = Path(out_dir)
    meta = build_json(plan)
    _prepare_out(out, meta, overwrite)
    _write_json(out / "build.json", meta)
    it = range(1, layers + 1)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"sim build {out.name}", unit="layer")
    for layer in it:
        write_layer(out, render_layer(plan, layer), plan.cfg.png_compression)
    return out


def load_plan(build_dir: str | Path) -> BuildPlan:
    """Re-create the plan of a build written by generate_build from its build.json (seed + config)."""
    path = Path(build_dir) / "build.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return plan_build(int(meta["layers"]), int(meta["seed"]), SimConfig(**meta["sim_config"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable sim build.json ({exc})") from exc


__all__ = ["BuildPlan", "LayerImages", "build_json", "generate_build", "load_plan", "plan_build", "render_layer",
           "write_layer"]
