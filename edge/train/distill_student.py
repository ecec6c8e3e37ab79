"""Few-step deterministic students (SinSR-style): the teacher's DDIM ODE as data, the student regressing its map.

The student regresses the teacher's deterministic DDIM ODE map noise -> x0 with the noise fixed per example (Wang et
al. 2024, SinSR, eq. 7, without the inverse-consistency term). The teacher is the runtime's SuperResolver over the
teacher bundle; every step, the teacher's and the student's own rollout, is the coefficient plan of edge.sr.plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.sr.plan import StepPlan, apply_step, plan_steps, trajectory
from edge.train.distill_io import (
    DistillLog,
    export_onnx,
    hr_tiles,
    load_onnx_weights,
    ort_session,
    session_fn,
    teacher_resolver,
    to_unit,
)

Array = np.ndarray


def teacher_trajectory(denoise: Callable[[Array, Array, Array], Array], plan: StepPlan, x_T: Array, cond: Array,
                       keep: set[int]) -> tuple[Array, dict[int, Array]]:
    """Run the teacher's deterministic plan from x_T; returns (x0, {timestep: x_t}) for the timesteps in `keep`."""
    if plan.stochastic:
        raise ValueError("the teacher ODE must be deterministic (ddim eta=0 or dpmpp_2m)")
    x, states = trajectory(denoise, plan, x_T, cond, keep=keep)
    return x.astype(np.float32), states


def student_timesteps(T: int, steps: int) -> np.ndarray:
    """Student timesteps: `steps` evenly spaced from the noisiest index down (trailing spacing)."""
    if not 1 <= steps <= 4:
        raise ValueError(f"the student takes 1 to 4 steps, got {steps}")
    return np.round(np.arange(T, 0, -T / steps) - 1).astype(np.int64)


def make_student_data(denoise, alphas_cumprod: Array, conds: Array, prediction_type: str, student_steps: int,
                      teacher_steps: int = 50, seed: int = 0, batch: int = 16, progress: bool = False):
    """Fixed noise -> teacher ODE (DDIM, eta=0) pairs, with the teacher's states at the student's timesteps."""
    T = len(alphas_cumprod)
    ts_s = student_timesteps(T, student_steps)
    ts_t = np.unique(np.concatenate([np.round(np.linspace(T - 1, 0, teacher_steps)).astype(np.int64), ts_s]))[::-1]
    plan = plan_steps(alphas_cumprod, ts_t, "ddim", prediction_type)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(conds.shape).astype(np.float32)
    x0 = np.zeros_like(noise)
    states = np.zeros((len(ts_s), *conds.shape), np.float32)
    chunks = range(0, len(conds), batch)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="teacher ODE")
    for s in chunks:
        sl = slice(s, s + batch)
        out, st = teacher_trajectory(denoise, plan, noise[sl], conds[sl], set(ts_s.tolist()))
        x0[sl] = out
        for j, t in enumerate(ts_s):
            states[j, sl] = st[int(t)]
    return {"timesteps": ts_s, "states": states, "x0": x0, "cond": conds, "noise": noise}


@dataclass
class TextureTerm:
    """The grain-texture term of student distillation: decode the student's final x0 with the bundle's (frozen)
    sample decoder and match its texture statistics to the ground-truth HR tile of the same LR
    (edge.train.losses.grain_texture_loss). The teacher's ODE output lacks the sparkle and streaks the samples
    should carry (docs/sr_quality.md), so the truth, not the teacher, sets the texture."""

    decoder: Any  # torch module: scaled HR latent [B,C,h,w] -> image [B,1,H,W] in [-1, 1]
    hr: Any  # torch tensor [N,1,H,W] in [-1, 1], row i the ground truth of data["cond"][i]
    weight: float

    def loss(self, x0, idx):
        """Texture loss of decoded latents x0 against the truth of rows idx."""
        from edge.train.losses import grain_texture_loss

        return grain_texture_loss(self.decoder(x0), self.hr[idx])


