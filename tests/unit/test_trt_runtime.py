"""The box's TensorRT path run on this CPU through the strict stand-ins (tests/standins), on the shipped bundle.

The same tests run on a real Jetson as tests/gpu/test_trt_engine.py, with the `trt_env` fixture swapped for
the real TensorRT and cuda-python and the FP16 tolerance for the device's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.trt_standins import standins

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "models" / "default"


@dataclass
class TrtEnv:
    """Engines of models/default built once per module, and what a test may expect of this machine."""

    bundle: object
    engines: dict  # precision -> engine folder
    fp16_gray_tol: float  # max |SR(fp16 engines) - SR(ORT fp32)| in gray levels, see docs/jetson.md
    cuda: object | None  # the CUDA stand-in (None on a real device)


@pytest.fixture(scope="module")
def trt_env(tmp_path_factory):
    from edge.sr.bundle import load_bundle
    from edge.sr.trt_engines import build_engines

    with standins() as (_trt, rt):
        bundle = load_bundle(BUNDLE)
        root = tmp_path_factory.mktemp("trt-engines")
        engines = {p: root / p for p in ("fp32", "fp16")}
        for precision, folder in engines.items():
            build_engines(bundle, folder, precision=precision, log=lambda _m: None)
        yield TrtEnv(bundle, engines, fp16_gray_tol=3.0, cuda=rt)


def _image(seed: int = 0, shape=(40, 48)) -> np.ndarray:
    """A textured 8-bit test image (smooth field plus grain), so the model has structure to work on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    base = 120 + 50 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    return np.clip(base + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)


def _fused_cpu(bundle):
    """FusedSampler over ONNX Runtime: the CPU loop the graph loop must match."""
    import tempfile

    from edge.sr.fused import FusedSampler, fuse_onnx
    from edge.sr.runners import OrtRunner

    path = Path(tempfile.mkdtemp()) / "fused.onnx"
    fuse_onnx(bundle.graph("denoiser"), path)
    return FusedSampler(OrtRunner(bundle, threads=1).open(path))


@pytest.mark.parametrize("sampler,batch", [("dpmpp_2m", 3), ("ddim", 11), ("ddpm", 5)])
def test_graph_loop_matches_the_cpu_fused_loop(trt_env, sampler, batch):
    """Same plan, same noise: the captured-graph sampler equals the CPU fused loop (FP32 engines).

    ddpm is the paper's 200-step reference with given per-step noise; batch 3 pads to bucket 4, 11 runs 8 + 4."""
    from edge.sr.runners_trt import TrtRunner
    from edge.sr.samplers import SamplerSpec, draw_noise

    bundle = trt_env.bundle
    sched = bundle.manifest.make_schedule()
    spec = SamplerSpec(name=sampler, steps={"ddpm": 200, "ddim": 10, "dpmpp_2m": 15}[sampler],
                       spacing="leading" if sampler == "ddpm" else "trailing")
    rng = np.random.default_rng(1)
    shape = (batch, bundle.latent_channels, bundle.lr_patch, bundle.lr_patch)
    cond = rng.standard_normal(shape).astype(np.float32)
    noise = draw_noise(rng, spec.steps, shape)
    runner = TrtRunner(bundle, engine_dir=trt_env.engines["fp32"], precision="fp32")
    got = runner.graph_sampler().sample(sched, cond, spec, bundle.prediction, noise=noise)
    want = _fused_cpu(bundle).sample(sched, cond, spec, bundle.prediction, noise=noise)
    np.testing.assert_allclose(got, want, atol=2e-4 * max(1.0, float(np.abs(want).max())))


def test_superresolver_tensorrt_backend_runs_the_graph_loop_like_the_cpu(trt_env):
    """SuperResolver(backend='tensorrt') samples through captured graphs and matches the CPU fused path:
    antithetic pair means and spreads, seeded and repeatable."""
    from edge.sr.resolver import SuperResolver

    img = _image()
    kw = dict(batch=4, seed=3)
    trt = SuperResolver.from_bundle(BUNDLE, backend="tensorrt", engine_dir=trt_env.engines["fp32"], precision="fp32",
                                    **kw)
    cpu = SuperResolver.from_bundle(BUNDLE, backend="ort", fused=True, **kw)
    launches = trt_env.cuda.STATE.stats["launches"] if trt_env.cuda else 0
    a = trt.upscale(img, samples=2, reduce="mean", uncertainty=True)
    if trt_env.cuda:  # every tile batch was one graph launch, no per-step host round trips
        assert trt_env.cuda.STATE.stats["launches"] > launches
    b = cpu.upscale(img, samples=2, reduce="mean", uncertainty=True)
    assert a.sr.shape == (160, 192)
    assert np.abs(a.sr.astype(int) - b.sr.astype(int)).max() <= 1
    np.testing.assert_allclose(a.std, b.std, atol=0.5)
    again = trt.upscale(img, samples=2, reduce="mean", uncertainty=True)
    np.testing.assert_array_equal(a.sr, again.sr)  # seeded: a rerun gives the same image
    other = SuperResolver.from_bundle(BUNDLE, backend="tensorrt", engine_dir=trt_env.engines["fp32"],
                                      precision="fp32", batch=4, seed=4).upscale(img, samples=2, reduce="mean")
    assert np.abs(other.sr.astype(int) - a.sr.astype(int)).max() > 0


