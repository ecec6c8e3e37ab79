"""What `lpbf-edge bench` measures with: machine matmul rate, FLOP counts, peak RSS, texture and PSNR quality."""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.sr.runners import inference_threads


def matmul_rate(dtype: str = "float32", n: int = 1024, min_s: float = 0.5) -> float:
    """This machine's sustained dense matrix-multiply rate in FLOP/s (torch, all intra-op threads)."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    out = torch.empty(n, n, dtype=dt)
    prev = torch.get_num_threads()
    torch.set_num_threads(inference_threads())  # the runtime's threads, whatever the process had
    try:
        torch.mm(a, b, out=out)
        best, t_end = 0.0, time.perf_counter() + min_s
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            for _ in range(4):
                torch.mm(a, b, out=out)
            best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(prev)
    return best


def count_flops(module, *args) -> int:
    """FLOPs of one forward call (torch.utils.flop_counter; a multiply-add counts 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*args)
    return int(counter.get_total_flops())


def _vm_hwm() -> int | None:
    """Peak resident set size of this process in bytes from /proc (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakRSS:
    """Context manager measuring the peak RSS inside the block (resets the kernel's high-water mark)."""

    def __enter__(self) -> PeakRSS:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self._resettable = True
        except OSError:
            self._resettable = False
        self.peak_bytes = 0
        return self

    def __exit__(self, *exc) -> None:
        hwm = _vm_hwm() if self._resettable else None
        self.peak_bytes = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def texture_coeffs(images: Sequence[np.ndarray], size: int = 64) -> np.ndarray:
    """Wavelet phase-harmonic coefficients [N, K] of 8-bit tiles in one pywph batch (as edge.analyze.metrics.cvd)."""
    import cv2

    from edge.analyze.metrics import DATA_RANGE, CVDSettings, _wph_op

    st = CVDSettings(size=size)
    x = np.stack([cv2.resize(np.asarray(im, np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
                  if im.shape != (size, size) else np.asarray(im, np.float32) for im in images])
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / DATA_RANGE
    op = _wph_op(size, st.j or max(1, int(np.log2(size)) - 2), st.l_angles, st.dn)
    c = op.apply(x.astype(np.float64), norm=None)
    return np.asarray(c.cpu().numpy() if hasattr(c, "cpu") else c).reshape(len(images), -1)


def quality(outs: Sequence[np.ndarray], truth: Sequence[np.ndarray], texture_size: int = 64,
            truth_coeffs: np.ndarray | None = None) -> dict[str, float]:
    """Mean PSNR (dB), SSIM and normalised texture distance (per-tile CVD / ||phi(truth)||) of outputs vs truth."""
    from edge.analyze.metrics import psnr, ssim

    co = texture_coeffs(outs, texture_size)
    ct = texture_coeffs(truth, texture_size) if truth_coeffs is None else truth_coeffs[: len(outs)]
    tex = np.linalg.norm(co - ct, axis=1) / np.maximum(np.linalg.norm(ct, axis=1), 1e-12)
    return {
        "psnr_db": float(np.mean([psnr(o, t) for o, t in zip(outs, truth, strict=False)])),
        "ssim": float(np.mean([ssim(o, t) for o, t in zip(outs, truth, strict=False)])),
        "texture_distance": float(np.mean(tex)),
    }


def floor_rate(bf16: bool, rate_fp32: float, rate_bf16: float | None) -> float:
    """The matmul rate a path's arithmetic floor is measured against: bf16 for bf16 paths (when measured), else fp32."""
    return rate_bf16 if bf16 and rate_bf16 else rate_fp32


def flops_per_sample(resolver, modules: dict) -> dict[str, int]:
    """FLOPs of one tile-sample through a SuperResolver, by part, counted on the bundle's torch modules at the tile
    size (a distilled light encoder / decoder: the FLOPs its manifest entry records; a student: the denoiser's)."""
    import torch

    b, t = resolver.bundle, resolver.tile
    c, s = b.latent_channels, b.scale
    distilled = {e.file: e for e in b.manifest.distilled.values()}
    z, lr, hr = torch.zeros(1, c, t, t), torch.zeros(1, 1, t, t), torch.zeros(1, 1, t * s, t * s)

    def part(graph: str, module: str, *args) -> int:
        entry = distilled.get(b.graph_file(graph))
        return entry.flops if entry and entry.flops is not None else count_flops(modules[module], *args)

    out = {"encoder": part("lr_encoder", "lr_encoder", lr),
           "denoiser": resolver.plan.steps * count_flops(modules["denoiser"], z, torch.zeros(1), z),
           "decoder": part(b.decoder_for("sample"), "hr_decoder", z)}
    if resolver.spec.init == "noised_estimate" and resolver.spec.estimate == "bicubic":
        out["hr_encoder"] = count_flops(modules["hr_encoder"], hr)
    out["total"] = sum(out.values())
    return out
