"""Bundle graph -> a graph the TensorRT 10.3 parser takes: GroupNorm decomposed, opset lowered, FP32 islands marked.

The shipped graphs are dynamo exports at opset 21 with GroupNormalization-21 (per-channel scale/bias). The
ONNX parser of TensorRT 10.3 (JetPack 6.1/6.2) documents opsets 9..20 and reads opset-21 GroupNorm only from
10.9 on (onnx-tensorrt docs/Changelog.md). `prepare_graph` rewrites a copy, never the bundle:

1. every GroupNormalization becomes Reshape [N, G, -1] -> InstanceNormalization (unit scale, zero bias)
   -> Reshape back -> Mul per-channel scale -> Add per-channel bias (the form the legacy exporter writes and
   TensorRT 10 imports natively as one INormalizationLayer; kNATIVE_INSTANCENORM is on by default since 10.0);
2. the opset is lowered to TARGET_OPSET with onnx.version_converter;
3. the nodes that must stay FP32 are found by op pattern (see `fp32_nodes`) and renamed with FP32_MARK so the
   builder can pin the layers the parser makes from them; the list is also stored in the model metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET_OPSET = 18  # <= 20 (TensorRT 10.0-10.8); 18 is also what the legacy exporter and distilled parts use
FP32_MARK = "fp32."  # prefix of node names whose TensorRT layers are pinned to FP32
META_FP32 = "lpbf.trt.fp32_nodes"  # metadata key: comma-separated names of the marked nodes
META_PREPARED = "lpbf.trt.prepared"  # metadata key: the prepare recipe (TARGET_OPSET, converter version)
PREPARE_VERSION = 1  # bump when the rewrite changes what a prepared graph computes or marks
FLOAT_TYPES = (1, 10)  # onnx TensorProto.FLOAT, FLOAT16
NORM_OPS = frozenset({"InstanceNormalization", "LayerNormalization", "GroupNormalization", "BatchNormalization"})
STAT_OPS = frozenset({"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Softmax",
                      "LogSoftmax"})
STAT_FOLLOWERS = frozenset({"Add", "Sub", "Mul", "Div", "Sqrt", "Reciprocal", "Pow"})
NON_FLOAT_OPS = frozenset({"Shape", "Size", "Constant", "ConstantOfShape", "NonZero"})
# graph input -> "only" (nodes fed by it alone: the timestep embedding) or "downstream" (all its consumers:
# the sampler update of a fused step, fed by the per-step coefficients `coef`)
DEFAULT_CONES = {"t": "only", "coef": "downstream"}


class GraphPrepError(ValueError):
    """A graph that cannot be rewritten for the target parser; the message names the node and why."""


@dataclass(frozen=True)
class Prepared:
    """What prepare_graph did: output path, nodes rewritten, FP32-marked node names by reason."""

    path: Path
    group_norms: int
    opset: int
    fp32: dict[str, list[str]]

    @property
    def fp32_names(self) -> list[str]:
        """All marked node names (with the FP32_MARK prefix)."""
        return sorted({n for names in self.fp32.values() for n in names})


def _opset(model) -> int:
    """Default-domain opset of a model."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    raise GraphPrepError("model imports no default-domain opset")


