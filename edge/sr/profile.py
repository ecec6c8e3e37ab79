"""SR profiles: which settings actually run for a box config's `sr` section (profile fast = the bundle's fast path)."""

from __future__ import annotations

from edge.sr.bundle import Bundle, BundleError
from edge.sr.config import SRConfig

# settings a manifest fast_path.box_config entry may fill in
PATH_FIELDS = ("backend", "openvino_precision", "sampler", "decoder", "encoder", "fused", "batch")


def runnable_here(entry: dict) -> bool:
    """Whether this machine can run a fast-path entry (OpenVINO bf16 needs a CPU that reports bf16)."""
    if entry.get("backend") == "openvino" and entry.get("openvino_precision") == "bf16":
        from edge.sr.runners import openvino_bf16_supported

        return openvino_bf16_supported()
    return True


def fast_path_settings(bundle: Bundle, backend: str | None = None) -> dict:
    """The first manifest fast_path.box_config entry this machine can run (with `backend`, if one is asked for)."""
    entries = (bundle.manifest.get("fast_path") or {}).get("box_config") or []
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


def effective_settings(cfg: SRConfig, bundle: Bundle) -> tuple[SRConfig, str]:
    """(the settings that run, one line saying why) for a config's `sr` section and its bundle.

    profile quality: the config as written. profile fast: every setting the config leaves unset is taken from the
    bundle's fast path (manifest fast_path.box_config; the first entry this machine can run); settings written in the
    config win. A bundle that names no fast path runs its own sampler, as profile quality does, and says so.
    """
    if cfg.profile == "quality":
        return cfg, "profile quality: the settings as configured"
    if not (bundle.manifest.get("fast_path") or {}).get("box_config"):
        note = (f"profile fast: bundle {bundle.model_id} names no fast path (manifest fast_path.box_config), "
                "so it runs its own sampler as profile quality does")
        return cfg, note
    given = cfg.model_fields_set
    entry = fast_path_settings(bundle, cfg.backend if "backend" in given else None)
    update = {k: v for k, v in entry.items() if k not in given}
    return cfg.model_copy(update=update), f"profile fast: the bundle's fast path {entry} (config overrides: " \
                                          f"{', '.join(sorted(given & set(PATH_FIELDS))) or 'none'})"

