"""The stand-in parser's view of an ONNX graph: what TensorRT 10.3's parser refuses, and one layer per node."""

from __future__ import annotations

from enum import Enum


class LayerType(Enum):
    CONVOLUTION, MATRIX_MULTIPLY, ELEMENTWISE, UNARY, ACTIVATION, NORMALIZATION, SHUFFLE, CONCATENATION = range(8)
    SLICE, RESIZE, SHAPE, REDUCE, SOFTMAX, GATHER, CAST, POOLING, IDENTITY, FILL, CONSTANT = range(8, 19)


OP_LAYERS = {
    "Conv": "CONVOLUTION", "Gemm": "MATRIX_MULTIPLY", "MatMul": "MATRIX_MULTIPLY",
    "Add": "ELEMENTWISE", "Sub": "ELEMENTWISE", "Mul": "ELEMENTWISE", "Div": "ELEMENTWISE", "Pow": "ELEMENTWISE",
    "Sin": "UNARY", "Cos": "UNARY", "Sqrt": "UNARY", "Exp": "UNARY", "Reciprocal": "UNARY", "Neg": "UNARY",
    "Sigmoid": "ACTIVATION", "Relu": "ACTIVATION", "Clip": "ACTIVATION", "Tanh": "ACTIVATION",
    "InstanceNormalization": "NORMALIZATION", "LayerNormalization": "NORMALIZATION",
    "Reshape": "SHUFFLE", "Unsqueeze": "SHUFFLE", "Squeeze": "SHUFFLE", "Flatten": "SHUFFLE", "Transpose": "SHUFFLE",
    "DepthToSpace": "SHUFFLE", "Concat": "CONCATENATION", "Slice": "SLICE", "Split": "SLICE", "Expand": "SLICE",
    "Resize": "RESIZE", "Shape": "SHAPE", "ReduceMean": "REDUCE", "ReduceSum": "REDUCE", "Softmax": "SOFTMAX",
    "Gather": "GATHER", "Cast": "CAST", "AveragePool": "POOLING", "MaxPool": "POOLING", "Identity": "IDENTITY",
    "ConstantOfShape": "FILL", "GroupNormalization": "NORMALIZATION",
}
# Operators the 10.3 parser lacks (added later per onnx-tensorrt's changelog), spelled out independently of
# trt_build.optable so the stand-in is not the lint grading itself.
NOT_IN_10_3 = {"HannWindow", "HammingWindow", "BlackmanWindow", "STFT", "Attention", "RotaryEmbedding",
               "RMSNormalization", "TensorScatter"}


def parser_errors(model) -> list[str]:
    """What the TensorRT 10.3 parser would refuse in this model (empty: it parses)."""
    out = []
    opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}.get("ai.onnx")
    if opset is None or not 9 <= opset <= 20:
        out.append(f"unsupported ONNX opset {opset}: this parser reads opsets 9 to 20")
    if model.ir_version > 10:
        out.append(f"unsupported IR version {model.ir_version}")
    for node in model.graph.node:
        where = f"node {node.name or node.output[0]!r} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            out.append(f"{where}: no importer for domain {node.domain!r}")
        elif node.op_type in NOT_IN_10_3 or (node.op_type not in OP_LAYERS and node.op_type != "Constant"):
            out.append(f"{where}: no importer for operator {node.op_type}")
        elif node.op_type == "GroupNormalization" and opset >= 21:
            out.append(f"{where}: opset-21 GroupNormalization is not supported")
    return out


def onnx_layers(model, onnx_types: dict) -> tuple[list, list]:
    """([(layer name, LayerType, [(in name, dtype)], [(out name, dtype)])], [(input name, dtype, dims)])."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model, strict_mode=False).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.input, *inferred.output, *inferred.value_info)}
    types.update({i.name: i.data_type for i in inferred.initializer})
    inits = {i.name for i in model.graph.initializer}
    layers = []
    for k, node in enumerate(model.graph.node):
        if node.op_type == "Constant":
            continue  # the parser makes no layer for a Constant node
        name = node.name or f"node_of_{node.output[0]}_{k}"
        ins = [(i, onnx_types.get(types.get(i))) for i in node.input if i]
        outs = [(o, onnx_types.get(types.get(o))) for o in node.output if o]
        layers.append((name, LayerType[OP_LAYERS[node.op_type]], ins, outs))
    inputs = []
    for v in model.graph.input:
        if v.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
        inputs.append((v.name, onnx_types.get(v.type.tensor_type.elem_type), dims))
    return layers, inputs
