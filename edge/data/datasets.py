"""Paired LR/HR training data: sim builds and real photographs (synthetic LR), split by layer, part or build.

Split units: a sim layer (build, layer) for patches, a part (build, mask label) for part crops, a whole
photograph for real data. Hold-out builds and photographs go to the ``holdout`` split entirely.
Images are read from disk lazily (bounded LRU cache); torch is only needed for ``TorchPatches``.
"""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge import imaging
from edge.data.degrade import DegradeConfig, paper_degrade, scale_fine_detail, shuffled_degrade
from edge.data.texture_aug import TextureAug, augment_texture

PHOTO_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SPLITS = ("train", "val", "holdout")
DEFAULT_HOLDOUT_PHOTOS = ("S05.jpg",)
DEFAULT_VAL_PHOTOS = ("10448.png",)
PRESCALE_GROUPS = {"pblm": 2, "pblm_classes": 2}  # JPEG blocking at 1:1; a 2x area downsample gives clean texture


class DataError(ValueError):
    """A data file is missing, unreadable or of the wrong kind (message names the file)."""


@dataclass(frozen=True)
class Source:
    """One image source: a sim build folder (layers 1..N) or one real photograph (layer 0)."""

    name: str
    kind: str  # "sim" | "photo"
    path: Path
    layers: tuple[int, ...]
    prescale: int = 1  # area-downsample factor applied on load (PBLM JPEGs: 2)
    group: str = ""  # the printer/camera the image comes from (photo_group); sim builds: "sim"


@dataclass(frozen=True)
class SplitSpec:
    """How units are assigned to train / val / holdout."""

    holdout_builds: tuple[str, ...] = ()
    holdout_photos: tuple[str, ...] = DEFAULT_HOLDOUT_PHOTOS
    val_photos: tuple[str, ...] = DEFAULT_VAL_PHOTOS
    val_every: int = 6  # sim layer k goes to val when k % val_every == 0 (split by layer)
    part_val_fraction: float = 0.2  # parts (build, label) hashed into val with this probability
    holdout_groups: tuple[str, ...] = ()  # photo groups a share of whose photographs is held out (by name hash)
    holdout_share: float = 0.25  # that share
    exclude_groups: tuple[str, ...] = ()  # groups left out of train and val entirely (leave-one-source-out runs)

    def to_json(self) -> dict:
        """Plain dict for manifests."""
        return {"holdout_builds": list(self.holdout_builds), "holdout_photos": list(self.holdout_photos),
                "val_photos": list(self.val_photos), "val_every": self.val_every,
                "part_val_fraction": self.part_val_fraction, "holdout_groups": list(self.holdout_groups),
                "holdout_share": self.holdout_share, "exclude_groups": list(self.exclude_groups)}


def sim_source(build_dir: str | Path) -> Source:
    """A sim build folder (needs build.json, hr/ and lr/) as a Source named after the folder."""
    d = Path(build_dir)
    if not (d / "build.json").is_file():
        raise DataError(f"{d}: not a sim build (no build.json)")
    layers = tuple(sorted(int(p.stem) for p in (d / "hr").glob("*.png") if (d / "lr" / p.name).is_file()))
    if not layers:
        raise DataError(f"{d}: sim build has no layers with both hr/ and lr/ images")
    return Source(d.name, "sim", d, layers, group="sim")


def photo_group(path: Path, root: Path | None = None) -> str:
    """The source (printer / camera) of a shared photograph: its top folder under `root` (else its folder), with
    risheng_slm split into the whole-chamber melt photographs (S*.jpg, data/melt/ of the repository) and the
    recoat crops (*.png, data/recoat/)."""
    folder = path.relative_to(root).parts[0] if root is not None and len(path.relative_to(root).parts) > 1 \
        else path.parent.name
    if folder == "risheng_slm":
        return "risheng_melt" if path.suffix.lower() in (".jpg", ".jpeg") else "risheng_recoat"
    return folder


