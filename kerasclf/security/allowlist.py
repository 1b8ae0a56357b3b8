"""What a model file may hold, per format: the gate's allowlists (:mod:`kerasclf.security.gate`).

A model file passes when everything in it is on these lists; anything else is refused (or run
with a warning under ``--trust``). The TensorFlow lists were built from the ops in kerasclf's own
SavedModel exports of every zoo family and of the ``keras.applications`` backbones it wraps
(``python -m kerasclf.export.graph_ops`` prints that op set and flags any op not listed here),
then reviewed by hand and widened with pure tensor ops of the same kinds (elementwise math,
reductions, convolutions, pooling, resizing, shape and indexing, control flow). Nothing here
reads or writes a file, opens a socket, starts a process, runs Python, prints, reads a queue or
dataset, or maps memory; the checkpoint ops (``SaveV2``, ``RestoreV2`` ...) are allowed only in
the save/restore functions a SavedModel's ``saver_def`` names, and only on paths built from their
file-prefix argument.

Example:
    >>> "Conv2D" in TF_PURE_OPS, "ReadFile" in TF_PURE_OPS, "RestoreV2" in TF_SAVER_OPS
    (True, False, True)
"""
from __future__ import annotations

__all__ = ["TF_PURE_OPS", "TF_FUNCTION_OPS", "TF_GRAPH_OPS", "TF_SAVER_OPS", "TF_SAVER_PATH_OPS", "ONNX_DOMAINS",
           "KERAS_ZIP_NAMES", "KERAS_ZIP_FOLDERS", "KERAS_FUNCTION_MODULES", "KERAS_REFUSED_CLASSES",
           "KERAS_VOCABULARY_CLASSES", "OPENVINO_OPSET"]

#: pure tensor ops: the output depends only on the inputs; no file, network, process, Python,
#: printing, queue, dataset, random state or resource other than the function's own tensors
TF_PURE_OPS = frozenset({
    # elementwise math and comparisons
    "Abs", "Acos", "Acosh", "Add", "AddN", "AddV2", "Asin", "Asinh", "Atan", "Atan2", "Atanh", "Ceil", "Cos",
    "Cosh", "Div", "DivNoNan", "Elu", "Erf", "Erfc", "Exp", "Expm1", "Floor", "FloorDiv", "FloorMod", "Inv",
    "Reciprocal", "IsFinite", "IsInf", "IsNan", "LeakyRelu", "Log", "Log1p", "LogSoftmax", "LogicalAnd",
    "LogicalNot", "LogicalOr", "Maximum", "Minimum", "Mod", "Mul", "MulNoNan", "Neg", "Pow", "RealDiv", "Relu",
    "Relu6", "Round", "Rint", "Rsqrt", "Selu", "Sigmoid", "Sign", "Sin", "Sinh", "Softmax", "Softplus",
    "Softsign", "Sqrt", "Square", "SquaredDifference", "Sub", "Tan", "Tanh", "TruncateDiv", "TruncateMod",
    "Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual", "ApproximateEqual", "ClipByValue",
    "Select", "SelectV2", "Cast", "BiasAdd", "BiasAddV1", "Cumsum", "Cumprod",
    # reductions, linear algebra, top-k
    "Sum", "Mean", "Max", "Min", "Prod", "All", "Any", "ArgMax", "ArgMin", "EuclideanNorm", "L2Loss",
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "TopKV2",
    # convolution, pooling, normalisation, resizing
    "Conv2D", "Conv3D", "Conv2DBackpropInput", "Conv3DBackpropInputV2", "DepthwiseConv2dNative",
    "DepthwiseConv2dNativeBackpropInput", "MaxPool", "MaxPoolV2", "MaxPool3D", "AvgPool", "AvgPool3D",
    "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "LRN", "ResizeBilinear", "ResizeNearestNeighbor",
    "ResizeBicubic", "ResizeArea", "ScaleAndTranslate", "CropAndResize", "ExtractImagePatches",
    "FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxArgs", "FakeQuantWithMinMaxVarsPerChannel",
    # shapes, indexing, copying
    "Identity", "IdentityN", "Const", "Shape", "ShapeN", "Size", "Rank", "Reshape", "Squeeze", "ExpandDims",
    "Transpose", "Pack", "Unpack", "Concat", "ConcatV2", "Split", "SplitV", "Slice", "StridedSlice", "Tile",
    "Pad", "PadV2", "MirrorPad", "Fill", "ZerosLike", "OnesLike", "Range", "LinSpace", "Gather", "GatherV2",
    "GatherNd", "ScatterNd", "TensorScatterUpdate", "Where", "ReverseV2", "Roll", "BroadcastTo", "BroadcastArgs",
    "OneHot", "SpaceToDepth", "DepthToSpace", "SpaceToBatchND", "BatchToSpaceND", "MatrixBandPart",
    "StopGradient", "PreventGradient", "EnsureShape", "Snapshot", "PlaceholderWithDefault",
    # control flow: the functions they call are checked like any other
    "NoOp", "If", "StatelessIf", "While", "StatelessWhile", "Case", "StatelessCase", "PartitionedCall",
    "StatefulPartitionedCall", "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond",
})

