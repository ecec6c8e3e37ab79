"""Shared distillation plumbing: the teacher as the runtime runs it, ONNX sessions and export, tiles, reports."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import imaging
from edge.sr.runners import ort_session as ort_session  # students are checked with the runtime's settings

Array = np.ndarray


@dataclass
class DistillLog:
    """Loss curve and wall time of one distillation run."""

    losses: list[float]
    seconds: float


def teacher_resolver(model):
    """The teacher bundle as the runtime runs it: a SuperResolver on ONNX Runtime (its runner's graphs, its
    condition), without the grain cap (distillation works on latents and decoded tiles)."""
    from edge.sr.resolver import SuperResolver

    return SuperResolver.from_bundle(model, backend="ort", grain_cap=False)


def session_fn(sess):
    """numpy callable over a session with positional inputs."""
    names = [i.name for i in sess.get_inputs()]
    out = sess.get_outputs()[0].name
    return lambda *arrays: sess.run([out], dict(zip(names, arrays, strict=False)))[0]


def hr_tiles(n: int, hr_patch: int, scale: int, seed: int, exclude: tuple[str, ...] = (),
             sims: tuple[Path, ...] = (), sim_share: float = 0.0) -> tuple[Array, Array]:
    """(LR, HR) uint8 training tiles from the bench's data source (real photographs but `exclude`, else sim layers),
    with round(sim_share * n) of them from the sim build folders `sims` (their registered webcam LR)."""
    from edge.data.tiles import bench_pairs, sim_build_pairs

    if not 0.0 <= sim_share <= 1.0:
        raise ValueError(f"sim share must be in [0, 1], got {sim_share}")
    n_sim = round(sim_share * n) if sims else 0
    if sim_share > 0 and not sims:
        raise ValueError("a sim share needs sim build folders (--sim)")
    lr, hr = bench_pairs(n - n_sim, hr_patch, scale, seed=seed, exclude=exclude)
    if n_sim:
        slr, shr = sim_build_pairs(tuple(sims), n_sim, hr_patch, scale, seed=seed + 1)
        lr, hr = np.concatenate([lr, slr]), np.concatenate([hr, shr])
    return lr, hr


def to_unit(img: Array) -> Array:
    """uint8 [N,h,w] -> float32 [N,1,h,w] in [-1, 1] (the bundle graphs' image convention)."""
    return imaging.to_unit(img)[:, None]


def psnr_unit(a: Array, b: Array) -> float:
    """PSNR in dB of two [-1,1] image batches on the 8-bit scale."""
    mse = float(np.mean(((a - b) * 127.5) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def time_call(fn, *args, reps: int = 5) -> float:
    """Median seconds of fn(*args) after one warm-up call."""
    fn(*args)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def export_onnx(module, args: tuple, names_in: list[str], names_out: list[str], path) -> None:
    """ONNX export (opset 18, TorchScript exporter) with the given I/O names and a dynamic batch axis."""
    import warnings

    import torch

    axes = {n: {0: "batch"} for n in [*names_in, *names_out]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=names_in, output_names=names_out,
                          opset_version=18, dynamo=False, dynamic_axes=axes)


def echo_report(command, *args) -> None:
    """Run a distillation command and print its JSON report; a bad bundle is one error line and exit code 2."""
    import json

    import typer

    from edge.sr.bundle import BundleError

    try:
        typer.echo(json.dumps(command(*args), indent=2))
    except BundleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def load_onnx_weights(module, path: Path, example: tuple) -> int:
    """Warm-start a torch module from an ONNX export of the same architecture (an earlier distilled part).

    Initializers named like the state dict load by name; the rest (the exporter folds GroupNorm's affine into
    anonymous [C,1,1] Mul/Add constants) load in graph order onto the modules' leftover weight/bias in the order a
    forward pass over `example` (the module's inputs) calls them. Returns how many tensors were loaded; raises
    ValueError when the shapes do not line up.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state = module.state_dict()
    named = {k: inits[k] for k in state if k in inits}
    left = set(state) - set(named)
    calls: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o, name=name: calls.append(name))
             for name, m in module.named_modules() if any(f"{name}.{p}" in left for p in ("weight", "bias"))]
    with torch.no_grad():
        module(*example)
    for h in hooks:
        h.remove()
    order = [f"{name}.{p}" for name in dict.fromkeys(calls) for p in ("weight", "bias") if f"{name}.{p}" in left]
    anon = [n for node in graph.node for n in node.input if n in inits and n not in state and n.startswith("onnx::")]
    anon = list(dict.fromkeys(anon))  # graph order, each once
    if len(anon) != len(left) or len(order) != len(left):
        raise ValueError(f"{path}: {len(left)} state-dict tensors have no initializer of that name and "
                         f"{len(anon)} anonymous initializers are left: not the same architecture")
    for k, n in zip(order, anon, strict=False):
        if inits[n].size != state[k].numel():
            raise ValueError(f"{path}: initializer {n} {inits[n].shape} does not fit {k} {tuple(state[k].shape)}")
        named[k] = inits[n].reshape(tuple(state[k].shape))
    module.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in named.items()})
    return len(named)
