"""Reading a build folder (sim or recorded): build.json, hr/ lr/ masks/ labels/ layers, and the expected (CAD) masks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.analyze.imageio import read_gray


@dataclass(frozen=True)
class Build:
    """A build folder with its metadata and the layer numbers present in lr/."""

    path: Path
    meta: dict
    layers: tuple[int, ...]

    @property
    def hr_pitch_um(self) -> float:
        """HR pixel pitch in micrometres."""
        return float(self.meta["pixel_pitch_um"]["hr"])

    @property
    def layer_um(self) -> float:
        """Layer thickness in micrometres."""
        return float(self.meta["layer_thickness_um"])

    @property
    def scale(self) -> int:
        """HR / LR scale."""
        return int(self.meta["scale"])

    def has(self, sub: str) -> bool:
        """Whether the build has images in this subfolder."""
        return (self.path / sub / f"{self.layers[0]:05d}.png").exists()

    def image(self, sub: str, layer: int) -> np.ndarray:
        """8-bit image of a layer from hr/ or lr/."""
        return read_gray(self.path / sub / f"{layer:05d}.png")

    def mask(self, layer: int) -> np.ndarray:
        """Label mask of a layer (0 powder, k part k) on the HR grid."""
        p = self.path / "masks" / f"{layer:05d}.png"
        m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if m is None:
            raise FileNotFoundError(f"{p}: missing or unreadable mask")
        return m

    def labels(self, layer: int) -> list[dict]:
        """Defect labels of a layer ([] when the build has none)."""
        p = self.path / "labels" / f"{layer:05d}.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else []


def open_build(path: str | Path, max_layers: int = 0) -> Build:
    """Open a build folder; clear errors for a missing build.json, bad keys or no layers."""
    p = Path(path)
    meta_p = p / "build.json"
    if not meta_p.is_file():
        raise FileNotFoundError(f"{p}: not a build folder (no build.json)")
    try:
        meta = json.loads(meta_p.read_text(encoding="utf-8"))
        float(meta["pixel_pitch_um"]["hr"]), float(meta["layer_thickness_um"]), int(meta["scale"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{meta_p}: missing or bad pixel_pitch_um.hr / layer_thickness_um / scale ({exc})") from exc
    layers = sorted(int(f.stem) for f in (p / "lr").glob("[0-9]*.png") if f.stem.isdigit())
    if not layers:
        raise FileNotFoundError(f"{p / 'lr'}: no layer images (00001.png ...)")
    if max_layers > 0:
        layers = layers[:max_layers]
    return Build(p, meta, tuple(layers))


def expected_masks(build: Build) -> tuple[dict[int, np.ndarray] | None, str]:
    """Expected part masks per layer and where they came from: expected/ PNGs, the sim's parts re-rendered, or none."""
    exp_dir = build.path / "expected"
    if exp_dir.is_dir():
        out = {}
        for L in build.layers:
            m = cv2.imread(str(exp_dir / f"{L:05d}.png"), cv2.IMREAD_UNCHANGED)
            if m is not None:
                out[L] = m > 0
        return out, "expected/ masks (CAD slices)"
    if str(build.meta.get("format", "")).startswith("lpbf-edge-sim-build"):
        try:
            from edge.sim.build import load_plan
            from edge.sim.geometry import render_mask
        except ImportError:
            return None, "none (sim package not importable)"
        plan = load_plan(build.path)
        return {L: render_mask(plan.parts, plan.z_mm(L), plan.n, plan.pitch_mm) > 0
                for L in build.layers}, "sim part geometry from build.json (CAD stand-in)"
    return None, "none (geometry compared with the previous layer)"
