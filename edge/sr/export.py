"""torch -> ONNX export of the bundle graphs (dynamic batch and spatial axes) and static per-bucket copies."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

Exporter = Literal["dynamo", "legacy"]
# GroupNormalization-21 (opset 18's version had per-group affine and is deprecated); torch emits it as ONE node
OPSET = 21

# name -> (input names, output names); every tensor is NCHW except the timestep `t` [B]
SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lr_encoder": (("lr",), ("cond",)),
    "hr_encoder": (("hr",), ("latent",)),
    "denoiser": (("x", "t", "cond"), ("out",)),
    "hr_decoder": (("latent",), ("hr",)),
    "hr_decoder_sample": (("latent",), ("hr",)),
    "regression": (("cond",), ("latent",)),
    "pixel_regression": (("lr",), ("hr",)),
}


def export_graph(module, args: tuple, path: Path | str, input_names: tuple[str, ...], output_names: tuple[str, ...],
                 dynamic: bool = True, opset: int = OPSET, exporter: Exporter = "dynamo") -> Path:
    """Export one module to ONNX; dynamic=True frees the batch and (for 4-D tensors) spatial axes.

    exporter="dynamo" (torch.export) keeps GroupNorm as one GroupNormalization node; "legacy" (TorchScript)
    is ~20x faster to run but decomposes GroupNorm into Reshape/InstanceNormalization (used by fast tests).
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            auto = torch.export.Dim.AUTO
            shapes = tuple({0: auto, 2: auto, 3: auto} if a.ndim == 4 else {0: auto} for a in args) if dynamic else None
            torch.onnx.export(module, args, str(path), input_names=list(input_names), output_names=list(output_names),
                              opset_version=opset, dynamo=True, dynamic_shapes=shapes, external_data=False,
                              verbose=False, optimize=True)
        elif exporter == "legacy":
            axes = None
            if dynamic:
                axes = {n: ({0: "batch", 2: "height", 3: "width"} if a.ndim == 4 else {0: "batch"})
                        for n, a in zip(input_names, args, strict=False)}
                axes.update({n: {0: "batch", 2: "height", 3: "width"} for n in output_names})
            torch.onnx.export(module, args, str(path), input_names=list(input_names), output_names=list(output_names),
                              opset_version=min(opset, 18), dynamo=False, dynamic_axes=axes)
        else:
            raise ValueError(f"unknown exporter {exporter!r}; use 'dynamo' or 'legacy'")
    return path


def example_inputs(name: str, batch: int, lr: int, scale: int, latent_channels: int) -> tuple:
    """Example tensors for one bundle graph at LR size `lr` (latent grid = LR grid)."""
    import torch

    g = torch.Generator().manual_seed(0)
    lat = torch.randn(batch, latent_channels, lr, lr, generator=g)
    if name in ("lr_encoder", "pixel_regression"):
        return (torch.rand(batch, 1, lr, lr, generator=g) * 2 - 1,)
    if name == "hr_encoder":
        return (torch.rand(batch, 1, lr * scale, lr * scale, generator=g) * 2 - 1,)
    if name == "denoiser":
        return (lat, torch.full((batch,), 10.0), torch.randn(batch, latent_channels, lr, lr, generator=g))
    if name in ("hr_decoder", "hr_decoder_sample", "regression"):
        return (lat,)
    raise ValueError(f"unknown bundle graph {name!r}; expected one of {', '.join(SIGNATURES)}")


def export_bundle_graphs(modules: dict, out: Path | str, lr_patch: int, scale: int, latent_channels: int,
                         exporter: Exporter = "dynamo", opset: int = OPSET, weights: bool = True) -> list[Path]:
    """Export every graph in `modules` (keys of SIGNATURES) to out/<name>.onnx (+ out/<name>.safetensors)."""
    out = Path(out)
    written = []
    for name, mod in modules.items():
        if name not in SIGNATURES:
            continue
        ins, outs = SIGNATURES[name]
        args = example_inputs(name, 2, lr_patch, scale, latent_channels)
        written.append(export_graph(mod, args, out / f"{name}.onnx", ins, outs, True, opset, exporter))
        if weights:
            written.append(save_weights(mod, out / f"{name}.safetensors"))
    return written


def save_weights(module, path: Path | str) -> Path:
    """State dict of a module as safetensors (contiguous CPU tensors; shared tensors cloned)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    save_file(sd, str(path))
    return Path(path)


def static_copy(src: Path | str, dst: Path | str, shapes: dict[str, list[int]]) -> Path:
    """Copy an ONNX graph with its dynamic input axes fixed (one batch bucket / tile size), re-inferring shapes."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(src))
    names = [i.name for i in model.graph.input]
    unknown = set(shapes) - set(names)
    if unknown:
        raise ValueError(f"{src}: no input named {', '.join(sorted(unknown))} (inputs: {', '.join(names)})")
    for inp in model.graph.input:
        if inp.name in shapes:
            dims = inp.type.tensor_type.shape.dim
            if len(dims) != len(shapes[inp.name]):
                raise ValueError(f"{src}: input {inp.name} has rank {len(dims)}, got shape {shapes[inp.name]}")
            for d, v in zip(dims, shapes[inp.name], strict=False):
                d.Clear()
                d.dim_value = int(v)
    for o in model.graph.output:  # let inference recompute output dims
        for d in o.type.tensor_type.shape.dim:
            if d.dim_param:
                d.Clear()
    del model.graph.value_info[:]
    model = shape_inference.infer_shapes(model, strict_mode=False)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return Path(dst)


def bucket_shapes(name: str, batch: int, lr: int, scale: int, latent_channels: int) -> dict[str, list[int]]:
    """Static input shapes of one bundle graph for a batch bucket at LR tile size `lr`."""
    lat = [batch, latent_channels, lr, lr]
    return {
        "lr_encoder": {"lr": [batch, 1, lr, lr]},
        "hr_encoder": {"hr": [batch, 1, lr * scale, lr * scale]},
        "denoiser": {"x": lat, "t": [batch], "cond": lat},
        "hr_decoder": {"latent": lat},
        "hr_decoder_sample": {"latent": lat},
        "regression": {"cond": lat},
        "pixel_regression": {"lr": [batch, 1, lr, lr]},
    }[name]


def export_static_buckets(bundle_dir: Path | str, out: Path | str, lr: int, buckets: tuple[int, ...] = (1, 4, 8),
                          scale: int = 4, latent_channels: int = 4,
                          graphs: tuple[str, ...] = ("lr_encoder", "denoiser", "hr_decoder"),
                          ) -> dict[tuple[str, int], Path]:
    """Static-shape copies `<graph>.b<batch>.t<lr>.onnx` of the bundle graphs for each batch bucket."""
    src, out = Path(bundle_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return {
        (g, b): static_copy(src / f"{g}.onnx", out / f"{g}.b{b}.t{lr}.onnx",
                            bucket_shapes(g, b, lr, scale, latent_channels))
        for g in graphs for b in buckets
    }
