"""The single-process training loop shared by `train pixel` and `train pixel-diffusion` (resume, validate, save)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import torch

from edge.train.common import BatchStream, Logger, fixed_batch, load_checkpoint, save_checkpoint, seed_all
from edge.train.config import TrainConfig


class Trainer(Protocol):
    """What the loop needs of a trainer: a step, validation, resumable state and an export."""

    step_no: int
    wall_s: float
    best: float

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> float: ...
    def validate(self, lr: torch.Tensor, hr: torch.Tensor) -> dict: ...
    def state(self) -> dict: ...
    def load(self, s: dict) -> None: ...
    def export(self, val: dict) -> dict: ...


def run_training(tr: Trainer, cfg: TrainConfig, train_ds, val_ds, val_size: int, key: str, higher_is_better: bool,
                 resume: bool = True, log_file: Path | None = None) -> Path:
    """Train until cfg.steps or cfg.minutes; validate every cfg.val_every steps and keep out/best.pt by val[key].

    Writes out/last.pt (resumable state, every cfg.save_every steps and at the end), out/best.pt and out/final.pt
    (exports); resumes from out/last.pt unless resume is False. Returns the path of best.pt.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last.pt"
    if resume and ckpt.is_file():
        tr.load(load_checkpoint(ckpt))

    def improves(val: dict, strict: bool) -> bool:
        v = float(val[key])
        if higher_is_better:
            return v > tr.best if strict else v >= tr.best
        return v < tr.best if strict else v <= tr.best

    stream = BatchStream(train_ds, cfg.batch, cfg.lr_size, cfg.seed * 1000 + tr.step_no, photo_weight=cfg.photo_weight,
                         sim_share=cfg.sim_share)
    val_lr, val_hr = fixed_batch(val_ds, val_size, cfg.lr_size)
    log = Logger(out, cfg.steps, tr.step_no, True, log_file)
    t_start, wall0 = time.time(), tr.wall_s
    while tr.step_no < cfg.steps:
        if cfg.minutes is not None and tr.wall_s >= cfg.minutes * 60:
            break
        loss = tr.train_step(*stream.next())
        tr.wall_s = wall0 + time.time() - t_start
        log.step(loss=loss)
        if tr.step_no % cfg.val_every == 0:
            val = tr.validate(val_lr, val_hr)
            log.record({"step": tr.step_no, "wall_s": round(tr.wall_s, 1), "loss": loss, **val})
            if improves(val, strict=True):
                tr.best = float(val[key])
                save_checkpoint(out / "best.pt", tr.export(val))
        if tr.step_no % cfg.save_every == 0:
            save_checkpoint(ckpt, tr.state())
    val = tr.validate(val_lr, val_hr)
    log.record({"step": tr.step_no, "wall_s": round(tr.wall_s, 1), "final": True, **val})
    save_checkpoint(ckpt, tr.state())
    save_checkpoint(out / "final.pt", tr.export(val))
    if improves(val, strict=False) or not (out / "best.pt").is_file():
        tr.best = float(val[key])
        save_checkpoint(out / "best.pt", tr.export(val))
    log.close()
    return out / "best.pt"


def seeded(cfg: TrainConfig) -> None:
    """Set the run's torch threads and seeds (before building a trainer)."""
    torch.set_num_threads(cfg.threads)
    seed_all(cfg.seed)
