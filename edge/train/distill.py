"""Distillation: a lighter HR decoder and a lighter condition encoder from the full ones, and the CLI.

Teachers are plain callables; the commands take them from the runtime's SuperResolver over the teacher bundle
(its runner's graphs and its condition), so a student learns from exactly what the box runs. Students are torch
modules. The 1-4 step denoiser students live in edge.train.distill_student (re-exported here).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.train.distill_io import (
    DistillLog,
    echo_report,
    export_onnx,
    hr_tiles,
    load_onnx_weights,
    ort_session,
    psnr_unit,
    session_fn,
    teacher_resolver,
    time_call,
    to_unit,
)
from edge.train.distill_student import (  # noqa: F401 (re-exported)
    _own_state,
    distill_student,
    distill_student_cmd,
    load_torch_denoiser,
    make_student_data,
    run_student,
    student_timesteps,
    teacher_trajectory,
)

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
    """`net(z) + bicubic_up(z[:, :1] / latent_scale)`.

    It starts as the bicubic of the low-pass channel (zero conv_out)."""
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
            low = F.interpolate(z[:, :1] / self.latent_scale, scale_factor=self.scale, mode="bicubic",
                                align_corners=False)
            return self.net(z) + low

    return SkipDecoder()




def distill_decoder(teacher: Callable[[Array], Array], latents: Array, student=None, steps: int = 500, batch: int = 16,
                    lr: float = 1e-3, jitter: float = 0.1, seed: int = 0, time_budget_s: float | None = None,
                    progress: bool = False, spectrum_weight: float = 0.0):
    """Train `student` so student(z) ~= teacher(z).

    The teacher decodes every latent (and a jittered copy) once, up front.

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

    log = fit_to_teacher(student, z, targets, loss_fn, steps, batch, lr, rng, time_budget_s, progress,
                         "distill decoder")
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


def distill_encoder_cmd(model, out, minutes: float, width: int, blocks: int, tiles: int, seed: int,
                        init_from: Path | None = None) -> dict:
    """Distil a light condition encoder from a bundle's lr_encoder (MSE); writes lr_encoder_light.onnx + report.

    init_from: an earlier light encoder's ONNX (same width and blocks) to start from."""
    import json

    import torch

    from edge.bench_measure import count_flops

    res = teacher_resolver(model)
    # the encoder graph alone: condition() adds a grain-conditioned bundle's offset on top of whichever encoder runs
    b, sess, teacher = res.bundle, res.runner.sessions["lr_encoder"], res.runner.encode_lr
    lr, _ = hr_tiles(tiles, b.lr_patch * b.scale, b.scale, seed=3000 + seed)
    x = to_unit(lr)
    c = np.concatenate([teacher(x[i:i + 64]) for i in range(0, len(x), 64)])
    hold = max(16, len(x) // 10)
    torch.manual_seed(seed)
    student = light_encoder(c.shape[1], width, blocks)
    if init_from is not None:
        load_onnx_weights(student, Path(init_from), (torch.from_numpy(x[:1]),))
    start_rmse = float(np.sqrt(np.mean((_torch_call(student, x[:hold]) - c[:hold]) ** 2)))
    steps = 20000  # the cosine schedule's length; the time budget usually ends training first
    lr = 2e-3 if init_from is None else 5e-4  # a warm start keeps what it has: a gentler step
    log = fit_to_teacher(student, x[hold:], c[hold:], torch.nn.functional.mse_loss, steps, 64, lr,
                         np.random.default_rng(seed), 60 * minutes, True, "distill encoder")
    losses = log.losses
    student.eval()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "lr_encoder_light.onnx"
    export_onnx(student, (torch.from_numpy(x[:1]),), [sess.get_inputs()[0].name], [sess.get_outputs()[0].name], path)
    light_fn = session_fn(ort_session(path))
    pred, ref = light_fn(x[:hold]), c[:hold]
    report = {
        "file": path.name, "width": width, "blocks": blocks, "params": sum(p.numel() for p in student.parameters()),
        "flops": count_flops(student, torch.from_numpy(x[:1])),
        "teacher": {"bundle": str(model), "model_id": b.model_id},
        "tiles": int(len(x) - hold), "held_out_tiles": int(hold), "train_steps": len(losses),
        "train_s": round(log.seconds, 1), "final_loss": float(np.mean(losses[-20:])),
        "cond_rmse_vs_teacher": float(np.sqrt(np.mean((pred - ref) ** 2))),
        "cond_rms_teacher": float(np.sqrt(np.mean(ref**2))), "init_from": None if init_from is None else str(init_from),
        "cond_rmse_vs_teacher_at_start": start_rmse,
        "ms_per_tile_teacher": 1e3 * time_call(teacher, x[:1]),
        "ms_per_tile_light_ort": 1e3 * time_call(light_fn, x[:1]),
    }
    (out / "encoder_report.json").write_text(json.dumps(report, indent=2))
    return report


def _torch_call(module, x: Array) -> Array:
    """module(x) as numpy, without gradients, in chunks of 256."""
    import torch

    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(x[i:i + 256])).numpy() for i in range(0, len(x), 256)])


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
    res = teacher_resolver(model)
    b = res.bundle
    dec = b.decoder_for("sample")  # the light decoder stands in for the one that decodes single samples
    return (res.runner.encode_hr, lambda z: res.runner.decode(z, dec), b.lr_patch * b.scale,
            b.scale, {"bundle": str(model), "model_id": b.model_id, "decoder": dec,
                      "skip_scale": b.manifest.latent_scale_factor if b.manifest.hr_lowpass_skip else None})


