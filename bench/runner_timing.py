"""Per-call timing of the bundle graphs on every CPU backend (ORT, OpenVINO f32/bf16, torch eager).

    nice -n 15 .venv/bin/python bench/runner_timing.py [--model DIR] [--preset small] [--batches 1 8] [--repeats 20]

Without --model (and no models/default) it writes a random-weight bundle of the named edge.models preset first:
timings do not depend on the weight values.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _bundle(model: str | None, preset_name: str, lr_patch: int) -> Path:
    """The bundle to time: --model, else models/default, else a fresh random-weight export of a preset."""
    from edge.sr.bundle import default_bundle_path

    if model:
        return Path(model)
    if (default_bundle_path() / "manifest.json").exists():
        return default_bundle_path()
    import torch

    from edge.models import CondDenoiser, ImageAutoencoder, preset
    from edge.sr.torch_modules import write_model_bundle

    torch.manual_seed(0)
    p = preset(preset_name)
    out = Path(tempfile.mkdtemp(prefix=f"lpbf-bench-{preset_name}-"))
    manifest = {"model_id": f"random-{preset_name}", "scale": 4, "latent_channels": 4,
                "latent_shape": [4, lr_patch, lr_patch],
                "lr_patch": lr_patch, "hr_patch": 4 * lr_patch, "latent_scale_factor": 1.0,
                "schedule": {"kind": "cosine", "timesteps": 200}, "prediction": "v_prediction",
                "sampler": {"name": "dpmpp_2m", "steps": 10}, "reference": {"name": "ddpm", "steps": 200},
                "arch": p, "training": {"data": "none (random weights, timing only)"}, "metrics": {}}
    write_model_bundle(out, ImageAutoencoder(p["hr_ae"]), ImageAutoencoder(p["lr_ae"]), CondDenoiser(p["unet"]),
                       manifest)
    return out


def _time(fn, repeats: int) -> float:
    """Median seconds of fn() after 3 warm-up calls."""
    for _ in range(3):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--lr-patch", type=int, default=16)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args()

    from edge.sr.bundle import load_bundle
    from edge.sr.runners import OpenVinoRunner, OrtRunner, TorchRunner, openvino_bf16_supported

    b = load_bundle(_bundle(a.model, a.preset, a.lr_patch))
    runners = {"ort": OrtRunner(b), "openvino-f32": OpenVinoRunner(b, "f32")}
    if openvino_bf16_supported():
        runners["openvino-bf16"] = OpenVinoRunner(b, "bf16")
    try:
        runners["torch"] = TorchRunner.from_bundle(b)
        runners["torch-1thread"] = TorchRunner.from_bundle(b, threads=1)
    except Exception as exc:  # noqa: BLE001 - report and time the rest
        print(f"torch runner skipped: {exc}")
    n, C = b.lr_patch, b.latent_channels
    rows = []
    for B in a.batches:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((B, C, n, n)).astype(np.float32)
        t = np.full((B,), 100.0, np.float32)
        for name, r in runners.items():
            if name.startswith("torch"):
                import torch

                torch.set_num_threads(1 if name == "torch-1thread" else os.cpu_count() or 1)
            den = _time(lambda r=r, x=x, t=t: r.denoise(x, t, x), a.repeats)
            dec = _time(lambda r=r, x=x: r.decode(x), max(3, a.repeats // 4))
            rows.append({"backend": name, "batch": B, "denoise_ms": 1e3 * den, "decode_ms": 1e3 * dec})
    print(f"bundle {b.model_id} ({b.path}), latent {C}x{n}x{n}, load avg {os.getloadavg()[0]:.1f}, cores "
          f"{os.cpu_count()}")
    print(f"{'backend':<15}{'batch':>6}{'denoise ms/call':>17}{'decode ms/call':>16}")
    for r in rows:
        print(f"{r['backend']:<15}{r['batch']:>6}{r['denoise_ms']:>17.2f}{r['decode_ms']:>16.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"model_id": b.model_id, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
