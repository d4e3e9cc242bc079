"""The TensorRT-readiness lint on hand-built graphs, tiny torch exports and the CLI."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from lpt.export.lint import Finding, format_findings, lint, load_model
from lpt.export.trt_support import parse_version, support_for
from lpt.models.sampling import GridSample3d
from onnx import TensorProto, helper, numpy_helper

from lpt.cli import main
from lpt.errors import OnnxError

F = TensorProto.FLOAT
ALL_VERSIONS = ("10", "10.0", "10.16", "11.0", "11.1", "11.2", "11")


def model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
          initializers: Sequence[onnx.TensorProto] = (), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    # IR 10 explicitly: onnx 1.23 writes IR 14 by default, which onnxruntime refuses.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def vi(name: str, shape: list[int], elem: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def grid_sample(rank: int, opset: int, **attrs: Any) -> onnx.ModelProto:
    spatial = [4, 5, 6][: rank - 2]
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="sampler", **attrs)
    return model([node], [vi("x", [1, 2, *spatial]), vi("grid", [1, *spatial, rank - 2])],
                 [vi("y", [1, 2, *spatial])], opset=opset)


def conv_relu() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return model(nodes, [vi("x", [1, 3, 8, 8])], [vi("y", [1, 4, 8, 8])], [w])


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


def test_conv_relu_passes_everywhere() -> None:
    onnx.checker.check_model(conv_relu())
    for version in ALL_VERSIONS:
        assert lint(conv_relu(), version) == [], version


@pytest.mark.parametrize("version", ["10", "10.0", "11.0", "11.1"])
def test_5d_gridsample_fails_before_11_2(version: str) -> None:
    findings = lint(grid_sample(5, opset=20), version)
    assert [(f.node, f.op_type, f.rule) for f in findings] == [("sampler", "GridSample", "op-rank")]
    assert "rank 5" in findings[0].problem


@pytest.mark.parametrize("version", ["11.2", "11.2.1", "11.4", "11"])
def test_5d_gridsample_passes_from_11_2(version: str) -> None:
    assert lint(grid_sample(5, opset=20), version) == []


def test_4d_gridsample_passes_everywhere() -> None:
    m = grid_sample(4, opset=16, mode="bilinear", align_corners=0)
    onnx.checker.check_model(m)
    for version in ALL_VERSIONS:
        assert lint(m, version) == [], version


def test_opset20_mode_names_silently_mean_nearest_before_11_2() -> None:
    m = grid_sample(4, opset=20, mode="linear")
    assert rules(lint(m, "10")) == rules(lint(m, "11.1")) == {"gridsample-mode"}
    assert lint(m, "11.2") == []


def test_torch_5d_sampler_fails_on_10_and_passes_on_11_2(tmp_path: Path) -> None:
    path = tmp_path / "sampler.onnx"
    volume, grid = torch.randn(1, 4, 3, 5, 6), torch.rand(1, 3, 5, 6, 3) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(GridSample3d(), (volume, grid), str(path), dynamo=False, opset_version=20)
    assert rules(lint(path, "10")) == {"op-rank", "gridsample-mode"}
    assert {f.op_type for f in lint(path, "10")} == {"GridSample"}
    assert lint(path, "11.2") == []


def test_double_tensor_fails() -> None:
    nodes = [helper.make_node("Cast", ["x"], ["xf"], name="to_float", to=F),
             helper.make_node("Relu", ["xf"], ["y"], name="relu")]
    m = model(nodes, [vi("x", [2, 3], TensorProto.DOUBLE)], [vi("y", [2, 3])])
    for version in ("10", "11.2"):
        findings = lint(m, version)
        assert rules(findings) == {"no-double"}
        assert findings[0].node == "x"


def test_int64_only_where_the_op_lists_it() -> None:
    i64 = TensorProto.INT64
    nodes = [helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("MatMul", ["s", "b"], ["y"], name="matmul")]
    m = model(nodes, [vi("a", [2, 2], i64), vi("b", [2, 2], i64)], [vi("y", [2, 2], i64)])
    findings = lint(m, "11")
    assert [(f.node, f.rule) for f in findings] == [("matmul", "op-types"), ("matmul", "op-types")]
    assert "INT64" in findings[0].problem


def test_custom_domain_op_fails_naming_the_node_unless_a_plugin_is_declared() -> None:
    node = helper.make_node("GridSample3D", ["x"], ["y"], name="my_plugin_node", domain="com.example")
    m = model([node], [vi("x", [1, 2, 3, 4, 5])], [vi("y", [1, 2, 3, 4, 5])])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    findings = lint(m, "10")
    assert [(f.node, f.op_type, f.rule) for f in findings] == [("my_plugin_node", "GridSample3D", "custom-domain")]
    assert lint(m, "10", plugins=["GridSample3D"]) == []


def test_unsupported_and_too_new_ops_fail() -> None:
    det = model([helper.make_node("Det", ["x"], ["y"], name="det")], [vi("x", [3, 3])], [vi("y", [])])
    assert [(f.node, f.rule) for f in lint(det, "11")] == [("det", "op-support")]
    swish = model([helper.make_node("Swish", ["x"], ["y"], name="swish")], [vi("x", [3])], [vi("y", [3])], opset=24)
    assert "not in the TensorRT operator table" in lint(swish, "10")[0].problem
    assert lint(swish, "11") == []
    deform = model([helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], name="deform")],
                   [vi("x", [1, 2, 5, 5]), vi("w", [2, 2, 3, 3]), vi("offset", [1, 18, 3, 3])], [vi("y", [1, 2, 3, 3])],
                   opset=19)
    assert "only supported from TensorRT 10.1" in lint(deform, "10.0")[0].problem
    assert lint(deform, "10.1") == []


def test_subgraph_nodes_are_checked() -> None:
    then = helper.make_graph([helper.make_node("Unique", ["x"], ["t"], name="inner_unique")], "then", [],
                             [vi("t", [3])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="inner_id")], "else", [],
                              [vi("e", [3])])
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then, else_branch=other)
    m = model([node], [vi("c", [], TensorProto.BOOL), vi("x", [3])], [vi("y", [3])])
    (finding,) = lint(m, "11")
    assert (finding.node, finding.graph, finding.rule) == ("inner_unique", "branch.then_branch", "op-support")


def test_local_functions_are_inlined_and_checked() -> None:
    def with_function(body_op: str) -> onnx.ModelProto:
        body = [helper.make_node(body_op, ["a"], ["b"], name="inner")]
        function = helper.make_function("local", "Block", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
        m = model([helper.make_node("Block", ["x"], ["y"], name="block", domain="local")],
                  [vi("x", [3, 3])], [vi("y", [3, 3])])
        m.opset_import.append(helper.make_opsetid("local", 1))
        m.functions.append(function)
        return m

    assert lint(with_function("Relu"), "10") == []
    (finding,) = lint(with_function("Det"), "10")
    assert (finding.where, finding.rule) == ("block/inner", "op-support")


def test_opset_range_follows_the_minor() -> None:
    m = grid_sample(4, opset=21, mode="bilinear")
    assert rules(lint(m, "10.0")) == {"opset-range"}
    assert lint(m, "10.16") == []
    assert rules(lint(grid_sample(4, opset=8), "11")) == {"opset-range"}


def test_resize_axis_limits() -> None:
    def resize(mode: str, out: list[int]) -> onnx.ModelProto:
        sizes = numpy_helper.from_array(np.array(out, np.int64), "sizes")
        node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="resize", mode=mode)
        return model([node], [vi("x", [1, 2, 4, 4, 4])], [vi("y", out)], [sizes])

    assert lint(resize("linear", [1, 2, 8, 8, 8]), "10") == []
    assert rules(lint(resize("cubic", [1, 2, 8, 8, 8]), "10")) == {"resize-axes"}
    assert lint(resize("cubic", [1, 2, 4, 8, 8]), "10") == []


def test_dequantize_zero_point_must_be_zero() -> None:
    def dq(zero: int) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(np.ones(4, np.int8), "q"),
                 numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                 numpy_helper.from_array(np.array(zero, np.int8), "z")]
        node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")
        return model([node], [], [vi("y", [4])], inits)

    assert lint(dq(0), "11") == []
    assert rules(lint(dq(3), "11")) == {"qdq-zero-point"}


def test_external_weights_are_not_needed(tmp_path: Path) -> None:
    m = conv_relu()
    onnx.save(m, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    (tmp_path / "m.data").unlink()  # lint must not read the weights
    assert lint(tmp_path / "m.onnx", "10") == []


def test_versions() -> None:
    assert parse_version("11") == ((11, 5), False)
    assert parse_version("11.2.1") == ((11, 2), True)
    assert support_for("10").label == "TensorRT 10.16"
    for bad in ("9", "eleven", "11.x"):
        with pytest.raises(ValueError):
            parse_version(bad)


def test_format_names_every_finding() -> None:
    text = format_findings(lint(grid_sample(5, opset=20), "10"))
    assert text.splitlines()[0].split() == ["NODE", "OP", "PROBLEM", "RULE"]
    assert "sampler" in text and "TensorRT 10.16" in text


def test_cli_exit_codes(tmp_path: Path) -> None:
    bad, clean, junk = tmp_path / "bad.onnx", tmp_path / "clean.onnx", tmp_path / "junk.onnx"
    onnx.save(grid_sample(5, opset=20), bad)
    onnx.save(conv_relu(), clean)
    junk.write_bytes(b"\x00\x01not a protobuf\xff\xfe" * 8)
    runner = CliRunner()

    result = runner.invoke(main, ["lint-onnx", str(clean), str(bad), "--trt", "10"])
    assert result.exit_code == 1
    assert "clean.onnx: OK: 2 nodes, 2 op types, passes TensorRT 10.16" in result.stdout
    assert "sampler" in result.stdout and "GridSample" in result.stdout

    result = runner.invoke(main, ["lint-onnx", str(clean), "--trt", "11.2"])
    assert result.exit_code == 0 and "passes TensorRT 11.2" in result.stdout

    result = runner.invoke(main, ["lint-onnx", str(junk), "--trt", "11"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("lpt: error: ")

    assert runner.invoke(main, ["lint-onnx", str(clean), "--trt", "9"]).exit_code == 2


def test_load_model_rejects_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.onnx").write_bytes(b"")
    for path in (tmp_path / "empty.onnx", tmp_path / "missing.onnx"):
        with pytest.raises(OnnxError):
            load_model(path)
