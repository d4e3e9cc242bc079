"""What the TensorRT ONNX parser accepts, per major version, as data for ``lpt.export.lint``.

Sources (read 2026-11; tables re-encoded as data, none of the documents' text is copied):

- 10.x ops and types: onnx/onnx-tensorrt, commit 6bde6596eca84abf9afe9b4d21c18c32800fd3ad (the
  ``parsers/onnx`` submodule of NVIDIA/TensorRT tag v10.16, VERSION 10.16.0.72), ``docs/operators.md``;
  its header states TensorRT 10.16, opsets 9 to 24.
- 11.x ops and types: onnx/onnx-tensorrt, commit 7c51a63a719180eb5160c874c111746f3fb46a6b (the
  ``parsers/onnx`` submodule of NVIDIA/TensorRT tag v11.1, VERSION 11.1.0.106), ``docs/operators.md``;
  its header states TensorRT 11.1, opsets 9 to 24. Same rows as 10.16 plus Swish.
- 10.0 opset range: onnx/onnx-tensorrt branches 10.0-GA and 10.1-GA, ``docs/operators.md``, header
  "TensorRT 10.0", opsets 9 to 20.
- When an op arrived within a major: onnx/onnx-tensorrt ``docs/Changelog.md`` at 6bde659 (10.x) and
  NVIDIA/TensorRT ``CHANGELOG.md`` at tag v11.1 (Swish in 11.0).
- 11.2 and later (no parser source or operators.md was readable): NVIDIA/TensorRT GitHub release v11.2
  ("DFT and 5D GridSample" in the parser), TensorRT 11.2.1 release notes (rank-5 GridSample, FP32/FP16/
  BF16, linear/nearest/cubic) and GitHub release v11.5 (ONNX opset 25), as gathered in
  ``shared/reference/tensorrt-notes.md`` section 2.
- Parser behaviour behind the type and attribute rules: onnx/onnx-tensorrt branch 10.1-GA
  (``WeightsContext.cpp``, ``importerUtils.cpp``, ``onnxOpImporters.cpp``) and the stored snapshot
  dd0a3a9f8794ae4f0316ed07ea68cda9b944bb3c of ``onnxOpImporters.cpp`` (a 10.14+ tree: it has the
  Attention importer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypeVar

Version = tuple[int, int]
T = TypeVar("T")

# A bare major means the newest minor we have facts for; name an older minor to lint for it.
LATEST: dict[int, Version] = {10: (10, 16), 11: (11, 5)}

SOURCES: dict[int, str] = {
    10: "onnx/onnx-tensorrt@6bde659 (TensorRT v10.16 submodule) docs/operators.md, header TensorRT 10.16",
    11: "onnx/onnx-tensorrt@7c51a63 (TensorRT v11.1 submodule) docs/operators.md, header TensorRT 11.1; "
    "11.2+ deltas from the v11.2/v11.5 release notes",
}

MIN_OPSET = 9
# (first minor, highest default-domain opset). 10.1-10.14 are unconfirmed: the 10.0/10.1 header says 20,
# the 10.15 header says 24, so the conservative 20 holds until 10.15. 11.0 is unconfirmed too, but it sits
# between 10.16 and 11.1, which both say 24. 11.2-11.4 say 24 by the same bracketing (11.5 added 25).
MAX_OPSET: dict[int, tuple[tuple[Version, int], ...]] = {
    10: (((10, 0), 20), ((10, 15), 24)),
    11: (((11, 0), 24), ((11, 5), 25)),
}

F2 = frozenset({"FP32", "FP16"})
F3 = F2 | {"BF16"}
INT = frozenset({"INT32", "INT64"})
BOOL = frozenset({"BOOL"})
QUANT = frozenset({"INT8", "FP8", "FP4", "INT4"})

# Types the parser can map to a TensorRT type at all (importerUtils convertDtype); anything else fails the
# parse. DOUBLE maps too, but is demoted to FLOAT with clamping (WeightsContext convertDouble) and no op
# lists it, so lint reports every DOUBLE tensor.
# INT64 is native since the 9.0 parser (Changelog 9.0 EA: no automatic cast to INT32 any more, INT64 I/O
# needs INT64 bindings); in 10.1-GA convertDtype maps it to kINT64 and INT64 initializers stay INT64. So it
# is legal exactly where an op's type list names it (shape arithmetic, indexing, comparisons, Cast, ...) and
# nowhere else (Conv, MatMul, Gemm, Resize, GridSample, activations, ...). The "INT64 weights ... cast down
# to INT32" warning is from <= 8.6 parsers; the v11.1 agent skill that still repeats it is stale.
# UINT8 is importable for network inputs and outputs only (both tables' notes); inside the graph only Cast
# takes it. INT8/FP8/INT4/FP4 exist only behind Q/DQ, which the per-op lists enforce.
IMPORTABLE_TYPES = F3 | INT | BOOL | QUANT | {"UINT8", "DOUBLE"}
TYPE_SINCE: dict[str, Version] = {"FP4": (10, 8)}  # FLOAT4E2M1 support, onnx-tensorrt Changelog 10.8


@dataclass(frozen=True)
class OpSupport:
    """One supported operator: element types of its checked tensors, and where it first appeared."""

    types: frozenset[str]
    since: Version = (10, 0)


def _same(types: frozenset[str], *ops: str, since: Version = (10, 0)) -> dict[str, OpSupport]:
    return {op: OpSupport(types, since) for op in ops}


_REDUCE = tuple(
    f"Reduce{r}" for r in ("L1", "L2", "LogSum", "LogSumExp", "Max", "Mean", "Min", "Prod", "Sum", "SumSquare"))

_OPS_10: dict[str, OpSupport] = {
    **_same(F3, "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "AveragePool", "BatchNormalization", "Ceil", "Celu",
            "Clip", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "Dropout", "Einsum", "Elu", "Erf", "Exp", "Floor",
            "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "GroupNormalization", "GRU", "HardSigmoid",
            "HardSwish", "Hardmax", "ImageScaler", "InstanceNormalization", "IsInf", "LayerNormalization", "LeakyRelu",
            "Log", "LogSoftmax", "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "MaxPool",
            "MeanVarianceNormalization", "ParametricSoftplus", "PRelu", "QuantizeLinear", "RandomNormal",
            "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Reciprocal", "Resize", "RNN", "Round",
            "ScaledTanh", "Scan", "Selu", "Sigmoid", "Sin", "Sinh", "Softmax", "Softplus", "Softsign", "Sqrt", "Tan",
            "Tanh", "ThresholdedRelu", "Upsample"),
    **_same(F3 | INT, "Abs", "Add", "ArgMax", "ArgMin", "DepthToSpace", "Div", "Equal", "Greater", "GreaterOrEqual",
            "IsNaN", "Less", "LessOrEqual", "Max", "Min", "Mod", "Mul", "Neg", "Pad", "Pow", "Range", *_REDUCE, "Relu",
            "Scatter", "ScatterElements", "ScatterND", "Shrink", "Sign", "SpaceToDepth", "Sub", "Sum", "TopK"),
    **_same(F3 | INT | BOOL, "Concat", "Expand", "EyeLike", "Flatten", "Gather", "GatherElements", "GatherND",
            "Identity", "If", "Loop", "OneHot", "Reshape", "ReverseSequence", "Shape", "Size", "Slice", "Split",
            "Squeeze", "Tile", "Transpose", "Trilu", "Unsqueeze", "Where"),
    **_same(F2, "GridSample", "Mish", "NonMaxSuppression", "NonZero", "RoiAlign"),
    **_same(BOOL, "And", "Not", "Or", "Xor"),
    **_same(F3 | INT | BOOL | {"UINT8"}, "Cast", "CastLike"),
    **_same(F3 | INT | BOOL | {"FP8", "FP4", "INT4"}, "Constant", "ConstantOfShape"),
    "DequantizeLinear": OpSupport(QUANT),
    "Gelu": OpSupport(F3 | INT | {"INT8"}),
    "Mean": OpSupport(F3 | INT | {"FP8"}),
    # Changelog: DeformConv 10.1, windows 10.4, STFT 10.5, Attention 10.14, the LLM ops 10.15.
    "DeformConv": OpSupport(F2, (10, 1)),
    **_same(F2, "BlackmanWindow", "HammingWindow", "HannWindow", since=(10, 4)),
    "STFT": OpSupport(frozenset({"FP32"}), (10, 5)),
    "Attention": OpSupport(F3 | {"INT8", "FP8"}, (10, 14)),
    **_same(F3, "RMSNormalization", "RotaryEmbedding", since=(10, 15)),
    "TensorScatter": OpSupport(F3 | {"INT32"}, (10, 15)),
}

_UNSUPPORTED_10 = frozenset({
    "AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "CenterCropPad",
    "Col2Im", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det", "DynamicQuantizeLinear", "ImageDecoder",
    "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss",
    "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv", "QLinearMatMul", "RegexFullMatch",
    "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
    "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer", "StringSplit",
    "TfIdfVectorizer", "Unique",
})

_OPS_11: dict[str, OpSupport] = {
    **{op: OpSupport(s.types, (11, 0)) for op, s in _OPS_10.items()},
    "Swish": OpSupport(F3, (11, 0)),
    # No 11.2 table was readable: FP32 only until its DFT types are confirmed.
    "DFT": OpSupport(frozenset({"FP32"}), (11, 2)),
}

# Rank of input 0. Conv/ConvTranspose/pooling take rank 3 too: the parser unsqueezes 1-D to 2-D (10.1-GA
# onnxOpImporters.cpp and poolingHelper). InstanceNormalization: the 10.x/11.x tables give no limit; the
# 3-5 of older tables is kept because nothing newer confirms other ranks.
RANKS: dict[str, frozenset[int]] = {
    **{op: frozenset({3, 4, 5}) for op in ("Conv", "ConvTranspose", "AveragePool", "MaxPool", "InstanceNormalization")},
    "DeformConv": frozenset({3, 4}),
    "SpaceToDepth": frozenset({4}),
    "Attention": frozenset({4}),
    "TensorScatter": frozenset({4}),
}
# GridSample: rank 4 through 11.1 (table row "4D input" in 10.16 and 11.1); rank 4 or 5 from 11.2.
GRIDSAMPLE_RANKS: tuple[tuple[Version, frozenset[int]], ...] = (
    ((10, 0), frozenset({4})),
    ((11, 2), frozenset({4, 5})),
)
# The importer knows only the opset-16 spellings and maps any other mode to nearest, silently: read in 10.1-GA
# and in the 10.14+ snapshot dd0a3a9. Opset 20 renamed the modes "linear"/"cubic", and 5-D GridSample exists
# only from opset 20, so the 11.2 parser that added 5-D support is taken to read them; that is inferred from
# the v11.2 release notes, not read in source.
GRIDSAMPLE_MODES: tuple[tuple[Version, frozenset[str]], ...] = (
    ((10, 0), frozenset({"bilinear", "nearest", "bicubic"})),
    ((11, 2), frozenset({"bilinear", "nearest", "bicubic", "linear", "cubic"})),
)

# Which tensors an op's type list constrains: input 0 unless named here; "all" = every input present;
# outputs=True also checks the outputs (ops whose inputs are conditions, shapes or counts).
Checked = tuple[tuple[int, ...] | Literal["all"], bool]
_ALL: Checked = ("all", False)
CHECKED: dict[str, Checked] = {
    **{op: _ALL for op in ("Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Greater", "GreaterOrEqual", "Less",
                           "LessOrEqual", "And", "Or", "Xor", "Max", "Min", "Mean", "Sum", "Concat", "Range", "Gemm",
                           "MatMul", "Conv", "ConvTranspose", "PRelu", "Einsum", "BatchNormalization",
                           "InstanceNormalization", "LayerNormalization", "GroupNormalization", "Clip")},
    "GridSample": ((0, 1), False),
    "Where": ((1, 2), False),
    "Cast": ((0,), True),
    "CastLike": ((0, 1), False),
    **{op: ((), True) for op in ("Constant", "ConstantOfShape", "RandomNormal", "RandomNormalLike", "RandomUniform",
                                 "RandomUniformLike", "If", "Loop", "Scan")},
}

# Attribute values the parser accepts when the attribute is present (an absent one takes the ONNX default,
# which is always among them). From the restriction column of both tables and the Resize importer.
ATTRIBUTE_VALUES: dict[tuple[str, str], frozenset[object]] = {
    ("Resize", "mode"): frozenset({"nearest", "linear", "cubic"}),
    ("Resize", "coordinate_transformation_mode"): frozenset(
        {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}),
    ("Resize", "nearest_mode"): frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}),
    ("Resize", "keep_aspect_ratio_policy"): frozenset({"stretch"}),
    ("Resize", "antialias"): frozenset({0}),
    ("ScatterND", "reduction"): frozenset({"none"}),
    ("TopK", "sorted"): frozenset({1}),
    ("LSTM", "input_forget"): frozenset({0}),
    ("LSTM", "layout"): frozenset({0}),
    ("TensorScatter", "axis"): frozenset({-2}),
    ("Attention", "qk_matmul_output_mode"): frozenset({0}),
    ("Attention", "softcap"): frozenset({0.0}),
}
FORBIDDEN_ATTRIBUTES: dict[str, tuple[str, ...]] = {"Constant": ("sparse_value", "value_string", "value_strings")}
ALL_ONES_ATTRIBUTES: dict[str, str] = {"AveragePool": "dilations", "MaxPool": "dilations", "LpPool": "dilations"}
# Resize: how many innermost axes may be resized (IResizeLayer; importer canUseNDResize).
RESIZE_AXES: dict[str, int] = {"linear": 3, "cubic": 2}
# Inputs that must be initializers or Constant outputs; "resolvable to a constant" ones (Squeeze/Unsqueeze
# axes) are left out because the parser may fold them and lint cannot tell.
CONSTANT_INPUTS: dict[str, tuple[int, ...]] = {
    "CumSum": (1,), "OneHot": (1,), "STFT": (1, 2), "Dropout": (2,), **{op: (1,) for op in _REDUCE},
}
ZERO_INPUTS: dict[str, int] = {"DequantizeLinear": 2, "QuantizeLinear": 2}  # zero points: constant, all zero
ABSENT_INPUTS: dict[str, tuple[int, ...]] = {"Attention": (4, 5, 6)}  # past_key, past_value, nonpad_kv_seqlen
MAX_OUTPUTS: dict[str, int] = {"MaxPool": 1, "LayerNormalization": 1, "Attention": 1}


@dataclass(frozen=True)
class SupportTable:
    """The rules for one TensorRT version, resolved from the per-major tables."""

    version: Version
    label: str  # "TensorRT 11.2"
    title: str  # the label, saying when a bare major was resolved to its newest known minor
    source: str
    opsets: tuple[int, int]
    ops: dict[str, OpSupport]
    unsupported: frozenset[str]
    later: dict[str, Version]  # ops this version lacks but a later minor of the major has
    types: frozenset[str]
    gridsample_ranks: frozenset[int]
    gridsample_modes: frozenset[str]


def parse_version(text: str) -> tuple[Version, bool]:
    """``"10"``, ``"11.2"`` or ``"11.2.1"`` -> ((major, minor), whether the minor was given)."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.\d+)*", text.strip())
    if not match:
        raise ValueError(f"not a TensorRT version: {text!r} (expected e.g. 10, 11 or 11.2)")
    major = int(match[1])
    if major not in LATEST:
        raise ValueError(f"no support table for TensorRT {major}; known: {', '.join(map(str, LATEST))}")
    if match[2] is None:
        return LATEST[major], False
    return (major, int(match[2])), True