def distill_student(student, data: dict, alphas_cumprod: Array, prediction_type: str, steps: int = 500, batch: int = 16,
                    lr: float = 2e-5, seed: int = 0, time_budget_s: float | None = None, progress: bool = False,
                    rollout: float = 0.0, texture: TextureTerm | None = None):
    """Train `student` (x, t, cond) -> out so that its x0 estimate at each student timestep equals the teacher's x0.

    rollout: fraction of the later-step batches whose input state is the student's own (no-grad) DDIM rollout
    from the fixed noise instead of the teacher's state: the state it will really see at inference.
    texture: add texture.weight x the texture term at the last student step (the x0 the box decodes).
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ts = data["timesteps"]
    coefs = plan_steps(alphas_cumprod, ts, "ddim", prediction_type).coefs
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    losses, t0 = [], time.perf_counter()
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"distill {len(ts)}-step student")
    student.train()
    n = len(data["x0"])
    for _ in it:
        idx = rng.integers(0, n, batch)
        j = int(rng.integers(0, len(ts)))
        x = torch.from_numpy(data["states"][j, idx])
        cond = torch.from_numpy(data["cond"][idx])
        if j > 0 and rollout > 0 and rng.random() < rollout:
            x = _own_state(student, torch.from_numpy(data["noise"][idx]), cond, ts, coefs, j)
        target = torch.from_numpy(data["x0"][idx])
        t = torch.full((batch,), float(ts[j]))
        p0, p1 = float(coefs[j, 0]), float(coefs[j, 1])
        x0 = p0 * x + p1 * student(x, t, cond)
        loss = torch.nn.functional.mse_loss(x0, target)
        if texture is not None and texture.weight > 0 and j == len(ts) - 1:
            loss = loss + texture.weight * texture.loss(x0, torch.from_numpy(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if time_budget_s and time.perf_counter() - t0 > time_budget_s:
            break
    return student.eval(), DistillLog(losses, time.perf_counter() - t0)


def _own_state(student, x_T, cond, timesteps: Array, coefs: Array, j: int):
    """The student's own deterministic DDIM state at its j-th timestep, rolled out from x_T without gradients."""
    import torch

    x, x0_prev = x_T, torch.zeros_like(x_T)
    with torch.no_grad():
        for k in range(j):
            m = student(x, torch.full((x.shape[0],), float(timesteps[k])), cond)
            x, x0_prev = apply_step(coefs[k], x, m, x0_prev)  # the plan's step; eta = 0: no fresh noise
    return x


def run_student(denoise, alphas_cumprod: Array, timesteps: Array, prediction_type: str, x_T: Array,
                cond: Array) -> Array:
    """Deterministic k-step DDIM with the student from fixed noise x_T (the inference path of the student)."""
    x0, _ = teacher_trajectory(denoise, plan_steps(alphas_cumprod, timesteps, "ddim", prediction_type), x_T, cond,
                               set())
    return x0


def _torch_fn(module):
    """numpy callable (x, t, cond) -> output over a torch module, without gradients."""
    import torch

    def call(*arrays):
        with torch.no_grad():
            return module(*(torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in arrays)).numpy()

    return call


def load_torch_denoiser(model):
    """The bundle's denoiser as a torch module (rebuilt by SR-runtime's torch runner), to initialise the student."""
    return _torch_modules(model)["denoiser"]


def _torch_modules(model) -> dict:
    """The bundle's graphs as torch modules (SR-runtime's torch runner)."""
    from edge.sr.bundle import load_bundle
    from edge.sr.runners import TorchRunner

    return TorchRunner.from_bundle(load_bundle(model)).modules


def texture_term(model, hr: Array, weight: float) -> TextureTerm:
    """The texture term over the bundle's sample decoder (its mean decoder if it has none), frozen."""
    import torch

    mods = _torch_modules(model)
    dec = mods.get("hr_decoder_sample", mods["hr_decoder"]).eval().requires_grad_(False)
    return TextureTerm(dec, torch.from_numpy(to_unit(hr)), float(weight))


def texture_report(term: TextureTerm, outputs: dict[str, Array], rows: slice) -> dict:
    """Per x0 set: the texture loss and the median |high-pass log kurtosis ratio| of its decoded tiles vs the truth."""
    import torch

    from edge.train.losses import grain_texture_loss, highpass_log_kurtosis

    out, hr = {}, term.hr[rows]
    with torch.no_grad():
        k_true = highpass_log_kurtosis(hr)
        for name, x0 in outputs.items():
            img = term.decoder(torch.from_numpy(np.ascontiguousarray(x0, np.float32)))  # decoded once per set
            out[name] = {"texture_loss": float(grain_texture_loss(img, hr)),
                         "kurt_log_ratio": float((highpass_log_kurtosis(img) - k_true).abs().median())}
    return out


