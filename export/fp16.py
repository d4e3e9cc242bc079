"""FP16 variants of the exported graphs: ModelOpt AutoCast, I/O kept FP32, sensitive parts kept FP32.

TensorRT 11 builds strongly typed networks, so the precision lives in the ONNX file: ``<graph>.fp16.onnx``
and ``<graph>.gather.fp16.onnx`` (export.graphs.onnx_path). What stays FP32 is declared once, per graph,
in ``EXCLUSIONS`` below; every entry there was measured (errors vs PyTorch FP32 with ONNX Runtime CPU,
synthetic weights seed 0), not guessed.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import onnx

from lpt.files import write_atomic


@dataclass(frozen=True)
class Exclusions:
    """What AutoCast keeps FP32: op types, and node-name regexes (ModelOpt matches them with re.match)."""

    op_types: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    # Op types whose nodes, and every node downstream of them, stay FP32 (e.g. the head-pose softmax and
    # the degrees arithmetic after it): structural, so it survives renumbered exporter node names.
    from_op_types: tuple[str, ...] = ()
    why: str = ""


# The pure-ONNX trilinear sampler (gather variant): coordinates, floor/frac, bounds masks, flat indices,
# the Gather and the weighted sum. In FP16 the coordinate math loses sub-voxel precision at index ~64.
GATHER_SAMPLER_OPS = ("Mul", "Add", "Sub", "Div", "Floor", "Gather", "ReduceSum", "Max", "Min", "Unsqueeze",
                      "Squeeze", "Slice", "Concat", "Reshape", "Transpose", "GreaterOrEqual", "LessOrEqual",
                      "And", "Cast")

# Per graph ("<graph>" or "<graph>.gather"). A graph not listed converts everything AutoCast accepts.
EXCLUSIONS: dict[str, Exclusions] = {
    "motion_extractor": Exclusions(from_op_types=("Softmax",), why=(
        "head-pose softmax over 66 bins and the degrees arithmetic after it (18 small nodes); measured: yaw_deg "
        "max err 0.0548 -> 0.0544, the rest is the FP16 backbone. Norm statistics (LayerNorm/GRN) FP32 gave "
        "yaw 0.114 -> 0.091 for 124 Casts: not kept")),
    "warping_module.gather": Exclusions(op_types=GATHER_SAMPLER_OPS, why=(
        "the trilinear sampler: out max err 0.047 -> 0.0092, deformation 5.3e-4 -> 1.0e-4")),
    "warp_decode.gather": Exclusions(op_types=GATHER_SAMPLER_OPS, why="the same sampler inside the fused graph"),
    # Native 5-D GridSample: with only the convolutions left FP16 beside it, `out` reached 0.152 abs on a
    # large-motion feed (parity, synthetic weights); keeping the grid arithmetic, the Gaussians, the mask
    # softmax and both samplings FP32, as in the gather variant, is what brings it within tolerance.
    "warping_module": Exclusions(op_types=(*GATHER_SAMPLER_OPS, "GridSample", "Softmax", "Exp"), why=(
        "grid arithmetic, keypoint Gaussians, mask softmax and the two 5-D samplings")),
    "warp_decode": Exclusions(op_types=(*GATHER_SAMPLER_OPS, "GridSample", "Softmax", "Exp"),
                              why="as warping_module, inside the fused graph"),
}


@dataclass(frozen=True)
class FP16Result:
    path: Path
    graph: str
    nodes: int  # compute nodes of the source graph
    converted: int  # of them, now computing in FP16
    kept_fp32: int  # of them, still FP32 (excluded, or refused by AutoCast)
    casts: int  # Cast nodes in the result
    fp16_initializers: int
    seconds: float


def exclusions_for(graph: str, src: Path | None = None) -> Exclusions:
    """``graph`` may name the variant ("warping_module.gather"); else a ``.gather.`` source file selects it."""
    key = graph
    if src is not None and ".gather." in Path(src).name and not graph.endswith(".gather"):
        key = f"{graph}.gather"
    return EXCLUSIONS.get(key, EXCLUSIONS.get(graph, Exclusions()))


def _float_types(model: onnx.ModelProto) -> dict[str, int]:
    types = {}
    for vi in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    return types


def precision_by_node(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> "fp16" / "fp32" / "other" from the element type of its first typed float output."""
    types = _float_types(model)
    out = {}
    for node in model.graph.node:
        kind = "other"
        for name in node.output:
            t = types.get(name)
            if t == onnx.TensorProto.FLOAT16:
                kind = "fp16"
                break
            if t == onnx.TensorProto.FLOAT:
                kind = "fp32"
                break
        out[node.name] = kind
    return out


def downstream_nodes(model: onnx.ModelProto, op_types: tuple[str, ...]) -> list[str]:
    """Names of the nodes of ``op_types`` and of every node that consumes, transitively, their outputs."""
    if not op_types:
        return []
    tainted: set[str] = set()
    names: list[str] = []
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        if node.op_type in op_types or any(i in tainted for i in node.input):
            tainted.update(node.output)
            names.append(node.name)
    return names


def to_fp16(src: Path, dst: Path, graph: str, exclusions: Exclusions | None = None) -> FP16Result:
    """Convert the FP32 graph ``src`` into the mixed-precision ``dst`` (written atomically)."""
    src, dst = Path(src), Path(dst)
    ex = exclusions if exclusions is not None else exclusions_for(graph, src)
    # ModelOpt patches onnxruntime.quantization on import: only here, never at module import.
    from modelopt.onnx.autocast import convert_to_mixed_precision

    for name in ("modelopt.onnx", "modelopt.onnx.autocast"):  # their INFO lines drown lpt's progress
        logging.getLogger(name).setLevel(logging.ERROR)

    t0 = time.perf_counter()
    original = onnx.load(str(src), load_external_data=False)
    names = {n.name for n in original.graph.node if n.op_type != "Constant"}
    node_patterns = [*ex.nodes, *(f"^{re.escape(n)}$" for n in downstream_nodes(original, ex.from_op_types))]
    model = convert_to_mixed_precision(
        onnx_path=str(src), low_precision_type="fp16", keep_io_types=True, providers=["cpu"],
        op_types_to_exclude=list(ex.op_types) or None, nodes_to_exclude=node_patterns or None,
    )
    seconds = time.perf_counter() - t0
    precision = precision_by_node(model)
    converted = sum(1 for n in names if precision.get(n) == "fp16")
    kept = sum(1 for n in names if precision.get(n) == "fp32")
    casts = sum(1 for n in model.graph.node if n.op_type == "Cast" and n.name not in names)
    # AutoCast's value_info can carry wrong intermediate shapes (spade_generator: {1,512,64,64} where the
    # tensor is 128x128; ORT then fails re-using buffers). Keep the element types, drop the shapes.
    for vi in model.graph.value_info:
        vi.type.tensor_type.ClearField("shape")
    fp16_inits = sum(1 for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16)
    if model.ByteSize() < 2**31 - 1:
        write_atomic(dst, model.SerializeToString())
    else:  # over protobuf's limit: weights beside the graph, still renamed into place
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        onnx.save(model, tmp, save_as_external_data=True, location=f"{dst.name}.data")
        os.replace(tmp, dst)
    return FP16Result(dst, graph, len(names), converted, kept, casts, fp16_inits, round(seconds, 2))
