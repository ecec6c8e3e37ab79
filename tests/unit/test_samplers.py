"""The float64 oracle samplers (tests/sampler_oracle.py) equal diffusers' schedulers on the same tiny model and the
same noise, and the runtime's coefficient plans (edge.sr.plan, run by edge.sr.samplers.sample) equal the oracle.

Tolerance: ours keeps the schedule and the state in float64, diffusers in float32 (betas, alphas_cumprod,
the chain). Both call the same float32 model, so the chains agree to float32 rounding amplified by the
1/sqrt(abar) of epsilon prediction at the noisiest step (~300 for the cosine schedule at T=50): we require
max|ours - diffusers| <= 2e-4 * (1 + max|diffusers|) after the whole chain.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edge.sr.samplers import SamplerSpec, draw_noise, sample  # noqa: E402
from edge.sr.schedule import Schedule, timesteps_for, to_eps, to_v, to_x0  # noqa: E402
from tests.sampler_oracle import ddim, ddpm, dpmpp_2m, oracle_sample  # noqa: E402
from tests.sr_fixtures import tiny_unet  # noqa: E402

# diffusers' DPM-Solver builds its sigmas with np.array(copy=False) semantics numpy 2 warns about (not ours)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
T = 50
SHAPE = (2, 4, 8, 8)
PREDS = ("epsilon", "v_prediction", "sample")
KINDS = ("linear", "cosine")
DIFFUSERS_KIND = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


@pytest.fixture(scope="module")
def model():
    """Tiny random conditional UNet and a numpy denoise over it."""
    unet = tiny_unet(0)

    def denoise(x, t, cond):
        with torch.no_grad():
            return unet(torch.cat([torch.from_numpy(x), torch.from_numpy(cond)], 1), torch.from_numpy(t)).sample.numpy()

    return denoise


@pytest.fixture(scope="module")
def cond():
    return np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)


def _close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert np.isfinite(ours).all()
    err = np.abs(ours - ref).max()
    assert err <= 2e-4 * (1 + np.abs(ref).max()), f"max abs error {err:.3g} (ref scale {np.abs(ref).max():.3g})"


def _diffusers_loop(sched, denoise, x, cond, noise_per_step=None, ddim_eta=None):
    """Run a diffusers scheduler loop with a numpy model; per-step noise injected explicitly."""
    xt = torch.from_numpy(x.copy())
    for i, t in enumerate(sched.timesteps):
        out = denoise(xt.numpy().astype(np.float32), np.full((x.shape[0],), float(t), np.float32), cond)
        kw = {}
        if ddim_eta is not None:
            kw = {"eta": ddim_eta}
            if ddim_eta > 0:
                kw["variance_noise"] = torch.from_numpy(noise_per_step[i])
        xt = sched.step(torch.from_numpy(out), t, xt, **kw).prev_sample
    return xt.numpy()



@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pred", PREDS)
def test_ddpm_equals_diffusers(model, cond, kind, pred, monkeypatch):
    sched = Schedule.make(kind, T)
    noise = draw_noise(np.random.default_rng(0), T, SHAPE)
    ts = timesteps_for(T, T, "leading")
    ours = ddpm(model, sched, noise[0], cond, ts, noise[1:], pred)

    ref_s = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_KIND[kind], prediction_type=pred,
                                    clip_sample=False)
    ref_s.set_timesteps(T)
    assert ref_s.timesteps.numpy().tolist() == ts.tolist()
    it = iter(noise[1:])
    import diffusers.schedulers.scheduling_ddpm as mod

    monkeypatch.setattr(mod, "randn_tensor", lambda shape, **kw: torch.from_numpy(next(it)))
    _close(ours, _diffusers_loop(ref_s, model, noise[0], cond))


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pred", PREDS)
def test_ddim_equals_diffusers(model, cond, kind, pred, eta):
    sched, steps = Schedule.make(kind, T), 10
    noise = draw_noise(np.random.default_rng(1), steps, SHAPE)
    ts = timesteps_for(T, steps, "trailing")
    ours = ddim(model, sched, noise[0], cond, ts, noise[1:], pred, eta=eta)

    ref_s = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_KIND[kind], prediction_type=pred,
                                    clip_sample=False, timestep_spacing="trailing", set_alpha_to_one=True)
    ref_s.set_timesteps(steps)
    assert ref_s.timesteps.numpy().tolist() == ts.tolist()
    _close(ours, _diffusers_loop(ref_s, model, noise[0], cond, noise[1:], ddim_eta=eta))


@pytest.mark.parametrize("steps", [5, 20])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pred", PREDS)
def test_dpmpp_2m_equals_diffusers(model, cond, kind, pred, steps):
    sched = Schedule.make(kind, T)
    x = draw_noise(np.random.default_rng(2), 0, SHAPE)[0]
    ts = timesteps_for(T, steps, "trailing")
    ours = dpmpp_2m(model, sched, x, cond, ts, pred)

    ref_s = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=T, beta_schedule=DIFFUSERS_KIND[kind], prediction_type=pred, algorithm_type="dpmsolver++",
        solver_order=2, timestep_spacing="trailing", final_sigmas_type="zero")
    ref_s.set_timesteps(steps)
    assert ref_s.timesteps.numpy().tolist() == ts.tolist()
    _close(ours, _diffusers_loop(ref_s, model, x, cond))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pred", PREDS)
@pytest.mark.parametrize("name,steps,eta", [("ddpm", 50, 0.0), ("ddim", 10, 0.0), ("ddim", 10, 1.0),
                                            ("dpmpp_2m", 5, 0.0), ("dpmpp_2m", 20, 0.0)])
def test_plan_loop_equals_oracle(model, cond, kind, pred, name, steps, eta):
    """The runtime's plan (one coefficient vector per step, numpy loop) equals the float64 step-by-step oracle."""
    sched = Schedule.make(kind, T)
    spec = SamplerSpec(name=name, steps=steps, eta=eta, spacing="leading" if name == "ddpm" else "trailing")
    noise = draw_noise(np.random.default_rng(11), steps, SHAPE)
    ts = timesteps_for(T, steps, spec.spacing)
    ref = oracle_sample(model, sched, noise[0], cond, ts, noise[1:], name, pred, eta)
    _close(sample(model, sched, cond, SHAPE, spec, pred, noise=noise), ref)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpmpp_2m"])