def test_fast_profile_runs_the_student_and_light_parts_on_tensorrt(trt_env):
    """A Jetson inventory sets only `sr.backend: tensorrt`: the fast profile then runs the bundle's fast path's
    student and light encoder/decoder as engines (same image as the CPU fused loop with the same parts)."""
    from edge.sr.config import SRConfig
    from edge.sr.profile import effective_settings
    from edge.sr.resolver import SuperResolver

    cfg, why = effective_settings(SRConfig(backend="tensorrt"), trt_env.bundle)
    assert (cfg.backend, cfg.sampler, cfg.encoder, cfg.decoder) == ("tensorrt", "student2", "light", "light"), why
    kw = dict(sampler=cfg.sampler, encoder=cfg.encoder, decoder=cfg.decoder, batch=8, seed=1)
    trt = SuperResolver.from_bundle(BUNDLE, backend="tensorrt", engine_dir=trt_env.engines["fp32"], precision="fp32",
                                    **kw)
    line = trt.describe()
    assert "on tensorrt" in line and "(CUDA graph loop)" in line and "2 steps" in line, line
    for part in ("denoiser_student2.onnx", "lr_encoder_light.onnx", "hr_decoder_light.onnx"):
        assert part in line, line
    cpu = SuperResolver.from_bundle(BUNDLE, backend="ort", fused=True, **kw)
    img = _image(7, (36, 52))
    a, b = trt.upscale(img).sr, cpu.upscale(img).sr
    assert a.shape == (144, 208) and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_graph_is_captured_once_with_fixed_addresses_and_device_copies(trt_env):
    """One capture per (bucket, plan); inside it only device-to-device copies and enqueues, t copied per step."""
    if trt_env.cuda is None:
        pytest.skip("inspects the stand-in's recorded graph")
    from edge.sr.resolver import SuperResolver

    rt = trt_env.cuda
    sr = SuperResolver.from_bundle(BUNDLE, backend="tensorrt", engine_dir=trt_env.engines["fp16"], batch=8, seed=0)
    before = set(rt.STATE.graphs)
    sr.upscale(_image(1, (24, 24)))
    new = [rt.STATE.graphs[g] for g in set(rt.STATE.graphs) - before]
    assert len(new) == 1  # one tile row of two tiles -> bucket 2, the bundle's dpmpp_2m plan
    labels = [label for label, _ in new[0]]
    assert labels.count("execute_async_v3") == 15
    d2d = "memcpy cudaMemcpyDeviceToDevice"
    batch = int(labels[0].split()[-1]) // 4  # t: one float32 per batch row
    x_bytes = 4 * batch * 4 * 16 * 16
    step = [f"{d2d} {4 * batch}", f"{d2d} 24", "execute_async_v3", f"{d2d} {x_bytes}", f"{d2d} {x_bytes}"]
    assert labels == step * 15  # t and coef copied in, one enqueue, x_prev/x0 copied back: nothing else
    assert all(lb.startswith("memcpy cudaMemcpyDeviceToDevice") or lb == "execute_async_v3" for lb in labels)
    count = len(rt.STATE.graphs)
    sr.upscale(_image(2, (24, 24)))
    assert len(rt.STATE.graphs) == count  # replayed, not recaptured


def test_fp16_engines_stay_close_to_fp32(trt_env):
    """FP16 engines with FP32 islands against the FP32 ONNX Runtime path, whole sampler and decoder."""
    from edge.sr.resolver import SuperResolver

    img = _image(5)
    fp16 = SuperResolver.from_bundle(BUNDLE, backend="tensorrt", engine_dir=trt_env.engines["fp16"], batch=8)
    cpu = SuperResolver.from_bundle(BUNDLE, backend="ort", fused=True, batch=8)
    diff = np.abs(fp16.upscale(img).sr.astype(int) - cpu.upscale(img).sr.astype(int))
    assert diff.max() <= trt_env.fp16_gray_tol, diff.max()


def test_runner_graphs_match_ort_with_bucket_padding(trt_env):
    """encode_lr / encode_hr / denoise / decode on FP32 engines equal ONNX Runtime, batches padded and chunked."""
    from edge.sr.runners import OrtRunner
    from edge.sr.runners_trt import TrtRunner

    bundle = trt_env.bundle
    trt = TrtRunner(bundle, engine_dir=trt_env.engines["fp32"], precision="fp32")
    ort = OrtRunner(bundle, threads=1)
    rng = np.random.default_rng(0)
    h = bundle.lr_patch
    for n in (3, 11):
        lr = rng.uniform(-1, 1, (n, 1, h, h)).astype(np.float32)
        z = rng.standard_normal((n, 4, h, h)).astype(np.float32)
        t = rng.uniform(0, 199, n).astype(np.float32)
        pairs = [(trt.encode_lr(lr), ort.encode_lr(lr)), (trt.denoise(z, t, z), ort.denoise(z, t, z).copy()),
                 (trt.decode(z), ort.decode(z)),
                 (trt.decode(z, "hr_decoder_sample"), ort.decode(z, "hr_decoder_sample"))]
        for got, want in pairs:
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())))
