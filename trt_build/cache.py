"""Engine cache: engines keyed by source graph, build recipe, device, TensorRT/CUDA/L4T versions and shapes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trt_build.recipe import DeviceFacts, Recipe

MANIFEST = "manifest.json"
FORMAT = 2  # 2: key holds the recipe digest, device name, CUDA and L4T versions

# name -> (min, opt, max) shape of one optimisation profile; one dict per profile.
Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


class EngineMismatch(RuntimeError):
    """A cached engine that was built for another model, recipe, device, TensorRT/CUDA/L4T or shapes."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _canon_profiles(profiles: list[Profile]) -> list[dict[str, list[list[int]]]]:
    """Profiles as sorted plain lists so they compare equal after a JSON round trip."""
    return [{k: [list(map(int, s)) for s in p[k]] for k in sorted(p)} for p in profiles]


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; two keys are equal exactly when an engine can be reused."""

    name: str
    model_sha256: str
    recipe_sha256: str
    device_name: str
    compute_capability: str
    trt_version: str
    cuda_version: str
    l4t_version: str
    profiles: list = field(default_factory=list)
    precision: str = "fp16"

    def __post_init__(self) -> None:
        object.__setattr__(self, "profiles", _canon_profiles(self.profiles))

    @classmethod
    def make(cls, name: str, model_sha256: str, recipe: Recipe, facts: DeviceFacts, profiles: list) -> EngineKey:
        """The key of one engine from its parts (the one way both the build and the runtime compute it)."""
        return cls(name=name, model_sha256=model_sha256, recipe_sha256=recipe.digest(), profiles=profiles,
                   precision=recipe.precision, **asdict(facts))

    def digest(self) -> str:
        """Short stable hash of the key, used in the engine file name."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def differences(self, other: dict) -> list[str]:
        """Human-readable list of fields where a manifest entry differs from this key."""
        out = []
        for k, want in asdict(self).items():
            have = other.get(k)
            if have != want:
                short = k.endswith("sha256")
                show = (lambda v: v[:12] if isinstance(v, str) and short else v)
                out.append(f"{k}: engine has {show(have)!r}, need {show(want)!r}")
        return out


def _atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to path atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # engines are built by root at deploy and read by the service user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EngineCache:
    """A folder of serialized engines plus manifest.json describing what each was built for."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        """Location of the manifest file."""
        return self.root / MANIFEST

    def manifest(self) -> dict:
        """The manifest (empty when the cache is new); a corrupt manifest is a clear error."""
        if not self.manifest_path.exists():
            return {"format": FORMAT, "engines": {}}
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise EngineMismatch(f"{self.manifest_path}: unreadable engine manifest ({exc}); "
                                 "rebuild with `lpbf-edge trt build`") from exc
        if data.get("format") != FORMAT or not isinstance(data.get("engines"), dict):
            raise EngineMismatch(f"{self.manifest_path}: engine manifest format {data.get('format')!r}, this version "
                                 f"reads {FORMAT}; rebuild with `lpbf-edge trt build`")
        return data

    def entry(self, name: str) -> dict:
        """The manifest entry of one engine; EngineMismatch when there is none."""
        entry = self.manifest()["engines"].get(name)
        if entry is None:
            raise EngineMismatch(f"no engine {name!r} in {self.root}")
        return entry

    def check(self, key: EngineKey) -> Path:
        """Path of the cached engine for key.name; EngineMismatch says why it cannot be used."""
        entry = self.entry(key.name)
        diffs = key.differences(entry.get("key", {}))
        if diffs:
            raise EngineMismatch(f"engine {entry.get('file')} in {self.root} was built for a different setup: "
                                 + "; ".join(diffs))
        path = self.root / entry["file"]
        if not path.exists():
            raise EngineMismatch(f"engine file {path} listed in the manifest is missing")
        got = sha256_file(path)
        if got != entry.get("engine_sha256"):
            raise EngineMismatch(f"engine file {path} is corrupt: sha256 {got[:12]} != manifest "
                                 f"{str(entry.get('engine_sha256'))[:12]}")
        return path

    def store(self, key: EngineKey, engine: bytes, **extra) -> Path:
        """Write an engine and record it in the manifest, replacing any older engine of that name."""
        data = self.manifest()
        old = data["engines"].get(key.name)
        path = self.root / f"{key.name}-{key.digest()}.engine"
        _atomic_write(path, engine)
        data["engines"][key.name] = {
            "file": path.name,
            "key": asdict(key),
            "engine_sha256": hashlib.sha256(engine).hexdigest(),
            "bytes": len(engine),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **extra,
        }
        _atomic_write(self.manifest_path, json.dumps(data, indent=2, sort_keys=True).encode())
        if old and old.get("file") != path.name:
            (self.root / old["file"]).unlink(missing_ok=True)
        return path

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes], log: Callable[[str], None] = print,
                     force: bool = False, **extra) -> Path:
        """Cached engine for key; a missing or mismatched one is refused (logged) and rebuilt."""
        if not force:
            try:
                return self.check(key)
            except EngineMismatch as exc:
                log(f"building: {exc}")
        t0 = time.perf_counter()
        engine = build()
        return self.store(key, engine, build_s=round(time.perf_counter() - t0, 3), **extra)
