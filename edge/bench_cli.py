"""`lpbf-edge bench`: speed and quality of every backend/sampler against the 200-step torch reference."""

from __future__ import annotations

import functools
import json
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import typer

# ---------------------------------------------------------------- measurement primitives


def matmul_rate(dtype: str = "float32", n: int = 1024, min_s: float = 0.5) -> float:
    """This machine's sustained dense matrix-multiply rate in FLOP/s (torch, all intra-op threads)."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    out = torch.empty(n, n, dtype=dt)
    prev = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # the machine's rate, whatever thread count the reference probe left
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


def per_sample_time(fn: Callable[[np.ndarray], np.ndarray], items: Sequence[np.ndarray], warmup: int = 1,
                    warmup_rows: int | None = None):
    """(outputs, seconds per item) of fn over items, after `warmup` untimed calls on (the first rows of) item 0."""
    for _ in range(warmup):
        fn(items[0][:warmup_rows])
    outs, t0 = [], time.perf_counter()
    for x in items:
        outs.append(fn(x))
    return outs, (time.perf_counter() - t0) / len(items)


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
    """Mean PSNR (dB), SSIM and normalised texture distance (per-tile CVD / ||phi(truth)||) of outputs vs ground truth."""
    from edge.analyze.metrics import psnr, ssim

    co = texture_coeffs(outs, texture_size)
    ct = texture_coeffs(truth, texture_size) if truth_coeffs is None else truth_coeffs[: len(outs)]
    tex = np.linalg.norm(co - ct, axis=1) / np.maximum(np.linalg.norm(ct, axis=1), 1e-12)
    return {
        "psnr_db": float(np.mean([psnr(o, t) for o, t in zip(outs, truth)])),
        "ssim": float(np.mean([ssim(o, t) for o, t in zip(outs, truth)])),
        "texture_distance": float(np.mean(tex)),
    }


def floor_seconds(flops: float, rate: float | None = None) -> float:
    """Arithmetic floor: FLOPs / this machine's fp32 matmul rate (measured once per process)."""
    global _RATE
    if rate is None:
        if _RATE is None:
            _RATE = matmul_rate("float32")
        rate = _RATE
    return flops / rate


_RATE: float | None = None


def floor_rate(backend: str, rate_fp32: float, rate_bf16: float | None) -> float:
    """The matmul rate a path's arithmetic floor is measured against: bf16 for bf16 backends, else fp32."""
    return rate_bf16 if rate_bf16 and "bf16" in backend else rate_fp32


# ---------------------------------------------------------------- inputs