def _value_info(model) -> tuple[dict[str, int], dict[str, list[int | None]]]:
    """(tensor name -> element type, tensor name -> dims with None for unknown) after shape inference."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model, strict_mode=False)
    g = inferred.graph
    types, shapes = {}, {}
    for v in (*g.input, *g.output, *g.value_info):
        tt = v.type.tensor_type
        if tt.elem_type:
            types[v.name] = tt.elem_type
        if tt.HasField("shape"):
            shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    for init in g.initializer:
        types[init.name] = init.data_type
        shapes[init.name] = list(init.dims)
    return types, shapes


def _unique(taken: set[str], base: str) -> str:
    """A tensor/node name not yet used (base, base_1, ...)."""
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def _group_norm_nodes(model, node, shapes: dict[str, list], opset: int, taken: set[str]) -> list:
    """The opset-18 replacement of one GroupNormalization node (see the module docstring)."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    groups, eps = int(attrs["num_groups"]), float(attrs.get("epsilon", 1e-5))
    x, scale, bias = node.input[0], node.input[1], node.input[2]
    label = node.name or node.output[0]
    if scale not in inits or bias not in inits:
        raise GraphPrepError(f"GroupNormalization {label!r}: scale and bias must be initializers")
    dims = shapes.get(x)
    if dims is None or len(dims) < 3:
        raise GraphPrepError(f"GroupNormalization {label!r}: input rank unknown or < 3 ({dims})")
    s, b = numpy_helper.to_array(inits[scale]).astype(np.float32), numpy_helper.to_array(inits[bias]).astype(np.float32)
    if opset < 21 and dims[1] != s.size:  # GroupNormalization-18: scale/bias per group
        if dims[1] is None or s.size != groups:
            raise GraphPrepError(f"GroupNormalization {label!r}: opset-{opset} form needs a known channel count")
        s, b = np.repeat(s, dims[1] // groups), np.repeat(b, dims[1] // groups)
    bcast = (s.size,) + (1,) * (len(dims) - 2)
    n = {k: _unique(taken, f"{label}/{k}") for k in ("gshape", "xg", "ones", "zeros", "ng", "xshape", "y0", "scale",
                                                      "bias", "y1")}
    g.initializer.extend([
        numpy_helper.from_array(np.array([0, groups, -1], np.int64), n["gshape"]),
        numpy_helper.from_array(np.ones(groups, np.float32), n["ones"]),
        numpy_helper.from_array(np.zeros(groups, np.float32), n["zeros"]),
        numpy_helper.from_array(s.reshape(bcast), n["scale"]),
        numpy_helper.from_array(b.reshape(bcast), n["bias"]),
    ])
    return [
        helper.make_node("Reshape", [x, n["gshape"]], [n["xg"]], name=n["xg"]),
        helper.make_node("InstanceNormalization", [n["xg"], n["ones"], n["zeros"]], [n["ng"]], name=n["ng"],
                         epsilon=eps),
        helper.make_node("Shape", [x], [n["xshape"]], name=n["xshape"]),
        helper.make_node("Reshape", [n["ng"], n["xshape"]], [n["y0"]], name=n["y0"]),
        helper.make_node("Mul", [n["y0"], n["scale"]], [n["y1"]], name=n["y1"]),
        helper.make_node("Add", [n["y1"], n["bias"]], [node.output[0]], name=label),
    ]


def decompose_group_norms(model) -> int:
    """Replace every GroupNormalization in the main graph in place; returns how many were replaced."""
    g = model.graph
    todo = [n for n in g.node if n.op_type == "GroupNormalization" and n.domain in ("", "ai.onnx")]
    if not todo:
        return 0
    opset = _opset(model)
    _, shapes = _value_info(model)
    taken = {n.name for n in g.node} | {t for n in g.node for t in (*n.input, *n.output)}
    taken |= {i.name for i in g.initializer} | {i.name for i in g.input}
    new_nodes, replace = [], {id(n) for n in todo}
    for node in g.node:
        if id(node) in replace:
            new_nodes.extend(_group_norm_nodes(model, node, shapes, opset, taken))
        else:
            new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    used = {i for n in g.node for i in n.input}
    dead = [i for i in g.initializer if i.name not in used and i.name not in {x.name for x in g.input}]
    for init in dead:  # the original per-channel scale/bias now live in new broadcastable initializers
        g.initializer.remove(init)
    return len(todo)


def lower_opset(model, target: int = TARGET_OPSET):
    """The model at default-domain opset `target` (a no-op when already there); clear error when not convertible."""
    from onnx import helper, version_converter

    have = _opset(model)
    if have == target:
        return model
    if have < target:
        raise GraphPrepError(f"graph is at opset {have}, below the target {target}: re-export it")
    try:
        out = version_converter.convert_version(model, target)
    except Exception as exc:  # onnx raises RuntimeError/ConvertError with the op that has no adapter
        raise GraphPrepError(f"cannot lower opset {have} -> {target}: {exc}") from exc
    out.ir_version = min(out.ir_version, helper.find_min_ir_version_for([helper.make_opsetid("", target)]))
    return out


def _graph_inputs(model) -> list[str]:
    """Names of the real (non-initializer) graph inputs."""
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def _input_cones(model) -> dict[str, frozenset[str]]:
    """Tensor name -> the graph inputs whose values it depends on (a tensor's shape alone is not its value)."""
    inputs = set(_graph_inputs(model))
    deps: dict[str, frozenset[str]] = {n: frozenset({n}) for n in inputs}
    for node in model.graph.node:
        if node.op_type in ("Shape", "Size"):
            got: frozenset[str] = frozenset()
        else:
            got = frozenset().union(*(deps.get(i, frozenset()) for i in node.input if i))
        for o in node.output:
            deps[o] = got
    return deps


def _is_float(node, types: dict[str, int]) -> bool:
    """True when the node computes on floats: every output has a float element type (unknown counts as not)."""
    if node.op_type in NON_FLOAT_OPS:
        return False
    return all(types.get(o) in FLOAT_TYPES for o in node.output if o)


def fp32_nodes(model, cones: Mapping[str, str] | None = None) -> dict[str, list[int]]:
    """Indices of the float nodes that must stay FP32, by reason (op patterns over the graph, not node names).

    - `cone:<input>`: per entry of `cones` (default DEFAULT_CONES): mode "only" marks the nodes whose values
      depend on that graph input alone, for `t` the timestep embedding (sin/cos of arguments up to ~200 rad are
      meaningless at FP16 resolution) and the time MLP; mode "downstream" marks every node that depends on it,
      for `coef` (a fused sampler step) the linear sampler update, whose state is carried across all steps.
    - `normalization`: InstanceNorm/LayerNorm/GroupNorm/BatchNorm, reductions and softmax (statistics), the
      elementwise ops computed from statistics alone (var + eps, sqrt, reciprocal) and the squared deviation
      that feeds a reduction.
    Integer and shape nodes are never marked (under OBEY_PRECISION_CONSTRAINTS an FP32 pin on them fails).
    """
    types, _ = _value_info(model)
    deps = _input_cones(model)
    present = set(_graph_inputs(model))
    out: dict[str, list[int]] = {}
    for name, mode in (DEFAULT_CONES if cones is None else cones).items():
        if mode not in ("only", "downstream"):
            raise ValueError(f"cone mode for {name!r} must be 'only' or 'downstream', got {mode!r}")
        if name not in present:
            continue
        hit = (lambda d: d == frozenset({name})) if mode == "only" else (lambda d: name in d)
        out[f"cone:{name}"] = [i for i, n in enumerate(model.graph.node)
                               if _is_float(n, types) and n.output and hit(deps.get(n.output[0], frozenset()))]
    stats: set[str] = set()
    marked: list[int] = []
    producers = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    for i, n in enumerate(model.graph.node):
        live = [x for x in n.input if x and x not in inits]
        is_stat = n.op_type in NORM_OPS | STAT_OPS
        follows = n.op_type in STAT_FOLLOWERS and live and all(x in stats for x in live)
        if (is_stat or follows) and _is_float(n, types):
            stats.update(n.output)
            marked.append(i)
            if n.op_type in STAT_OPS and live and live[0] in producers:
                j = producers[live[0]]
                if model.graph.node[j].op_type in ("Mul", "Pow", "Sub") and _is_float(model.graph.node[j], types):
                    marked.append(j)
    out["normalization"] = sorted(set(marked))
    return out


def mark_fp32(model, cones: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Rename the nodes fp32_nodes finds with FP32_MARK (in place); returns the new names by reason."""
    from onnx import helper

    found = fp32_nodes(model, cones)
    taken = {n.name for n in model.graph.node}
    names: dict[str, list[str]] = {}
    for reason, idx in found.items():
        for i in idx:
            node = model.graph.node[i]
            if not node.name.startswith(FP32_MARK):
                node.name = _unique(taken, FP32_MARK + (node.name or node.output[0]))
            names.setdefault(reason, []).append(node.name)
    all_names = sorted({n for v in names.values() for n in v})
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, META_FP32: ",".join(all_names)})
    return names


def marked_fp32(model) -> list[str]:
    """The FP32-marked node names a prepared model records in its metadata."""
    for p in model.metadata_props:
        if p.key == META_FP32:
            return [n for n in p.value.split(",") if n]
    return []


def prepare_graph(src: Path | str, dst: Path | str, target_opset: int = TARGET_OPSET,
                  cones: Mapping[str, str] | None = None) -> Prepared:
    """Rewrite an ONNX file for the target parser (GroupNorm decomposed, opset lowered, FP32 nodes marked)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(src))
    groups = decompose_group_norms(model)
    model = lower_opset(model, target_opset)
    fp32 = mark_fp32(model, cones)
    props = {p.key: p.value for p in model.metadata_props}
    props[META_PREPARED] = f"opset={target_opset};prepare={PREPARE_VERSION}"
    helper.set_model_props(model, props)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise GraphPrepError(f"{src}: the rewritten graph does not validate: {exc}") from exc
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return Prepared(Path(dst), groups, target_opset, fp32)
