"""Shared training plumbing: seeds, devices, DDP, batches, checkpoints, EMA, progress, bicubic baselines."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from edge.data.datasets import PatchDataset, random_subcrop
from edge.imaging import to_unit


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Dist:
    """Process-group facts: rank, world size, device."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """True on the process that logs and writes checkpoints."""
        return self.rank == 0


def setup_dist() -> Dist:
    """Join a torch.distributed group when launched by torchrun (WORLD_SIZE > 1); pick cuda:LOCAL_RANK or cpu."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Dist(rank, world, device)


def wrap_ddp(module: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    """DistributedDataParallel around `module` when world > 1, else the module itself."""
    if dist.world <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper."""
    return getattr(module, "module", module)


def unit_weights(ds: PatchDataset, photo_weight: float = 2.0, sim_share: float | None = None) -> np.ndarray:
    """Draw probability of each item: photographs `photo_weight` x a sim layer's; or, with `sim_share`, that share on
    the sim layers and the rest split equally among the photo groups (each group's photographs uniformly), so a
    source with many photographs (pblm_classes: 68) does not crowd out the others."""
    units = [ds.unit_of(i)[0] for i in range(len(ds))]
    if sim_share is None:
        w = np.array([photo_weight if u.kind == "photo" else 1.0 for u in units])
        return w / w.sum()
    if not 0.0 <= sim_share <= 1.0:
        raise ValueError(f"sim_share must be in [0, 1], got {sim_share}")
    groups = [u.group or u.name if u.kind == "photo" else "" for u in units]
    n_sim = sum(g == "" for g in groups)
    photo_groups = sorted({g for g in groups if g})
    share = {"": sim_share if photo_groups else 1.0}
    for g in photo_groups:
        share[g] = (1.0 - (sim_share if n_sim else 0.0)) / len(photo_groups)
    count = {g: groups.count(g) for g in share}
    w = np.array([share[g] / count[g] for g in groups])
    return w / w.sum()


class BatchStream:
    """Endless random batches of LR/HR sub-crops in [-1, 1] from a PatchDataset (photos weighted up)."""

    def __init__(self, ds: PatchDataset, batch: int, lr_size: int, seed: int, photo_weight: float = 2.0,
                 sim_share: float | None = None) -> None:
        """Items are drawn with the probabilities of unit_weights(ds, photo_weight, sim_share)."""
        self.ds, self.batch, self.lr_size = ds, batch, lr_size
        self.rng = np.random.default_rng(seed)
        self.p = unit_weights(ds, photo_weight, sim_share)
        self.epoch = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr [B,1,s,s], hr [B,1,4s,4s]) float32 tensors; a random dihedral flip/rotation each."""
        lr, hr, _ = self.next_described(None)
        return lr, hr

    def next_described(self, describe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """As next(), plus describe(whole LR patch, whole HR patch; uint8, after the same flip/rotation) per item
        ([B, D] float32)."""
        lrs, hrs, descs = [], [], []
        self.epoch += 1
        self.ds.set_epoch(self.epoch)
        for i in self.rng.choice(len(self.ds), size=self.batch, p=self.p):
            it = self.ds[int(i)]
            lr, hr = random_subcrop(it["lr"], it["hr"], self.lr_size, self.ds.scale, self.rng)
            k, f = int(self.rng.integers(4)), bool(self.rng.integers(2))
            lr, hr = np.rot90(lr, k), np.rot90(hr, k)
            if f:
                lr, hr = lr[:, ::-1], hr[:, ::-1]
            if describe is not None:
                wl, wh = np.rot90(it["lr"], k), np.rot90(it["hr"], k)
                wl, wh = (wl[:, ::-1], wh[:, ::-1]) if f else (wl, wh)
                descs.append(np.asarray(describe(np.ascontiguousarray(wl), np.ascontiguousarray(wh)), np.float32))
            lrs.append(to_unit(np.ascontiguousarray(lr)))
            hrs.append(to_unit(np.ascontiguousarray(hr)))
        d = torch.from_numpy(np.stack(descs)) if descs else None
        return torch.from_numpy(np.stack(lrs)[:, None]), torch.from_numpy(np.stack(hrs)[:, None]), d


def fixed_batch(ds: PatchDataset, n: int, lr_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic validation batch: the centre LR `lr_size` crop (and HR) of n items spread over units."""
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int)
    lrs, hrs = [], []
    for i in idx:
        it = ds[int(i)]
        p = it["lr"].shape[0]
        o = (p - lr_size) // 2
        s = ds.scale
        lrs.append(to_unit(it["lr"][o:o + lr_size, o:o + lr_size]))
        hrs.append(to_unit(it["hr"][o * s:(o + lr_size) * s, o * s:(o + lr_size) * s]))
    return torch.from_numpy(np.stack(lrs)[:, None]), torch.from_numpy(np.stack(hrs)[:, None])


def fixed_descriptors(ds: PatchDataset, n: int, describe) -> torch.Tensor:
    """describe(whole LR patch, whole HR patch) of the items fixed_batch(ds, n, ...) uses ([n, D] float32)."""
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int)
    return torch.from_numpy(np.stack([np.asarray(describe(ds[int(i)]["lr"], ds[int(i)]["hr"]), np.float32)
                                      for i in idx]))


def bicubic_up(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """OpenCV bicubic upsampling of a [B,1,h,w] batch in [-1, 1] (the baseline every metric is compared with)."""
    out = [cv2.resize(x[0].numpy(), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) for x in lr.cpu()]
    return torch.from_numpy(np.stack(out)[:, None]).clamp(-1, 1)


def batch_metrics(pred: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
    """Mean PSNR / SSIM (8-bit scale) and high-frequency energy ratio of a [-1, 1] batch against ground truth."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from edge.analyze.metrics import hf_energy_ratio

    p = ((pred.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().numpy()
    g = ((hr.cpu() + 1) * 127.5).round().numpy()
    ps = [peak_signal_noise_ratio(a[0], b[0], data_range=255) for a, b in zip(p, g, strict=False)]
    ss = [structural_similarity(a[0], b[0], data_range=255) for a, b in zip(p, g, strict=False)]
    hf = [hf_energy_ratio(a[0], b[0]) for a, b in zip(p, g, strict=False)]
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "hf_ratio": float(np.nanmean(hf))}


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomically write a checkpoint (temp file + rename), so a crash never leaves a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by save_checkpoint."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    """Torch / numpy / python RNG states (for exact resume)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(s: dict) -> None:
    """Restore RNG states saved by rng_state()."""
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


class Logger:
    """Progress bar (tqdm, to a file or stderr) plus JSON-lines metrics."""

    def __init__(self, out: Path, total: int, initial: int, enabled: bool, log_file: Path | None = None) -> None:
        """Open the metrics file in `out` and a tqdm bar."""
        from tqdm import tqdm

        self.enabled = enabled
        self.metrics = (out / "metrics.jsonl").open("a") if enabled else None
        self.fh = log_file.open("a") if (enabled and log_file) else None
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, file=self.fh, mininterval=5.0,
                        dynamic_ncols=False, ncols=100)
        self.t0 = time.time()

    def step(self, **post: float) -> None:
        """Advance the bar by one step with loss postfix."""
        if self.enabled:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in post.items()}, refresh=False)

    def record(self, obj: dict) -> None:
        """Append one metrics record."""
        if self.metrics:
            self.metrics.write(json.dumps(obj) + "\n")
            self.metrics.flush()
            self.bar.write(json.dumps(obj), file=self.fh)

    def close(self) -> None:
        """Close files."""
        if self.enabled:
            self.bar.close()
            self.metrics.close()
            if self.fh:
                self.fh.close()