@functools.lru_cache(maxsize=1)
def _gray_images() -> list[np.ndarray]:
    """Real powder-bed photographs (uint8 gray) from ../shared/realdata, or an empty list."""
    import cv2

    root = Path(os.environ.get("LPBF_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))
    out = []
    for p in sorted(root.glob("*/*")):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if img is not None:
                if "pblm" in p.parts:  # JPEG q~75: a 2x area downsample gives clean ground truth
                    img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
                out.append(img)
    return out


def _sim_images(n: int, size: int, seed: int) -> list[np.ndarray]:
    """Synthetic powder-bed layers from the simulator (used when no real photographs are present)."""
    from edge.sim.build import plan_build, render_layer

    plan = plan_build(n, seed)
    return [render_layer(plan, i + 1).hr for i in range(n)]


def bench_pairs(n: int, hr_tile: int, scale: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n (LR, HR) tile pairs: random HR crops of real photographs, LR by the paper's recipe (area /scale, blur k=3)."""
    from edge.data.degrade import paper_degrade

    imgs = _gray_images() or _sim_images(4, 4 * hr_tile, seed)
    rng = np.random.default_rng(seed)
    hr = np.zeros((n, hr_tile, hr_tile), np.uint8)
    for i in range(n):
        img = imgs[i % len(imgs)]
        y, x = rng.integers(0, img.shape[0] - hr_tile), rng.integers(0, img.shape[1] - hr_tile)
        hr[i] = img[y:y + hr_tile, x:x + hr_tile]
    lr = np.stack([paper_degrade(h, n=scale, k=3) for h in hr])
    return lr, hr


def synthetic_plate(lr_size: int, seed: int = 0) -> np.ndarray:
    """An LR plate of the given side: a real photograph resized to 4x and degraded by the paper's recipe."""
    import cv2

    from edge.data.degrade import paper_degrade

    imgs = _gray_images() or _sim_images(1, 1024, seed)
    big = max(imgs, key=lambda a: a.size)
    hr = cv2.resize(big, (4 * lr_size, 4 * lr_size), interpolation=cv2.INTER_CUBIC)
    return paper_degrade(hr, n=4, k=3)


# ---------------------------------------------------------------- graphs on each backend


def _threads() -> int:
    """Intra-op threads: the machine's cores (2 here)."""
    return max(1, os.cpu_count() or 1)


class Graph:
    """One ONNX graph (or torch module) as a numpy callable, fed in chunks of its static batch size."""

    def __init__(self, fn: Callable[..., np.ndarray], static_batch: int | None):
        self.fn, self.static_batch = fn, static_batch

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        n, b = arrays[0].shape[0], self.static_batch
        if b is None or b == n:
            return self.fn(*arrays)
        if n % b:
            raise ValueError(f"batch {n} is not a multiple of the graph's static batch {b}")
        return np.concatenate([self.fn(*(a[i:i + b] for a in arrays)) for i in range(0, n, b)])


def _static_batch(path: Path) -> int | None:
    """The fixed batch size of an ONNX graph's first input, None when dynamic."""
    from trt_build.build import onnx_input_shapes

    dims = next(iter(onnx_input_shapes(path).values()))
    return dims[0] if dims else None


def ort_graph(path: Path) -> Graph:
    """ONNX Runtime CPU session (threads = cores, no spinning) as a Graph."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _threads()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names, out = [i.name for i in sess.get_inputs()], sess.get_outputs()[0].name
    return Graph(lambda *a: sess.run([out], dict(zip(names, a)))[0], _static_batch(path))


def openvino_graph(path: Path, precision: str) -> Graph:
    """OpenVINO CPU model compiled per static input shape with an explicit precision hint ('f32' or 'bf16')."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    names = [i.get_any_name() for i in model.inputs]
    reqs: dict[tuple, object] = {}

    def fn(*a):
        key = tuple(x.shape for x in a)
        req = reqs.get(key)
        if req is None:
            m = model.clone()
            m.reshape({n: list(x.shape) for n, x in zip(names, a)})
            req = reqs[key] = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": 1,
                                                           "INFERENCE_NUM_THREADS": _threads(),
                                                           "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
        return req.infer([np.ascontiguousarray(x, np.float32) for x in a])[0].copy()

    return Graph(fn, _static_batch(path))


def openvino_has_bf16() -> bool:
    """True when this CPU runs bf16 natively (AVX-512 BF16 / AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def torch_graph(module) -> Graph:
    """A torch module in eager mode (no_grad) as a Graph."""
    import torch

    def fn(*a):
        with torch.no_grad():
            return module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in a)).numpy()

    return Graph(fn, None)


# ---------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class Combo:
    """One way of super-resolving: backend, sampler, steps, start, and optional distilled parts."""

    name: str
    backend: str  # torch | ort | openvino-f32 | openvino-bf16
    sampler: str = "dpmpp_2m"
    steps: int = 20
    init: str = "noise"  # or "noised_estimate"
    t_start: int | None = None
    student: str | None = None  # ONNX file of a distilled few-step student
    decoder: str | None = None  # ONNX file of a light decoder
    encoder: str | None = None  # ONNX file of a light condition encoder
    fused: bool = False  # ORT only: one fused step graph call per step


def _lr_patch(manifest: dict) -> int:
    """LR tile side the model was trained on (the bundle's default is 16)."""
    return int(manifest.get("lr_patch", 16))


def _unit(img: np.ndarray) -> np.ndarray:
    """uint8 [B,h,w] -> float32 [B,1,h,w] in [-1, 1]."""
    return (img.astype(np.float32) / 127.5 - 1.0)[:, None]


def _u8(img: np.ndarray) -> np.ndarray:
    """[B,1,H,W] in [-1, 1] -> uint8 [B,H,W]."""
    return np.clip(np.round((img[:, 0] + 1.0) * 127.5), 0, 255).astype(np.uint8)


class BundleGraphs:
    """The bundle's graphs on one backend, loaded once and shared by the combos that use it."""

    def __init__(self, bundle: Path, manifest: dict, torch_modules: dict | None = None):
        self.bundle, self.manifest = bundle, manifest
        self._cache: dict[tuple[str, str], Graph] = {}
        self._torch = torch_modules

    def torch_modules(self) -> dict:
        """The bundle's torch modules (for the eager reference and the FLOP count), rebuilt by the torch runner."""
        if self._torch is None:
            from edge.sr.bundle import load_bundle
            from edge.sr.runners import TorchRunner

            self._torch = TorchRunner.from_bundle(load_bundle(self.bundle)).modules
        return self._torch

    def get(self, backend: str, name: str) -> Graph:
        """Graph `name` ('denoiser', 'lr_encoder', 'hr_encoder', 'hr_decoder' or an ONNX file) on `backend`."""
        key = (backend, name)
        if key not in self._cache:
            path = self._path(name)
            if backend == "torch":
                self._cache[key] = torch_graph(self.torch_modules()[name])
            elif backend == "ort":
                self._cache[key] = ort_graph(path)
            elif backend.startswith("openvino-"):
                self._cache[key] = openvino_graph(path, backend.split("-", 1)[1])
            else:
                raise ValueError(f"unknown backend {backend!r}")
        return self._cache[key]

    def _path(self, name: str) -> Path:
        """ONNX path of a bundle graph name or an extra file (absolute, or relative to the bundle / working dir)."""
        p = Path(name)
        if p.suffix != ".onnx":
            p = self.bundle / f"{name}.onnx"
        elif not p.is_absolute() and not p.exists():
            p = self.bundle / p
        if not p.exists():
            raise FileNotFoundError(f"{p}: graph not found in the bundle")
        return p

    def fused_sampler(self, name: str):
        """FusedSampler over the fused step graph of a denoiser ONNX (built once into runs/bench/)."""
        import onnxruntime as ort

        from edge.sr.fused import FusedSampler, fuse_onnx

        key = ("fused", name)
        if key not in self._cache:
            src = self._path(name)
            dst = Path("runs/bench") / f"{self.manifest.get('model_id', 'model')}-{src.stem}-fused.onnx"
            dst.parent.mkdir(parents=True, exist_ok=True)
            fuse_onnx(src, dst)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = _threads()
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._cache[key] = FusedSampler(ort.InferenceSession(str(dst), opts, providers=["CPUExecutionProvider"]))
        return self._cache[key]


def make_upscaler(combo: Combo, graphs: BundleGraphs, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 LR tiles [B,h,w] -> uint8 SR tiles [B,h*s,w*s] for one combo (seeded, deterministic)."""
    import cv2

    from edge.sr.samplers import SamplerSpec, sample
    from edge.sr.schedule import Schedule

    man = graphs.manifest
    if combo.backend == "box":  # the box's own path: SuperResolver with the bundle defaults, one tile per call
        from edge.sr.resolver import SuperResolver

        sr = SuperResolver.from_bundle(graphs.bundle, backend="ort", seed=seed)
        return lambda lr: np.stack([sr.upscale(t).sr for t in lr])
    sched = Schedule.from_manifest(man["schedule"])
    pred = man["prediction"]
    scale = int(man["scale"])
    spec = SamplerSpec(name=combo.sampler, steps=combo.steps, spacing="leading" if combo.sampler == "ddpm" else "trailing",
                       init=combo.init, t_start=combo.t_start)
    den_name = combo.student or "denoiser"
    lr_enc = graphs.get(combo.backend, combo.encoder or "lr_encoder")
    from edge.sr.bundle import Bundle

    single = Bundle(graphs.bundle, man).decoder_for("sample")  # every combo draws one sample
    dec = graphs.get(combo.backend, combo.decoder or single)
    hr_enc = graphs.get(combo.backend, "hr_encoder") if combo.init == "noised_estimate" else None
    if combo.fused:
        if combo.backend != "ort":
            raise ValueError("the fused CPU loop runs on ONNX Runtime")
        fs = graphs.fused_sampler(den_name)
    else:
        den = graphs.get(combo.backend, den_name)

    def up(lr: np.ndarray) -> np.ndarray:
        cond = lr_enc(_unit(lr))
        x_init = None
        if hr_enc is not None:
            bic = np.stack([cv2.resize(t, (t.shape[1] * scale, t.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
                            for t in lr])
            x_init = hr_enc(_unit(bic))
        rng = np.random.default_rng(seed)
        if combo.fused:
            lat = fs.sample(sched, cond, spec, pred, rng=rng, x_init=x_init)
        else:
            lat = sample(den, sched, cond, cond.shape, spec, pred, rng=rng, x_init=x_init)
        return _u8(dec(lat))

    return up


def _extras(bundle: Path, manifest: dict, distill_dir: Path | None) -> dict[str, list[tuple[str, dict]]]:
    """Distilled students, light decoders and light encoders: the manifest's `distilled` entry, else distill_dir reports."""
    found: dict[str, list[tuple[str, dict]]] = {"student": [], "decoder": [], "encoder": []}
    for kind, entries in (manifest.get("distilled") or {}).items():
        group = "student" if kind.startswith("student") else "encoder" if kind == "light_encoder" else "decoder"
        for e in entries if isinstance(entries, list) else [entries]:
            found[group].append((str(bundle / e["file"]), e))
    if distill_dir is not None and distill_dir.is_dir() and not any(found.values()):
        for rep in sorted(distill_dir.glob("student*_report.json")):
            e = json.loads(rep.read_text())
            found["student"].append((str(distill_dir / e["file"]), e))
        for group, name in (("decoder", "decoder_report.json"), ("encoder", "encoder_report.json")):
            rep = distill_dir / name
            if rep.exists():
                e = json.loads(rep.read_text())
                found[group].append((str(distill_dir / e["file"]), e))
    return {k: [(f, e) for f, e in v if Path(f).exists()] for k, v in found.items()}


def plan_combos(manifest: dict, extras: dict, quick: bool, bf16: bool) -> tuple[Combo, list[Combo], str]:
    """(reference, combos to measure, name of the default fast path)."""
    T = int(manifest["schedule"]["timesteps"])
    ref_spec = manifest.get("reference") or {"name": "ddpm", "steps": T}
    ref = Combo("reference torch ddpm", "torch", ref_spec.get("name", "ddpm"), int(ref_spec.get("steps", T)))
    default = manifest.get("sampler") or {"name": "dpmpp_2m", "steps": 20}
    d_name, d_steps = default.get("name", "dpmpp_2m"), int(default.get("steps", 20))
    ov = ["openvino-f32"] + (["openvino-bf16"] if bf16 else [])
    combos = [
        Combo(f"box SuperResolver ort {d_name}{d_steps} (bundle default, 1 tile/call)", "box", d_name, d_steps,
              default.get("init", "noise"), default.get("t_start")),
        Combo(f"ort {d_name}{d_steps} (bundle default)", "ort", d_name, d_steps, default.get("init", "noise"),
              default.get("t_start")),
        Combo(f"ort fused {d_name}{d_steps}", "ort", d_name, d_steps, default.get("init", "noise"), default.get("t_start"),
              fused=True),
        Combo("ort fused dpmpp_2m10", "ort", "dpmpp_2m", 10, fused=True),
        Combo("ort fused dpmpp_2m10 noised-estimate t=T/2", "ort", "dpmpp_2m", 10, "noised_estimate", T // 2, fused=True),
        *[Combo(f"{b} dpmpp_2m10", b, "dpmpp_2m", 10) for b in ov],
    ]
    if not quick:
        combos += [
            Combo("torch dpmpp_2m20", "torch", "dpmpp_2m", 20),
            Combo("ort ddpm200", "ort", "ddpm", T),
            Combo("ort ddim25", "ort", "ddim", 25), Combo("ort ddim10", "ort", "ddim", 10),
            Combo("ort fused dpmpp_2m25", "ort", "dpmpp_2m", 25, fused=True),
            *[Combo(f"{b} dpmpp_2m20", b, "dpmpp_2m", 20) for b in ov],
            Combo("ort fused ddim10 noised-estimate t=T/2", "ort", "ddim", 10, "noised_estimate", T // 2, fused=True),
        ]
    fast = combos[2].name
    light = extras["decoder"][0][0] if extras["decoder"] else None
    for path, e in extras["student"]:
        k = int(e["steps"])
        for b in ["ort"] + ov:
            combos.append(Combo(f"{b} student{k}", b, "ddim", k, student=path))
            if light:
                combos.append(Combo(f"{b} student{k} + light decoder", b, "ddim", k, student=path, decoder=light))
        combos.append(Combo(f"ort fused student{k}", "ort", "ddim", k, student=path, fused=True))
        if light:
            combos.append(Combo(f"ort fused student{k} + light decoder", "ort", "ddim", k, student=path, decoder=light,
                                fused=True))
    if light:
        combos.append(Combo("ort fused dpmpp_2m10 + light decoder", "ort", "dpmpp_2m", 10, decoder=light, fused=True))
    enc = extras.get("encoder") or []
    if enc and light:
        for c in [c for c in combos if c.student and c.decoder and (c.fused or c.backend.startswith("openvino"))]:
            combos.append(replace(c, name=f"{c.name} + light encoder", encoder=enc[0][0]))
    fp = manifest.get("fast_path") if isinstance(manifest.get("fast_path"), dict) else {}
    names = [c.name for c in combos]
    # the bundle's fast path: the first of its named combos this machine can run (bf16 ones need a bf16 CPU)
    fast = next((n for n in fp.get("bench_names", [fp.get("bench_name")]) if n in names), fast)
    return ref, combos, fast


def combo_flops(combo: Combo, graphs: BundleGraphs, extras: dict) -> int:
    """FLOPs per sample of a combo, counted on the torch modules (light decoder: from its distillation report)."""
    import torch

    mods = graphs.torch_modules()
    man = graphs.manifest
    c, h = int(man["latent_channels"]), _lr_patch(man)
    z = torch.zeros(1, c, h, h)
    key = ("flops",)
    if key not in graphs._cache:
        lr = torch.zeros(1, 1, h, h)
        hr = torch.zeros(1, 1, h * int(man["scale"]), h * int(man["scale"]))
        graphs._cache[key] = {
            "lr_encoder": count_flops(mods["lr_encoder"], lr), "hr_encoder": count_flops(mods["hr_encoder"], hr),
            "denoiser": count_flops(mods["denoiser"], z, torch.zeros(1), z), "hr_decoder": count_flops(mods["hr_decoder"], z),
        }
    f = graphs._cache[key]

    def part(group: str, path: str | None, full: int) -> int:
        """FLOPs of a distilled part from its report (the full graph's when the combo uses the full one)."""
        return next((int(e.get("flops", full)) for p, e in extras.get(group, []) if p == path), full) if path else full

    total = (part("encoder", combo.encoder, f["lr_encoder"]) + combo.steps * f["denoiser"]
             + part("decoder", combo.decoder, f["hr_decoder"]))
    if combo.init == "noised_estimate":
        total += f["hr_encoder"]
    return int(total)


@dataclass
class Result:
    """Measured speed and quality of one combo."""

    name: str
    backend: str
    steps: int
    samples: int
    s_per_sample: float
    samples_per_s: float
    psnr_db: float
    ssim: float
    texture_distance: float
    peak_rss_mb: float
    flops_per_sample: int
    floor_s_per_sample: float
    floor_fraction: float
    speedup: float = float("nan")
    psnr_delta_db: float = float("nan")
    texture_ratio: float = float("nan")
    error: str | None = None
    extra: dict = field(default_factory=dict)


def run_combo(combo: Combo, graphs: BundleGraphs, extras: dict, lr: np.ndarray, hr: np.ndarray, batch: int,
              rate: float, seed: int = 0, warmup_rows: int | None = None, hr_coeffs: np.ndarray | None = None,
              n_ref: int | None = None) -> Result:
    """Time one combo over all tiles (batches of `batch`, one warm-up call) and score it against ground truth."""
    up = make_upscaler(combo, graphs, seed)
    batches = [lr[i:i + batch] for i in range(0, len(lr), batch)]
    with PeakRSS() as rss:
        outs, s_per_batch = per_sample_time(up, batches, warmup_rows=warmup_rows)
    sr = np.concatenate(outs)
    q = quality(list(sr), list(hr[: len(sr)]), truth_coeffs=hr_coeffs)
    flops = combo_flops(combo, graphs, extras)
    s = s_per_batch * len(batches) / len(sr)
    floor = flops / rate
    res = Result(combo.name, combo.backend, combo.steps, len(sr), s, 1.0 / s, q["psnr_db"], q["ssim"],
                 q["texture_distance"], rss.peak_bytes / 2**20, flops, floor, floor / s)
    if n_ref is not None:  # quality on the tiles the reference saw, for the deltas
        res.extra["on_reference_tiles"] = quality(list(sr[:n_ref]), list(hr[:n_ref]), truth_coeffs=hr_coeffs)
    return res


def _table(results: list[Result], ref: Result, fast_name: str):
    """Rich table of all results, the reference first."""
    from rich.table import Table

    t = Table(title="lpbf-edge bench (per-sample time; quality vs ground truth)")
    for col in ("path", "s/sample", "samples/s", "speed-up", "PSNR dB", "dPSNR", "texture", "tex/ref", "peak RSS MB",
                "GFLOP", "floor frac"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for r in [ref, *results]:
        if r.error:
            t.add_row(r.name, "error: " + r.error[:60], *[""] * 9)
            continue
        mark = " *" if r.name == fast_name else ""
        t.add_row(r.name + mark, f"{r.s_per_sample:.4f}", f"{r.samples_per_s:.1f}", f"{r.speedup:.1f}x", f"{r.psnr_db:.2f}",
                  f"{r.psnr_delta_db:+.2f}", f"{r.texture_distance:.4f}", f"{r.texture_ratio:.2f}", f"{r.peak_rss_mb:.0f}",
                  f"{r.flops_per_sample / 1e9:.2f}", f"{r.floor_fraction:.3f}")
    return t


def run_bench(bundle: Path, quick: bool, tiles: int | None, ref_tiles: int | None, batch: int, seed: int,
              distill_dir: Path | None, fast: str | None, only: list[str] | None = None, echo=print,
              torch_modules: dict | None = None) -> dict:
    """Run the whole benchmark and return the JSON-able report (torch_modules: the bundle's modules, if at hand)."""
    import platform

    import torch

    from edge.sr.bundle import load_bundle

    manifest = load_bundle(bundle).manifest  # verifies every file's sha256
    graphs = BundleGraphs(bundle, manifest, torch_modules)
    extras = _extras(bundle, manifest, distill_dir)
    bf16 = openvino_has_bf16()
    ref_combo, combos, fast_name = plan_combos(manifest, extras, quick, bf16)
    if fast:
        fast_name = fast
    if only:
        combos = [c for c in combos if c.name == fast_name or any(o in c.name for o in only)]
    n = tiles or (8 if quick else 32)
    n_ref = min(n, ref_tiles or (4 if quick else 2 * batch))
    lr, hr = bench_pairs(n, _lr_patch(manifest) * int(manifest["scale"]), int(manifest["scale"]), seed=seed)
    rate = matmul_rate("float32")
    rate_bf16 = matmul_rate("bfloat16") if bf16 else None
    echo(f"matmul rate: {rate / 1e9:.1f} GFLOP/s fp32" + (f", {rate_bf16 / 1e9:.1f} bf16" if rate_bf16 else ""))
    hr_coeffs = texture_coeffs(list(hr))
    ref, torch_threads = None, 1
    # the reference runs at every thread count and keeps its fastest: a quick probe can pick the slower one on a
    # busy machine, and a slow reference would flatter every speed-up
    for threads in sorted({1, _threads()}):
        echo(f"reference: {ref_combo.name} on {n_ref} tiles, torch threads {threads} ...")
        torch.set_num_threads(threads)
        r = run_combo(ref_combo, graphs, extras, lr[:n_ref], hr[:n_ref], min(batch, n_ref), rate, seed, warmup_rows=1,
                      hr_coeffs=hr_coeffs)
        if ref is None or r.s_per_sample < ref.s_per_sample:
            ref, torch_threads = r, threads
    torch.set_num_threads(torch_threads)
    ref.speedup, ref.psnr_delta_db, ref.texture_ratio = 1.0, 0.0, 1.0
    results = []
    for c in combos:
        echo(f"{c.name} on {n} tiles ...")
        try:
            r = run_combo(c, graphs, extras, lr, hr, batch, rate, seed, hr_coeffs=hr_coeffs, n_ref=n_ref)
        except Exception as exc:  # one broken path must not hide the others; reported in the table and JSON
            r = Result(c.name, c.backend, c.steps, 0, *[float("nan")] * 6, 0, float("nan"), float("nan"),
                       error=f"{type(exc).__name__}: {exc}")
        else:
            r.speedup = ref.s_per_sample / r.s_per_sample
            q = r.extra["on_reference_tiles"]  # the reference saw only the first n_ref tiles: compare on those
            r.psnr_delta_db = q["psnr_db"] - ref.psnr_db
            r.texture_ratio = q["texture_distance"] / ref.texture_distance
        results.append(r)
    from rich.console import Console

    fast_r = next((r for r in results if r.name == fast_name), None)
    if fast_r is None:
        raise ValueError(f"fast path {fast_name!r} is not among the measured combos: {[r.name for r in results]}")
    rate = max(rate, matmul_rate("float32"))  # a second measurement: the machine may have been busy at the start
    if rate_bf16:
        rate_bf16 = max(rate_bf16, matmul_rate("bfloat16"))
    for r in [ref, *results]:
        if not r.error:
            r.floor_s_per_sample = r.flops_per_sample / floor_rate(r.backend, rate, rate_bf16)
            r.floor_fraction = r.floor_s_per_sample / r.s_per_sample
    Console(width=200).print(_table(results, ref, fast_name))
    report = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "matmul_gflops_fp32": rate / 1e9, "load_avg_1min": os.getloadavg()[0], "matmul_gflops_bf16": rate_bf16 / 1e9 if rate_bf16 else None},
        "model": {"path": str(bundle), "model_id": manifest.get("model_id"), "lr_patch": _lr_patch(manifest),
                  "scale": manifest["scale"]},
        "setup": {"quick": quick, "tiles": n, "reference_tiles": n_ref, "batch": batch, "seed": seed,
                  "torch_threads": torch_threads},
        "reference": asdict(ref),
        "fast": asdict(fast_r),
        "speedup": fast_r.speedup,
        "floor": {"s_per_sample": fast_r.floor_s_per_sample, "flops_per_sample": fast_r.flops_per_sample,
                  "fraction_achieved": fast_r.floor_fraction,
                  "reference_s_per_sample": ref.floor_s_per_sample},
        "targets": {"speedup_100x": fast_r.speedup >= 100, "psnr_within_0.3db": fast_r.psnr_delta_db >= -0.3,
                    "texture_within_10pct": fast_r.texture_ratio <= 1.10},
        "combos": [asdict(r) for r in results],
    }
    return report


def bench_cmd(
    quick: bool = typer.Option(False, "--quick", help="Few tiles and the main combos only (a few minutes on 2 cores)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON here."),
    model: Path | None = typer.Option(None, help="Model bundle (default: models/default or $LPBF_MODEL)."),
    tiles: int | None = typer.Option(None, help="Tiles per combo (default 8 quick / 32 full)."),
    ref_tiles: int | None = typer.Option(None, help="Tiles for the slow reference (default one batch quick)."),
    batch: int = typer.Option(8, help="Tiles per model call."),
    seed: int = typer.Option(0, help="Tile selection and sampler seed."),
    distill: Path | None = typer.Option(Path("runs/distill"), help="Folder of distilled students / light decoders."),
    fast: str | None = typer.Option(None, help="Name of the combo to report as the fast path."),
    only: list[str] | None = typer.Option(None, help="Measure only combos whose name contains this (repeatable)."),
) -> None:
    """Speed and quality of the fast path and every backend/sampler against the 200-step torch reference."""
    from edge.sr.bundle import BundleError, default_bundle_path
    from edge.sr.runners import BackendUnavailable

    bundle = model or default_bundle_path()
    try:
        report = run_bench(bundle, quick, tiles, ref_tiles, batch, seed, distill, fast, only, echo=typer.echo)
    except (BundleError, BackendUnavailable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"fast path: {report['fast']['name']}: {report['speedup']:.1f}x faster than the reference, "
               f"PSNR {report['fast']['psnr_delta_db']:+.2f} dB, texture x{report['fast']['texture_ratio']:.2f}, "
               f"{report['floor']['fraction_achieved']:.3f} of the arithmetic floor")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, default=float))
        typer.echo(f"wrote {json_out}")


def register(app: typer.Typer) -> None:
    """Add the `bench` command."""
    app.command("bench")(bench_cmd)


@dataclass
class FastUpscaler:
    """The fast path as a tile-batch function, with what the plate benchmark needs to know about it."""

    fn: Callable[[np.ndarray], np.ndarray]
    scale: int
    tile: int
    overlap: int
    flops_per_tile: int
    description: str

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 LR tiles [B,h,w] -> uint8 SR tiles [B,h*s,w*s]."""
        return self.fn(tiles)


def default_fast_upscaler(model: Path | None = None, fast: str | None = None, distill_dir: Path | None = Path("runs/distill"),
                          seed: int = 0) -> FastUpscaler:
    """The bench's fast path for a bundle (default models/default) ready to run on tiles."""
    from edge.sr.bundle import default_bundle_path, load_bundle

    bundle = model or default_bundle_path()
    manifest = load_bundle(bundle).manifest
    graphs = BundleGraphs(bundle, manifest)
    extras = _extras(bundle, manifest, distill_dir)
    _, combos, fast_name = plan_combos(manifest, extras, quick=False, bf16=openvino_has_bf16())
    name = fast or fast_name
    combo = next((c for c in combos if c.name == name), None)
    if combo is None:
        raise ValueError(f"unknown fast path {name!r}; choose one of {[c.name for c in combos]}")
    from edge.sr.bundle import BundleError

    try:
        flops = combo_flops(combo, graphs, extras)
    except BundleError:  # no torch arch in the bundle: no FLOP count, no floor
        flops = 0
    tile = _lr_patch(manifest)
    return FastUpscaler(make_upscaler(combo, graphs, seed), int(manifest["scale"]), tile, tile // 4, flops, combo.name)
