"""SuperResolver: a verified bundle + a backend runner + a sampler plan -> super-resolved 8-bit layers.

The one inference path of the project: the box, `lpbf-edge sr`, the demo, `lpbf-edge bench`, the plate benchmark and
the distillation teachers all go through it. Tiles of every image (and every sample) are packed into fixed-size
batches (edge.sr.batching), prepared one batch ahead in a helper thread while the backend runs the current one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from edge.imaging import to_u8, to_unit
from edge.sr.batching import TileBatch, prefetched, tile_batches
from edge.sr.bundle import Bundle, BundleError, load_bundle
from edge.sr.noise import PositionalNoise
from edge.sr.plan import run_plan
from edge.sr.runners import Runner, make_runner
from edge.sr.samplers import SAMPLERS, SamplerSpec, start_latent
from edge.sr.tiling import TiledImage

Reduce = Literal["sample", "mean"]
Progress = Callable[[int, int], None]  # (tiles done, tiles in the call)
STD_PNG_GAIN = 4.0  # <name>.std.png = 4 x per-pixel std in gray levels (std 64 -> white)
DEFAULT_BATCH = 64  # tiles per backend call (docs/fast_inference.md: per-tile cost flat from 32 to 256 tiles)


@dataclass(frozen=True)
class SRResult:
    """One super-resolved image: sr uint8 [H*s, W*s]; std float32 (gray levels, 0..255 units) when asked for."""

    sr: np.ndarray
    std: np.ndarray | None
    model_id: str
    timings_s: dict[str, float] = field(default_factory=dict)
    cap_gains: np.ndarray | None = None  # the grain cap's gains [bands, windows y, windows x] (None: no cap ran)


def resolve_sampler(bundle: Bundle, sampler: str | dict | SamplerSpec | None, steps: int | None) -> SamplerSpec:
    """None -> the bundle's own sampler; 'reference' -> its reference (DDPM); a sampler name or a spec dict."""
    m = bundle.manifest
    if isinstance(sampler, SamplerSpec):
        return sampler if steps is None else SamplerSpec(**{**sampler.__dict__, "steps": steps})
    if sampler is None:
        return SamplerSpec.from_manifest(dict(m.sampler), steps)
    if sampler == "reference":
        ref = m.reference or {"name": "ddpm", "steps": m.timesteps}
        return SamplerSpec.from_manifest(dict(ref), steps)
    if isinstance(sampler, str):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)} or 'reference'")
        own = m.sampler.get("name") == sampler
        base = dict(m.sampler) if own else {"name": sampler, "steps": m.sampler.get("steps", 20)}
        return SamplerSpec.from_manifest(base, steps)
    return SamplerSpec.from_manifest(dict(sampler), steps)


def _fused_sampler(bundle: Bundle, runner: Runner):
    """FusedSampler over the bundle's denoiser with the sampler update appended, opened on ONNX Runtime or OpenVINO.

    The fused graph is a derived file (edge.derived_cache): keyed by the denoiser's sha256 and the fusing code's,
    verified by its own sha256 before use, rebuilt with a warning when changed or corrupt. Both CPU backends open
    the same cached file.
    """
    from edge import derived_cache
    from edge.sr import fused

    if not hasattr(runner, "open"):
        raise ValueError(f"the fused sampler runs on ONNX Runtime or OpenVINO only (backend {runner.name!r}); "
                         "use backend 'ort' or 'openvino'")
    cache, src = derived_cache.DerivedCache.default("fused"), bundle.sha256(bundle.graph_file("denoiser"))
    recipe = derived_cache.sha256_file(Path(fused.__file__))

    def path(force: bool = False) -> Path:
        return cache.get("denoiser", src, lambda tmp: fused.fuse_onnx(bundle.graph("denoiser"), tmp), recipe,
                         ".fused.onnx", force=force)

    try:
        return fused.FusedSampler(runner.open(path()))  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - hashes matched but the backend refused it: rebuild once
        derived_cache.log.warning("cached fused graph does not load on %s (%s); rebuilding it", runner.name, exc,
                                  extra={"event": "cache_rebuild"})
        return fused.FusedSampler(runner.open(path(force=True)))  # type: ignore[attr-defined]


