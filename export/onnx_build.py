"""One graph from a torch module to finished ONNX bytes: trace, simplify, check, serialise.

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript). Measured against the
TorchScript exporter on these graphs (torch 2.13, opset 20, onnxslim 0.1.98): both keep the dynamic batch
through the warping module's x22 batch and match PyTorch at batch 1 and 2, but dynamo exports faster
(generator 5.6 s vs 14.3 s, warping module 5.0 s vs 7.3 s), emits lean graphs before any simplification
(generator 198 nodes vs 547, warping module 93 vs 374) and is the maintained path (the TorchScript one
warns that it will be removed). Every graph stays far below the 2 GB protobuf limit (the fused
warp_decode, the largest, is about 0.4 GB), so weights are embedded: one self-contained file per graph.

Simplifier: onnxslim (pure Python, already a ModelOpt dependency). onnxsim is not installed here; the
toolchain probe measured both on a sampler graph (onnxslim 146 nodes, onnxsim 150, both exact).
On dynamo output it removes little (warping module 93 -> 86 nodes, generator 198 -> 198).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from importlib.metadata import version

import onnx
import torch
from torch import nn

from lpt.errors import LptError
from lpt.specs import GraphSpec

EXPORTER = "torch.onnx.export(dynamo=True)"
SIMPLIFIER = "onnxslim"
TOOLS = ("torch", "onnx", "onnxscript", "onnxslim")
# torch.export specialises a dimension whose example size is 0 or 1, so trace at batch 2.
TRACE_BATCH = 2
BATCH_AXIS = "batch"


class ExportError(LptError):
    """A graph could not be exported, or the exported graph fails its checks or the TensorRT lint."""


def tool_versions() -> dict[str, str]:
    return {name: version(name) for name in TOOLS}


def example_inputs(spec: GraphSpec, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded inputs of the spec's shapes at ``batch``; keypoints scaled to the (-1, 1) range they live in."""
    gen = torch.Generator().manual_seed(seed)
    tensors = []
    for t in spec.inputs:
        x = torch.randn((batch, *t.shape[1:]), generator=gen)
        tensors.append(x.mul_(0.3) if t.name.startswith("kp") else x)
    return tuple(tensors)


def trace(module: nn.Module, spec: GraphSpec) -> onnx.ModelProto:
    """``module`` (positional inputs, tuple outputs in spec order) as an ONNX model with a dynamic batch."""
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    log = io.StringIO()
    exporter_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms" x4
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module.eval(),
                example_inputs(spec, TRACE_BATCH),
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                opset_version=spec.opset,
                dynamo=True,
                dynamic_shapes={"inputs": tuple({0: batch} for _ in spec.inputs)},
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(f"{spec.name}: torch.onnx.export failed: {exc.__class__.__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    finally:
        exporter_log.setLevel(level)
    assert program is not None
    return program.model_proto


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding and graph simplification by onnxslim; input and output shapes are kept.

    onnxslim's own shape inference is skipped: on these dynamo graphs it changes nothing (measured: the
    same nodes and edges on every graph) and costs 4-5 s per large graph; ``check`` infers shapes after.
    """
    import onnxslim

    with contextlib.redirect_stdout(io.StringIO()):
        return onnxslim.slim(model, no_shape_infer=True)


def check(model: onnx.ModelProto, spec: GraphSpec) -> onnx.ModelProto:
    """The checker, then strict shape inference (returned, with its value_info); then the interface:
    names in spec order, FP32, the spec's shapes with a symbolic (dynamic) axis 0 everywhere."""
    try:
        onnx.checker.check_model(model)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ExportError(f"{spec.name}: the exported graph fails the ONNX checker or strict shape inference: "
                          f"{exc.__class__.__name__}: {exc}") from exc
    for kind, declared, actual in (("input", spec.inputs, inferred.graph.input),
                                   ("output", spec.outputs, inferred.graph.output)):
        names = [v.name for v in actual]
        if names != [t.name for t in declared]:
            raise ExportError(f"{spec.name}: {kind}s are {names}, the spec says {[t.name for t in declared]}")
        for t, value in zip(declared, actual):
            tensor = value.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            if tensor.elem_type != onnx.TensorProto.FLOAT or not isinstance(dims[0], str) or dims[0] == "":
                raise ExportError(f"{spec.name}: {kind} {t.name} is {dims} of type {tensor.elem_type}; "
                                  "expected FP32 with a dynamic batch axis")
            if tuple(dims[1:]) != t.shape[1:]:
                raise ExportError(f"{spec.name}: {kind} {t.name} has shape {dims}, the spec says {t.shape}")
    return inferred
