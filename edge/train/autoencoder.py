"""Train the HR autoencoder (f=4, L1 + KL + FFT + wavelet texture + hinge patch GAN) and the LR encoder (f=1)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from edge.data.datasets import DegradeMix, PatchDataset, SplitSpec, load_sources
from edge.data.texture_aug import TextureAug
from edge.models import (
    ImageAutoencoder,
    PatchDiscriminator,
    equalize_latent_channels,
    estimate_latent_scale,
    kl_loss,
    preset,
)
from edge.train.common import (
    BatchStream,
    Logger,
    batch_metrics,
    fixed_batch,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_all,
    set_rng_state,
    setup_dist,
    wrap_ddp,
)
from edge.train.config import TrainConfig
from edge.train.losses import (
    fft_amplitude_loss,
    hinge_d_loss,
    hinge_g_loss,
    orientation_loss,
    spectrum_loss,
    wavelet_stats_loss,
)


def split_spec(cfg: TrainConfig) -> SplitSpec:
    """The SplitSpec a config names."""
    return SplitSpec(holdout_builds=tuple(cfg.holdout_builds), holdout_photos=tuple(cfg.holdout_photos),
                     val_photos=tuple(cfg.val_photos), holdout_groups=tuple(cfg.holdout_groups),
                     holdout_share=cfg.holdout_share, exclude_groups=tuple(cfg.exclude_groups))


def texture_aug(cfg: TrainConfig) -> TextureAug:
    """The structured-texture augmentation a config names."""
    if cfg.texture_aug == "none":
        return TextureAug()
    if cfg.texture_aug == "structured":
        return TextureAug.structured()
    raise ValueError(f"texture_aug must be 'none' or 'structured', got {cfg.texture_aug!r}")


def datasets(cfg: TrainConfig) -> tuple[PatchDataset, PatchDataset]:
    """(train, val) patch datasets of a config (LR patches of 2*lr_size, sub-cropped to lr_size)."""
    sources = load_sources(cfg.sims, cfg.realdata)
    spec = split_spec(cfg)
    mix = DegradeMix(grain_prob=cfg.grain_prob, grain_gain=(float(cfg.grain_gain[0]), float(cfg.grain_gain[1])),
                     texture=texture_aug(cfg))
    train = PatchDataset(sources, "train", spec, per_unit=64, lr_patch=max(cfg.lr_size, cfg.pool_tile) + 8,
                         scale=cfg.scale,
                         mix=mix, seed=cfg.seed)
    val = PatchDataset(sources, "val", spec, per_unit=4, lr_patch=cfg.lr_size * 2, scale=cfg.scale, seed=cfg.seed + 1)
    return train, val


@torch.no_grad()
def reconstruction_metrics(ae: ImageAutoencoder, img: torch.Tensor) -> dict:
    """PSNR/SSIM/HF ratio of decode(encode(img)) against img, keys prefixed `rec_`."""
    return {f"rec_{k}": v for k, v in batch_metrics(ae.decode(ae.encode(img)), img).items()}


class AETrainer:
    """State and one optimisation step of autoencoder training."""

    def __init__(self, cfg: TrainConfig) -> None:
        """Build both autoencoders, the discriminator, optimisers and EMA copies."""
        from diffusers.training_utils import EMAModel

        if cfg.latent_noise and not cfg.decoder_only:
            raise ValueError("latent_noise trains a noise-tolerant decoder: it needs decoder_only (and init_from)")
        self.cfg = cfg
        arch = cfg.arch or preset(cfg.preset)
        self.arch = {"hr_ae": arch["hr_ae"], "lr_ae": arch["lr_ae"]}
        if cfg.ae_kind not in ("kl", "vq"):
            raise ValueError(f"ae_kind must be 'kl' or 'vq', got {cfg.ae_kind!r}")
        if cfg.ae_kind == "vq" and not cfg.arch:  # VQ: quantise the whole latent (no continuous low-pass channel)
            self.arch = {k: {**v, "kind": "vq", "lowpass_skip": False, "num_vq_embeddings": 512}
                         for k, v in self.arch.items()}
        self.hr = ImageAutoencoder(self.arch["hr_ae"])
        self.lr = ImageAutoencoder(self.arch["lr_ae"])
        if self.hr.factor != cfg.scale or self.lr.factor != 1:
            raise ValueError(f"HR autoencoder must downsample by the scale {cfg.scale} (got {self.hr.factor}) "
                             f"and the LR encoder by 1 (got {self.lr.factor})")
        self.disc = PatchDiscriminator()
        self.scales: dict[str, float] = {}
        self.gains: dict[str, list[float]] | None = None  # per-channel latent gains (finalize, or the init ae.pt)
        if cfg.init_from:
            self._init_from(Path(cfg.init_from))
        self.params = self._trainable()
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0)
        self.ema_hr = EMAModel(self.hr.parameters(), decay=cfg.ema_decay)
        self.ema_lr = EMAModel(self.lr.parameters(), decay=cfg.ema_decay)
        self.step_no = 0
        self.wall_s = 0.0
        self.best: float = -1.0

    def _init_from(self, path: Path) -> None:
        """Start from an ae.pt export (EMA weights, scales) and the discriminator of the run's last.pt."""
        s = load_checkpoint(path)
        if s.get("kind") != "autoencoder-ema":
            raise ValueError(f"{path}: not an autoencoder export (ae.pt)")
        self.arch = s["arch"]
        self.hr, self.lr = ImageAutoencoder(self.arch["hr_ae"]), ImageAutoencoder(self.arch["lr_ae"])
        self.hr.load_state_dict(s["hr"])
        self.lr.load_state_dict(s["lr"])
        self.scales, self.gains = dict(s["scales"]), s.get("channel_gains")
        last = path.parent / "last.pt"
        if last.is_file():
            self.disc.load_state_dict(load_checkpoint(last)["disc"])

    def _trainable(self) -> list[torch.nn.Parameter]:
        """Parameters the generator optimiser updates (the HR decoder only when decoder_only)."""
        if not self.cfg.decoder_only:
            return list(self.hr.parameters()) + list(self.lr.parameters())
        if not self.scales:
            raise ValueError("decoder_only training needs init_from (an ae.pt with latent scales)")
        for m in (self.lr, self.hr.net.encoder, getattr(self.hr.net, "quant_conv", None)):
            if m is not None:
                m.requires_grad_(False)
        return [p for p in self.hr.parameters() if p.requires_grad]

    def state(self) -> dict:
        """Everything needed to resume exactly."""
        return {"kind": "autoencoder", "cfg": self.cfg.to_json(), "arch": self.arch, "step": self.step_no,
                "wall_s": self.wall_s, "hr": self.hr.state_dict(), "lr": self.lr.state_dict(),
                "disc": self.disc.state_dict(), "opt": self.opt.state_dict(), "opt_d": self.opt_d.state_dict(),
                "ema_hr": self.ema_hr.state_dict(), "ema_lr": self.ema_lr.state_dict(), "rng": rng_state(),
                "scales": self.scales, "best": self.best}

    def load(self, s: dict) -> None:
        """Restore from state()."""
        self.hr.load_state_dict(s["hr"])
        self.lr.load_state_dict(s["lr"])
        self.disc.load_state_dict(s["disc"])
        self.opt.load_state_dict(s["opt"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.ema_hr.load_state_dict(s["ema_hr"])
        self.ema_lr.load_state_dict(s["ema_lr"])
        self.step_no, self.wall_s = int(s["step"]), float(s["wall_s"])
        self.scales, self.best = dict(s.get("scales", {})), float(s.get("best", -1.0))
        set_rng_state(s["rng"])

    def train_step(self, lr_img: torch.Tensor, hr_img: torch.Tensor, hr_m=None, lr_m=None, disc=None) -> dict:
        """One generator (+ discriminator after gan_start) update; returns the loss terms."""
        c = self.cfg
        hr_m, lr_m, disc = hr_m or self.hr, lr_m or self.lr, disc or self.disc
        self.hr.train(), self.lr.train()
        if c.decoder_only:
            with torch.no_grad():
                mean = self.hr.encode(hr_img)
                if c.latent_noise > 0:  # robustness to a sampler's imperfect latents: noise in scaled-latent units
                    sigma = torch.rand(mean.shape[0], 1, 1, 1) * c.latent_noise / self.scales["latent_scale_factor"]
                    mean = mean + sigma * torch.randn_like(mean)
            rec = self.hr.decode(mean)
            l1_lr = kl = torch.zeros(())
        else:
            rec, mean, logvar = hr_m(hr_img)
            rec_lr, mean_l, logvar_l = lr_m(lr_img)
            l1_lr = (rec_lr - lr_img).abs().mean()
            if self.hr.kind == "vq":  # codebook + commitment loss in place of the KL term
                kl = self.hr.vq_loss(mean) + self.lr.vq_loss(mean_l)
            else:
                kl = kl_loss(mean, logvar) + kl_loss(mean_l, logvar_l)
        l1 = (rec - hr_img).abs().mean()
        tex = c.fft_weight * fft_amplitude_loss(rec, hr_img) + c.wavelet_weight * wavelet_stats_loss(rec, hr_img)
        if c.spectrum_weight > 0:
            tex = tex + c.spectrum_weight * spectrum_loss(rec, hr_img)
        if c.orient_weight > 0:
            tex = tex + c.orient_weight * orientation_loss(rec, hr_img)
        loss = c.l1_weight * l1 + l1_lr + (c.vq_weight if self.hr.kind == "vq" else c.kl_weight) * kl + tex
        gan_on = self.step_no >= c.gan_start and c.gan_weight > 0
        g = torch.zeros(())
        if gan_on:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            g = hinge_g_loss(disc(rec))
            loss = loss + c.gan_weight * g
            for p in self.disc.parameters():
                p.requires_grad_(True)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.ema_hr.step(self.hr.parameters())
        self.ema_lr.step(self.lr.parameters())
        d = torch.zeros(())
        if gan_on:
            d = hinge_d_loss(disc(hr_img), disc(rec.detach()))
            self.opt_d.zero_grad(set_to_none=True)
            d.backward()
            self.opt_d.step()
        self.step_no += 1
        return {"loss": loss.item(), "l1": l1.item(), "l1_lr": l1_lr.item(), "tex": tex.item(), "g": g.item(),
                "d": d.item()}

    @torch.no_grad()
    def validate(self, hr_img: torch.Tensor) -> dict:
        """Reconstruction metrics of the EMA weights on a fixed batch."""
        return reconstruction_metrics(self.ema_models()[0], hr_img)

    def ema_models(self) -> tuple[ImageAutoencoder, ImageAutoencoder]:
        """Fresh (HR, LR) autoencoders holding the EMA weights."""
        hr, lr = ImageAutoencoder(self.arch["hr_ae"]), ImageAutoencoder(self.arch["lr_ae"])
        self.ema_hr.copy_to(hr.parameters())
        self.ema_lr.copy_to(lr.parameters())
        return hr.eval(), lr.eval()

    @torch.no_grad()
    def finalize(self, stream: BatchStream, batches: int = 8) -> tuple[ImageAutoencoder, ImageAutoencoder]:
        """EMA models with equalised latent channels and their scale factors set (`scales`, `gains`).

        A decoder-only fine-tune keeps the frozen encoders' latents (and scales) exactly as they were.
        """
        hr, lr = self.ema_models()
        if self.cfg.decoder_only:
            return hr, lr
        data = [stream.next() for _ in range(batches)]
        self.gains = {"hr": equalize_latent_channels(hr, (h for _, h in data)),
                      "lr": equalize_latent_channels(lr, (lo for lo, _ in data))}
        self.scales = {"latent_scale_factor": estimate_latent_scale(hr, (h for _, h in data)),
                       "cond_scale_factor": estimate_latent_scale(lr, (lo for lo, _ in data))}
        return hr, lr

    def export_weights(self, hr: ImageAutoencoder, lr: ImageAutoencoder) -> dict:
        """Finalised autoencoders plus their archs and scales (what diffusion training loads)."""
        return {"kind": "autoencoder-ema", "arch": self.arch, "hr": hr.state_dict(), "lr": lr.state_dict(),
                "scales": self.scales, "channel_gains": self.gains, "step": self.step_no,
                "cfg": self.cfg.to_json(), "wall_s": self.wall_s}


def train_autoencoder(cfg: TrainConfig, resume: bool = True, log_file: Path | None = None) -> Path:
    """Run (or resume) autoencoder training; writes out/last.pt and out/ae.pt (EMA weights + scales)."""
    dist = setup_dist()
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_all(cfg.seed + dist.rank)
    tr = AETrainer(cfg)
    ckpt = out / "last.pt"
    if resume and ckpt.is_file():
        tr.load(load_checkpoint(ckpt))
    train_ds, val_ds = datasets(cfg)
    stream = BatchStream(train_ds, cfg.batch, cfg.lr_size, cfg.seed * 1000 + dist.rank + tr.step_no,
                         photo_weight=cfg.photo_weight, sim_share=cfg.sim_share)
    val_hr = fixed_batch(val_ds, 16, cfg.lr_size * 2)[1]
    hr_m, lr_m, disc = (wrap_ddp(m, dist) for m in (tr.hr, tr.lr, tr.disc))
    log = Logger(out, cfg.steps, tr.step_no, dist.main, log_file)
    t_start = time.time()
    wall0 = tr.wall_s
    while tr.step_no < cfg.steps:
        if cfg.minutes is not None and tr.wall_s >= cfg.minutes * 60:
            break
        lr_img, hr_img = stream.next()
        losses = tr.train_step(lr_img.to(dist.device), hr_img.to(dist.device), hr_m, lr_m, disc)
        tr.wall_s = wall0 + time.time() - t_start
        log.step(**{k: losses[k] for k in ("l1", "tex", "g", "d")})
        if dist.main and (tr.step_no % cfg.val_every == 0):
            m = tr.validate(val_hr)
            log.record({"step": tr.step_no, "wall_s": round(tr.wall_s, 1), **losses, **m})
        if dist.main and tr.step_no % cfg.save_every == 0:
            save_checkpoint(ckpt, tr.state())
    if dist.main:
        hr, lr = tr.finalize(stream)
        m = reconstruction_metrics(hr, val_hr)
        log.record({"step": tr.step_no, "wall_s": round(tr.wall_s, 1), "final": True, **m, **tr.scales,
                    "channel_gains": tr.gains})
        save_checkpoint(ckpt, tr.state())
        save_checkpoint(out / "ae.pt", {**tr.export_weights(hr, lr), "val": m})
    log.close()
    return out / "ae.pt"
