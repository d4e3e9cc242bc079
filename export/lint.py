"""TensorRT-readiness lint: every node of an ONNX model against the parser's support table for one version.

The tables and their sources are in ``lpt.export.trt_support``. Types and shapes come from ONNX shape
inference (strict off) on the model without its external weights: inference needs only the dims.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from lpt.errors import OnnxError

from . import trt_support as ts

DEFAULT_DOMAINS = ("", "ai.onnx")
Dims = list[int | None]  # None: a dimension inference could not pin down
_NAMES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.FLOAT8E4M3FN: "FP8", onnx.TensorProto.FLOAT4E2M1: "FP4",
}


def type_name(elem_type: int) -> str:
    """The support tables' name for an ONNX element type."""
    return _NAMES.get(elem_type) or onnx.TensorProto.DataType.Name(elem_type)


@dataclass(frozen=True)
class Finding:
    """One reason the TensorRT parser of ``version`` would reject the model, or build something else."""

    node: str  # node name; tensor name for findings about a graph input or initializer
    op_type: str
    problem: str
    rule: str
    version: str
    graph: str = ""  # subgraph path, empty for the main graph

    @property
    def where(self) -> str:
        return f"{self.graph}/{self.node}" if self.graph else self.node


def load_model(path: str | Path) -> onnx.ModelProto:
    """The model's graph without external weights; ``OnnxError`` when the file is not a readable model."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise OnnxError(f"{path}: no such file") from None
    except Exception as exc:  # protobuf's DecodeError and kin
        raise OnnxError(f"{path}: not an ONNX model ({exc.__class__.__name__}: {exc})") from None
    if model.ir_version == 0 or not model.opset_import or not model.HasField("graph"):
        raise OnnxError(f"{path}: not an ONNX model (no IR version, opset or graph)")
    return model


def graph_stats(model: onnx.ModelProto) -> tuple[int, int]:
    """(number of nodes, number of distinct op types), subgraphs included."""
    nodes = [node for node, _ in _walk(model.graph, "")]
    return len(nodes), len({(n.domain, n.op_type) for n in nodes})


def _walk(graph: onnx.GraphProto, path: str) -> Iterator[tuple[onnx.NodeProto, str]]:
    for node in graph.node:
        yield node, path
        for sub_path, sub in _subgraphs(node, path):
            yield from _walk(sub, sub_path)


def _subgraphs(node: onnx.NodeProto, path: str) -> Iterator[tuple[str, onnx.GraphProto]]:
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
            yield f"{path}/{_name(node)}.{attr.name}".lstrip("/"), sub


def _name(node: onnx.NodeProto) -> str:
    return node.name or f"<{node.op_type} -> {node.output[0] if node.output else '?'}>"


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    for attr in node.attribute:
        if attr.name == "value":
            tensor: onnx.TensorProto = attr.t
            return tensor
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return numpy_helper.from_array(np.array(onnx.helper.get_attribute_value(attr)))
    return None


@dataclass
class _Scope:
    """The tensors one graph sees: element type and dims, and which are constants (value None: external)."""

    info: dict[str, tuple[int, Dims | None]] = field(default_factory=dict)
    constants: dict[str, onnx.TensorProto | None] = field(default_factory=dict)
    io: set[str] = field(default_factory=set)  # this graph's own inputs and outputs

    def child(self, graph: onnx.GraphProto) -> _Scope:
        scope = _Scope(dict(self.info), dict(self.constants), {v.name for v in [*graph.input, *graph.output]})
        for vi in [*graph.input, *graph.output, *graph.value_info]:
            t = vi.type.tensor_type
            if vi.type.HasField("tensor_type") and t.elem_type:
                dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
                scope.info[vi.name] = (t.elem_type, dims if t.HasField("shape") else None)
        for init in graph.initializer:
            scope.info[init.name] = (init.data_type, list(init.dims))
            scope.constants[init.name] = None if init.data_location == onnx.TensorProto.EXTERNAL else init
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS and node.output:
                scope.constants[node.output[0]] = _constant_value(node)
        return scope

    def rank(self, name: str) -> int | None:
        dims = self.info.get(name, (0, None))[1]
        return None if dims is None else len(dims)


def _all_zero(constants: dict[str, onnx.TensorProto | None], name: str) -> bool:
    tensor = constants.get(name)
    return tensor is not None and not np.any(numpy_helper.to_array(tensor).astype(np.float64))


class _Linter:
    def __init__(self, model: onnx.ModelProto, table: ts.SupportTable, plugins: frozenset[str]) -> None:
        self.model = model
        self.table = table
        self.plugins = plugins
        self.functions = {(f.domain, f.name): f for f in model.functions}
        self.findings: list[Finding] = []
        self.seen_tensors: set[str] = set()

    def add(self, node: onnx.NodeProto | str, problem: str, rule: str, path: str, op: str = "") -> None:
        name, op = (node, op) if isinstance(node, str) else (_name(node), node.op_type)
        self.findings.append(Finding(name, op, problem, rule, self.table.label, path))

    def run(self) -> list[Finding]:
        self.check_opset()
        try:
            model = onnx.shape_inference.infer_shapes(self.model, strict_mode=False, data_prop=True)
        except Exception:  # a model inference cannot follow is still linted, knowing fewer types
            model = self.model
        self.check_graph(model.graph, "", _Scope().child(model.graph))
        return self.findings

    def check_opset(self) -> None:
        low, high = self.table.opsets
        opsets = {o.domain: o.version for o in self.model.opset_import}
        version = opsets.get("", opsets.get("ai.onnx"))
        if version is None:
            self.add("<model>", "imports no default-domain (ai.onnx) opset", "opset-range", "", "-")
        elif not low <= version <= high:
            self.add("<model>", f"default-domain opset {version} is outside {low}..{high}", "opset-range", "", "-")

    def check_graph(self, graph: onnx.GraphProto, path: str, scope: _Scope) -> None:
        self.check_tensors(graph, path, scope)
        for node in graph.node:
            self.check_node(node, path, scope)
            for sub_path, sub in _subgraphs(node, path):
                self.check_graph(sub, sub_path, scope.child(sub))

    def check_tensors(self, graph: onnx.GraphProto, path: str, scope: _Scope) -> None:
        """Types the parser demotes or cannot import, reported once per tensor at its producer."""
        producers: dict[str, onnx.NodeProto | str] = {i.name: "<input>" for i in graph.input}
        producers |= {i.name: "<initializer>" for i in graph.initializer}
        producers |= {out: node for node in graph.node for out in node.output if out}
        for name, producer in producers.items():
            if name in self.seen_tensors or name not in scope.info:
                continue
            self.seen_tensors.add(name)
            kind = type_name(scope.info[name][0])
            node = name if isinstance(producer, str) else producer
            op = producer if isinstance(producer, str) else ""
            if kind == "DOUBLE":
                self.add(node, f"tensor {name!r} is DOUBLE: TensorRT has no double type; the parser demotes it to "
                         "FP32, clamped to +-FLT_MAX, and no op lists DOUBLE", "no-double", path, op)
            elif kind not in self.table.types:
                self.add(node, f"tensor {name!r} is {kind}, a type the parser cannot import", "tensor-type", path, op)
            elif kind == "UINT8" and name not in scope.io and producer != "<initializer>":
                self.add(node, f"tensor {name!r} is UINT8 inside the network; UINT8 is allowed only as a network "
                         "input or output", "uint8-io-only", path, op)

    def check_node(self, node: onnx.NodeProto, path: str, scope: _Scope) -> None:
        op = node.op_type
        if op in self.plugins:
            return
        if node.domain not in DEFAULT_DOMAINS:
            self.check_custom(node, path)
            return
        support = self.table.ops.get(op)
        if support is None:
            if op in self.table.later:
                problem = "{} is only supported from TensorRT {}.{}".format(op, *self.table.later[op])
            elif op in self.table.unsupported:
                problem = f"{op} is not supported by the TensorRT ONNX parser"
            else:
                problem = f"{op} is not in the TensorRT operator table"
            self.add(node, problem, "op-support", path)
            return
        self.check_types(node, support, scope, path)
        self.check_rank(node, scope, path)
        self.check_attributes(node, path)
        self.check_inputs(node, scope, path)
        if op == "GridSample":
            self.check_gridsample(node, scope, path)
        elif op == "Resize":
            self.check_resize(node, scope, path)

    def check_custom(self, node: onnx.NodeProto, path: str) -> None:
        function = self.functions.get((node.domain, node.op_type))
        if function is None:
            self.add(node, f"custom-domain op ({node.domain}) with no TensorRT importer; declare the plugin that "
                     "implements it", "custom-domain", path)
            return
        # The parser inlines model-local functions; shape inference gives no types inside them.
        body = onnx.helper.make_graph(list(function.node), function.name, [], [])
        scope = _Scope().child(body)
        for inner in function.node:
            self.check_node(inner, f"{path}/{_name(node)}".lstrip("/"), scope)

    def check_types(self, node: onnx.NodeProto, support: ts.OpSupport, scope: _Scope, path: str) -> None:
        indices, outputs = ts.CHECKED.get(node.op_type, ((0,), False))
        picked = range(len(node.input)) if indices == "all" else [i for i in indices if i < len(node.input)]
        tensors = [(f"input {i}", node.input[i]) for i in picked if node.input[i]]
        tensors += [(f"output {i}", name) for i, name in enumerate(node.output) if name and outputs]
        for label, tensor in tensors:
            if tensor not in scope.info:
                continue
            kind = type_name(scope.info[tensor][0])
            if kind in support.types or kind == "DOUBLE" or kind not in self.table.types:
                continue  # DOUBLE and unimportable types are reported once, per tensor
            allowed = ", ".join(sorted(support.types))
            self.add(node, f"{label} {tensor!r} is {kind}; {node.op_type} takes {allowed}", "op-types", path)

    def check_rank(self, node: onnx.NodeProto, scope: _Scope, path: str) -> None:
        op = node.op_type
        ranks = self.table.gridsample_ranks if op == "GridSample" else ts.RANKS.get(op)
        if ranks is None or not node.input:
            return
        rank, wanted = scope.rank(node.input[0]), " or ".join(map(str, sorted(ranks)))
        if rank is None:
            self.add(node, f"rank of input 0 is unknown; {op} needs rank {wanted}", "op-rank", path)
        elif rank not in ranks:
            self.add(node, f"input 0 has rank {rank}; {op} takes rank {wanted}", "op-rank", path)

    def check_attributes(self, node: onnx.NodeProto, path: str) -> None:
        op = node.op_type
        for attr in node.attribute:
            value = _attr(node, attr.name)
            allowed = ts.ATTRIBUTE_VALUES.get((op, attr.name))
            if allowed is not None and value not in allowed:
                accepted = ", ".join(map(repr, sorted(allowed, key=str)))
                self.add(node, f"{attr.name}={value!r} is unsupported (accepted: {accepted})", "op-attribute", path)
            if attr.name in ts.FORBIDDEN_ATTRIBUTES.get(op, ()):
                self.add(node, f"attribute {attr.name} is unsupported", "op-attribute", path)
            if ts.ALL_ONES_ATTRIBUTES.get(op) == attr.name and isinstance(value, list) and set(value) - {1}:
                self.add(node, f"{attr.name}={value} must be all ones", "op-attribute", path)
        limit = ts.MAX_OUTPUTS.get(op)
        if limit is not None and len([o for o in node.output if o]) > limit:
            self.add(node, f"only the first {limit} output(s) are supported", "op-outputs", path)

    def check_inputs(self, node: onnx.NodeProto, scope: _Scope, path: str) -> None:
        op, inputs = node.op_type, node.input
        present = {i for i, name in enumerate(inputs) if name}
        for i in ts.CONSTANT_INPUTS.get(op, ()):
            if i in present and inputs[i] not in scope.constants:
                self.add(node, f"input {i} {inputs[i]!r} must be an initializer or Constant", "op-constant", path)
        for i in ts.ABSENT_INPUTS.get(op, ()):
            if i in present:
                self.add(node, f"input {i} {inputs[i]!r} is unsupported", "op-inputs", path)
        zero = ts.ZERO_INPUTS.get(op)
        if zero is not None and zero in present and not _all_zero(scope.constants, inputs[zero]):
            self.add(node, f"zero point {inputs[zero]!r} must be a constant of zeros", "qdq-zero-point", path)
        training = inputs[2] if op == "Dropout" and 2 in present else None
        if training in scope.constants and not _all_zero(scope.constants, training):
            self.add(node, "is_training must be false", "op-constant", path)

    def check_gridsample(self, node: onnx.NodeProto, scope: _Scope, path: str) -> None:
        ranks = [scope.rank(name) for name in node.input[:2]]
        if len(ranks) == 2 and None not in ranks and ranks[0] != ranks[1]:
            self.add(node, f"input rank {ranks[0]} differs from grid rank {ranks[1]}", "op-rank", path)
        mode = _attr(node, "mode")
        if mode is not None and mode not in self.table.gridsample_modes:
            known = ", ".join(sorted(self.table.gridsample_modes))
            self.add(node, f"mode={mode!r} is not a name this parser reads; it would silently sample nearest "
                     f"(it reads {known})", "gridsample-mode", path)

    def check_resize(self, node: onnx.NodeProto, scope: _Scope, path: str) -> None:
        mode = str(_attr(node, "mode", "nearest"))
        innermost = ts.RESIZE_AXES.get(mode)
        before = scope.info.get(node.input[0], (0, None))[1]
        after = scope.info.get(node.output[0], (0, None))[1]
        if innermost is None or before is None or after is None or len(before) != len(after):
            return  # which axes change cannot be told, so nothing is claimed
        changed = [i for i, (a, b) in enumerate(zip(before, after)) if a is None or b is None or a != b]
        if changed and len(before) - changed[0] > innermost:
            self.add(node, f"{mode} resize changes axis {changed[0]} of a rank-{len(before)} tensor; only the "
                     f"innermost {innermost} axes may be resized", "resize-axes", path)


def lint(model: onnx.ModelProto | str | Path, trt: str, plugins: Iterable[str] = ()) -> list[Finding]:
    """Findings for ``model`` against TensorRT ``trt`` ("10", "11", "11.2", ...); empty when it passes.

    A bare major means the newest minor known for it (``trt_support.LATEST``): "11" allows 5-D GridSample,
    "11.0" and "11.1" do not. ``plugins`` names op types a loaded TensorRT plugin implements; their nodes
    are not checked.
    """
    table = ts.support_for(trt)
    proto = model if isinstance(model, onnx.ModelProto) else load_model(model)
    return _Linter(proto, table, frozenset(plugins)).run()


def format_findings(findings: list[Finding]) -> str:
    """A plain-text table: node, op, problem, rule and version."""
    rows = [("NODE", "OP", "PROBLEM", "RULE")]
    rows += [(f.where, f.op_type, f.problem, f"{f.rule}, {f.version}") for f in findings]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[3]]) for row in rows)
