"""A bundle's manifest.json as one typed object, parsed and validated once when the bundle is loaded.

Every reader of a bundle goes through `Manifest`; `raw` keeps the file's dict only for the tools that write a bundle
back (training, `train distill add`, `train grain-cap --into`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.sr.grain import GrainCap, GrainCondition
from edge.sr.samplers import SamplerSpec
from edge.sr.schedule import Schedule

FORMAT = "lpbf-edge-bundle/1"
REQUIRED_KEYS = ("model_id", "scale", "latent_channels", "latent_scale_factor", "schedule", "prediction", "sampler",
                 "files")
PREDICTIONS = ("epsilon", "v_prediction", "sample")
DISTILLED_PARTS = {"light_decoder": "hr_decoder_sample", "light_encoder": "lr_encoder"}  # students: "denoiser"


class ManifestError(ValueError):
    """A manifest entry that is missing or malformed; the message names the key."""


@dataclass(frozen=True)
class Distilled:
    """One manifest `distilled` entry: a few-step student denoiser or a light encoder/decoder, and the file it ships."""

    key: str
    file: str
    steps: int | None = None  # students: DDIM steps
    sampler: str | None = None  # students: the sampler they were distilled for
    timesteps: tuple[int, ...] = ()  # students: the timesteps they were distilled at
    flops: int | None = None  # light parts: FLOPs per tile recorded at distillation
    info: Mapping[str, Any] = field(default_factory=dict)  # the whole entry (training record)

    @property
    def is_student(self) -> bool:
        """Whether this entry replaces the denoiser."""
        return self.key.startswith("student")

    @property
    def graph(self) -> str | None:
        """The bundle graph this entry stands in for (None for an unknown kind of entry)."""
        return "denoiser" if self.is_student else DISTILLED_PARTS.get(self.key)

    @classmethod
    def from_json(cls, key: str, d: Any) -> Distilled:
        """Parse one entry; a clear error naming the key."""
        if not isinstance(d, Mapping) or not isinstance(d.get("file"), str):
            raise ManifestError(f"distilled.{key} must be an object with a 'file'; got {d!r:.80}")
        try:
            return cls(key=key, file=d["file"], steps=None if d.get("steps") is None else int(d["steps"]),
                       sampler=d.get("sampler"), timesteps=tuple(int(t) for t in d.get("timesteps") or ()),
                       flops=None if d.get("flops") is None else int(d["flops"]), info=dict(d))
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"distilled.{key} is malformed ({exc})") from exc


@dataclass(frozen=True)
class Manifest:
    """The typed manifest of one model bundle (edge.sr.bundle.load_bundle builds it)."""

    model_id: str
    scale: int
    latent_channels: int
    latent_scale_factor: float  # HR latent scale
    lr_latent_scale_factor: float  # condition (LR latent) scale; the HR one when the file has none
    schedule: Mapping[str, Any]  # {kind, timesteps, [beta_start, beta_end]}; see make_schedule
    prediction: str  # epsilon | v_prediction | sample
    sampler: Mapping[str, Any]  # the bundle's own sampler ({name, steps, ...}, SamplerSpec.from_manifest)
    files: Mapping[str, str]  # relative file -> sha256
    lr_patch: int = 16  # LR tile size the model was trained on
    reference: Mapping[str, Any] | None = None  # the reference sampler (DDPM at T steps when absent)
    arch: Mapping[str, Any] = field(default_factory=dict)  # torch module arch (edge.models formats)
    distilled: Mapping[str, Distilled] = field(default_factory=dict)
    fast_path: tuple[Mapping[str, Any], ...] = ()  # fast_path.box_config entries, in order of preference
    grain_condition: GrainCondition | None = None
    grain_cap: GrainCap | None = None
    training: Mapping[str, Any] = field(default_factory=dict)  # informational: data, commands, steps
    metrics: Mapping[str, Any] = field(default_factory=dict)  # informational: validation and bench numbers
    raw: Mapping[str, Any] = field(default_factory=dict)  # the file as read

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Parse and validate a manifest dict; ManifestError names the first bad key."""
        if not isinstance(d, Mapping):
            raise ManifestError(f"manifest must be a JSON object, got {type(d).__name__}")
        absent = [k for k in REQUIRED_KEYS if k not in d]
        if absent:
            raise ManifestError(f"manifest lacks {', '.join(absent)}")
        prediction = d["prediction"]
        if prediction not in PREDICTIONS:
            raise ManifestError(f"prediction {prediction!r} is not one of {', '.join(PREDICTIONS)}")
        files = _mapping(d, "files")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ManifestError("files must map relative paths to sha256 strings")
        hr_sf, lr_sf = _scales(d)
        m = cls(model_id=_typed(d, "model_id", str), scale=_positive(d, "scale"),
                latent_channels=_positive(d, "latent_channels"), latent_scale_factor=hr_sf,
                lr_latent_scale_factor=lr_sf, schedule=_mapping(d, "schedule"), prediction=prediction,
                sampler=_mapping(d, "sampler"), files=dict(files), lr_patch=_positive(d, "lr_patch", 16),
                reference=dict(d["reference"]) if d.get("reference") else None, arch=_mapping(d, "arch", {}),
                distilled={k: Distilled.from_json(k, v) for k, v in _mapping(d, "distilled", {}).items()},
                fast_path=_box_config(d), grain_condition=_parse(d, "grain_condition", GrainCondition.from_json),
                grain_cap=_parse(d, "grain_cap", GrainCap.from_json), training=_mapping(d, "training", {}),
                metrics=_mapping(d, "metrics", {}), raw=dict(d))
        m.make_schedule()
        gc = m.grain_condition
        if gc is not None and gc.source != "lr" and (m.grain_cap is None or len(gc.names) != m.grain_cap.bands):
            raise ManifestError(f"grain_condition of source {gc.source!r} needs a grain_cap with {len(gc.names)} "
                                f"bands; the manifest has {'none' if m.grain_cap is None else m.grain_cap.bands}")
        try:
            SamplerSpec.from_manifest(dict(m.sampler))
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"sampler is malformed ({exc})") from exc
        return m

    def make_schedule(self) -> Schedule:
        """The noise schedule the model was trained with."""
        try:
            return Schedule.from_manifest(dict(self.schedule))
        except (TypeError, ValueError, KeyError) as exc:
            raise ManifestError(f"schedule is malformed ({exc})") from exc

    @property
    def timesteps(self) -> int:
        """Training timesteps T of the schedule."""
        return int(self.schedule.get("timesteps", 200))

    @property
    def unet_levels(self) -> int:
        """Resolution levels of the U-Net (1 when the manifest records no arch)."""
        return len((self.arch.get("unet") or {}).get("block_out_channels", [0]))

    @property
    def hr_lowpass_skip(self) -> bool:
        """Whether the HR autoencoder adds a low-pass skip of its input (arch hr_ae.lowpass_skip)."""
        return bool((self.arch.get("hr_ae") or {}).get("lowpass_skip"))

    def has_file(self, rel: str) -> bool:
        """Whether the bundle ships (and pins) file `rel`."""
        return rel in self.files

    def replace(self, **changes: Any) -> Manifest:
        """A copy with some fields changed (the variants of a bundle: students, light parts)."""
        return dataclasses.replace(self, **changes)


