"""`lpbf-edge train pixel`: the pixel-space regression CNN (L1, EMA, checkpoint/resume) on the SR training split."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from edge.models.pixel import PixelRegressor
from edge.train.autoencoder import datasets
from edge.train.common import batch_metrics, bicubic_up, load_checkpoint, rng_state, set_rng_state
from edge.train.config import TrainConfig
from edge.train.loop import run_training, seeded


class PixelTrainer:
    """Network, EMA copy, optimiser and step counter of one pixel-regression run."""

    def __init__(self, cfg: TrainConfig) -> None:
        """Fresh network (residual head at zero: starts as bicubic) and its EMA copy."""
        self.cfg = cfg
        self.arch = {"channels": 48, "blocks": 6, "scale": cfg.scale}
        self.net, self.ema = PixelRegressor(self.arch), PixelRegressor(self.arch)
        if cfg.init_from:
            init, s = load_pixel_regressor(cfg.init_from)
            if s["arch"] != self.arch:
                raise ValueError(f"{cfg.init_from}: pixel arch {s['arch']} differs from this run's {self.arch}")
            self.net.load_state_dict(init.state_dict())
        self.ema.load_state_dict(self.net.state_dict())
        self.ema.requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), cfg.lr)
        self.step_no, self.wall_s, self.best = 0, 0.0, float("-inf")

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> float:
        """One L1 step and an EMA update; returns the loss."""
        loss = F.l1_loss(self.net(lr), hr)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            for pe, p in zip(self.ema.parameters(), self.net.parameters(), strict=False):
                pe.lerp_(p, 1 - self.cfg.ema_decay)
        self.step_no += 1
        return loss.item()

    @torch.no_grad()
    def validate(self, lr: torch.Tensor, hr: torch.Tensor) -> dict:
        """EMA network's PSNR/SSIM/HF ratio on the fixed validation batch, and bicubic's PSNR beside it."""
        m = batch_metrics(self.ema(lr), hr)
        bicubic_psnr = batch_metrics(bicubic_up(lr, self.cfg.scale), hr)["psnr"]
        return {**{f"val_{k}": v for k, v in m.items()}, "val_bicubic_psnr": bicubic_psnr}

    def state(self) -> dict:
        """Everything needed to resume exactly."""
        return {"net": self.net.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "step": self.step_no, "wall_s": self.wall_s, "best": self.best, "cfg": self.cfg.to_json(),
                "rng": rng_state()}

    def load(self, s: dict) -> None:
        """Resume from state()."""
        self.net.load_state_dict(s["net"])
        self.ema.load_state_dict(s["ema"])
        self.opt.load_state_dict(s["opt"])
        self.step_no, self.wall_s, self.best = s["step"], s["wall_s"], s["best"]
        set_rng_state(s["rng"])

    def export(self, val: dict) -> dict:
        """The EMA weights as a `pixel-ema` export (best.pt / final.pt)."""
        return {"kind": "pixel-ema", "arch": self.arch, "net": self.ema.state_dict(), "step": self.step_no,
                "wall_s": self.wall_s, "val": val, "cfg": self.cfg.to_json()}


def load_pixel_regressor(path: str | Path) -> tuple[PixelRegressor, dict]:
    """(network in eval mode, export dict) from a `train pixel` best.pt/final.pt; refuses other checkpoints."""
    s = load_checkpoint(Path(path))
    if s.get("kind") != "pixel-ema":
        raise ValueError(f"{path}: not a pixel-regression export (best.pt/final.pt of `lpbf-edge train pixel`)")
    net = PixelRegressor(s["arch"])
    net.load_state_dict(s["net"])
    return net.eval().requires_grad_(False), s


def train_pixel(cfg: TrainConfig, resume: bool = True, log_file: Path | None = None) -> Path:
    """Run (or resume) pixel-regression training; writes out/last.pt, out/best.pt (best val PSNR), out/final.pt."""
    seeded(cfg)
    tr = PixelTrainer(cfg)
    train_ds, val_ds = datasets(cfg)
    return run_training(tr, cfg, train_ds, val_ds, 32, "val_psnr", True, resume, log_file)
