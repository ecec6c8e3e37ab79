"""Which TensorRT engines a model bundle gets, how they are built, and how the runtime finds them (never builds).

Every ONNX graph a TensorRT runner may use gets one engine named after its file: the encoders and decoders
as they are, every denoiser (the bundle's and its distilled students) as a fused sampler step
(edge.sr.fused.fuse_onnx: denoiser + the linear update, one engine call per step). Each source graph is
prepared for the TensorRT 10.3 parser (trt_build.convert), linted, built with FP32 islands, and stored in
trt_build.recipe.engine_dir(bundle) under a key of source sha256, recipe, device and versions. `lpbf-edge trt
build` (run by Ansible at deploy) writes them; TrtRunner only opens them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edge.sr.bundle import Bundle, BundleError
from edge.sr.export import bucket_shapes
from edge.sr.fused import FUSED_INPUTS
from trt_build.cache import EngineCache, EngineKey, EngineMismatch
from trt_build.recipe import DEFAULT_BUCKETS, DeviceFacts, Recipe, engine_dir

FUSE_TRANSFORM = "fused-step/1"  # edge.sr.fused.fuse_onnx's graph; bump when the appended update changes
ROLE_SHAPES = {"lr_encoder": "lr_encoder", "hr_encoder": "hr_encoder", "denoiser": "denoiser",
               "hr_decoder": "hr_decoder", "hr_decoder_sample": "hr_decoder", "regression": "regression"}


class EnginesMissing(RuntimeError):
    """The engine folder lacks a usable engine; the message says which, why, and the command that builds it."""


@dataclass(frozen=True)
class EngineSpec:
    """One engine of a bundle: its name, source file (relative to the bundle), role and whether it is a fused step."""

    name: str
    file: str
    role: str
    fused: bool

    def recipe(self, buckets=DEFAULT_BUCKETS, precision: str = "fp16") -> Recipe:
        """The build recipe of this engine."""
        return Recipe(precision=precision, buckets=tuple(buckets), transform=FUSE_TRANSFORM if self.fused else "")


def _spec(file: str, role: str) -> EngineSpec:
    """EngineSpec for a source file in a role (denoisers are fused)."""
    fused = role == "denoiser"
    return EngineSpec(Path(file).stem + (".fused" if fused else ""), file, role, fused)


def engine_specs(bundle: Bundle) -> list[EngineSpec]:
    """Every engine the bundle gets: its graphs, its distilled students and light encoder/decoder (sorted by name)."""
    m = bundle.manifest
    specs = {}
    for graph, role in ROLE_SHAPES.items():
        if m.has_file(f"{graph}.onnx"):
            specs[f"{graph}.onnx"] = _spec(f"{graph}.onnx", role)
    for entry in m.distilled.values():
        if entry.graph and m.has_file(entry.file):
            specs[entry.file] = _spec(entry.file, entry.graph)
    return sorted(specs.values(), key=lambda s: s.name)


def spec_for(bundle: Bundle, graph: str) -> EngineSpec:
    """The engine that serves `graph` for this (possibly student/light) bundle."""
    role = "denoiser" if graph == "denoiser" else graph
    if role not in ROLE_SHAPES:
        raise ValueError(f"no TensorRT engine role for graph {graph!r}")
    return _spec(bundle.graph_file(graph), role)


def spec_shapes(bundle: Bundle, spec: EngineSpec, batch: int) -> dict[str, list[int]]:
    """Static input shapes of an engine at one batch bucket and the bundle's LR tile size."""
    shapes = bucket_shapes(ROLE_SHAPES[spec.role], batch, bundle.lr_patch, bundle.scale, bundle.latent_channels)
    if spec.fused:
        x = shapes["x"]
        shapes = {"x": x, "t": [batch], "cond": x, "coef": [6], "noise": x, "x0_prev": x}
        assert tuple(shapes) == FUSED_INPUTS
    return shapes


