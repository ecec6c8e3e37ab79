"""One source of truth for where engines live, which batch buckets they serve and what their cache key holds.

Ansible (`lpbf-edge trt build MODEL`, no paths given) and the runtime (TrtRunner with no engine_dir) both
call `engine_dir(model_dir)`; both take buckets from the engine manifest the build wrote, whose default is
DEFAULT_BUCKETS; both compute the key with `engine_key`, so a box never finds engines in one place while
looking in another, and never rebuilds at start-up.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from trt_build import optable
from trt_build.convert import PREPARE_VERSION, TARGET_OPSET

ENGINE_SUBDIR = "engines"  # engines live in <model bundle>/engines
DEFAULT_BUCKETS = (1, 2, 4, 8)  # batch sizes one engine serves (one optimisation profile each)
WORKSPACE_MB = 1024
BUILD_VERSION = 1  # bump when build_engine changes what it builds (flags, pinning)


def engine_dir(model_dir: Path | str) -> Path:
    """The engine folder of a model bundle directory."""
    return Path(model_dir) / ENGINE_SUBDIR


def parse_buckets(text: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); sorted, unique, positive, or ValueError saying what is wrong."""
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as exc:
        raise ValueError(f"batch buckets must be comma-separated integers, got {text!r}") from exc
    if not out or out[0] < 1:
        raise ValueError(f"batch buckets must be positive integers, got {text!r}")
    return tuple(out)


@dataclass(frozen=True)
class Recipe:
    """How an engine is made from its source graph; its digest is part of the cache key."""

    precision: str = "fp16"  # fp16 (with FP32 islands) or fp32
    buckets: tuple[int, ...] = DEFAULT_BUCKETS
    transform: str = ""  # edge-side graph transform before preparation, with its version (e.g. fused-step/1)
    target_opset: int = TARGET_OPSET
    prepare_version: int = PREPARE_VERSION
    build_version: int = BUILD_VERSION
    parser_target: str = optable.TARGET
    workspace_mb: int = WORKSPACE_MB

    def __post_init__(self) -> None:
        if self.precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be 'fp16' or 'fp32', got {self.precision!r}")
        object.__setattr__(self, "buckets", tuple(sorted({int(b) for b in self.buckets})))
        if not self.buckets or self.buckets[0] < 1:
            raise ValueError(f"batch buckets must be positive integers, got {self.buckets}")

    def digest(self) -> str:
        """Stable sha256 of every field."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class DeviceFacts:
    """What an engine is tied to on the machine that builds and runs it."""

    device_name: str
    compute_capability: str
    trt_version: str
    cuda_version: str
    l4t_version: str  # JetPack's L4T release (R36.4.0 for JetPack 6.1/6.2), or "none" off Jetson
