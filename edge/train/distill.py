"""Distillation: a lighter HR decoder from the full one, and a 1-4 step deterministic student (SinSR-style).

Teachers are given as plain callables (ONNX Runtime sessions of the bundle's graphs work), students are
torch modules. The student regresses the teacher's deterministic DDIM ODE map noise -> x0 with the noise
fixed per example (Wang et al. 2024, SinSR, eq. 7, without the inverse-consistency term).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.sr.fused import StepPlan, apply_step, plan_steps

Array = np.ndarray


# ---------------------------------------------------------------- (a) lighter decoder


def light_decoder(latent_channels: int = 4, out_channels: int = 1, scale: int = 4, width: int = 32,
                  skip_scale: float | None = None):
    """A small KL-style decoder (diffusers Decoder, 1 res-block per level, no attention) upsampling by `scale`.

    skip_scale: the teacher's latent scale factor when its autoencoder has the low-pass skip (latent channel 0 =
    box-downsampled image): the light decoder then gets the same parameter-free skip and learns only the residual.
    """
    from diffusers.models.autoencoders.vae import Decoder

    levels = int(round(np.log2(scale))) + 1
    if 2 ** (levels - 1) != scale:
        raise ValueError(f"decoder scale must be a power of two, got {scale}")
    chans = tuple(width * min(2**i, 2) for i in range(levels))
    dec = Decoder(in_channels=latent_channels, out_channels=out_channels, up_block_types=("UpDecoderBlock2D",) * levels,
                  block_out_channels=chans, layers_per_block=1, norm_num_groups=8, mid_block_add_attention=False)
    return dec if skip_scale is None else _skip_decoder(dec, scale, skip_scale)


def _skip_decoder(net, scale: int, latent_scale: float):
    """`net(z) + bicubic_up(z[:, :1] / latent_scale)`, starting as the bicubic of the low-pass channel (zero conv_out)."""
    import torch
    import torch.nn.functional as F

    class SkipDecoder(torch.nn.Module):
        """A light decoder with the teacher autoencoder's low-pass skip."""

        def __init__(self) -> None:
            super().__init__()
            self.net, self.scale, self.latent_scale = net, int(scale), float(latent_scale)
            torch.nn.init.zeros_(self.net.conv_out.weight)
            torch.nn.init.zeros_(self.net.conv_out.bias)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            low = F.interpolate(z[:, :1] / self.latent_scale, scale_factor=self.scale, mode="bicubic", align_corners=False)
            return self.net(z) + low

    return SkipDecoder()


@dataclass
class DistillLog:
    """Loss curve and wall time of one distillation run."""

    losses: list[float]
    seconds: float


