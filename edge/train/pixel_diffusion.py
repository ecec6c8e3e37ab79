"""`lpbf-edge train pixel-diffusion`: the paper's pixel-space diffusion baseline (Table 2), no autoencoders.

The denoiser (the `pixel` preset U-Net) sees the noisy HR image concatenated with the bicubic-upsampled LR at full
HR size and learns the same diffusion target as the latent model. It is a baseline for bench/sr_quality.py, not
part of the box: it needs 16x the U-Net work of the latent model per sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge.imaging import to_u8, to_unit
from edge.models import CondDenoiser, preset
from edge.train.autoencoder import datasets
from edge.train.common import batch_metrics, bicubic_up, load_checkpoint, rng_state, set_rng_state
from edge.train.config import TrainConfig
from edge.train.diffusion import diffusion_target, make_scheduler
from edge.train.loop import run_training, seeded

KIND = "pixel-diffusion-ema"


class PixelDiffusionTrainer:
    """U-Net, EMA, optimiser and noise schedule of one pixel-space diffusion run."""

    def __init__(self, cfg: TrainConfig) -> None:
        """Build the `pixel` preset U-Net (or cfg.arch['unet']) with the run's timesteps."""
        from diffusers.training_utils import EMAModel

        self.cfg = cfg
        arch = dict((cfg.arch or preset("pixel"))["unet"])
        if int(arch["latent_channels"]) != 1 or int(arch["cond_channels"]) != 1:
            raise ValueError(f"pixel diffusion works on 1-channel images; arch has latent_channels "
                             f"{arch['latent_channels']} and cond_channels {arch['cond_channels']}")
        arch["num_train_timesteps"] = cfg.timesteps
        self.arch = arch
        self.net = CondDenoiser(arch)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=1e-4)
        self.ema = EMAModel(self.net.parameters(), decay=cfg.ema_decay)
        self.sched = make_scheduler(cfg.schedule, cfg.timesteps, cfg.prediction)
        self.step_no, self.wall_s, self.best = 0, 0.0, float("inf")

    def condition(self, lr: torch.Tensor) -> torch.Tensor:
        """The condition: the LR bicubic-upsampled to HR size (the same OpenCV bicubic as the baseline)."""
        return bicubic_up(lr, self.cfg.scale)

    def loss(self, cond: torch.Tensor, hr: torch.Tensor, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """MSE to the diffusion target at random (or given) timesteps."""
        t = torch.randint(0, self.cfg.timesteps, (hr.shape[0],)) if t is None else t
        noise = torch.randn_like(hr) if noise is None else noise
        target = diffusion_target(self.sched, hr, noise, t, self.cfg.prediction)
        return (self.net(self.sched.add_noise(hr, noise, t), t.float(), cond) - target).pow(2).mean()

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> float:
        """One optimiser step and EMA update; returns the loss."""
        self.net.train()
        loss = self.loss(self.condition(lr), hr)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.ema.step(self.net.parameters())
        self.step_no += 1
        return loss.item()

    def ema_net(self) -> CondDenoiser:
        """A copy of the U-Net holding the EMA weights, in eval mode."""
        net = CondDenoiser(self.arch)
        self.ema.copy_to(net.parameters())
        return net.eval()

    @torch.no_grad()
    def validate(self, lr: torch.Tensor, hr: torch.Tensor, steps: int = 10) -> dict:
        """EMA weights: loss at fixed (t, noise), and PSNR/SSIM/HF of a DDIM sample against bicubic."""
        from edge.train.diffusion import ddim_sample

        net, cond = self.ema_net(), self.condition(lr)
        g = torch.Generator().manual_seed(1234)
        t = torch.linspace(0, self.cfg.timesteps - 1, hr.shape[0]).long()
        noise = torch.randn(hr.shape, generator=g)
        sched = self.sched
        target = diffusion_target(sched, hr, noise, t, self.cfg.prediction)
        val_loss = (net(sched.add_noise(hr, noise, t), t.float(), cond) - target).pow(2).mean().item()
        img = ddim_sample(net, cond, self.cfg.schedule, self.cfg.timesteps, self.cfg.prediction, steps, g)
        m, b = batch_metrics(img, hr), batch_metrics(cond, hr)
        return {"val_loss": val_loss, "psnr": m["psnr"], "ssim": m["ssim"], "hf_ratio": m["hf_ratio"],
                "bicubic_psnr": b["psnr"]}

    def state(self) -> dict:
        """Everything needed to resume exactly."""
        return {"kind": "pixel-diffusion", "cfg": self.cfg.to_json(), "arch": self.arch, "step": self.step_no,
                "wall_s": self.wall_s, "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "ema": self.ema.state_dict(), "rng": rng_state(), "best": self.best}

    def load(self, s: dict) -> None:
        """Restore from state()."""
        self.net.load_state_dict(s["net"])
        self.opt.load_state_dict(s["opt"])
        self.ema.load_state_dict(s["ema"])
        self.step_no, self.wall_s, self.best = int(s["step"]), float(s["wall_s"]), float(s["best"])
        set_rng_state(s["rng"])

    def export(self, val: dict) -> dict:
        """The EMA weights as a pixel-diffusion export (best.pt / final.pt)."""
        return {"kind": KIND, "arch": self.arch, "net": self.ema_net().state_dict(), "step": self.step_no,
                "wall_s": self.wall_s, "val": val, "cfg": self.cfg.to_json()}


def load_pixel_diffusion(path: str | Path) -> tuple[CondDenoiser, dict]:
    """(U-Net in eval mode, export dict) from a `train pixel-diffusion` best.pt/final.pt; refuses other checkpoints."""
    s = load_checkpoint(Path(path))
    if s.get("kind") != KIND:
        raise ValueError(f"{path}: not a pixel-diffusion export "
                         "(best.pt/final.pt of `lpbf-edge train pixel-diffusion`)")
    net = CondDenoiser(s["arch"])
    net.load_state_dict(s["net"])
    return net.eval().requires_grad_(False), s


def pixel_diffusion_upscale(net: CondDenoiser, export: dict, lr_u8: np.ndarray, sampler: dict,
                            seed: int = 0) -> np.ndarray:
    """One sample of the pixel-space baseline for a whole uint8 LR image (sides a multiple of 2^(levels-1) / scale)."""
    import cv2

    from edge.sr.samplers import SamplerSpec, sample
    from edge.sr.schedule import Schedule

    cfg = export["cfg"]
    scale = int(cfg["scale"])
    cond = cv2.resize(to_unit(lr_u8), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    cond = np.clip(cond, -1, 1)[None, None].astype(np.float32)
    sched = Schedule.from_manifest({"kind": cfg["schedule"], "timesteps": cfg["timesteps"]})
    spec = SamplerSpec.from_manifest(sampler)

    def denoise(x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(c)).numpy()

    rng = np.random.default_rng(seed)
    hr = sample(denoise, sched, cond, cond.shape, spec, cfg["prediction"], rng=rng, clip=1.0)[0, 0]
    return to_u8(hr)


def train_pixel_diffusion(cfg: TrainConfig, resume: bool = True, log_file: Path | None = None) -> Path:
    """Run (or resume) pixel-space diffusion training.

    Writes out/last.pt, out/best.pt (lowest val loss) and out/final.pt."""
    seeded(cfg)
    tr = PixelDiffusionTrainer(cfg)
    train_ds, val_ds = datasets(cfg)
    return run_training(tr, cfg, train_ds, val_ds, 8, "val_loss", False, resume, log_file)
