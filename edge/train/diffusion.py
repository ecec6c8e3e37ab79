"""Train the conditional latent denoiser (or the regression baseline) on frozen autoencoders."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import torch

from edge.models import (
    CondDenoiser,
    GrainOffset,
    ImageAutoencoder,
    MixedCondDenoiser,
    RegressionNet,
    estimate_mix,
    preset,
)
from edge.sr.grain import DETAIL_SOURCE, GrainCap, detail_condition_hr, detail_names, grain_descriptor
from edge.train.autoencoder import datasets
from edge.train.common import (
    BatchStream,
    Logger,
    batch_metrics,
    bicubic_up,
    fixed_batch,
    fixed_descriptors,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_all,
    set_rng_state,
    setup_dist,
    wrap_ddp,
)
from edge.train.config import TrainConfig


def load_autoencoders(path: str | Path) -> tuple[ImageAutoencoder, ImageAutoencoder, dict]:
    """(hr_ae, lr_ae, scales) from an ae.pt written by `train autoencoder`, frozen in eval mode."""
    s = load_checkpoint(Path(path))
    if s.get("kind") != "autoencoder-ema" or not s.get("scales"):
        raise ValueError(f"{path}: not a finished autoencoder export (need kind 'autoencoder-ema' with scales)")
    hr, lr = ImageAutoencoder(s["arch"]["hr_ae"]), ImageAutoencoder(s["arch"]["lr_ae"])
    hr.load_state_dict(s["hr"])
    lr.load_state_dict(s["lr"])
    for m in (hr, lr):
        m.eval().requires_grad_(False)
    return hr, lr, s


def load_grain_cap(path: str | Path) -> GrainCap:
    """The grain cap of a `train grain-cap` JSON or of a bundle folder's manifest; a clear error otherwise."""
    import json

    p = Path(path)
    f = p / "manifest.json" if p.is_dir() else p
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--grain-cap {path}: cannot read {f} ({exc})") from exc
    if "grain_cap" not in d and "weights" not in d:
        raise ValueError(f"--grain-cap {path}: {f} holds no grain cap (no 'grain_cap' entry)")
    return GrainCap.from_json(d.get("grain_cap", d))


def describer(cfg: TrainConfig, cap: GrainCap | None, seed: int):
    """describe(whole LR patch, whole HR patch) -> the grain condition's input of one training item: the LR grain
    descriptor, or the detail level measured on the true HR plus N(0, grain_noise^2) (the cap's prediction error)."""
    if cap is None:
        return lambda lr, hr: grain_descriptor(lr)
    rng = np.random.default_rng(seed)

    def detail(lr: np.ndarray, hr: np.ndarray) -> np.ndarray:
        d = detail_condition_hr(cap, hr, cfg.scale)
        return d + rng.normal(0.0, cfg.grain_noise, d.shape).astype(np.float32)

    return detail


