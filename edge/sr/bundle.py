"""Model bundle on disk: manifest.json + weights + ONNX graphs, every file pinned by its sha256."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from edge.sr.manifest import FORMAT, Distilled, Manifest, ManifestError

MANIFEST = "manifest.json"
GRAPHS = ("lr_encoder", "hr_encoder", "denoiser", "hr_decoder")
# sample decoder: trained to synthesise texture (see docs/sr_quality.md)
OPTIONAL_GRAPHS = ("regression", "hr_decoder_sample", "pixel_regression")


class BundleError(RuntimeError):
    """A model bundle that cannot be used; the message names the file and what to do."""


def default_bundle_path() -> Path:
    """The bundle the box uses with no --model: $LPBF_MODEL, else <repo>/models/default."""
    env = os.environ.get("LPBF_MODEL")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "models" / "default"


def resolve_bundle_path(model: Path | str | None = None) -> tuple[Path, bool]:
    """(bundle folder, explicit): `model` (--model or sr.model) if given, else $LPBF_MODEL, else <repo>/models/default.

    `explicit` is False only for the last, so callers may fall back (announced) when the shipped model is absent but
    must fail when a model the user named is missing. Never relative to the working directory unless `model` is.
    """
    if model:
        return Path(model).expanduser(), True
    return default_bundle_path(), bool(os.environ.get("LPBF_MODEL"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_bundle(directory: Path | str, manifest: dict) -> Path:
    """Hash every file under `directory` into manifest['files'] and write manifest.json atomically.

    The manifest itself is not hashed."""
    d = Path(directory)
    missing = [g for g in GRAPHS if not (d / f"{g}.onnx").is_file()]
    if missing:
        raise BundleError(f"{d}: cannot write a bundle without {', '.join(m + '.onnx' for m in missing)}; export them "
                          "first")
    files = {
        p.relative_to(d).as_posix(): sha256_file(p)
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")
    }
    data = {"format": FORMAT, **{k: v for k, v in manifest.items() if k not in ("format", "files")}, "files": files}
    try:
        Manifest.from_dict(data)
    except ManifestError as exc:
        raise BundleError(f"{d}: refusing to write an invalid manifest: {exc}") from exc
    tmp = d / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, d / MANIFEST)
    return d / MANIFEST


@dataclass(frozen=True)
class Bundle:
    """A verified model bundle: its directory and typed manifest."""

    path: Path
    manifest: Manifest
    graph_files: dict[str, str] = field(default_factory=dict)  # graph name -> file, for a distilled variant

    @property
    def model_id(self) -> str:
        """Model identifier (goes into every published layer)."""
        return self.manifest.model_id

    @property
    def scale(self) -> int:
        """HR/LR size ratio per dimension."""
        return self.manifest.scale

    @property
    def latent_channels(self) -> int:
        """Channels of the latent grid (= LR grid)."""
        return self.manifest.latent_channels

    @property
    def lr_patch(self) -> int:
        """LR tile size the model was trained on."""
        return self.manifest.lr_patch

    @property
    def prediction(self) -> str:
        """Denoiser output type: epsilon | v_prediction | sample."""
        return self.manifest.prediction

    def graph(self, name: str) -> Path:
        """Path of an ONNX graph of the bundle (lr_encoder, hr_encoder, denoiser, hr_decoder, regression)."""
        rel = self.graph_file(name)
        if not self.manifest.has_file(rel):
            raise BundleError(f"{self.path}: bundle has no {rel} (listed files: {', '.join(self.manifest.files)})")
        return self.path / rel

    def has_graph(self, name: str) -> bool:
        """Whether the bundle ships graph `name` (optional graphs: regression, hr_decoder_sample)."""
        return self.manifest.has_file(self.graph_file(name))

    def decoder_for(self, reduce: str) -> str:
        """Decoder graph for a reduction: 'sample' -> the texture decoder when shipped; 'mean' -> the mean decoder."""
        return "hr_decoder_sample" if reduce == "sample" and self.has_graph("hr_decoder_sample") else "hr_decoder"

    def graph_file(self, name: str) -> str:
        """Relative file of a graph (a distilled variant may swap the denoiser)."""
        return self.graph_files.get(name, f"{name}.onnx")

    def students(self) -> list[str]:
        """Names of the distilled few-step students the bundle ships (manifest `distilled`)."""
        return [k for k, e in self.manifest.distilled.items() if e.is_student]

    def student(self, name: str) -> Bundle:
        """The bundle with its denoiser swapped for a distilled student and the student's DDIM steps as sampler."""
        from edge.sr.schedule import timesteps_for

        entry = self.manifest.distilled.get(name)
        if entry is None or not entry.is_student or entry.steps is None:
            raise BundleError(f"{self.path}: no distilled student {name!r}; this bundle ships: "
                              f"{', '.join(self.students()) or 'none'}")
        expected = tuple(int(t) for t in timesteps_for(self.manifest.timesteps, entry.steps, "trailing"))
        if entry.sampler != "ddim" or entry.timesteps != expected:
            raise BundleError(f"{self.path}: student {name!r} was distilled at timesteps {list(entry.timesteps)} "
                              f"({entry.sampler}); the runtime runs DDIM at trailing timesteps {list(expected)}")
        manifest = self.manifest.replace(model_id=f"{self.model_id}+{name}", sampler={
            "name": "ddim", "steps": entry.steps, "spacing": "trailing", "init": "noise"})
        return Bundle(self.path, manifest, {**self.graph_files, "denoiser": entry.file})

    def light_decoder(self) -> Bundle:
        """The bundle with its single-sample decoder swapped for the distilled light decoder.

        The light decoder is the manifest's distilled.light_decoder."""
        return self._with_light("decoder", self.decoder_for("sample"))

    def light_encoder(self) -> Bundle:
        """The bundle with its condition encoder swapped for the distilled light one.

        The light encoder is the manifest's distilled.light_encoder."""
        return self._with_light("encoder", "lr_encoder")

    def _with_light(self, part: str, graph: str) -> Bundle:
        """The bundle with `graph` served by the distilled `light_<part>` file; a clear error when it has none."""
        entry: Distilled | None = self.manifest.distilled.get(f"light_{part}")
        if entry is None:
            raise BundleError(f"{self.path}: no distilled light {part} (manifest distilled.light_{part}); distil one "
                              f"with `lpbf-edge train distill {part}` or use the full {part}")
        manifest = self.manifest.replace(model_id=f"{self.model_id}+light_{part}")
        return Bundle(self.path, manifest, {**self.graph_files, graph: entry.file})

    def sha256(self, relpath: str) -> str:
        """Pinned sha256 of one bundle file."""
        return self.manifest.files[relpath]