def distill_decoder_cmd(model, out, minutes: float, width: int, tiles: int, seed: int, ae: Path | None = None,
                        spectrum_weight: float = 0.0) -> dict:
    """Distil a light HR decoder from a bundle or an AE checkpoint.

    Writes hr_decoder_light.onnx and decoder_report.json."""
    import json

    import torch

    enc_fn, dec_fn, hr_patch, scale, source = _hr_teacher(model, ae)
    _, hr = hr_tiles(tiles, hr_patch, scale, seed=1000 + seed)
    z = np.concatenate([enc_fn(to_unit(hr[i:i + 32])) for i in range(0, len(hr), 32)])
    hold = max(8, len(z) // 10)
    z_train, z_test, hr_test = z[hold:], z[:hold], to_unit(hr[:hold])
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
    export_onnx(Clamped(student), (torch.from_numpy(z_test[:1]),), ["latent"], ["hr"], onnx_path)
    light_fn = session_fn(ort_session(onnx_path))
    full, light = dec_fn(z_test), light_fn(z_test)
    one = z_test[:1]
    from edge.bench_measure import count_flops

    report = {
        "file": onnx_path.name, "width": width, "params": sum(p.numel() for p in student.parameters()),
        "lowpass_skip": source["skip_scale"] is not None, "spectrum_weight": spectrum_weight,
        "flops": count_flops(student, torch.from_numpy(one)), "teacher": source, "tile_hr": hr_patch,
        "train_steps": len(log.losses), "train_s": round(log.seconds, 1), "tiles": int(len(z_train)),
        "psnr_light_vs_full_db": psnr_unit(light, full),
        "psnr_full_vs_gt_db": psnr_unit(full, hr_test), "psnr_light_vs_gt_db": psnr_unit(light, hr_test),
        "ms_per_tile_teacher": 1e3 * time_call(dec_fn, one), "ms_per_tile_light_ort": 1e3 * time_call(light_fn, one),
        "final_loss": float(np.mean(log.losses[-20:])),
    }
    (out / "decoder_report.json").write_text(json.dumps(report, indent=2))
    return report


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
        echo_report(distill_decoder_cmd, model, out, minutes, width, tiles, seed, ae, spectrum_weight)

    @app.command("encoder")
    def encoder(model: Path = typer.Option(Path("models/default"), help="Teacher model bundle."),
                out: Path = typer.Option(Path("runs/distill"), help="Output folder."),
                minutes: float = typer.Option(10.0, help="Training time budget."),
                width: int = typer.Option(32, help="Channels of the light encoder."),
                blocks: int = typer.Option(3, help="Residual blocks of the light encoder."),
                tiles: int = typer.Option(4096, help="Training tiles (a tenth held out for the report)."),
                seed: int = typer.Option(0),
                init_from: Path | None = typer.Option(None, help="Start from this light encoder ONNX (same width and "
                                                                 "blocks), e.g. the previous bundle's.")) -> None:
        """Light LR-resolution condition encoder distilled from the bundle's lr_encoder; reports RMSE and time."""
        echo_report(distill_encoder_cmd, model, out, minutes, width, blocks, tiles, seed, init_from)

    @app.command("student")
    def student(model: Path = typer.Option(Path("models/default"), help="Teacher model bundle."),
                out: Path = typer.Option(Path("runs/distill"), help="Output folder."),
                minutes: float = typer.Option(12.0, help="Time budget (teacher ODE data + training)."),
                steps: int = typer.Option(2, min=1, max=4, help="Student sampler steps (1-4)."),
                tiles: int = typer.Option(512, help="(noise, condition) pairs."),
                teacher_steps: int = typer.Option(50, help="DDIM steps of the teacher ODE."),
                seed: int = typer.Option(0),
                rollout: float = typer.Option(0.0, min=0.0, max=1.0, help="Fraction of later-step batches trained on "
                                              "the student's own rollout state (what it sees at inference)."),
                init_from: Path | None = typer.Option(None, help="Start from this student ONNX (same U-Net) instead of "
                                                                 "the teacher's weights, e.g. the previous bundle's "
                                                                 "when the teacher was fine-tuned from its teacher."),
                texture_weight: float = typer.Option(0.0, min=0.0, help="Weight of the grain-texture term: the "
                                                     "decoded student sample's high-pass kurtosis, oriented "
                                                     "statistics and spectrum against the ground truth."),
                holdout_photo: list[str] = typer.Option([], help="Photograph name the tiles must not come from "
                                                        "(repeat; the models' held-out photographs)."),
                sim: list[Path] = typer.Option([], help="Training sim build folder (repeat) some tiles come from, "
                                               "with its registered webcam LR."),
                sim_share: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of the tiles from --sim builds.")
                ) -> None:
        """SinSR-style deterministic few-step student regressing the teacher's DDIM ODE map."""
        echo_report(distill_student_cmd, model, out, minutes, steps, tiles, teacher_steps, seed, rollout, init_from,
                    texture_weight, tuple(holdout_photo), tuple(sim), sim_share)

    @app.command("add")
    def add(model: Path = typer.Option(..., help="Bundle to add the distilled parts to (re-hashed in place)."),
            source: Path = typer.Option(..., "--from", help="Folder written by `distill decoder|encoder|student`."),
            command: str = typer.Option("", help="How the parts were made (stored in the manifest).")) -> None:
        """Copy distilled students / light decoder / light encoder into a bundle's manifest `distilled`.

        The manifest's fast path is set too."""
        from edge.sr.bundle import BundleError
        from edge.train.bundle import add_distilled

        try:
            keys = add_distilled(model, source, command)
        except BundleError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        typer.echo(f"added {', '.join(keys)} to {model}")

    train_app.add_typer(app, name="distill")