def make_scheduler(kind: str, timesteps: int, prediction: str, sampler: str = "ddpm"):
    """A diffusers scheduler with the bundle's schedule (cosine = squaredcos_cap_v2, linear 1e-4..0.02)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if kind not in ("cosine", "linear"):
        raise ValueError(f"unknown schedule {kind!r}; use cosine or linear")
    beta = "squaredcos_cap_v2" if kind == "cosine" else "linear"
    kw = dict(num_train_timesteps=timesteps, beta_schedule=beta, beta_start=1e-4, beta_end=0.02,
              prediction_type=prediction, clip_sample=False)
    if sampler == "ddim":
        return DDIMScheduler(**kw, timestep_spacing="trailing", set_alpha_to_one=True)
    return DDPMScheduler(**kw)


def diffusion_target(sched, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction: str) -> torch.Tensor:
    """Training target for the prediction type: eps, v = sqrt(abar) eps - sqrt(1-abar) x0, or x0."""
    if prediction == "epsilon":
        return noise
    if prediction == "v_prediction":
        return sched.get_velocity(z0, noise, t)
    if prediction == "sample":
        return z0
    raise ValueError(f"unknown prediction type {prediction!r}")


@torch.no_grad()
def ddim_sample(model: torch.nn.Module, cond: torch.Tensor, sched_kind: str, T: int, prediction: str, steps: int = 20,
                generator: torch.Generator | None = None, channels: int | None = None) -> torch.Tensor:
    """Latent sample by diffusers' DDIM (eta 0, trailing spacing) from pure noise; used for validation.

    channels: latent channels when the condition has more (an estimate-conditioned denoiser); default cond's.
    """
    sch = make_scheduler(sched_kind, T, prediction, "ddim")
    sch.set_timesteps(steps)
    x = torch.randn((cond.shape[0], channels or cond.shape[1], *cond.shape[2:]), generator=generator)
    for t in sch.timesteps:
        out = model(x, t.float().expand(x.shape[0]), cond)
        x = sch.step(out, t, x).prev_sample
    return x


class LatentPool:
    """Encoded (condition, latent[, grain descriptor]) tiles reused for many random latent crops; a fraction is
    re-drawn periodically. The frozen encoders cost more than the small U-Net, so each encoded tile feeds many steps.
    With `describe`, each tile also keeps the grain descriptor of its whole LR patch (one per tile, like one per image
    at inference)."""

    def __init__(self, encode, stream: BatchStream, tiles: int, chunk: int = 8, describe=None) -> None:
        """Fill `tiles` tiles from `stream` (whose lr_size is the tile side), encoding `chunk` at a time."""
        self.encode, self.stream, self.chunk, self.describe = encode, stream, chunk, describe
        self.rng = np.random.default_rng(stream.rng.integers(2**31))
        parts = [self._draw() for _ in range(max(1, tiles // chunk))]
        self.c = torch.cat([p[0] for p in parts])
        self.z = torch.cat([p[1] for p in parts])
        self.d = torch.cat([p[2] for p in parts]) if describe is not None else None

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Encode one chunk of fresh tiles."""
        self.stream.batch = self.chunk
        lr_img, hr_img, d = self.stream.next_described(self.describe)
        c, z = self.encode(lr_img, hr_img)
        return c, z, d

    def refresh(self) -> None:
        """Replace one chunk of randomly chosen tiles with fresh ones."""
        c, z, d = self._draw()
        idx = torch.from_numpy(self.rng.choice(len(self.c), size=len(c), replace=False))
        self.c[idx], self.z[idx] = c, z
        if self.d is not None:
            self.d[idx] = d

    def batch(self, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """n random size x size crops (condition, latent) from the pool, with their tiles' descriptors (or None)."""
        P = self.c.shape[-1]
        ids = self.rng.integers(0, len(self.c), n)
        ys, xs = self.rng.integers(0, P - size + 1, n), self.rng.integers(0, P - size + 1, n)
        cs = torch.stack([self.c[i, :, y:y + size, x:x + size] for i, y, x in zip(ids, ys, xs, strict=False)])
        zs = torch.stack([self.z[i, :, y:y + size, x:x + size] for i, y, x in zip(ids, ys, xs, strict=False)])
        return cs, zs, (None if self.d is None else self.d[torch.from_numpy(ids)])


class LatentTrainer:
    """State and one step of denoiser (mode 'diffusion') or regression (mode 'regression') training."""

    def __init__(self, cfg: TrainConfig, mode: str) -> None:
        """Load frozen autoencoders, build the U-Net, optimiser, EMA and noise schedule."""
        from diffusers.training_utils import EMAModel

        if mode not in ("diffusion", "regression"):
            raise ValueError(f"mode must be diffusion or regression, got {mode!r}")
        if cfg.ae is None:
            raise ValueError("latent training needs --ae (ae.pt from `train autoencoder`)")
        self.cfg, self.mode = cfg, mode
        self.hr_ae, self.lr_ae, ae = load_autoencoders(cfg.ae)
        self.ae_info = {"path": str(cfg.ae), "step": ae["step"], "cfg": ae["cfg"]}
        self.scales = dict(ae["scales"])
        arch = dict((cfg.arch or preset(cfg.preset))["unet"])
        arch["num_train_timesteps"] = cfg.timesteps
        self.arch = arch
        self.net = CondDenoiser(arch) if mode == "diffusion" else RegressionNet(arch)
        if cfg.init_from:
            self._init_from(Path(cfg.init_from))
        self.pixel, self.pixel_info, self.grain_cap = None, None, None
        if cfg.estimate:
            self._add_estimate(Path(cfg.estimate))
        if cfg.grain_cond:
            self._add_grain()
        self.opt = torch.optim.AdamW(self._param_groups(), lr=cfg.lr, weight_decay=1e-4)
        self.ema = EMAModel(self.net.parameters(), decay=cfg.ema_decay)
        self.sched = make_scheduler(cfg.schedule, cfg.timesteps, cfg.prediction)
        self.step_no, self.wall_s, self.best = 0, 0.0, float("inf")

    def _init_from(self, path: Path) -> None:
        """Start from the EMA weights of an earlier run's export (best.pt/final.pt) of the same mode and U-Net."""
        s = load_checkpoint(path)
        if s.get("kind") != f"{self.mode}-ema":
            raise ValueError(f"{path}: not a {self.mode} export (best.pt/final.pt of `train {self.mode}`)")
        if s["arch"] != self.arch:
            raise ValueError(f"{path}: U-Net arch {s['arch']} differs from this run's {self.arch}")
        self.net.load_state_dict(s["net"])
        self._init_mix = (s.get("cond_estimate") or {}).get("mix")
        self._init_grain = s.get("grain_state")

    def _add_estimate(self, path: Path) -> None:
        """Condition on the pixel regressor's estimate too: wrap the U-Net so cond = LR latent + mix(estimate latent).

        The mix starts at zero, so a run started --init-from an LR-only denoiser starts exactly where it was.
        """
        from edge.train.pixel import load_pixel_regressor

        if self.mode != "diffusion":
            raise ValueError("--estimate conditions the denoiser; the regression baseline takes the LR latent only")
        self.pixel, s = load_pixel_regressor(path)
        if int(s["arch"]["scale"]) != self.cfg.scale:
            raise ValueError(f"{path}: pixel regressor is x{s['arch']['scale']}, this run is x{self.cfg.scale}")
        self.pixel_info = {"path": str(path), "arch": s["arch"], "step": s["step"], "val": s.get("val")}
        C = int(self.arch["latent_channels"])
        mix = estimate_mix(C)
        if getattr(self, "_init_mix", None) is not None:  # continuing an estimate-conditioned export: keep its mix
            mix.load_state_dict(self._init_mix)
        self.net = MixedCondDenoiser(self.net, mix, C)

    def _add_grain(self) -> None:
        """Condition on the per-image grain descriptor too: a zero-initialised offset of the condition (so a run
        started --init-from an unconditioned denoiser starts exactly where it was); standardised by set_grain_stats."""
        from edge.sr.grain import descriptor_size

        if self.mode != "diffusion":
            raise ValueError("--grain-cond conditions the denoiser; the regression baseline takes the LR latent only")
        C = int(self.arch["latent_channels"])
        if self.cfg.grain_source == DETAIL_SOURCE:
            if not self.cfg.grain_cap:
                raise ValueError("--grain-source detail needs --grain-cap (a grain-cap JSON or a bundle with one)")
            self.grain_cap = load_grain_cap(self.cfg.grain_cap)
            grain = GrainOffset(self.grain_cap.bands, C, detail_names(self.grain_cap.bands), DETAIL_SOURCE,
                                self.grain_cap.window)
        elif self.cfg.grain_source == "lr":
            grain = GrainOffset(descriptor_size(), C)
        else:
            raise ValueError(f"--grain-source must be lr or {DETAIL_SOURCE}, got {self.cfg.grain_source!r}")
        self.grain_ready = getattr(self, "_init_grain", None) is not None
        if self.grain_ready:  # continuing a grain-conditioned export: keep its map and standardisation
            grain.load_state_dict(self._init_grain)
        if not isinstance(self.net, MixedCondDenoiser):
            self.net = MixedCondDenoiser(self.net, None, C)
        self.net.grain = grain

    def _param_groups(self) -> list[dict]:
        """The optimiser's groups: the grain offset (a new zero-initialised head on a trained U-Net) at
        grain_lr_mult x the learning rate, everything else at the learning rate."""
        grain = list(self.grain.parameters()) if self.grain is not None else []
        ids = {id(p) for p in grain}
        rest = [p for p in self.net.parameters() if id(p) not in ids]
        return [{"params": rest}] + ([{"params": grain, "lr": self.cfg.lr * self.cfg.grain_lr_mult}] if grain else [])

    @property
    def grain(self) -> GrainOffset | None:
        """The grain-offset module (None when not grain-conditioned)."""
        return getattr(self.net, "grain", None)

    def set_grain_stats(self, descriptors: torch.Tensor) -> None:
        """Standardise the descriptor with the statistics of the first pool (fresh grain-conditioned runs only)."""
        if self.grain is not None and not self.grain_ready:
            self.grain.set_stats(descriptors)
            self.grain_ready = True

    def encode(self, lr_img: torch.Tensor, hr_img: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scaled condition from LR (++ the estimate's scaled HR latent with --estimate) and scaled latent from HR."""
        with torch.no_grad():
            c = self.lr_ae.encode(lr_img) * self.scales["cond_scale_factor"]
            if self.pixel is not None:
                est = self.pixel(lr_img).clamp(-1, 1)
                c = torch.cat([c, self.hr_ae.encode(est) * self.scales["latent_scale_factor"]], dim=1)
            z = None if hr_img is None else self.hr_ae.encode(hr_img) * self.scales["latent_scale_factor"]
        return c, z

    def loss(self, net, c: torch.Tensor, z: torch.Tensor, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None, d: torch.Tensor | None = None) -> torch.Tensor:
        """MSE to the diffusion target at random (or given) t, or L1 to the latent for regression."""
        if self.mode == "regression":
            return (net(c) - z).abs().mean()
        if self.grain is not None:
            net = functools.partial(net, desc=d)
        if t is None:
            t = torch.randint(0, self.cfg.timesteps, (z.shape[0],))
        noise = torch.randn_like(z) if noise is None else noise
        xt = self.sched.add_noise(z, noise, t)
        target = diffusion_target(self.sched, z, noise, t, self.cfg.prediction)
        return (net(xt, t.float(), c) - target).pow(2).mean()

    def train_step(self, c: torch.Tensor, z: torch.Tensor, net=None, d: torch.Tensor | None = None) -> float:
        """One optimiser step on scaled (condition, latent[, grain descriptor]) pairs; returns the loss."""
        net = net or self.net
        self.net.train()
        loss = self.loss(net, c, z, d=d)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.ema.step(self.net.parameters())
        self.step_no += 1
        return loss.item()

    @torch.no_grad()
    def validate(self, lr_img: torch.Tensor, hr_img: torch.Tensor, sample_steps: int = 10,
                 d: torch.Tensor | None = None) -> dict:
        """EMA weights: loss on fixed (t, noise), and PSNR/SSIM of a decoded prediction (DDIM sample) vs bicubic."""
        self.ema.store(self.net.parameters())
        self.ema.copy_to(self.net.parameters())
        self.net.eval()
        c, z = self.encode(lr_img, hr_img)
        g = torch.Generator().manual_seed(1234)
        t = torch.linspace(0, self.cfg.timesteps - 1, z.shape[0]).long()
        val_loss = self.loss(self.net, c, z, t, torch.randn(z.shape, generator=g), d=d).item()
        if self.mode == "regression":
            zp = self.net(c)
        else:
            net = functools.partial(self.net, desc=d) if self.grain is not None else self.net
            zp = ddim_sample(net, c, self.cfg.schedule, self.cfg.timesteps, self.cfg.prediction, sample_steps, g,
                             int(self.arch["latent_channels"]))
        img = self.hr_ae.decode(zp / self.scales["latent_scale_factor"])
        self.ema.restore(self.net.parameters())
        m = batch_metrics(img, hr_img)
        b = batch_metrics(bicubic_up(lr_img, self.cfg.scale), hr_img)
        return {"val_loss": val_loss, "psnr": m["psnr"], "ssim": m["ssim"], "bicubic_psnr": b["psnr"],
                "bicubic_ssim": b["ssim"]}

    def _ema_net(self) -> torch.nn.Module:
        """A fresh copy of the trained network holding the EMA weights."""
        net = CondDenoiser(self.arch) if self.mode == "diffusion" else RegressionNet(self.arch)
        C = int(self.arch["latent_channels"])
        if self.pixel is not None or self.grain is not None:
            grain = None
            if self.grain is not None:
                g = self.grain
                grain = GrainOffset(g.lin.in_features, C, g.names, g.source, g.window)
                grain.load_state_dict(self.grain.state_dict())  # buffers (standardisation) are not in the EMA
            net = MixedCondDenoiser(net, estimate_mix(C) if self.pixel is not None else None, C, grain)  # type: ignore[arg-type]
        self.ema.copy_to(net.parameters())
        return net

    def ema_weights(self) -> dict:
        """EMA state dict of the U-Net."""
        net = self._ema_net()
        return (net.inner if isinstance(net, MixedCondDenoiser) else net).state_dict()

    def state(self) -> dict:
        """Everything needed to resume exactly."""
        return {"kind": self.mode, "cfg": self.cfg.to_json(), "arch": self.arch, "step": self.step_no,
                "wall_s": self.wall_s, "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "ema": self.ema.state_dict(), "rng": rng_state(), "best": self.best}

    def load(self, s: dict) -> None:
        """Restore from state()."""
        self.net.load_state_dict(s["net"])
        if len(s["opt"]["param_groups"]) == len(self.opt.param_groups):
            self.opt.load_state_dict(s["opt"])
        else:  # a run resumed with another grouping (grain_lr_mult): weights and EMA kept, Adam moments restart
            print(f"resume: optimiser groups changed ({len(s['opt']['param_groups'])} -> "
                  f"{len(self.opt.param_groups)}); Adam state restarts", flush=True)
        self.ema.load_state_dict(s["ema"])
        self.step_no, self.wall_s, self.best = int(s["step"]), float(s["wall_s"]), float(s["best"])
        set_rng_state(s["rng"])
        if self.grain is not None:
            self.grain_ready = True  # its standardisation came back with the state

    def export(self, val: dict) -> dict:
        """EMA weights + everything a bundle needs."""
        out = {"kind": f"{self.mode}-ema", "arch": self.arch, "net": self.ema_weights(), "scales": self.scales,
               "ae": self.ae_info, "cfg": self.cfg.to_json(), "step": self.step_no, "wall_s": self.wall_s,
               "val": val}
        if self.pixel is not None or self.grain is not None:
            net = self._ema_net()
        if self.pixel is not None:
            out["cond_estimate"] = {**self.pixel_info, "pixel": self.pixel.state_dict(),
                                    "mix": net.mix.state_dict()}  # type: ignore[union-attr]
        if self.grain is not None:
            out["grain_state"] = net.grain.state_dict()  # type: ignore[union-attr]
            out["grain_condition"] = net.grain.to_json()  # type: ignore[union-attr]
        if self.grain_cap is not None:  # the detail condition's predictor goes into the bundle with it
            out["grain_cap"] = self.grain_cap.to_json()
        return out


def train_latent(cfg: TrainConfig, mode: str, resume: bool = True, log_file: Path | None = None) -> Path:
    """Run (or resume) denoiser/regression training; writes out/last.pt, out/best.pt and out/final.pt."""
    dist = setup_dist()
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_all(cfg.seed + dist.rank)
    tr = LatentTrainer(cfg, mode)
    ckpt = out / "last.pt"
    if resume and ckpt.is_file():
        tr.load(load_checkpoint(ckpt))
    train_ds, val_ds = datasets(cfg)
    stream = BatchStream(train_ds, cfg.batch, cfg.pool_tile, cfg.seed * 1000 + dist.rank + tr.step_no,
                         photo_weight=cfg.photo_weight, sim_share=cfg.sim_share)
    describe = describer(cfg, tr.grain_cap, cfg.seed * 1000 + dist.rank + tr.step_no) if tr.grain is not None \
        else None
    pool = LatentPool(tr.encode, stream, cfg.pool_tiles, describe=describe)
    if pool.d is not None:
        tr.set_grain_stats(pool.d)
    val_lr, val_hr = fixed_batch(val_ds, 8, cfg.lr_size)
    val_d = fixed_descriptors(val_ds, 8, describer(cfg, tr.grain_cap, 1234)) if describe is not None else None
    net = wrap_ddp(tr.net, dist)
    log = Logger(out, cfg.steps, tr.step_no, dist.main, log_file)
    t_start, wall0 = time.time(), tr.wall_s
    last_val: dict = {}
    while tr.step_no < cfg.steps:
        if cfg.minutes is not None and tr.wall_s >= cfg.minutes * 60:
            break
        c, z, d = pool.batch(cfg.batch, cfg.lr_size)
        loss = tr.train_step(c.to(dist.device), z.to(dist.device), net, None if d is None else d.to(dist.device))
        if tr.step_no % cfg.pool_refresh_every == 0:
            pool.refresh()
        tr.wall_s = wall0 + time.time() - t_start
        log.step(loss=loss)
        if dist.main and tr.step_no % cfg.val_every == 0:
            last_val = tr.validate(val_lr, val_hr, d=val_d)
            log.record({"step": tr.step_no, "wall_s": round(tr.wall_s, 1), "loss": loss, **last_val})
            if last_val["val_loss"] < tr.best:
                tr.best = last_val["val_loss"]
                save_checkpoint(out / "best.pt", tr.export(last_val))
        if dist.main and tr.step_no % cfg.save_every == 0:
            save_checkpoint(ckpt, tr.state())
    if dist.main:
        last_val = tr.validate(val_lr, val_hr, d=val_d)
        log.record({"step": tr.step_no, "wall_s": round(tr.wall_s, 1), "final": True, **last_val})
        save_checkpoint(ckpt, tr.state())
        save_checkpoint(out / "final.pt", tr.export(last_val))
        if last_val["val_loss"] <= tr.best or not (out / "best.pt").is_file():
            tr.best = last_val["val_loss"]
            save_checkpoint(out / "best.pt", tr.export(last_val))
    log.close()
    return out / "best.pt"