def distill_student_cmd(model, out, minutes: float, student_steps: int, tiles: int, teacher_steps: int,
                        seed: int, rollout: float = 0.0, init_from: Path | None = None, texture_weight: float = 0.0,
                        exclude: tuple[str, ...] = (), sims: tuple[Path, ...] = (), sim_share: float = 0.0) -> dict:
    """Distil a k-step deterministic student from a bundle's denoiser; writes denoiser_student{k}.onnx + report.

    init_from: an earlier student's ONNX of the same architecture to start from instead of the teacher's weights
    (a teacher fine-tuned from that student's teacher: the student only has to follow the change).
    texture_weight: > 0 adds the grain-texture term against the ground truth (TextureTerm).
    exclude: photograph names the tiles must not come from (the SR models' held-out photographs).
    sims, sim_share: that share of the tiles from these (training) sim builds, LR their registered webcam view."""
    import json

    import torch

    res = teacher_resolver(model)
    b = res.bundle
    acp, pred = res.schedule.alphas_cumprod, b.prediction
    den_sess, teacher = res.runner.sessions["denoiser"], res.runner.denoise
    if texture_weight < 0:
        raise ValueError(f"texture weight must be >= 0, got {texture_weight}")
    lr, hr = hr_tiles(tiles, b.lr_patch * b.scale, b.scale, seed=2000 + seed, exclude=tuple(exclude),
                      sims=tuple(sims), sim_share=sim_share)
    conds = np.concatenate([res.condition(to_unit(lr[i:i + 32])) for i in range(0, len(lr), 32)])
    t0 = time.perf_counter()
    data = make_student_data(teacher, acp, conds, pred, student_steps, teacher_steps, seed=seed, progress=True)
    data_s = time.perf_counter() - t0
    student = load_torch_denoiser(model)
    if init_from is not None:
        one = torch.from_numpy(conds[:1])
        load_onnx_weights(student, Path(init_from), (one, torch.full((1,), float(data["timesteps"][0])), one))
    hold = slice(0, min(64, len(conds)))
    x0_start = run_student(_torch_fn(student), acp, data["timesteps"], pred, data["noise"][hold], conds[hold])
    budget = max(30.0, 60 * minutes - data_s)
    texture = texture_term(model, hr, texture_weight) if texture_weight > 0 else None
    student, log = distill_student(student, data, acp, pred, steps=100000, time_budget_s=budget, progress=True,
                                   seed=seed, rollout=rollout, texture=texture)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"denoiser_student{student_steps}.onnx"
    shape = (1, *conds.shape[1:])
    names_in = [i.name for i in den_sess.get_inputs()]
    export_onnx(student, (torch.zeros(shape), torch.zeros(1), torch.zeros(shape)), names_in,
            [den_sess.get_outputs()[0].name], path)
    sfn = session_fn(ort_session(path))
    x0_s = run_student(sfn, acp, data["timesteps"], pred, data["noise"][hold], conds[hold])
    x0_t = data["x0"][hold]
    report = {
        "file": path.name, "steps": student_steps, "timesteps": data["timesteps"].tolist(), "sampler": "ddim",
        "prediction": pred, "teacher": {"sampler": "ddim", "eta": 0.0, "steps": teacher_steps},
        "pairs": int(len(conds)), "rollout": rollout, "data_s": round(data_s, 1), "train_steps": len(log.losses),
        "train_s": round(log.seconds, 1), "latent_rmse_vs_teacher": float(np.sqrt(np.mean((x0_s - x0_t) ** 2))),
        "latent_rms_teacher": float(np.sqrt(np.mean(x0_t**2))), "final_loss": float(np.mean(log.losses[-20:])),
        "init_from": None if init_from is None else str(init_from),
        "latent_rmse_vs_teacher_at_start": float(np.sqrt(np.mean((x0_start - x0_t) ** 2))),
        "texture_weight": float(texture_weight), "excluded_photos": sorted(exclude),
        "sim_builds": [str(x) for x in sims], "sim_share": float(sim_share) if sims else 0.0,
    }
    if texture is not None:
        report["texture_vs_truth"] = texture_report(texture, {"teacher": x0_t, "student_at_start": x0_start,
                                                              "student": x0_s}, hold)
    (out / f"student{student_steps}_report.json").write_text(json.dumps(report, indent=2))
    return report
