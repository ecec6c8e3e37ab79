"""Coefficient plans match diffusers' schedulers; the fused ONNX Runtime / OpenVINO loops match the numpy loop."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler  # noqa: E402

from edge.sr.fused import FusedOrtLoop, FusedOvLoop, fuse_onnx  # noqa: E402
from edge.sr.plan import apply_step, plan_steps, run_plan  # noqa: E402

T = 200
SHAPE = (2, 4, 8, 8)


pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _scheduler(name: str, pred: str):
    kw = dict(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", prediction_type=pred)
    if name == "ddim":
        return DDIMScheduler(**kw, set_alpha_to_one=True, clip_sample=False, timestep_spacing="trailing")
    if name == "ddpm":
        return DDPMScheduler(**kw, clip_sample=False, variance_type="fixed_small")
    return DPMSolverMultistepScheduler(**kw, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero",
                                       lower_order_final=True, timestep_spacing="trailing")


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("name,steps", [("ddim", 10), ("dpmpp_2m", 12), ("ddpm", 50)])
def test_coefficients_match_diffusers(name, steps, pred):
    """The linear per-step update reproduces diffusers' DDIM / DDPM / DPM-Solver++(2M) trajectories."""
    sch = _scheduler(name, pred)
    sch.set_timesteps(steps)
    ts = sch.timesteps.numpy()
    plan = plan_steps(sch.alphas_cumprod.numpy(), ts, name, pred)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    cond = rng.standard_normal(SHAPE).astype(np.float32)
    model = lambda v: 0.5 * v + 0.3 * cond  # noqa: E731  (any fixed function of x works)
    gen, twin = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    xr, xm, x0p = torch.tensor(x), x.copy(), np.zeros_like(x)
    for i, t in enumerate(ts):
        xr = sch.step(torch.tensor(model(xr.numpy())), int(t), xr, generator=gen).prev_sample
        z = torch.randn(SHAPE, generator=twin).numpy() if (name == "ddpm" and t > 0) else np.zeros_like(x)
        xm, x0p = apply_step(plan.coefs[i], xm, model(xm), x0p, z)
    scale = max(1.0, float(np.abs(xm).max()))
    assert np.abs(xr.numpy() - xm).max() / scale < 2e-3
    assert plan.stochastic == (name == "ddpm")