def photo_sources(folder: str | Path) -> list[Source]:
    """Every photograph under `folder` (recursively); PBLM JPEGs (both folders) are area-downsampled 2x on load."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: real-photograph folder not found")
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in PHOTO_EXTS and p.is_file():
            group = photo_group(p, root)
            out.append(Source(p.name, "photo", p, (0,), PRESCALE_GROUPS.get(group.lower(), 1), group))
    if not out:
        raise DataError(f"{root}: no photographs ({', '.join(PHOTO_EXTS)}) found")
    return out


def hashed_holdout(name: str, share: float) -> bool:
    """True for the stable `share` of names that a held-out photo group keeps out of training."""
    return zlib.crc32(name.encode()) / 2**32 < share


def unit_split(src: Source, layer: int, spec: SplitSpec) -> str:
    """Split of one patch unit (a sim layer or a photograph); "excluded" for a group left out entirely."""
    if src.group and src.group in spec.exclude_groups:
        return "excluded"
    if src.kind == "photo":
        if src.name in spec.holdout_photos or (src.group in spec.holdout_groups
                                               and hashed_holdout(src.name, spec.holdout_share)):
            return "holdout"
        return "val" if src.name in spec.val_photos else "train"
    if src.name in spec.holdout_builds:
        return "holdout"
    return "val" if layer % spec.val_every == 0 else "train"


def part_split(build: str, label: int, spec: SplitSpec) -> str:
    """Split of one part (all its layers together), by a stable hash of (build, label)."""
    if build in spec.holdout_builds:
        return "holdout"
    h = zlib.crc32(f"{build}:{label}".encode()) / 2**32
    return "val" if h < spec.part_val_fraction else "train"


def patch_units(sources: list[Source], spec: SplitSpec, split: str) -> list[tuple[Source, int]]:
    """(source, layer) units of one split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    return [(s, k) for s in sources for k in s.layers if unit_split(s, k, spec) == split]


