"""How much a plain pixel-space regression CNN gains over bicubic on the SR data: the reference for the fidelity target.

Trains a small residual CNN (LR -> bicubic x4 + learned residual through pixel shuffle, L1, EMA) on the same training
split as the SR model (sim builds + real photographs, the same degradation mix), then scores it on the held-out crops
that bench/sr_quality.py uses (same crop seeds). It is not part of the box: a reference number for docs/sr_quality.md.

    nice -n 5 .venv/bin/python bench/pixel_regression.py --sim runs/data/sim_s1 --sim runs/data/sim_s2 \
        --sim runs/data/sim_s3 --holdout-build sim_s3 --realdata ../shared/realdata --minutes 25 \
        --out runs/pixel_regression --json docs/pixel_regression.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from edge.analyze.metrics import hf_energy_ratio, mae, psnr, ssim  # noqa: E402
from edge.data.datasets import PatchDataset, SplitSpec, load_sources  # noqa: E402
from edge.train.common import BatchStream, fixed_batch  # noqa: E402
from sr_quality import real_crops, sim_crops  # noqa: E402


class PixelRegressor(nn.Module):
    """LR [B,1,h,w] in [-1,1] -> bicubic x4 plus a residual from `blocks` residual conv blocks and a pixel shuffle."""

    def __init__(self, ch: int = 48, blocks: int = 6, scale: int = 4) -> None:
        """The residual head starts at zero, so training starts from bicubic."""
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(1, ch, 3, padding=1)
        self.body = nn.ModuleList([nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(inplace=True),
                                                 nn.Conv2d(ch, ch, 3, padding=1)) for _ in range(blocks)])
        self.tail = nn.Sequential(nn.Conv2d(ch, scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        nn.init.zeros_(self.tail[0].weight)
        nn.init.zeros_(self.tail[0].bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """HR estimate in [-1,1] (unclipped)."""
        h = self.head(lr)
        x = h
        for block in self.body:
            x = x + block(x)
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.tail(x + h)


def val_psnr(net: nn.Module, lr: torch.Tensor, hr: torch.Tensor) -> tuple[float, float]:
    """(network, bicubic) PSNR in dB on a fixed validation batch."""
    with torch.no_grad():
        pred = net(lr).clamp(-1, 1)
        bic = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(-1, 1)
    return tuple(float(10 * torch.log10(4 / F.mse_loss(p, hr))) for p in (pred, bic))  # type: ignore[return-value]


def train(a: argparse.Namespace) -> tuple[PixelRegressor, dict]:
    """Train for `minutes` (or `steps`); EMA weights are saved to out/ema.pt every validation."""
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    sources = load_sources(a.sim, a.realdata)
    spec = SplitSpec(holdout_builds=tuple(a.holdout_build))
    stream = BatchStream(PatchDataset(sources, "train", spec, per_unit=64, lr_patch=40, scale=4, seed=a.seed),
                         a.batch, a.lr_size, a.seed)
    val_lr, val_hr = fixed_batch(PatchDataset(sources, "val", spec, per_unit=4, lr_patch=64, scale=4, seed=a.seed + 1),
                                 32, a.lr_size)
    net, ema = PixelRegressor(), PixelRegressor()
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), a.lr)
    a.out.mkdir(parents=True, exist_ok=True)
    t0, step, history = time.time(), 0, []
    bar = tqdm(total=a.steps, desc="pixel regression", unit="step")
    while step < a.steps and time.time() - t0 < a.minutes * 60:
        lr, hr = stream.next()
        loss = F.l1_loss(net(lr), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1 - a.ema)
        bar.update(1)
        if step % 500 == 0:
            v, b = val_psnr(ema, val_lr, val_hr)
            history.append({"step": step, "wall_s": round(time.time() - t0, 1), "val_psnr": v, "val_bicubic": b})
            bar.set_postfix(loss=f"{loss.item():.4f}", val=f"{v:.2f}", bicubic=f"{b:.2f}")
            torch.save(ema.state_dict(), a.out / "ema.pt")
    bar.close()
    torch.save(ema.state_dict(), a.out / "ema.pt")
    v, b = val_psnr(ema, val_lr, val_hr)
    return ema.eval(), {"steps": step, "wall_s": round(time.time() - t0, 1), "val_psnr": v, "val_bicubic": b,
                        "history": history}


def score(net: PixelRegressor, crops: list) -> dict:
    """Mean MAE / PSNR / SSIM / HF ratio of bicubic and the network over (name, LR, HR) crops."""
    rows: dict[str, list] = {"bicubic": [], "pixel_regression": []}
    for _, lr, hr in crops:
        with torch.no_grad():
            y = net(torch.from_numpy(lr.astype(np.float32) / 127.5 - 1)[None, None])[0, 0].numpy()
        outs = {"bicubic": cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC),
                "pixel_regression": np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8)}
        for k, img in outs.items():
            rows[k].append({"mae": mae(img, hr), "psnr": psnr(img, hr), "ssim": ssim(img, hr),
                            "hf_ratio": hf_energy_ratio(img, hr)})
    return {k: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for k, v in rows.items()}


def main(argv: list[str] | None = None) -> int:
    """CLI entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", action="append", default=[], help="sim build folder (repeat)")
    ap.add_argument("--holdout-build", action="append", default=[])
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--photo", default="risheng_slm/S05.jpg", help="held-out photograph (as in sr_quality.py)")
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--steps", type=int, default=10**9)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crops", type=int, default=4, help="held-out crops per set (sr_quality.py's seeds)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "pixel_regression")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    net, info = train(a)
    held = [b for b in a.sim if Path(b).name in a.holdout_build]
    sets = {"real": real_crops(a.realdata / a.photo, a.crops, 64, 0)}
    if held:
        sets["sim"] = sim_crops(Path(held[0]), a.crops, 64, 0)
    res = {"command": "nice -n 5 .venv/bin/python bench/pixel_regression.py " + " ".join(argv or sys.argv[1:]),
           "training": info, **{s: score(net, c) for s, c in sets.items()}}
    for s in sets:
        b, p = res[s]["bicubic"], res[s]["pixel_regression"]
        print(f"{s}: pixel regression {p['psnr']:.2f} dB vs bicubic {b['psnr']:.2f} dB "
              f"({p['psnr'] - b['psnr']:+.2f}), MAE {p['mae']:.2f} vs {b['mae']:.2f}, SSIM {p['ssim']:.3f} vs {b['ssim']:.3f}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
