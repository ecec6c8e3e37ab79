"""ONNX lint against what the TensorRT 10.3 parser accepts (trt_build.optable): opset, IR, operators, restrictions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trt_build import optable


@dataclass(frozen=True)
class Finding:
    """One problem: level 'error' (the parser would refuse or mis-read it) or 'warning', where, and why."""

    level: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper()} {self.where}: {self.message}"


def _attrs(node) -> dict:
    """Attribute name -> Python value."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(v) -> str:
    """bytes attribute -> str."""
    return v.decode() if isinstance(v, bytes) else str(v)


def _resize(node, where: str) -> list[Finding]:
    """Resize modes the 10.3 parser implements (no cubic, no antialias, aspect policy stretch)."""
    a, out = _attrs(node), []
    mode = _text(a.get("mode", "nearest"))
    coord = _text(a.get("coordinate_transformation_mode", "half_pixel"))
    nearest = _text(a.get("nearest_mode", "round_prefer_floor"))
    if mode not in optable.RESIZE_MODES:
        out.append(Finding("error", where, f"Resize mode {mode!r} unsupported (nearest, linear, cubic)"))
    elif mode in optable.RESIZE_UNDOCUMENTED:
        out.append(Finding("warning", where, f"Resize mode {mode!r} is read by the importer but not listed in "
                                             "operators.md: confirm with `lpbf-edge trt check` on the device"))
    if coord not in optable.RESIZE_COORDINATE_MODES:
        out.append(Finding("error", where, f"Resize coordinate_transformation_mode {coord!r} unsupported"))
    if mode == "nearest" and nearest not in optable.RESIZE_NEAREST_MODES:
        out.append(Finding("error", where, f"Resize nearest_mode {nearest!r} unsupported"))
    if int(a.get("antialias", 0)):
        out.append(Finding("error", where, "Resize antialias is not supported"))
    if _text(a.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        out.append(Finding("error", where, "Resize keep_aspect_ratio_policy must be 'stretch'"))
    return out


def _pool(node, where: str) -> list[Finding]:
    """2-D/3-D pooling without dilation."""
    a, out = _attrs(node), []
    kernel = a.get("kernel_shape", [])
    if kernel and len(kernel) not in (2, 3):
        out.append(Finding("error", where, f"{node.op_type}: only 2-D or 3-D pooling (kernel {kernel})"))
    if any(int(d) != 1 for d in a.get("dilations", [])):
        out.append(Finding("error", where, f"{node.op_type}: dilations must be empty or all ones"))
    return out


def _constant_inputs(node, where: str, constants: set[str]) -> list[Finding]:
    """Inputs 10.3 needs as build-time constants."""
    out = []
    for idx, label in optable.CONSTANT_INPUTS.get(node.op_type, {}).items():
        if idx < len(node.input) and node.input[idx] and node.input[idx] not in constants:
            out.append(Finding("error", where, f"{node.op_type} input {label!r} must be an initializer or Constant "
                                               f"for TensorRT {optable.TARGET}"))
    return out


def lint_model(model, name: str = "model") -> list[Finding]:
    """All findings for an in-memory ONNX model."""
    out: list[Finding] = []
    opsets = {o.domain or "ai.onnx": int(o.version) for o in model.opset_import}
    default = opsets.pop("ai.onnx", None)
    if default is None or not optable.OPSET_MIN <= default <= optable.OPSET_MAX:
        span = f"{optable.OPSET_MIN}..{optable.OPSET_MAX}"
        out.append(Finding("error", name, f"opset {default} outside {span}, the range the TensorRT {optable.TARGET} "
                                          "parser takes (prepare the graph first)"))
    for domain in opsets:
        out.append(Finding("error", name, f"custom operator domain {domain!r}: no plugin is shipped for it"))
    if model.ir_version > optable.IR_MAX:
        out.append(Finding("error", name, f"IR version {model.ir_version} > {optable.IR_MAX} (ONNX 1.16 in TensorRT "
                                          f"{optable.TARGET})"))
    g = model.graph
    constants = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    for i, node in enumerate(g.node):
        where = f"{name} node {i} {node.name or node.output[0]!r} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            continue  # reported once per domain above
        if node.op_type not in optable.SUPPORTED_OPS:
            since = optable.ADDED_LATER.get(node.op_type)
            why = f"the parser supports it from TensorRT {since}" if since else "the parser does not support it"
            out.append(Finding("error", where, f"operator {node.op_type}: {why}"))
            continue
        if node.op_type == "GroupNormalization" and (default or 0) >= 21:
            out.append(Finding("error", where, "opset-21 GroupNormalization is read from TensorRT 10.9 on"))
        if node.op_type == "Resize":
            out += _resize(node, where)
        if node.op_type in ("AveragePool", "MaxPool", "LpPool"):
            out += _pool(node, where)
        out += _constant_inputs(node, where, constants)
    for v in (*g.input, *g.output):
        et = v.type.tensor_type.elem_type
        if et in optable.WARN_TYPES:
            out.append(Finding("warning", f"{name} I/O {v.name!r}", optable.WARN_TYPES[et]))
        elif et not in optable.TENSOR_TYPES:
            out.append(Finding("error", f"{name} I/O {v.name!r}", f"element type {et} is not a TensorRT tensor type"))
    return out


def lint_file(path: Path | str) -> list[Finding]:
    """All findings for an ONNX file (weights not loaded)."""
    import onnx

    return lint_model(onnx.load(str(path), load_external_data=False), Path(path).name)


def errors(findings: list[Finding]) -> list[Finding]:
    """Only the error-level findings."""
    return [f for f in findings if f.level == "error"]