def load_bundle(path: Path | str | None = None, verify: bool = True) -> Bundle:
    """Read and (by default) verify a bundle; any missing or corrupt file raises BundleError naming it."""
    d = Path(path) if path is not None else default_bundle_path()
    mpath = d / MANIFEST
    if not d.is_dir():
        raise BundleError(f"{d}: model bundle directory not found; pass --model PATH or set LPBF_MODEL "
                          "(train one with `lpbf-edge train`, or restore models/default from git)")
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{mpath}: missing; this directory is not a model bundle") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({exc}); restore the bundle from its source") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise BundleError(f"{mpath}: format is {got!r}, expected {FORMAT!r}; re-export the bundle with this version")
    try:
        manifest = Manifest.from_dict(raw)
    except ManifestError as exc:
        raise BundleError(f"{mpath}: {exc}; re-export the bundle") from exc
    listed = [f"{g}.onnx" for g in GRAPHS] + [e.file for e in manifest.distilled.values()]
    unlisted = [f for f in listed if not manifest.has_file(f)]
    if unlisted:
        raise BundleError(f"{mpath}: manifest does not list {unlisted[0]}; the bundle is incomplete, re-export it")
    if verify:
        for rel, digest in manifest.files.items():
            p = d / rel
            if not p.is_file():
                raise BundleError(f"{p}: file of model bundle {manifest.model_id!r} is missing; restore it "
                                  "(git checkout / re-copy the bundle) or re-export the bundle")
            got = sha256_file(p)
            if got != digest:
                raise BundleError(f"{p}: sha256 {got[:12]}... does not match the manifest ({digest[:12]}...): "
                                  "the file is corrupt or was changed; restore it or re-export the bundle "
                                  "(write_bundle re-hashes)")
    return Bundle(d, manifest)


def load_torch_modules(path: Path | str | Bundle) -> dict:
    """The bundle's graphs as torch modules (needs torch and edge.models; see edge.sr.torch_modules)."""
    from edge.sr.torch_modules import load_torch_modules as _load

    return _load(path)