#: inside a function: pure ops and reading the variables the loader hands it
TF_FUNCTION_OPS = TF_PURE_OPS | {"ReadVariableOp"}

#: the top-level graph: the function calls plus the bookkeeping of the model's own variables
#: (their handles, the is-initialised test, the initial assignment) and the signature inputs
TF_GRAPH_OPS = TF_FUNCTION_OPS | {"VarHandleOp", "VarIsInitializedOp", "AssignVariableOp", "Placeholder"}

#: only in the save/restore functions ``saver_def`` names: the loader's own checkpoint ops
TF_SAVER_OPS = TF_FUNCTION_OPS | {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin",
                                  "StaticRegexFullMatch", "DisableCopyOnRead", "AssignVariableOp"}

#: ops a checkpoint path may be built with, from the function's file-prefix argument
TF_SAVER_PATH_OPS = frozenset({"Identity", "StringJoin", "Select", "SelectV2", "ShardedFilename", "Pack",
                               "StaticRegexFullMatch"})

#: ONNX operator domains: the standard operators and the standard ML operators, no custom-op libraries
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})

#: the entries of a ``.keras`` zip (``kerasclf.json``: kerasclf's metadata) ...
KERAS_ZIP_NAMES = frozenset({"config.json", "metadata.json", "model.weights.h5", "model.weights.npz",
                             "kerasclf.json"})
#: ... and the folders whose files Keras restores (layer assets such as vocabularies)
KERAS_ZIP_FOLDERS = ("assets/",)

#: modules a function named in a Keras config may come from (activations, losses, metrics, ops)
KERAS_FUNCTION_MODULES = frozenset({"builtins", "keras.activations", "keras.losses", "keras.metrics", "keras.ops",
                                    "keras.src.activations.activations", "keras.src.losses.losses",
                                    "keras.src.metrics", "keras.src.ops"})

#: Keras classes that do more than compute, and what each would do
KERAS_REFUSED_CLASSES = {
    "TFSMLayer": "load the SavedModel its 'filepath' names",
    "TorchModuleWrapper": "unpickle a PyTorch module, running any code it holds",
    "JaxLayer": "call a Python function",
    "FlaxLayer": "call a Python function",
    "__lambda__": "run Python bytecode stored in the file",
}

#: lookup layers whose ``vocabulary`` may be a path: a string there is a file they read
KERAS_VOCABULARY_CLASSES = frozenset({"StringLookup", "IntegerLookup", "TextVectorization"})

#: OpenVINO IR layers must come from a standard opset (``opset1`` ... ``opset16``)
OPENVINO_OPSET = r"opset\d+"