class ImageCache:
    """Bounded LRU cache of decoded 8-bit gray images keyed by path and prescale."""

    def __init__(self, max_items: int = 256) -> None:
        """Keep at most `max_items` decoded images."""
        self.max_items = max_items
        self._d: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def get(self, path: Path, prescale: int = 1) -> np.ndarray:
        """Decoded image (gray uint8), area-downsampled by `prescale`."""
        key = (str(path), prescale)
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        img = read_gray(path)
        if prescale > 1:
            h, w = img.shape
            img = cv2.resize(img, (w // prescale, h // prescale), interpolation=cv2.INTER_AREA)
        self._d[key] = img
        if len(self._d) > self.max_items:
            self._d.popitem(last=False)
        return img


def read_gray(path: str | Path) -> np.ndarray:
    """Read a training image as 8-bit gray (edge.imaging.read_gray, 16-bit scaled); DataError naming the file."""
    try:
        return imaging.read_gray(path, max_mp=None)
    except imaging.ImageReadError as exc:
        raise DataError(str(exc)) from None


@dataclass
class DegradeMix:
    """Probabilities of how LR is made: sim 'native' (registered webcam), 'paper' recipe, else 'shuffled'."""

    sim_native: float = 0.5
    paper: float = 0.65  # of the synthetic ones
    paper_n: float = 4
    paper_k: int = 3
    shuffled: DegradeConfig = field(default_factory=DegradeConfig)
    grain_prob: float = 0.0  # of the synthetic ones: scale the HR's fine detail before degrading (scale_fine_detail)
    grain_gain: tuple[float, float] = (0.5, 2.0)  # log-uniform range of that amplitude gain
    texture: TextureAug = field(default_factory=TextureAug)  # structured-texture augmentations (synthetic LR only)

    def __post_init__(self) -> None:
        """Validate so a bad mix fails when the dataset is built, not mid-training."""
        for name in ("sim_native", "paper", "grain_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DegradeMix.{name} must be in [0, 1], got {getattr(self, name)}")
        lo, hi = self.grain_gain
        if not 0 < lo <= hi:
            raise ValueError(f"DegradeMix.grain_gain must be (lo, hi) with 0 < lo <= hi, got {self.grain_gain}")

    def to_json(self) -> dict:
        """Plain dict for manifests."""
        return {"sim_native": self.sim_native, "paper": self.paper, "paper_n": self.paper_n, "paper_k": self.paper_k,
                "shuffled": "edge.data.degrade.DegradeConfig() defaults", "grain_prob": self.grain_prob,
                "grain_gain": list(self.grain_gain), "texture": self.texture.to_json()}


class PatchDataset:
    """`per_unit` patches per (source, layer): LR `lr_patch`^2 with the matching HR (scale x larger), as uint8."""

    def __init__(self, sources: list[Source], split: str, spec: SplitSpec = SplitSpec(), per_unit: int = 16,
                 lr_patch: int = 64, scale: int = 4, mix: DegradeMix | None = None, seed: int = 0,
                 min_std: float = 2.0, cache: ImageCache | None = None) -> None:
        """Index the units of `split`; patch positions are drawn from (seed, epoch, index)."""
        self.units = patch_units(sources, spec, split)
        if not self.units:
            raise DataError(f"split {split!r} has no units among {[s.name for s in sources]}")
        self.split, self.per_unit, self.lr_patch, self.scale = split, per_unit, lr_patch, scale
        self.mix = mix or DegradeMix()
        self.seed, self.epoch, self.min_std = seed, 0, min_std
        self.cache = cache or ImageCache()

    def set_epoch(self, epoch: int) -> None:
        """Draw fresh positions/degradations for a new epoch (training only)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Number of patches."""
        return len(self.units) * self.per_unit

    def unit_of(self, i: int) -> tuple[Source, int]:
        """(source, layer) of item i."""
        return self.units[i // self.per_unit]

    def _hr(self, src: Source, layer: int) -> np.ndarray:
        """HR image of a unit."""
        if src.kind == "photo":
            return self.cache.get(src.path, src.prescale)
        return self.cache.get(src.path / "hr" / f"{layer:05d}.png")

    def __getitem__(self, i: int) -> dict:
        """{'lr', 'hr' (uint8), 'source', 'layer', 'y', 'x', 'degrade'} for item i (HR top-left = scale*(y, x)).

        With mix.grain_prob > 0 a synthetic-LR item's HR has its fine detail scaled first, and with mix.texture its
        structured texture added (edge.data.texture_aug); the changed HR is the ground truth.
        """
        if not 0 <= i < len(self):
            raise IndexError(i)
        src, layer = self.unit_of(i)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        hr_img = self._hr(src, layer)
        s, p = self.scale, self.lr_patch
        H, W = hr_img.shape[0] // s, hr_img.shape[1] // s
        if H < p or W < p:
            raise DataError(f"{src.path}: image {hr_img.shape} smaller than one HR patch of {p * s}")
        for _ in range(10):
            y, x = int(rng.integers(0, H - p + 1)), int(rng.integers(0, W - p + 1))
            hr = hr_img[y * s:(y + p) * s, x * s:(x + p) * s]
            if hr.std() >= self.min_std:
                break
        hr = np.ascontiguousarray(hr)
        mode = self._mode(src, rng)
        if mode != "native" and self.mix.grain_prob > 0 and rng.random() < self.mix.grain_prob:
            lo, hi = self.mix.grain_gain
            hr = scale_fine_detail(hr, float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), s)
        if mode != "native" and self.mix.texture.active:
            hr = augment_texture(hr, rng, self.mix.texture, s)
        if mode == "native":
            lr_img = self.cache.get(src.path / "lr" / f"{layer:05d}.png")
            lr = np.ascontiguousarray(lr_img[y:y + p, x:x + p])
        elif mode == "paper":
            lr = paper_degrade(hr, n=self.mix.paper_n, k=self.mix.paper_k)
            if lr.shape != (p, p):
                lr = cv2.resize(lr, (p, p), interpolation=cv2.INTER_AREA)
        else:
            lr = shuffled_degrade(hr, s, rng, self.mix.shuffled)
        return {"lr": lr, "hr": hr, "source": src.name, "layer": layer, "y": y, "x": x, "degrade": mode}

    def _mode(self, src: Source, rng: np.random.Generator) -> str:
        """How this item's LR is made."""
        if src.kind == "sim" and rng.random() < self.mix.sim_native:
            return "native"
        return "paper" if rng.random() < self.mix.paper else "shuffled"


def _parts_in(build: Path, layer: int, cache: ImageCache) -> tuple[np.ndarray, list[int]]:
    """Mask image and the part labels present in one sim layer."""
    m = cache.get(build / "masks" / f"{layer:05d}.png")
    return m, [int(v) for v in np.unique(m) if v != 0]


class PartDataset:
    """Per-part HR crops resized to `size`^2, LR by the paper recipe; split by part.

    A crop is the square around the part's mask bbox."""

    def __init__(self, sources: list[Source], split: str, spec: SplitSpec = SplitSpec(), size: int = 128,
                 scale: int = 4, margin: float = 0.15, cache: ImageCache | None = None) -> None:
        """Index (build, layer, label) crops of parts whose split is `split`."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        self.size, self.scale, self.margin = size, scale, margin
        self.cache = cache or ImageCache()
        self.items: list[tuple[Source, int, int]] = []
        for src in sources:
            if src.kind != "sim" or not (src.path / "masks").is_dir():
                continue
            for layer in src.layers:
                _, labels = _parts_in(src.path, layer, self.cache)
                self.items += [(src, layer, lab) for lab in labels if part_split(src.name, lab, spec) == split]

    def __len__(self) -> int:
        """Number of part crops."""
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        """{'lr', 'hr' (uint8), 'source', 'layer', 'part'} for crop i."""
        src, layer, lab = self.items[i]
        m, _ = _parts_in(src.path, layer, self.cache)
        hr_img = self.cache.get(src.path / "hr" / f"{layer:05d}.png")
        ys, xs = np.nonzero(m == lab)
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        half = max(ys.max() - ys.min(), xs.max() - xs.min(), 8) * (0.5 + self.margin)
        y0, y1 = int(max(0, cy - half)), int(min(hr_img.shape[0], cy + half + 1))
        x0, x1 = int(max(0, cx - half)), int(min(hr_img.shape[1], cx + half + 1))
        hr = cv2.resize(hr_img[y0:y1, x0:x1], (self.size, self.size), interpolation=cv2.INTER_AREA)
        lr = paper_degrade(hr, n=self.scale, k=3)
        return {"lr": lr, "hr": hr, "source": src.name, "layer": layer, "part": lab}


def random_subcrop(lr: np.ndarray, hr: np.ndarray, lr_size: int, scale: int, rng: np.random.Generator,
                   margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Matching random LR `lr_size`^2 / HR (scale*lr_size)^2 sub-crops, keeping `margin` LR pixels from the border."""
    h, w = lr.shape[-2:]
    m = margin if min(h, w) - 2 * margin >= lr_size else 0
    y = int(rng.integers(m, h - lr_size - m + 1))
    x = int(rng.integers(m, w - lr_size - m + 1))
    return (lr[..., y:y + lr_size, x:x + lr_size],
            hr[..., y * scale:(y + lr_size) * scale, x * scale:(x + lr_size) * scale])


def describe_sources(sources: list[Source], spec: SplitSpec) -> dict:
    """JSON description of which units are in which split (for manifests and docs)."""
    out: dict[str, list[str]] = {s: [] for s in (*SPLITS, "excluded")}
    for src in sources:
        for k in src.layers:
            out[unit_split(src, k, spec)].append(src.name if src.kind == "photo" else f"{src.name}/{k:05d}")
    return {"sources": [{"name": s.name, "kind": s.kind, "path": str(s.path), "layers": len(s.layers),
                         "prescale": s.prescale, "group": s.group} for s in sources], "split": spec.to_json(),
                         "units": out}


def load_sources(sim_dirs: list[str | Path], realdata: str | Path | None) -> list[Source]:
    """Sim builds plus (when given) every real photograph."""
    sources = [sim_source(d) for d in sim_dirs]
    if realdata is not None:
        sources += photo_sources(realdata)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise DataError(f"source names must be unique, got {names}")
    return sources


def save_description(path: str | Path, sources: list[Source], spec: SplitSpec) -> None:
    """Write describe_sources() as JSON."""
    Path(path).write_text(json.dumps(describe_sources(sources, spec), indent=1))