def _at(steps: tuple[tuple[Version, T], ...], version: Version) -> T:
    return [value for since, value in steps if since <= version][-1]


def _title(label: str, version: Version, explicit: bool) -> str:
    newest = LATEST[version[0]]
    if not explicit:
        return f"{label} (newest {version[0]}.x known; name a minor such as {version[0]}.0 to lint for it)"
    return f"{label} (rules known through {newest[0]}.{newest[1]})" if version > newest else label


def support_for(text: str) -> SupportTable:
    """The resolved table for a version string as ``lpt lint-onnx --trt`` takes it."""
    version, explicit = parse_version(text)
    major = version[0]
    table = _OPS_10 if major == 10 else _OPS_11
    ops = {op: s for op, s in table.items() if s.since <= version}
    later = {op: s.since for op, s in table.items() if s.since > version}
    label = f"TensorRT {version[0]}.{version[1]}"
    return SupportTable(
        version=version,
        label=label,
        title=_title(label, version, explicit),
        source=SOURCES[major],
        opsets=(MIN_OPSET, _at(MAX_OPSET[major], version)),
        ops=ops,
        unsupported=_UNSUPPORTED_10 - ops.keys() - later.keys(),
        later=later,
        types=frozenset(t for t in IMPORTABLE_TYPES if TYPE_SINCE.get(t, (0, 0)) <= version),
        gridsample_ranks=_at(GRIDSAMPLE_RANKS, version),
        gridsample_modes=_at(GRIDSAMPLE_MODES, version),
    )
