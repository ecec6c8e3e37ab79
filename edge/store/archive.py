"""Layer archive on disk: one folder per (job, layer) holding frames, LR, SR, mask, flags and meta."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.store.atomic import read_json, write_bytes, write_json
from edge.store.jobs import check_job_id, inside

EVENT_FILE = "event.json"
META_FILE = "meta.json"


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8/uint16 grayscale image as PNG bytes (deterministic for equal input)."""
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot archive image of dtype {image.dtype}; expected uint8 or uint16")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"PNG encoding failed for image of shape {image.shape}")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to a grayscale array keeping the bit depth."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("not a decodable PNG")
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def _valid_job(name: str) -> bool:
    """True for a folder name that is a valid job id (anything else in archive/ is not ours)."""
    try:
        check_job_id(name)
    except ValueError:
        return False
    return True


class LayerArchive:
    """Folder tree `root/archive/<job>/<layer:06d>/`; every file written atomically."""

    def __init__(self, root: str | Path, fsync: bool = True):
        self.root = Path(root) / "archive"
        self.root.mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()
        self.fsync = fsync

    def layer_dir(self, job: str, layer: int) -> Path:
        """Folder of one layer; a bad job id or a folder that resolves outside the archive raises ValueError."""
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise ValueError(f"layer number must be a non-negative integer, got {layer!r}")
        return inside(self.root, self.root / check_job_id(job) / f"{layer:06d}")

    def put_png(self, job: str, layer: int, name: str, image: np.ndarray) -> bytes:
        """Archive `image` as `<name>.png` and return the exact bytes written."""
        data = encode_png(image)
        write_bytes(self.layer_dir(job, layer) / f"{name}.png", data, self.fsync)
        return data

    def put_json(self, job: str, layer: int, name: str, obj: dict) -> None:
        """Archive a JSON document as `<name>.json`."""
        write_json(self.layer_dir(job, layer) / f"{name}.json", obj, self.fsync)

    def get_bytes(self, job: str, layer: int, filename: str) -> bytes | None:
        """Bytes of an archived file, or None when absent."""
        p = self.layer_dir(job, layer) / filename
        return p.read_bytes() if p.exists() else None

    def get_json(self, job: str, layer: int, name: str) -> dict | None:
        """An archived JSON document, or None when absent."""
        p = self.layer_dir(job, layer) / f"{name}.json"
        return read_json(p) if p.exists() else None

    def get_image(self, job: str, layer: int, name: str) -> np.ndarray | None:
        """An archived image, or None when absent."""
        data = self.get_bytes(job, layer, f"{name}.png")
        return None if data is None else decode_png(data)

    def layers(self) -> Iterator[tuple[str, int, Path]]:
        """Every archived (job, layer, folder), jobs and layers in sorted order."""
        if not self.root.exists():
            return
        jobs = (p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink() and _valid_job(p.name))
        for job_dir in sorted(jobs):
            for d in sorted(p for p in job_dir.iterdir() if p.is_dir() and not p.is_symlink() and p.name.isdigit()):
                yield job_dir.name, int(d.name), d

    def is_complete(self, job: str, layer: int) -> bool:
        """True once the layer's final meta (with SR or a final state) is archived."""
        meta = self.get_json(job, layer, "meta")
        return bool(meta and meta.get("final"))

    def incomplete_layers(self) -> list[tuple[str, int]]:
        """Layers that were started (event archived) but whose final meta is missing."""
        return [(j, n) for j, n, d in self.layers() if (d / EVENT_FILE).exists() and not self.is_complete(j, n)]

    def size_bytes(self, job: str | None = None, layer: int | None = None) -> int:
        """Bytes used by the whole archive or by one layer."""
        base = self.root if job is None else self.layer_dir(job, layer or 0)
        return sum(p.stat().st_size for p in base.rglob("*") if p.is_file())

    def delete_layer(self, job: str, layer: int) -> None:
        """Remove a layer folder (retention only)."""
        shutil.rmtree(self.layer_dir(job, layer), ignore_errors=True)
