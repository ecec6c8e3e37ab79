"""SR profiles: which settings actually run for a box config's `sr` section (profile fast = the bundle's fast path)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.sr.bundle import Bundle, BundleError
from edge.sr.config import SRConfig

# settings a manifest fast_path.box_config entry may fill in
PATH_FIELDS = ("backend", "openvino_precision", "sampler", "decoder", "encoder", "fused")


def runnable_here(entry: Mapping[str, Any]) -> bool:
    """Whether this machine can run a fast-path entry (OpenVINO bf16 needs a CPU that reports bf16)."""
    if entry.get("backend") == "openvino" and entry.get("openvino_precision") == "bf16":
        from edge.sr.runners import openvino_bf16_supported

        return openvino_bf16_supported()
    return True


def fast_path_settings(bundle: Bundle, backend: str | None = None) -> dict:
    """The first manifest fast_path.box_config entry this machine can run (with `backend`, if one is asked for)."""
    entries = bundle.manifest.fast_path
    if not entries:
        raise BundleError(f"{bundle.path}: the bundle names no fast path (manifest fast_path.box_config); "
                          "use sr.profile 'quality' or set sampler/decoder/backend yourself")
    unknown = sorted({k for e in entries for k in e} - set(PATH_FIELDS))
    if unknown:
        raise BundleError(f"{bundle.path}: manifest fast_path.box_config has unknown keys {unknown}; "
                          f"allowed: {', '.join(PATH_FIELDS)}")
    runnable = [dict(e) for e in entries if runnable_here(e)]
    if backend is not None:
        same = [e for e in runnable if e.get("backend") == backend]
        if same:
            return same[0]
        if runnable:  # the fast path's model parts on the backend asked for
            return {k: v for k, v in runnable[0].items() if k not in ("backend", "openvino_precision", "fused")}
    if runnable:
        return runnable[0]
    raise BundleError(f"{bundle.path}: none of the bundle's fast paths runs on this machine: {entries}")


# what a setting left null becomes when neither the fast path nor the config names it
DEFAULTS = {"backend": "ort", "openvino_precision": "f32", "decoder": "full", "encoder": "full", "fused": True}


def effective_settings(cfg: SRConfig, bundle: Bundle) -> tuple[SRConfig, str]:
    """(the settings that run, one line saying where they came from) for a config's `sr` section and its bundle.

    Settings written in the config always win. Those left null come, with profile fast, from the bundle's fast path
    (manifest fast_path.box_config: the first entry this machine can run, on the configured backend if one is
    written); a bundle that names no fast path runs its own sampler as profile quality does, and says so. The rest
    take DEFAULTS (ort, f32, full encoder and decoder, fused loop) and the bundle's own sampler.
    """
    given = {k for k in PATH_FIELDS if getattr(cfg, k, None) is not None}
    entry: dict = {}
    if cfg.profile == "quality":
        note = "profile quality: the bundle's own sampler"
    elif not bundle.manifest.fast_path:
        note = (f"profile fast: bundle {bundle.model_id} names no fast path (manifest fast_path.box_config), "
                "so it runs its own sampler as profile quality does")
    else:
        entry = fast_path_settings(bundle, cfg.backend)
        note = f"profile fast: the bundle's fast path {entry}"
    update = {k: v for k, v in entry.items() if k not in given}
    update.update({k: v for k, v in DEFAULTS.items() if k not in given and k not in update})
    if given:
        note += f"; set in the config: {', '.join(sorted(given))}"
    return cfg.model_copy(update=update), note
