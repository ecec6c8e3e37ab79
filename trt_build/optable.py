"""What the ONNX parser of TensorRT 10.3 (JetPack 6.1 / 6.2) accepts: opset range, IR version, operators.

Source: onnx/onnx-tensorrt docs/operators.md (the 10.x table: "supports operators in the inclusive range of
opset 9 to opset 20" up to 10.8, 24 from 10.15) and docs/Changelog.md, from which the operators and
relaxations added after 10.3 are taken back out:
10.4 `BlackmanWindow`, `HammingWindow`, `HannWindow`, tensor `axes` for `Pad`; 10.5 `STFT`; 10.7 dynamic
`axes` for `Squeeze`/`Unsqueeze`; 10.8 dynamic `axis` for `CumSum`; 10.9 opset-21 `GroupNormalization`;
10.14 `Attention`; 10.15 `RotaryEmbedding`, `RMSNormalization`, `TensorScatter`. TensorRT 10.3 bundles
ONNX 1.16 (10.6 moved to 1.17), which reads IR versions up to 10.
"""

from __future__ import annotations

TARGET = "10.3"
OPSET_MIN, OPSET_MAX = 9, 20
IR_MAX = 10

SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear
Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid
HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization
Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

ADDED_LATER = {
    "BlackmanWindow": "10.4", "HammingWindow": "10.4", "HannWindow": "10.4", "STFT": "10.5", "Attention": "10.14",
    "RotaryEmbedding": "10.15", "RMSNormalization": "10.15", "TensorScatter": "10.15",
}

# Operator inputs that TensorRT 10.3 needs as build-time constants (initializer or Constant node): op -> input index.
CONSTANT_INPUTS = {
    "Pad": {3: "axes"},  # tensor axes from 10.4
    "Squeeze": {1: "axes"}, "Unsqueeze": {1: "axes"},  # dynamic axes from 10.7
    "CumSum": {1: "axis"},  # dynamic axis from 10.8
    "ReduceL1": {1: "axes"}, "ReduceL2": {1: "axes"}, "ReduceLogSum": {1: "axes"}, "ReduceLogSumExp": {1: "axes"},
    "ReduceMax": {1: "axes"}, "ReduceMean": {1: "axes"}, "ReduceMin": {1: "axes"}, "ReduceProd": {1: "axes"},
    "ReduceSum": {1: "axes"}, "ReduceSumSquare": {1: "axes"},
    "InstanceNormalization": {1: "scale", 2: "B"},  # kept from the 8.x table to be safe on 10.3
}

RESIZE_COORDINATE_MODES = frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                                     "align_corners"})
RESIZE_MODES = frozenset({"nearest", "linear", "cubic"})
# operators.md lists only nearest/linear, but the 10.x importer (onnxOpImporters.cpp, Resize) maps "cubic" to
# InterpolationMode::kCUBIC with cubic_coeff_a and exclude_outside; the lint warns so the device parity check
# (`lpbf-edge trt check`, tests/gpu) confirms it on the box.
RESIZE_UNDOCUMENTED = frozenset({"cubic"})
RESIZE_NEAREST_MODES = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})

# ONNX element types TensorRT takes as tensors (DOUBLE is cast down with clamping: a warning).
TENSOR_TYPES = frozenset({1, 10, 16, 6, 7, 3, 2, 9})  # FLOAT FLOAT16 BFLOAT16 INT32 INT64 INT8 UINT8 BOOL
WARN_TYPES = {11: "DOUBLE is cast down to FLOAT by the parser"}