def spec_profiles(bundle: Bundle, spec: EngineSpec, buckets) -> list:
    """One fixed optimisation profile per batch bucket."""
    from trt_build.build import profiles_for

    return profiles_for(lambda b: spec_shapes(bundle, spec, b), buckets)


def spec_key(bundle: Bundle, spec: EngineSpec, recipe: Recipe, facts: DeviceFacts) -> EngineKey:
    """The cache key of an engine (the same computation at build time and at run time)."""
    profiles = spec_profiles(bundle, spec, recipe.buckets)
    return EngineKey.make(spec.name, bundle.sha256(spec.file), recipe, facts, profiles)


def prepare_spec(bundle: Bundle, spec: EngineSpec, workdir: Path):
    """Write the graph TensorRT parses for a spec (fused if a denoiser, then prepared) and lint it; returns Prepared."""
    from trt_build.convert import prepare_graph
    from trt_build.lint import errors, lint_file

    src = bundle.path / spec.file
    if spec.fused:
        from edge.sr.fused import fuse_onnx

        src = fuse_onnx(src, workdir / f"{spec.name}.onnx")
    prepared = prepare_graph(src, workdir / f"{spec.name}.prepared.onnx")
    bad = errors(lint_file(prepared.path))
    if bad:
        raise BundleError(f"{bundle.path / spec.file}: the prepared graph fails the TensorRT lint: "
                          + "; ".join(str(b) for b in bad))
    return prepared


def build_engines(bundle: Bundle, out: Path | None = None, buckets=DEFAULT_BUCKETS, precision: str = "fp16",
                  force: bool = False, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Build (or keep, when the key matches) every engine of a bundle into its engine folder; name -> engine file."""
    from trt_build.build import build_engine
    from trt_build.device import device_facts

    facts = device_facts()
    cache = EngineCache(out if out is not None else engine_dir(bundle.path))
    built = {}
    with tempfile.TemporaryDirectory(prefix="lpbf-trt-") as tmp:
        for spec in engine_specs(bundle):
            recipe = spec.recipe(buckets, precision)
            key = spec_key(bundle, spec, recipe, facts)

            def build(spec=spec, recipe=recipe, key=key) -> bytes:
                prepared = prepare_spec(bundle, spec, Path(tmp))
                return build_engine(prepared.path, key.profiles, recipe.precision, recipe.workspace_mb, log=log)

            built[spec.name] = cache.get_or_build(key, build, log=log, force=force, buckets=list(recipe.buckets),
                                                  source=spec.file, recipe=asdict(recipe))
            log(f"{spec.file} -> {built[spec.name]}")
    return built


def open_engines(bundle: Bundle, specs: list[EngineSpec], folder: Path | None = None, precision: str = "fp16",
                 facts: DeviceFacts | None = None) -> dict[str, tuple[Path, tuple[int, ...]]]:
    """name -> (engine file, batch buckets) for engines built for this bundle, device and recipe; never builds.

    The buckets come from the manifest the build wrote (so build and runtime cannot disagree on them); every
    other part of the key is recomputed here. A missing or stale engine raises EnginesMissing with the command
    that builds it.
    """
    from trt_build.device import device_facts

    facts = facts or device_facts()
    folder = Path(folder) if folder is not None else engine_dir(bundle.path)
    cache = EngineCache(folder)
    out, problems = {}, []
    for spec in specs:
        try:
            buckets = tuple(cache.entry(spec.name).get("buckets") or ())
            if not buckets:
                raise EngineMismatch(f"engine {spec.name!r} in {folder} records no batch buckets")
            key = spec_key(bundle, spec, spec.recipe(buckets, precision), facts)
            out[spec.name] = (cache.check(key), buckets)
        except EngineMismatch as exc:
            problems.append(str(exc))
    if problems:
        raise EnginesMissing(f"TensorRT engines for {bundle.path} are missing or stale: " + "; ".join(problems)
                             + f". Build them before the service starts: `lpbf-edge trt build {bundle.path}` "
                             "(Ansible runs it at deploy)")
    return out