def test_plan_rejects_bad_input():
    acp = np.linspace(0.99, 0.01, T)
    with pytest.raises(ValueError, match="strictly decreasing"):
        plan_steps(acp, [10, 20], "ddim", "epsilon")
    with pytest.raises(ValueError, match="unknown sampler"):
        plan_steps(acp, [20, 10], "euler", "epsilon")
    with pytest.raises(ValueError, match="prediction type"):
        plan_steps(acp, [20, 10], "ddim", "x0")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """The tiny test bundle's U-Net denoiser (ORT session), its fused step graph in ORT, and that graph in OpenVINO."""
    from edge.sr.bundle import load_bundle
    from edge.sr.runners import OpenVinoRunner
    from tests.sr_fixtures import tiny_bundle

    b = load_bundle(tiny_bundle())
    d = tmp_path_factory.mktemp("fused")
    fuse_onnx(b.graph("denoiser"), d / "fused.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    mk = lambda p: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])  # noqa: E731
    return mk(b.graph("denoiser")), mk(d / "fused.onnx"), OpenVinoRunner(b, "f32", threads=1).open(d / "fused.onnx")


@pytest.mark.parametrize("sampler,steps,pred", [("dpmpp_2m", 8, "v_prediction"), ("ddpm", 20, "epsilon"),
                                                ("ddim", 5, "sample")])
def test_fused_loops_match_the_numpy_loop(graphs, sampler, steps, pred):
    """ORT's and OpenVINO's fused loops (update inside the graph) equal denoiser calls + the numpy update."""
    den, fused, ov_graph = graphs
    acp = np.cumprod(1 - np.linspace(1e-4, 0.02, 50))
    ts = np.linspace(49, 0, steps).round().astype(int)
    plan = plan_steps(acp, ts, sampler, pred, eta=0.7 if sampler == "ddim" else None)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    cond = rng.standard_normal(SHAPE).astype(np.float32)
    noise = rng.standard_normal((steps, *SHAPE)).astype(np.float32)
    ref = run_plan(lambda a, t, c: den.run(None, {"x": a, "t": t, "cond": c})[0], plan, x, cond, noise)
    for loop in (FusedOrtLoop(fused, plan, SHAPE[0], SHAPE[1:]), FusedOvLoop(ov_graph, plan, SHAPE[0], SHAPE[1:])):
        out = loop.run(x, cond, noise).copy()
        np.testing.assert_allclose(out, ref, atol=1e-4 * max(1.0, np.abs(ref).max()))
        again = loop.run(x, cond, noise)  # buffers are reused: a second run gives the same answer
        np.testing.assert_array_equal(again, out)


def test_fused_loop_needs_noise_for_ddpm(graphs):
    _, fused, ov_graph = graphs
    plan = plan_steps(np.linspace(0.99, 0.01, 50), [40, 30, 20], "ddpm", "epsilon")
    z = np.zeros(SHAPE, np.float32)
    for loop in (FusedOrtLoop(fused, plan, SHAPE[0], SHAPE[1:]), FusedOvLoop(ov_graph, plan, SHAPE[0], SHAPE[1:])):
        with pytest.raises(ValueError, match="adds noise"):
            loop.run(z, z)
        with pytest.raises(ValueError, match="shape"):
            loop.run(z[:1], z[:1])


def test_fuse_rejects_non_denoiser(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["a"], ["b"])], "g",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(tmp_path / "r.onnx"))
    with pytest.raises(ValueError, match="expected a denoiser"):
        fuse_onnx(tmp_path / "r.onnx", tmp_path / "o.onnx")


@pytest.mark.parametrize("name,steps,pred,init", [("ddpm", 20, "epsilon", "noise"),
                                                  ("ddim", 10, "v_prediction", "noised_estimate"),
                                                  ("dpmpp_2m", 8, "v_prediction", "noise"),
                                                  ("dpmpp_2m", 6, "sample", "noised_estimate")])
def test_fused_sampler_matches_sr_runtime_sampler(graphs, name, steps, pred, init):
    """FusedSampler over the tiny bundle's U-Net equals edge.sr.samplers.sample (float64 reference) within 1e-4.

    The reference's denoise callable is the same graph with coef = [0, 1, 0, 0, 0, 0] (output x0 = model output),
    so only the sampler arithmetic differs between the two."""
    samplers = pytest.importorskip("edge.sr.samplers")
    from edge.sr.fused import FusedSampler
    from edge.sr.schedule import Schedule
    _, sess, _ = graphs
    shape = SHAPE
    fs = FusedSampler(sess)
    sched = Schedule.make("cosine", 50)
    spec = samplers.SamplerSpec(name=name, steps=steps, init=init, t_start=30 if init != "noise" else None,
                                spacing="leading" if name == "ddpm" else "trailing")
    rng = np.random.default_rng(0)
    cond = rng.standard_normal(shape).astype(np.float32)
    x_init = rng.standard_normal(shape).astype(np.float32)
    noise = samplers.draw_noise(rng, steps, shape)
    raw, zero = np.array([0, 1, 0, 0, 0, 0], np.float32), np.zeros(shape, np.float32)

    def denoise(x, t, c):
        return sess.run(["x0"], {"x": x, "t": t, "cond": c, "coef": raw, "noise": zero, "x0_prev": zero})[0]

    ref = samplers.sample(denoise, sched, cond, shape, spec, pred, noise=noise, x_init=x_init)
    got = fs.sample(sched, cond, spec, pred, noise=noise, x_init=x_init)
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