def test_plan_loop_clips_x0_like_the_oracle(model, cond, name):
    """Pixel-space models clip the x0 estimate; the plan's loop clips at the same place as the oracle."""
    sched, steps = Schedule.make("linear", T), 8
    spec = SamplerSpec(name=name, steps=steps, eta=0.5 if name == "ddim" else 0.0)
    noise = draw_noise(np.random.default_rng(12), steps, SHAPE)
    ts = timesteps_for(T, steps, spec.spacing)
    ref = oracle_sample(model, sched, noise[0], cond, ts, noise[1:], name, "epsilon", spec.eta, clip=0.5)
    _close(sample(model, sched, cond, SHAPE, spec, "epsilon", noise=noise, clip=0.5), ref)
    unclipped = oracle_sample(model, sched, noise[0], cond, ts, noise[1:], name, "epsilon", spec.eta)
    assert np.abs(ref - unclipped).max() > 1e-3  # the clip really acted


@pytest.mark.parametrize("kind", KINDS)
def test_schedules_match_diffusers(kind):
    ours = Schedule.make(kind, 200).alphas_cumprod
    ref = diffusers.DDPMScheduler(num_train_timesteps=200, beta_schedule=DIFFUSERS_KIND[kind]).alphas_cumprod.numpy()
    np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=1e-7)  # diffusers is float32
    assert np.all(np.diff(ours) < 0) and 0 < ours[-1] < ours[0] < 1


def test_prediction_conversions_round_trip():
    rng = np.random.default_rng(3)
    x0, eps = rng.standard_normal((2, 5))
    abar = 0.37
    xt = np.sqrt(abar) * x0 + np.sqrt(1 - abar) * eps
    v = to_v(x0, eps, abar)
    for kind, out in (("epsilon", eps), ("v_prediction", v), ("sample", x0)):
        np.testing.assert_allclose(to_x0(out, xt, abar, kind), x0, atol=1e-12)
        np.testing.assert_allclose(to_eps(out, xt, abar, kind), eps, atol=1e-12)
    with pytest.raises(ValueError, match="prediction"):
        to_x0(eps, xt, abar, "score")


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpmpp_2m"])
def test_sample_is_seeded_and_deterministic(model, cond, name):
    sched = Schedule.make("linear", T)
    spec = SamplerSpec(name=name, steps=5, eta=0.5 if name == "ddim" else 0.0)
    a = sample(model, sched, cond, SHAPE, spec, "v_prediction", rng=np.random.default_rng(7))
    b = sample(model, sched, cond, SHAPE, spec, "v_prediction", rng=np.random.default_rng(7))
    c = sample(model, sched, cond, SHAPE, spec, "v_prediction", rng=np.random.default_rng(8))
    assert a.dtype == np.float32 and a.shape == SHAPE
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_noised_estimate_start_is_sdedit(cond):
    """init=noised_estimate: the chain starts at t_start from q(x_t | x_init), never calls the model above t_start."""
    sched = Schedule.make("cosine", T)
    seen: list[tuple[float, np.ndarray]] = []

    def rec(x, t, c):
        seen.append((float(t[0]), x.copy()))
        return np.zeros_like(x)  # x0-prediction of 0 -> deterministic DDIM result is exactly 0

    x_init = np.random.default_rng(4).standard_normal(SHAPE).astype(np.float32)
    noise = draw_noise(np.random.default_rng(5), 4, SHAPE)
    spec = SamplerSpec(name="ddim", steps=4, init="noised_estimate", t_start=19)
    out = sample(rec, sched, cond, SHAPE, spec, "sample", noise=noise, x_init=x_init)
    assert [t for t, _ in seen] == [19.0, 14.0, 9.0, 4.0]
    np.testing.assert_allclose(seen[0][1], sched.q_sample(x_init.astype(np.float64), noise[0], 19), atol=1e-6)
    np.testing.assert_array_equal(out, 0.0)
    with pytest.raises(ValueError, match="x_init"):
        sample(rec, sched, cond, SHAPE, spec, "sample", noise=noise)


def test_timesteps_spacings():
    assert timesteps_for(200, 4, "trailing").tolist() == [199, 149, 99, 49]
    assert timesteps_for(200, 4, "leading").tolist() == [150, 100, 50, 0]
    assert timesteps_for(200, 200, "leading").tolist() == list(range(199, -1, -1))
    assert timesteps_for(200, 2, "trailing", t_max=99).tolist() == [99, 49]
    with pytest.raises(ValueError, match="steps"):
        timesteps_for(10, 11)