def distill_decoder(teacher: Callable[[Array], Array], latents: Array, student=None, steps: int = 500, batch: int = 16,
                    lr: float = 1e-3, jitter: float = 0.1, seed: int = 0, time_budget_s: float | None = None,
                    progress: bool = False, spectrum_weight: float = 0.0):
    """Train `student` so student(z) ~= teacher(z); the teacher decodes every latent (and a jittered copy) once, up front.

    spectrum_weight > 0 adds the radial log-power spectrum term against the teacher (keeps a texture decoder's
    fine detail, which L1 + MSE alone would average away).
    """
    import torch

    from edge.train.losses import spectrum_loss

    if latents.ndim != 4:
        raise ValueError(f"latents must be [N, C, h, w], got shape {latents.shape}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    z = latents.astype(np.float32)
    z = np.concatenate([z, z + jitter * z.std() * rng.standard_normal(z.shape).astype(np.float32)])
    targets = np.concatenate([np.asarray(teacher(z[i:i + 64]), np.float32) for i in range(0, len(z), 64)])
    if student is None:
        student = light_decoder(z.shape[1], targets.shape[1], targets.shape[-1] // z.shape[-1])

    def loss_fn(pred, target):
        loss = torch.nn.functional.l1_loss(pred, target) + torch.nn.functional.mse_loss(pred, target)
        return loss + spectrum_weight * spectrum_loss(pred, target) if spectrum_weight > 0 else loss

    log = fit_to_teacher(student, z, targets, loss_fn, steps, batch, lr, rng, time_budget_s, progress, "distill decoder")
    return student.eval(), log


def fit_to_teacher(student, inputs: Array, targets: Array, loss_fn, steps: int, batch: int, lr: float,
                   rng: np.random.Generator, time_budget_s: float | None = None, progress: bool = False,
                   desc: str = "distill"):
    """Regress student(inputs) on precomputed teacher targets: AdamW, cosine schedule over `steps`, random batches,
    stopping early at the time budget. Returns the DistillLog (student left in train mode)."""
    import torch

    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses, t0 = [], time.perf_counter()
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=desc)
    student.train()
    for _ in it:
        idx = rng.integers(0, len(inputs), batch)
        loss = loss_fn(student(torch.from_numpy(inputs[idx])), torch.from_numpy(targets[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if time_budget_s and time.perf_counter() - t0 > time_budget_s:
            break
    return DistillLog(losses, time.perf_counter() - t0)


# ---------------------------------------------------------------- (a2) lighter condition encoder


def light_encoder(cond_channels: int = 4, width: int = 32, blocks: int = 3):
    """A small conv net at LR resolution: LR [B,1,h,w] -> condition latent [B,C,h,w] (residual 3x3 blocks, SiLU)."""
    import torch

    class Block(torch.nn.Module):
        """conv-SiLU-conv with a residual connection."""

        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv2d(width, width, 3, padding=1)
            self.b = torch.nn.Conv2d(width, width, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.b(torch.nn.functional.silu(self.a(x)))

    return torch.nn.Sequential(torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.SiLU(),
                               *[Block() for _ in range(blocks)], torch.nn.SiLU(),
                               torch.nn.Conv2d(width, cond_channels, 3, padding=1))


def distill_encoder_cmd(model, out, minutes: float, width: int, blocks: int, tiles: int, seed: int) -> dict:
    """Distil a light condition encoder from a bundle's lr_encoder (MSE); writes lr_encoder_light.onnx + report."""
    import json

    import torch

    from edge.bench_cli import count_flops
    from edge.sr.bundle import load_bundle

    b = load_bundle(model)
    sess = _ort(b.graph("lr_encoder"))
    teacher = _session_fn(sess)
    lr, _ = _hr_tiles(tiles, b.lr_patch * b.scale, b.scale, seed=3000 + seed)
    x = _to_unit(lr)
    c = np.concatenate([teacher(x[i:i + 64]) for i in range(0, len(x), 64)])
    hold = max(16, len(x) // 10)
    torch.manual_seed(seed)
    student = light_encoder(c.shape[1], width, blocks)
    steps = 20000  # the cosine schedule's length; the time budget usually ends training first
    log = fit_to_teacher(student, x[hold:], c[hold:], torch.nn.functional.mse_loss, steps, 64, 2e-3,
                         np.random.default_rng(seed), 60 * minutes, True, "distill encoder")
    losses = log.losses
    student.eval()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "lr_encoder_light.onnx"
    _export(student, (torch.from_numpy(x[:1]),), [sess.get_inputs()[0].name], [sess.get_outputs()[0].name], path)
    light_fn = _session_fn(_ort(path))
    pred, ref = light_fn(x[:hold]), c[:hold]
    report = {
        "file": path.name, "width": width, "blocks": blocks, "params": sum(p.numel() for p in student.parameters()),
        "flops": count_flops(student, torch.from_numpy(x[:1])), "teacher": {"bundle": str(model), "model_id": b.model_id},
        "tiles": int(len(x) - hold), "held_out_tiles": int(hold), "train_steps": len(losses),
        "train_s": round(log.seconds, 1), "final_loss": float(np.mean(losses[-20:])),
        "cond_rmse_vs_teacher": float(np.sqrt(np.mean((pred - ref) ** 2))),
        "cond_rms_teacher": float(np.sqrt(np.mean(ref**2))),
        "ms_per_tile_teacher": 1e3 * _time_call(teacher, x[:1]), "ms_per_tile_light_ort": 1e3 * _time_call(light_fn, x[:1]),
    }
    (out / "encoder_report.json").write_text(json.dumps(report, indent=2))
    return report


# ---------------------------------------------------------------- (b) few-step student


def teacher_trajectory(denoise: Callable[[Array, Array, Array], Array], plan: StepPlan, x_T: Array, cond: Array,
                       keep: set[int]) -> tuple[Array, dict[int, Array]]:
    """Run the teacher's deterministic plan from x_T; returns (x0, {timestep: x_t}) for the timesteps in `keep`."""
    if plan.stochastic:
        raise ValueError("the teacher ODE must be deterministic (ddim eta=0 or dpmpp_2m)")
    x, x0p, zero, states = x_T, np.zeros_like(x_T), np.zeros_like(x_T), {}
    for i, t in enumerate(plan.timesteps):
        if int(t) in keep:
            states[int(t)] = x.copy()
        m = denoise(x, np.full(len(x), t, np.float32), cond)
        x, x0p = apply_step(plan.coefs[i], x, m, x0p, zero)
    return x, states


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


def distill_student(student, data: dict, alphas_cumprod: Array, prediction_type: str, steps: int = 500, batch: int = 16,
                    lr: float = 2e-5, seed: int = 0, time_budget_s: float | None = None, progress: bool = False,
                    rollout: float = 0.0):
    """Train `student` (x, t, cond) -> out so that its x0 estimate at each student timestep equals the teacher's x0.

    rollout: fraction of the later-step batches whose input state is the student's own (no-grad) DDIM rollout
    from the fixed noise instead of the teacher's state: the state it will really see at inference.
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
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses.append(float(loss))
        if time_budget_s and time.perf_counter() - t0 > time_budget_s:
            break
    return student.eval(), DistillLog(losses, time.perf_counter() - t0)


def _own_state(student, x_T, cond, timesteps: Array, coefs: Array, j: int):
    """The student's own deterministic DDIM state at its j-th timestep, rolled out from x_T without gradients."""
    import torch

    x, x0_prev = x_T, torch.zeros_like(x_T)
    with torch.no_grad():
        for k in range(j):
            p0, p1, A, B, C, D = (float(c) for c in coefs[k])
            x0 = p0 * x + p1 * student(x, torch.full((x.shape[0],), float(timesteps[k])), cond)
            x, x0_prev = A * x + B * x0 + C * x0_prev, x0  # eta = 0: no fresh noise (D unused)
    return x


def run_student(denoise, alphas_cumprod: Array, timesteps: Array, prediction_type: str, x_T: Array, cond: Array) -> Array:
    """Deterministic k-step DDIM with the student from fixed noise x_T (the inference path of the student)."""
    x0, _ = teacher_trajectory(denoise, plan_steps(alphas_cumprod, timesteps, "ddim", prediction_type), x_T, cond, set())
    return x0


# ---------------------------------------------------------------- bundle wiring and CLI


def _ort(path):
    """ONNX Runtime CPU session with one intra-op thread per core (OMP_NUM_THREADS when set: a shared machine)."""
    import os

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, (os.cpu_count() or 2))
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _session_fn(sess):
    """numpy callable over a session with positional inputs."""
    names = [i.name for i in sess.get_inputs()]
    out = sess.get_outputs()[0].name
    return lambda *arrays: sess.run([out], dict(zip(names, arrays)))[0]


def _hr_tiles(n: int, hr_patch: int, scale: int, seed: int) -> tuple[Array, Array]:
    """(LR, HR) uint8 training tiles from the bench's data source (real photographs, else sim layers)."""
    from edge.bench_cli import bench_pairs

    return bench_pairs(n, hr_patch, scale, seed=seed)


def _to_unit(img: Array) -> Array:
    """uint8 [N,h,w] -> float32 [N,1,h,w] in [-1, 1] (the bundle graphs' image convention)."""
    return (img.astype(np.float32) / 127.5 - 1.0)[:, None]


def _psnr_unit(a: Array, b: Array) -> float:
    """PSNR in dB of two [-1,1] image batches on the 8-bit scale."""
    mse = float(np.mean(((a - b) * 127.5) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _time_call(fn, *args, reps: int = 5) -> float:
    """Median seconds of fn(*args) after one warm-up call."""
    fn(*args)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _export(module, args: tuple, names_in: list[str], names_out: list[str], path) -> None:
    """ONNX export (opset 18, TorchScript exporter) with the given I/O names and a dynamic batch axis."""
    import warnings

    import torch

    axes = {n: {0: "batch"} for n in [*names_in, *names_out]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=names_in, output_names=names_out,
                          opset_version=18, dynamo=False, dynamic_axes=axes)


def _hr_teacher(model, ae: Path | None):
    """(encode, decode, hr_patch, scale, source) of the HR autoencoder: a bundle's ONNX graphs or an AE checkpoint."""
    if ae is not None:
        import torch

        from edge.models import ImageAutoencoder, ScaledDecoder, ScaledEncoder

        ck = torch.load(ae, map_location="cpu", weights_only=False)
        hr = ImageAutoencoder(ck["arch"]["hr_ae"])
        hr.load_state_dict(ck["hr"])
        sf = float(ck["scales"]["latent_scale_factor"])
        enc, dec = ScaledEncoder(hr, sf).eval(), ScaledDecoder(hr, sf).eval()

        def fn(m):
            def call(x):
                with torch.no_grad():
                    return m(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()
            return call

        down = 2 ** (len(ck["arch"]["hr_ae"]["block_out_channels"]) - 1)
        skip = sf if ck["arch"]["hr_ae"].get("lowpass_skip") else None
        return fn(enc), fn(dec), 16 * down, down, {"ae_checkpoint": str(ae), "step": ck.get("step"), "skip_scale": skip}
    from edge.sr.bundle import load_bundle

    b = load_bundle(model)
    dec = b.decoder_for("sample")  # the light decoder stands in for the one that decodes single samples
    return (_session_fn(_ort(b.graph("hr_encoder"))), _session_fn(_ort(b.graph(dec))), b.lr_patch * b.scale,
            b.scale, {"bundle": str(model), "model_id": b.model_id, "decoder": dec,
                      "skip_scale": float(b.manifest["latent_scale_factor"])
                      if b.manifest.get("arch", {}).get("hr_ae", {}).get("lowpass_skip") else None})


def distill_decoder_cmd(model, out, minutes: float, width: int, tiles: int, seed: int, ae: Path | None = None,
                        spectrum_weight: float = 0.0) -> dict:
    """Distil a light HR decoder (from a bundle or an AE checkpoint); writes hr_decoder_light.onnx + decoder_report.json."""
    import json

    import torch

    enc_fn, dec_fn, hr_patch, scale, source = _hr_teacher(model, ae)
    _, hr = _hr_tiles(tiles, hr_patch, scale, seed=1000 + seed)
    z = np.concatenate([enc_fn(_to_unit(hr[i:i + 32])) for i in range(0, len(hr), 32)])
    hold = max(8, len(z) // 10)
    z_train, z_test, hr_test = z[hold:], z[:hold], _to_unit(hr[:hold])
    student = light_decoder(z.shape[1], 1, scale, width, skip_scale=source["skip_scale"])
    est_steps = 4000  # the cosine schedule's length; the time budget usually ends training first
    student, log = distill_decoder(dec_fn, z_train, student, steps=est_steps, time_budget_s=60 * minutes, progress=True,
                                   seed=seed, spectrum_weight=spectrum_weight)

    class Clamped(torch.nn.Module):
        """The student with the teacher's output clamp to [-1, 1]."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, z):
            return self.net(z).clamp(-1.0, 1.0)

    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "hr_decoder_light.onnx"
    _export(Clamped(student), (torch.from_numpy(z_test[:1]),), ["latent"], ["hr"], onnx_path)
    light_fn = _session_fn(_ort(onnx_path))
    full, light = dec_fn(z_test), light_fn(z_test)
    one = z_test[:1]
    from edge.bench_cli import count_flops

    report = {
        "file": onnx_path.name, "width": width, "params": sum(p.numel() for p in student.parameters()),
        "lowpass_skip": source["skip_scale"] is not None, "spectrum_weight": spectrum_weight,
        "flops": count_flops(student, torch.from_numpy(one)), "teacher": source, "tile_hr": hr_patch,
        "train_steps": len(log.losses), "train_s": round(log.seconds, 1), "tiles": int(len(z_train)),
        "psnr_light_vs_full_db": _psnr_unit(light, full),
        "psnr_full_vs_gt_db": _psnr_unit(full, hr_test), "psnr_light_vs_gt_db": _psnr_unit(light, hr_test),
        "ms_per_tile_teacher": 1e3 * _time_call(dec_fn, one), "ms_per_tile_light_ort": 1e3 * _time_call(light_fn, one),
        "final_loss": float(np.mean(log.losses[-20:])),
    }
    (out / "decoder_report.json").write_text(json.dumps(report, indent=2))
    return report


def load_torch_denoiser(model):
    """The bundle's denoiser as a torch module (rebuilt by SR-runtime's torch runner), to initialise the student."""
    from edge.sr.bundle import load_bundle
    from edge.sr.runners import TorchRunner

    return TorchRunner.from_bundle(load_bundle(model)).modules["denoiser"]


def _grain_offsets(bundle, lr: Array) -> Array | float:
    """Condition offsets [N,C,1,1] of a grain-conditioned bundle for LR tiles [N,h,w] (each tile's own descriptor,
    a wider spread than whole images give, so the student sees the offsets' whole range); 0 for other bundles."""
    from edge.sr.resolver import _grain_condition

    gc = _grain_condition(bundle)
    if gc is None:
        return 0.0
    from edge.sr.grain import grain_descriptor

    return np.stack([gc.offset(grain_descriptor(t, gc.window)) for t in lr])[:, :, None, None]


def distill_student_cmd(model, out, minutes: float, student_steps: int, tiles: int, teacher_steps: int,
                        seed: int, rollout: float = 0.0) -> dict:
    """Distil a k-step deterministic student from a bundle's denoiser; writes denoiser_student{k}.onnx + report."""
    import json

    import torch

    from edge.sr.bundle import load_bundle
    from edge.sr.schedule import Schedule

    b = load_bundle(model)
    man = b.manifest
    sched = Schedule.from_manifest(man["schedule"])
    acp, pred = sched.alphas_cumprod, man["prediction"]
    den_sess, lr_enc = _ort(b.graph("denoiser")), _ort(b.graph("lr_encoder"))
    teacher = _session_fn(den_sess)
    lr, _ = _hr_tiles(tiles, b.lr_patch * b.scale, b.scale, seed=2000 + seed)
    conds = np.concatenate([_session_fn(lr_enc)(_to_unit(lr[i:i + 32])) for i in range(0, len(lr), 32)])
    conds = conds + _grain_offsets(b, lr)
    t0 = time.perf_counter()
    data = make_student_data(teacher, acp, conds, pred, student_steps, teacher_steps, seed=seed, progress=True)
    data_s = time.perf_counter() - t0
    student = load_torch_denoiser(model)
    budget = max(30.0, 60 * minutes - data_s)
    student, log = distill_student(student, data, acp, pred, steps=100000, time_budget_s=budget, progress=True, seed=seed,
                                   rollout=rollout)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"denoiser_student{student_steps}.onnx"
    shape = (1, *conds.shape[1:])
    names_in = [i.name for i in den_sess.get_inputs()]
    _export(student, (torch.zeros(shape), torch.zeros(1), torch.zeros(shape)), names_in,
            [den_sess.get_outputs()[0].name], path)
    sfn = _session_fn(_ort(path))
    hold = slice(0, min(64, len(conds)))
    x0_s = run_student(sfn, acp, data["timesteps"], pred, data["noise"][hold], conds[hold])
    x0_t = data["x0"][hold]
    report = {
        "file": path.name, "steps": student_steps, "timesteps": data["timesteps"].tolist(), "sampler": "ddim",
        "prediction": pred, "teacher": {"sampler": "ddim", "eta": 0.0, "steps": teacher_steps},
        "pairs": int(len(conds)), "rollout": rollout, "data_s": round(data_s, 1), "train_steps": len(log.losses),
        "train_s": round(log.seconds, 1), "latent_rmse_vs_teacher": float(np.sqrt(np.mean((x0_s - x0_t) ** 2))),
        "latent_rms_teacher": float(np.sqrt(np.mean(x0_t**2))), "final_loss": float(np.mean(log.losses[-20:])),
    }
    (out / f"student{student_steps}_report.json").write_text(json.dumps(report, indent=2))
    return report


def _echo_report(command, *args) -> None:
    """Run a distillation command and print its JSON report; a bad bundle is one error line and exit code 2."""
    import json

    import typer

    from edge.sr.bundle import BundleError

    try:
        typer.echo(json.dumps(command(*args), indent=2))
    except BundleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def register_distill(train_app) -> None:
    """Add `distill decoder|student` under the `train` command group."""
    import typer

    app = typer.Typer(help="Distil a light HR decoder or a 1-4 step student from a trained bundle.",
                      no_args_is_help=True)

    @app.command("decoder")
    def decoder(model: Path = typer.Option(Path("models/default"), help="Teacher model bundle."),
                out: Path = typer.Option(Path("runs/distill"), help="Output folder."),
                minutes: float = typer.Option(10.0, help="Training time budget."),
                width: int = typer.Option(16, help="Base channel width of the light decoder."),
                tiles: int = typer.Option(1024, help="Training tiles."), seed: int = typer.Option(0),
                ae: Path | None = typer.Option(None, help="Use this autoencoder checkpoint (ae.pt) as the teacher "
                                                          "instead of the bundle's ONNX graphs."),
                spectrum_weight: float = typer.Option(0.0, help="Weight of the radial log-power spectrum term "
                                                                "(keeps a texture decoder's fine detail).")) -> None:
        """Light HR decoder distilled from the full one; reports PSNR light-vs-full and time per tile."""
        _echo_report(distill_decoder_cmd, model, out, minutes, width, tiles, seed, ae, spectrum_weight)

    @app.command("encoder")
    def encoder(model: Path = typer.Option(Path("models/default"), help="Teacher model bundle."),
                out: Path = typer.Option(Path("runs/distill"), help="Output folder."),
                minutes: float = typer.Option(10.0, help="Training time budget."),
                width: int = typer.Option(32, help="Channels of the light encoder."),
                blocks: int = typer.Option(3, help="Residual blocks of the light encoder."),
                tiles: int = typer.Option(4096, help="Training tiles (a tenth held out for the report)."),
                seed: int = typer.Option(0)) -> None:
        """Light condition encoder at LR resolution distilled from the bundle's lr_encoder; reports its RMSE and time."""
        _echo_report(distill_encoder_cmd, model, out, minutes, width, blocks, tiles, seed)

    @app.command("student")
    def student(model: Path = typer.Option(Path("models/default"), help="Teacher model bundle."),
                out: Path = typer.Option(Path("runs/distill"), help="Output folder."),
                minutes: float = typer.Option(12.0, help="Time budget (teacher ODE data + training)."),
                steps: int = typer.Option(2, min=1, max=4, help="Student sampler steps (1-4)."),
                tiles: int = typer.Option(512, help="(noise, condition) pairs."),
                teacher_steps: int = typer.Option(50, help="DDIM steps of the teacher ODE."),
                seed: int = typer.Option(0),
                rollout: float = typer.Option(0.0, min=0.0, max=1.0, help="Fraction of later-step batches trained on "
                                              "the student's own rollout state (what it sees at inference).")) -> None:
        """SinSR-style deterministic few-step student regressing the teacher's DDIM ODE map."""
        _echo_report(distill_student_cmd, model, out, minutes, steps, tiles, teacher_steps, seed, rollout)

    @app.command("add")
    def add(model: Path = typer.Option(..., help="Bundle to add the distilled parts to (re-hashed in place)."),
            source: Path = typer.Option(..., "--from", help="Folder written by `distill decoder|encoder|student`."),
            command: str = typer.Option("", help="How the parts were made (stored in the manifest).")) -> None:
        """Copy distilled students / light decoder / light encoder into a bundle's manifest `distilled` (and its fast path)."""
        from edge.sr.bundle import BundleError
        from edge.train.bundle import add_distilled

        try:
            keys = add_distilled(model, source, command)
        except BundleError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        typer.echo(f"added {', '.join(keys)} to {model}")

    train_app.add_typer(app, name="distill")