class SuperResolver:
    """Upscales uint8 gray images of any size by the bundle's scale through overlapping tiles in fixed-size batches."""

    def __init__(self, bundle: Bundle, runner: Runner, spec: SamplerSpec, seed: int = 0, tile: int | None = None,
                 overlap: int | None = None, batch: int = DEFAULT_BATCH, fused: bool = False, antithetic: bool = True,
                 grain_cap: bool = True, prefetch: bool = True):
        """antithetic: chain 2j+1 starts from the negated noise of chain 2j (edge.sr.noise); False: all independent.

        batch: rows per backend call (tiles x samples); fused: run the plan with the fused step graph (ort, openvino);
        grain_cap: apply the bundle's grain cap (manifest `grain_cap`, edge.sr.grain) when it has one;
        prefetch: prepare the next batch in a helper thread while the backend runs this one.
        """
        self.bundle, self.runner, self.spec, self.seed = bundle, runner, spec, int(seed)
        self.antithetic, self.prefetch = bool(antithetic), bool(prefetch)
        self.grain_cap = bundle.manifest.grain_cap if grain_cap else None
        self.grain_condition = bundle.manifest.grain_condition
        self.grain_reference: np.ndarray | None = None
        self.schedule = bundle.manifest.make_schedule()
        self.plan = spec.plan(self.schedule, bundle.prediction)
        graph_sampler = getattr(runner, "graph_sampler", None)  # tensorrt: the whole sampler as CUDA graphs
        self._fused = graph_sampler() if graph_sampler else (_fused_sampler(bundle, runner) if fused else None)
        self.tile = int(tile or bundle.lr_patch)
        self.overlap = int(self.tile // 4 if overlap is None else overlap)
        self.batch = int(batch)
        self.scale = bundle.scale
        _check_tiling(bundle, self.tile, self.overlap, self.batch)
        if spec.init == "noised_estimate" and spec.estimate == "regression" and not hasattr(runner, "estimate"):
            raise ValueError(f"sampler estimate 'regression' needs a runner with estimate(); {runner.name} has none")
        if spec.init == "noised_estimate" and spec.estimate == "regression" and bundle.path is not None \
                and not bundle.manifest.has_file("regression.onnx"):
            raise BundleError(f"{bundle.path}: sampler asks for a regression estimate but the bundle has no "
                              "regression.onnx")

    @classmethod
    def from_bundle(cls, path: str | Path | None = None, backend: str = "ort", steps: int | None = None, seed: int = 0,
                    sampler: str | dict | SamplerSpec | None = None, tile: int | None = None,
                    overlap: int | None = None,
                    batch: int = DEFAULT_BATCH, fused: bool = False, decoder: str = "full", antithetic: bool = True,
                    grain_cap: bool = True, encoder: str = "full", **runner_options) -> SuperResolver:
        """Load and verify a bundle (default: models/default or $LPBF_MODEL), open its backend, pick the sampler.

        fused=True (ort, openvino) runs each sampler step as one call of the fused step graph (edge.sr.fused).
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
            bundle = bundle.student(sampler)
            if backend == "torch":
                raise ValueError("distilled students ship as ONNX only; use backend 'ort' or 'openvino'")
            if steps is not None and steps != bundle.manifest.sampler["steps"]:
                raise ValueError(f"{sampler} was distilled for exactly {bundle.manifest.sampler['steps']} steps; "
                                 f"drop steps={steps} (or use another sampler, e.g. profile 'quality')")
            sampler, steps = None, None
        spec = resolve_sampler(bundle, sampler, steps)
        return cls(bundle, make_runner(bundle, backend, **runner_options), spec, seed, tile, overlap, batch,
                   fused and backend in ("ort", "openvino"), antithetic, grain_cap)

    @classmethod
    def from_config(cls, cfg) -> SuperResolver:
        """Build from the box config's `sr` section (edge.sr.config.SRConfig) after applying its profile."""
        from edge.sr.profile import effective_settings

        cfg, why = effective_settings(cfg, load_bundle(cfg.model, verify=False))  # from_bundle verifies
        opts = {"precision": cfg.openvino_precision} if cfg.backend == "openvino" else {}
        res = cls.from_bundle(cfg.model, backend=cfg.backend, steps=cfg.steps, seed=cfg.seed, sampler=cfg.sampler,
                              tile=cfg.tile, overlap=cfg.overlap, batch=cfg.batch, fused=cfg.fused,
                              decoder=cfg.decoder, grain_cap=cfg.grain_cap, encoder=cfg.encoder, **opts)
        res.settings_note = why
        return res

    settings_note = "settings given directly"

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    def describe(self) -> str:
        """One line naming exactly what runs (backend, graphs, sampler, loop, tiling)."""
        r = self.runner
        precision = getattr(r, "precision", None)
        backend = r.name + (f" {precision}" if precision else "")
        files = {g: self.bundle.graph_file(g) for g in ("lr_encoder", "denoiser")}
        files["decoder"] = self.bundle.graph_file(self.bundle.decoder_for("sample"))
        s = self.spec
        start = f", from the noised estimate at t={self.plan.timesteps[0]}" if s.init == "noised_estimate" else ""
        loop = "numpy" if self._fused is None else ("CUDA graph" if r.name == "tensorrt" else "fused")
        return (f"{self.model_id} on {backend}: {s.name} {s.steps} steps{start} "
                f"({loop} loop), encoder {files['lr_encoder']}, denoiser "
                f"{files['denoiser']}, decoder {files['decoder']}; tiles {self.tile} LR px (overlap {self.overlap}), "
                f"{self.batch} per call; grain cap {'on' if self.grain_cap else 'off'}")

    # ---------------------------------------------------------------- one batch

    def condition(self, lr_tiles: np.ndarray, images: Sequence[TiledImage] | None = None) -> np.ndarray:
        """The denoiser's condition [T, C, t, t] for LR tiles [T, 1, t, t] in [-1, 1]: the bundle's (or its light)
        lr_encoder, plus the grain offset of a grain-conditioned bundle (manifest `grain_condition`).
        images: the TiledImage each tile comes from (None outside a tiled run, e.g. distillation).

        The one place the condition is computed (the box, the bench and the distillation teachers all call it). The
        grain offset is one [C] vector per image, from the image's grain descriptor (TiledImage.grain, set by
        upscale_many), else the baseline frames' (set_grain_reference), else, with images None, each tile's own.
        It is added on the host, so the graphs (ONNX, TensorRT engines) keep their inputs.
        """
        cond = self.runner.encode_lr(lr_tiles)
        if self.grain_condition is None:
            return cond
        return cond + self._grain_offsets(lr_tiles, images)[:, :, None, None]

    def _describe(self, frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """What the grain condition reads from uint8 LR image(s): the LR grain descriptor, or for a detail-conditioned
        bundle the grain cap's predicted detail level (the bundle's cap, whether or not it is applied)."""
        from edge.sr.grain import DETAIL_SOURCE, detail_condition_lr, grain_descriptor

        gc = self.grain_condition
        assert gc is not None
        if gc.source == DETAIL_SOURCE:
            cap = self.bundle.manifest.grain_cap
            assert cap is not None  # the manifest checks a detail condition comes with its cap
            return detail_condition_lr(cap, frames)
        return grain_descriptor(frames, gc.window)

    def _grain_offsets(self, lr_tiles: np.ndarray, images: Sequence[TiledImage] | None) -> np.ndarray:
        """Grain offsets [T, C] for the tiles of condition()."""
        gc = self.grain_condition
        assert gc is not None
        if images is not None:
            offsets: dict[int, np.ndarray] = {}
            for im in images:
                if id(im) not in offsets:
                    if im.grain is None:
                        im.grain = self._descriptor(to_u8(im.src[:im.shape[0], :im.shape[1]]))
                    assert im.grain is not None  # this resolver is grain-conditioned (gc above)
                    offsets[id(im)] = gc.offset(im.grain)
            return np.stack([offsets[id(im)] for im in images])
        if self.grain_reference is not None:
            return np.repeat(gc.offset(self.grain_reference)[None], len(lr_tiles), axis=0)
        return np.stack([gc.offset(self._describe(to_u8(t[0]))) for t in lr_tiles])

    def _descriptor(self, img_u8: np.ndarray) -> np.ndarray | None:
        """The grain descriptor one image is conditioned on: the baseline frames' when set, else its own."""
        if self.grain_condition is None:
            return None
        if self.grain_reference is not None:
            return self.grain_reference
        return self._describe(img_u8)

    def set_grain_reference(self, frames: Sequence[np.ndarray] | None) -> None:
        """Measure the grain descriptor once from the printer's baseline frames (uint8 LR images) and condition every
        later image on it instead of on its own descriptor; None goes back to per-image descriptors."""
        if frames is None or self.grain_condition is None:
            self.grain_reference = None
            return
        self.grain_reference = self._describe(list(frames))

    def _start(self, batch: TileBatch, cond: np.ndarray) -> np.ndarray | None:
        """HR latent the chain starts from when the sampler starts from a noised estimate (None for pure noise)."""
        if self.spec.init != "noised_estimate":
            return None
        if self.spec.estimate == "regression":
            return self.runner.estimate(cond)  # type: ignore[attr-defined]
        assert batch.upsampled is not None, "noised-estimate starts prepare the bicubic upsample"
        return self.runner.encode_hr(np.clip(batch.upsampled, -1, 1))

    def _sample(self, cond: np.ndarray, x: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """Final latents of the plan from start x: the backend's loop over the plan (the fused ORT / OpenVINO loop,
        or TensorRT's CUDA graph per engine bucket), else the numpy loop."""
        if self._fused is not None:
            return self._fused.loop(self.plan, x.shape[0], x.shape[1:]).run(x, cond, noise)
        return run_plan(self.runner.denoise, self.plan, x, cond, noise)

    def _run_batch(self, batch: TileBatch, samples: int, reduce: Reduce, uncertainty: bool,
                   timings: dict[str, float]) -> np.ndarray:
        """Super-resolve one batch: condition, K chains per tile, decode, reduce -> [n, 1 or 2, th, th] float32."""
        t0 = time.perf_counter()
        cond = self.condition(batch.lr, batch.images)
        init = self._start(batch, cond)
        t1 = time.perf_counter()
        cond_k = np.concatenate([cond] * samples) if samples > 1 else cond
        init_k = None if init is None else np.concatenate([init] * samples)
        x = start_latent(self.spec, self.schedule, self.plan, batch.noise[0], init_k)
        z = self._sample(cond_k, x, batch.noise[1:] if self.plan.stochastic else None)
        t2 = time.perf_counter()
        hr = self.runner.decode(z, self.bundle.decoder_for(reduce))[:, 0]
        t3 = time.perf_counter()
        timings["encode"] += t1 - t0
        timings["sample"] += t2 - t1
        timings["decode"] += t3 - t2
        n = len(batch.refs)
        stack = hr.reshape(samples, -1, *hr.shape[1:])[:, :n]  # [K, n, th, tw]
        best = stack.mean(0) if reduce == "mean" else stack[0]
        return np.stack([best, stack.std(0)] if uncertainty else [best], axis=1)

    # ---------------------------------------------------------------- images

    def upscale(self, lr_uint8: np.ndarray, samples: int = 1, reduce: Reduce = "sample", uncertainty: bool = False,
                progress: Progress | None = None, grain: np.ndarray | None = None) -> SRResult:
        """Super-resolve one uint8 gray image; `samples` chains, reduced to one sample or their mean, optional std.

        grain: the grain descriptor to condition on (edge.sr.grain.grain_descriptor); default the baseline frames'
        (set_grain_reference) or else this image's own. Ignored by bundles without a grain condition."""
        return self.upscale_many([lr_uint8], samples, reduce, uncertainty, progress,
                                 None if grain is None else [grain])[0]

    def upscale_many(self, images: Sequence[np.ndarray], samples: int = 1, reduce: Reduce = "sample",
                     uncertainty: bool = False, progress: Progress | None = None,
                     grains: Sequence[np.ndarray] | None = None) -> list[SRResult]:
        """Super-resolve several images with their tiles sharing batches; each result equals upscale() of its image.

        Every result carries the timings of the whole call. progress(done, total) is called after each batch.
        grains: one grain descriptor per image (see upscale); default each image's own (or the baseline frames').
        """
        imgs = [_gray(img) for img in images]
        _check_options(samples, reduce, uncertainty)
        timings = {"encode": 0.0, "sample": 0.0, "decode": 0.0, "wait": 0.0}
        t0 = time.perf_counter()
        channels = 2 if uncertainty else 1
        tiled = [TiledImage(to_unit(img), self.scale, self.tile, self.overlap, channels) for img in imgs]
        if grains is not None and len(grains) != len(imgs):
            raise ValueError(f"got {len(grains)} grain descriptors for {len(imgs)} images")
        for i, (img, t) in enumerate(zip(imgs, tiled, strict=False)):
            t.grain = self._descriptor(img) if grains is None else np.asarray(grains[i], np.float32)
        timings["grain_descriptor"] = time.perf_counter() - t0
        noises = [PositionalNoise(self.seed, self.bundle.latent_channels, self.tile, self.plan.steps + 1,
                                  t.src.shape[1], self.antithetic) for t in tiled]
        per_call = max(1, self.batch // samples)
        batches = tile_batches(tiled, noises, per_call, samples, self._upsampler())
        if self.prefetch:
            batches = prefetched(batches)
        total, done = sum(len(t.refs) for t in tiled), 0
        t_wait = time.perf_counter()
        for batch in batches:
            timings["wait"] += time.perf_counter() - t_wait
            out = self._run_batch(batch, samples, reduce, uncertainty, timings)
            for i in sorted({i for i, _ in batch.refs}):
                rows = [j for j, (k, _) in enumerate(batch.refs) if k == i]
                tiled[i].add([batch.refs[j][1] for j in rows], out[rows])
            done += len(batch.refs)
            if progress:
                progress(done, total)
            t_wait = time.perf_counter()
        results = [self._finish(img, t, uncertainty, timings) for img, t in zip(imgs, tiled, strict=False)]
        timings["total"] = time.perf_counter() - t0
        return results

    def _upsampler(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """Bicubic x scale of LR tiles [T,1,t,t] for noised-estimate starts (prepared with the batch)."""
        if self.spec.init != "noised_estimate" or self.spec.estimate == "regression":
            return None
        import cv2

        s = self.scale
        return lambda lr: np.stack([cv2.resize(t, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
                                    for t in lr[:, 0]])[:, None]

    def _finish(self, img: np.ndarray, tiled: TiledImage, uncertainty: bool, timings: dict[str, float]) -> SRResult:
        """Blend, grain-cap (on the padded image, so inputs smaller than the cap's window work), crop, check."""
        out, gains = tiled.result(), None
        if self.grain_cap is not None:
            from edge.sr.grain import apply_grain_cap

            t1 = time.perf_counter()
            lr_padded = to_u8(tiled.src)
            capped, gains = apply_grain_cap(self.grain_cap, lr_padded, (out[0] + 1.0) * 127.5, self.scale)
            out[0] = capped / 127.5 - 1.0
            timings["grain_cap"] = timings.get("grain_cap", 0.0) + time.perf_counter() - t1
        out = tiled.crop_hr(out)
        if not np.isfinite(out).all():
            raise RuntimeError(f"super-resolution of a {img.shape[1]}x{img.shape[0]} image gave non-finite values "
                               f"(model {self.model_id}); nothing was written for it")
        std = (out[1] * 127.5).astype(np.float32) if uncertainty else None
        return SRResult(sr=to_u8(out[0]), std=std, model_id=self.model_id, timings_s=timings, cap_gains=gains)


def _gray(img: np.ndarray) -> np.ndarray:
    """A 2-D uint8 gray image, or a ValueError that says what was given."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype != np.uint8 or img.ndim != 2 or img.size == 0:
        raise ValueError(f"expected a non-empty 2-D uint8 gray image, got dtype {img.dtype} shape {img.shape}")
    return img


def _check_options(samples: int, reduce: str, uncertainty: bool) -> None:
    """Per-call options: at least one sample, a known reduction, two samples for a spread."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if reduce not in ("sample", "mean"):
        raise ValueError(f"reduce must be 'sample' or 'mean', got {reduce!r}")
    if uncertainty and samples < 2:
        raise ValueError("uncertainty needs at least 2 samples (the spread of one sample is undefined)")


def _check_tiling(bundle: Bundle, tile: int, overlap: int, batch: int) -> None:
    """Tile, overlap and batch the model can run; clear errors otherwise."""
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in 0..{tile - 1} for tile {tile}, got {overlap}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    levels = bundle.manifest.unet_levels
    multiple = 2 ** (levels - 1)
    if tile % multiple:
        raise ValueError(f"tile {tile} must be a multiple of {multiple} (the U-Net halves the latent grid "
                         f"{levels - 1} times); try {max(multiple, tile // multiple * multiple)}")

