"""SuperResolver: a verified bundle + a backend runner + a sampler -> super-resolved 8-bit layers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from edge.sr.bundle import Bundle, BundleError, load_bundle
from edge.sr.runners import Runner, make_runner
from edge.sr.samplers import SAMPLERS, SamplerSpec, sample
from edge.sr.schedule import Schedule
from edge.sr.tiling import tiled_upscale

Reduce = Literal["sample", "mean"]
STD_PNG_GAIN = 4.0  # <name>.std.png = 4 x per-pixel std in gray levels (std 64 -> white)


@dataclass(frozen=True)
class SRResult:
    """One super-resolved image: sr uint8 [H*s, W*s]; std float32 (gray levels, 0..255 units) when asked for."""

    sr: np.ndarray
    std: np.ndarray | None
    model_id: str
    timings_s: dict[str, float] = field(default_factory=dict)
    cap_gains: np.ndarray | None = None  # the grain cap's gains [bands, windows y, windows x] (None: no cap ran)


def to_unit(img_u8: np.ndarray) -> np.ndarray:
    """uint8 [0,255] -> float32 [-1,1]."""
    return img_u8.astype(np.float32) / 127.5 - 1.0


def to_u8(x: np.ndarray) -> np.ndarray:
    """float [-1,1] -> uint8 [0,255], rounded and clipped."""
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def resolve_sampler(bundle: Bundle, sampler: str | dict | SamplerSpec | None, steps: int | None) -> SamplerSpec:
    """None -> the bundle's fast sampler; 'reference' -> its reference (DDPM); a sampler name or a spec dict."""
    m = bundle.manifest
    if isinstance(sampler, SamplerSpec):
        return sampler if steps is None else SamplerSpec(**{**sampler.__dict__, "steps": steps})
    if sampler is None:
        return SamplerSpec.from_manifest(m["sampler"], steps)
    if sampler == "reference":
        return SamplerSpec.from_manifest(m.get("reference", {"name": "ddpm", "steps": Schedule.from_manifest(m["schedule"]).T}), steps)
    if isinstance(sampler, str):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)} or 'reference'")
        base = dict(m["sampler"]) if m["sampler"].get("name") == sampler else {"name": sampler, "steps": m["sampler"].get("steps", 20)}
        return SamplerSpec.from_manifest(base, steps)
    return SamplerSpec.from_manifest(dict(sampler), steps)


def _fused_sampler(bundle: Bundle, runner: Runner):
    """FAST's FusedSampler over the bundle's denoiser with the sampler update appended (cached by the graph's sha256)."""
    import os
    import tempfile

    from edge.sr.fused import FusedSampler, fuse_onnx
    from edge.sr.runners import OrtRunner

    if not isinstance(runner, OrtRunner):
        raise ValueError(f"the fused sampler runs on ONNX Runtime only (backend {runner.name!r}); use backend 'ort'")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lpbf-edge" / "fused"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"denoiser-{bundle.sha256(bundle.graph_file('denoiser'))[:20]}.fused.onnx"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".onnx")
        os.close(fd)
        fuse_onnx(bundle.graph("denoiser"), Path(tmp))
        os.replace(tmp, path)
    return FusedSampler(runner.open(path))


def fast_path_settings(bundle: Bundle) -> dict:
    """SR settings of the bundle's fast path (manifest fast_path.box_config): the first entry this machine can run."""
    entries = (bundle.manifest.get("fast_path") or {}).get("box_config") or []
    if not entries:
        raise BundleError(f"{bundle.path}: the bundle names no fast path (manifest fast_path.box_config); "
                          "use sr.profile 'quality' or set sampler/decoder/backend yourself")
    for e in entries:
        if e.get("backend") == "openvino" and e.get("openvino_precision") == "bf16":
            from edge.sr.runners import openvino_bf16_supported

            if not openvino_bf16_supported():
                continue
        return dict(e)
    raise BundleError(f"{bundle.path}: none of the bundle's fast paths runs on this machine: {entries}")