def _typed(d: Mapping, key: str, kind: type) -> Any:
    """d[key], which must be of `kind`."""
    v = d[key]
    if not isinstance(v, kind):
        raise ManifestError(f"{key} must be {kind.__name__}, got {v!r:.60}")
    return v


def _positive(d: Mapping, key: str, default: int | None = None) -> int:
    """d[key] as a positive int (default when absent and one is given)."""
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ManifestError(f"{key} must be a positive integer, got {v!r}")
    return v


def _mapping(d: Mapping, key: str, default: Mapping | None = None) -> dict:
    """d[key] as a dict (default when absent or null and one is given)."""
    v = d.get(key)
    if v is None and default is not None:
        return dict(default)
    if not isinstance(v, Mapping):
        raise ManifestError(f"{key} must be an object, got {v!r:.60}")
    return dict(v)


def _scales(d: Mapping) -> tuple[float, float]:
    """(HR, LR) latent scale factors; also reads the older {hr, lr} form of latent_scale_factor."""
    sf = d["latent_scale_factor"]
    try:
        if isinstance(sf, Mapping):
            return float(sf["hr"]), float(sf.get("lr", sf["hr"]))
        return float(sf), float(d.get("lr_latent_scale_factor", sf))
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"latent_scale_factor is malformed ({exc!r})") from exc


def _box_config(d: Mapping) -> tuple[dict, ...]:
    """fast_path.box_config entries (each an object of runtime settings)."""
    entries = (d.get("fast_path") or {}).get("box_config") or []
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ManifestError(f"fast_path.box_config must be a list of objects, got {entries!r:.80}")
    return tuple(dict(e) for e in entries)


def _parse(d: Mapping, key: str, parse: Any) -> Any:
    """parse(d[key]) when present and not empty, else None; the parser's ValueError names the key."""
    v = d.get(key)
    if not v:
        return None
    try:
        return parse(v)
    except ValueError as exc:
        raise ManifestError(f"{key}: {exc}") from exc
