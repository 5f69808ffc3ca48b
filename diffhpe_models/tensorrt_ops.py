"""The ONNX operators that TensorRT 8.6's ONNX parser converts (the oldest TensorRT we target).

TensorRT cannot be installed on our development machines, so an exported graph is checked against
this list instead of against a real parser (`export.tensorrt_graph_problems`). Jetson JetPack 5.1.x
ships TensorRT 8.5; JetPack 6 ships 8.6 and later 10.x, whose lists are supersets of this one for
everything we export.

Source: github.com/onnx/onnx-tensorrt, branch `8.6-GA`, file `docs/operators.md` (last changed
there by commit 6872a9473391a73b96741711d52b98c2c3e25146, "ONNX-TensorRT 8.6-EA release"; branch
head ee0b139bc68567a89618c1d84dcd461cc144aad4). Only rows marked supported ("Y") are listed.
"""
from __future__ import annotations

TENSORRT_VERSION = "8.6"
# "TensorRT 8.6 supports operators up to Opset 17."
MAX_OPSET = 17
SOURCE = (
    "https://github.com/onnx/onnx-tensorrt/blob/8.6-GA/docs/operators.md "
    "(commit 6872a9473391a73b96741711d52b98c2c3e25146)"
)

SUPPORTED_OPS = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
    "AveragePool", "BatchNormalization", "Cast", "Ceil", "Celu", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace",
    "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand",
    "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gemm",
    "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual",
    "GridSample", "GroupNormalization", "GRU", "HardSwish", "HardSigmoid", "Identity", "If",
    "ImageScaler", "InstanceNormalization", "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu",
    "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization",
    "LpPool", "MatMul", "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min", "Mod", "Mul",
    "Neg", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or", "Pad", "ParametricSoftplus",
    "Pow", "PRelu", "QuantizeLinear", "RandomNormal", "RandomNormalLike", "RandomUniform",
    "RandomUniformLike", "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
    "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence", "RNN", "RoiAlign", "Round",
    "ScaledTanh", "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink",
    "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign",
    "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu",
    "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
})

# Supported by the parser, but we refuse them anyway: the exported graph must be a straight line
# (fixed step count, no data-dependent control flow), and random ops would ignore their seed.
FORBIDDEN_OPS = frozenset({"Loop", "If", "Scan", "RandomNormal", "RandomNormalLike",
                           "RandomUniform", "RandomUniformLike", "NonZero"})

# Restrictions from the same table: these inputs (by position) must be initializers (or Constant
# outputs), not computed tensors.
CONSTANT_INPUTS = {
    "CumSum": (1,),     # axis
    "Slice": (3,),      # axes
    "Squeeze": (1,),    # axes
    "Unsqueeze": (1,),  # axes
}