def _grain_condition(bundle: Bundle):
    """The bundle's grain condition (manifest `grain_condition`, edge.sr.grain.GrainCondition), or None."""
    entry = bundle.manifest.get("grain_condition")
    if not entry:
        return None
    from edge.sr.grain import GrainCondition

    try:
        return GrainCondition.from_json(entry)
    except ValueError as exc:
        raise BundleError(f"{bundle.path}: {exc}") from exc


class SuperResolver:
    """Upscales uint8 gray images of any size by the bundle's scale through overlapping tiles."""

    def __init__(self, bundle: Bundle, runner: Runner, spec: SamplerSpec, seed: int = 0, tile: int | None = None,
                 overlap: int | None = None, batch: int = 8, fused: bool = False, antithetic: bool = True,
                 grain_cap: bool = True):
        """antithetic: chain 2j+1 starts from the negated noise of chain 2j (see _band_noise); False: all independent.

        grain_cap: apply the bundle's grain cap (manifest `grain_cap`, edge.sr.grain) to the output when it has one.
        """
        self.bundle, self.runner, self.spec, self.seed = bundle, runner, spec, int(seed)
        self.antithetic = bool(antithetic)
        self.grain_cap = None
        if grain_cap and bundle.manifest.get("grain_cap"):
            from edge.sr.grain import GrainCap

            try:
                self.grain_cap = GrainCap.from_json(bundle.manifest["grain_cap"])
            except ValueError as exc:
                raise BundleError(f"{bundle.path}: {exc}") from exc
        self.grain_condition, self.grain_reference = _grain_condition(bundle), None
        self._fused = _fused_sampler(bundle, runner) if fused else None
        self.schedule = Schedule.from_manifest(bundle.manifest["schedule"])
        self.tile = int(tile or bundle.lr_patch)
        self.overlap = int(self.tile // 4 if overlap is None else overlap)
        self.batch = int(batch)
        self.scale = bundle.scale
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"tile overlap must be in 0..{self.tile - 1} for tile {self.tile}, got {self.overlap}")
        levels = len(bundle.manifest.get("arch", {}).get("unet", {}).get("block_out_channels", [0]))
        multiple = 2 ** (levels - 1)
        if self.tile % multiple:
            raise ValueError(f"tile {self.tile} must be a multiple of {multiple} (the U-Net halves the latent grid "
                             f"{levels - 1} times); try {max(multiple, self.tile // multiple * multiple)}")
        self._noise_band: tuple[tuple[int, int], dict[int, np.ndarray]] | None = None
        if spec.init == "noised_estimate" and spec.estimate == "regression" and not hasattr(runner, "estimate"):
            raise ValueError(f"sampler estimate 'regression' needs a runner with estimate(); {runner.name} has none")
        if spec.init == "noised_estimate" and spec.estimate == "regression" and bundle.path is not None \
                and "regression.onnx" not in bundle.manifest["files"]:
            raise BundleError(f"{bundle.path}: sampler asks for a regression estimate but the bundle has no regression.onnx")

    @classmethod
    def from_bundle(cls, path: str | Path | None = None, backend: str = "ort", steps: int | None = None, seed: int = 0,
                    sampler: str | dict | SamplerSpec | None = None, tile: int | None = None, overlap: int | None = None,
                    batch: int = 8, fused: bool = False, decoder: str = "full", antithetic: bool = True,
                    grain_cap: bool = True, encoder: str = "full", **runner_options) -> "SuperResolver":
        """Load and verify a bundle (default: models/default or $LPBF_MODEL), open its backend, pick the sampler.

        fused=True (ort only) runs each sampler step as one call of FAST's fused step graph (edge.sr.fused).
        decoder='light' decodes single samples with the bundle's distilled light decoder (ONNX backends);
        encoder='light' computes the condition with the bundle's distilled light encoder (ONNX backends).
        """
        for part, choice in (("encoder", encoder), ("decoder", decoder)):
            if choice not in ("full", "light"):
                raise ValueError(f"{part} must be 'full' or 'light', got {choice!r}")
            if choice == "light" and backend == "torch":
                raise ValueError(f"the distilled light {part} ships as ONNX only; use backend 'ort' or 'openvino'")
        bundle = load_bundle(path)
        if encoder == "light":
            bundle = bundle.light_encoder()
        if decoder == "light":
            bundle = bundle.light_decoder()
        if isinstance(sampler, str) and sampler.startswith("student"):
            bundle, sampler = bundle.student(sampler), None
            if backend == "torch":
                raise ValueError("distilled students ship as ONNX only; use backend 'ort' or 'openvino'")
        spec = resolve_sampler(bundle, sampler, steps)
        return cls(bundle, make_runner(bundle, backend, **runner_options), spec, seed, tile, overlap, batch, fused,
                   antithetic, grain_cap)

    @classmethod
    def from_config(cls, cfg) -> "SuperResolver":
        """Build from the box config's `sr` section (edge.sr.config.SRConfig); profile 'fast' takes the bundle's fast path."""
        if cfg.profile == "fast":
            cfg = cfg.model_copy(update=fast_path_settings(load_bundle(cfg.model, verify=False)))  # from_bundle verifies
        opts = {"precision": cfg.openvino_precision} if cfg.backend == "openvino" else {}
        return cls.from_bundle(cfg.model, backend=cfg.backend, steps=cfg.steps, seed=cfg.seed, sampler=cfg.sampler,
                               tile=cfg.tile, overlap=cfg.overlap, batch=cfg.batch,
                               fused=cfg.fused and cfg.backend == "ort", decoder=cfg.decoder, grain_cap=cfg.grain_cap,
                               encoder=cfg.encoder,
                               **opts)

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    def _band_noise(self, k: int, y: int, width: int, n: int) -> np.ndarray:
        """Noise [n, C, tile, width] for LR rows y..y+tile of sample k, keyed by absolute row so overlapping tiles agree.

        Antithetic pairs: sample 2j+1 gets the negated noise of sample 2j. Each chain is still a draw from the model,
        but a pair's texture largely cancels in the mean, so the mean of K estimates the posterior mean with far less
        leftover grain than K independent chains (measured in docs/sr_quality.md). Sample 0 is the same either way.
        """
        if self._noise_band is None or self._noise_band[0] != (y, width):
            self._noise_band = ((y, width), {})  # keep only the current tile row's bands (one per sample)
        bands = self._noise_band[1]
        if k in bands:
            return bands[k]
        if self.antithetic and k % 2 == 1:
            band = bands[k] = -self._band_noise(k - 1, y, width, n)
            return band
        C = self.bundle.latent_channels
        # drawn as [width, n, C] so column x gets the same numbers whatever the padded image width is
        rows = [np.random.default_rng([self.seed, k, r]).standard_normal((width, n, C), dtype=np.float32)
                for r in range(y, y + self.tile)]
        band = bands[k] = np.ascontiguousarray(np.stack(rows, axis=0).transpose(2, 3, 0, 1))
        return band

    def set_grain_reference(self, frames) -> None:
        """Measure the grain descriptor once from the printer's baseline frames (uint8 LR images) and condition every
        later image on it instead of on its own descriptor; None goes back to per-image descriptors."""
        if frames is None or self.grain_condition is None:
            self.grain_reference = None
            return
        from edge.sr.grain import grain_descriptor

        self.grain_reference = grain_descriptor(frames, self.grain_condition.window)

    def _grain_offset(self, img: np.ndarray, grain: np.ndarray | None) -> np.ndarray | None:
        """Per-channel condition offset of a grain-conditioned bundle for this image (None for other bundles)."""
        if self.grain_condition is None:
            return None
        from edge.sr.grain import grain_descriptor

        if grain is None:
            grain = self.grain_reference if self.grain_reference is not None else \
                grain_descriptor(img, self.grain_condition.window)
        return self.grain_condition.offset(grain)[None, :, None, None]

    def _tile_fn(self, samples: int, reduce: Reduce, uncertainty: bool, width: int, timings: dict[str, float],
                 offset: np.ndarray | None = None):
        """The per-batch function the tiler calls: encode LR, sample K latents, decode, reduce."""
        from edge.sr.schedule import timesteps_for

        spec, C, s = self.spec, self.bundle.latent_channels, self.scale
        t_max = None
        if spec.init == "noised_estimate":
            t_max = self.schedule.T - 1 if spec.t_start is None else spec.t_start
        n_steps = len(timesteps_for(self.schedule.T, spec.steps, spec.spacing, t_max))

        def fn(tiles: np.ndarray, origins: list[tuple[int, int]]) -> np.ndarray:
            t0 = time.perf_counter()
            cond = self.runner.encode_lr(tiles[:, None])
            if offset is not None:  # grain condition (manifest grain_condition): one offset per image
                cond = cond + offset
            x_init = None
            if spec.init == "noised_estimate" and spec.estimate == "regression":
                x_init = self.runner.estimate(cond)  # type: ignore[attr-defined]
            elif spec.init == "noised_estimate":
                import cv2

                up = np.stack([cv2.resize(t, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC) for t in tiles])
                x_init = self.runner.encode_hr(np.clip(up, -1, 1)[:, None])
            timings["encode"] += time.perf_counter() - t0
            # all K chains of this batch in one sampler run: batch index = k * N + tile
            t1 = time.perf_counter()
            noise = np.concatenate([np.stack([self._band_noise(k, y, width, n_steps + 1)[..., x:x + self.tile]
                                              for y, x in origins], axis=1) for k in range(samples)], axis=1)
            cond_k = np.concatenate([cond] * samples)
            init_k = None if x_init is None else np.concatenate([x_init] * samples)
            if self._fused is not None:
                z = self._fused.sample(self.schedule, cond_k, spec, self.bundle.prediction, noise=noise, x_init=init_k)
            else:
                z = sample(self.runner.denoise, self.schedule, cond_k, cond_k.shape, spec, self.bundle.prediction,  # type: ignore[arg-type]
                           noise=noise, x_init=init_k)
            t2 = time.perf_counter()
            hr = self.runner.decode(z, self.bundle.decoder_for(reduce))[:, 0]
            timings["sample"] += t2 - t1
            timings["decode"] += time.perf_counter() - t2
            stack = hr.reshape(samples, len(origins), *hr.shape[1:])  # [K, N, th, tw]
            best = stack.mean(0) if reduce == "mean" else stack[0]
            chans = [best] + ([stack.std(0)] if uncertainty else [])
            return np.stack(chans, axis=1)

        return fn

    def upscale(self, lr_uint8: np.ndarray, samples: int = 1, reduce: Reduce = "sample",
                uncertainty: bool = False, grain: np.ndarray | None = None) -> SRResult:
        """Super-resolve one uint8 gray image; `samples` chains, reduced to one sample or their mean, optional std.

        grain: the grain descriptor to condition on (edge.sr.grain.grain_descriptor); default the baseline frames'
        (set_grain_reference) or else this image's own. Ignored by bundles without a grain condition."""
        img = np.asarray(lr_uint8)
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        if img.dtype != np.uint8 or img.ndim != 2 or img.size == 0:
            raise ValueError(f"expected a non-empty 2-D uint8 gray image, got dtype {img.dtype} shape {img.shape}")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if reduce not in ("sample", "mean"):
            raise ValueError(f"reduce must be 'sample' or 'mean', got {reduce!r}")
        if uncertainty and samples < 2:
            raise ValueError("uncertainty needs at least 2 samples (the spread of one sample is undefined)")
        timings = {"encode": 0.0, "sample": 0.0, "decode": 0.0}
        t0 = time.perf_counter()
        width = max(img.shape[1], self.tile)
        offset = self._grain_offset(img, grain)
        timings["grain_descriptor"] = time.perf_counter() - t0
        fn = self._tile_fn(samples, reduce, uncertainty, width, timings, offset)
        out = tiled_upscale(to_unit(img), fn, self.scale, self.tile, self.overlap, self.batch,
                            channels=2 if uncertainty else 1)
        self._noise_band = None
        gains = None
        if self.grain_cap is not None:
            from edge.sr.grain import apply_grain_cap

            t1 = time.perf_counter()
            capped, gains = apply_grain_cap(self.grain_cap, img, (out[0] + 1.0) * 127.5, self.scale)
            out[0] = capped / 127.5 - 1.0
            timings["grain_cap"] = time.perf_counter() - t1
        timings["total"] = time.perf_counter() - t0
        std = (out[1] * 127.5).astype(np.float32) if uncertainty else None
        return SRResult(sr=to_u8(out[0]), std=std, model_id=self.model_id, timings_s=timings, cap_gains=gains)
