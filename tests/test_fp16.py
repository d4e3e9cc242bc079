"""FP16 variants (export.fp16): FP32 I/O, real FP16 compute, PyTorch-FP32 parity within the spec's fp16
tolerance, and the declared sensitive nodes kept FP32. Cheap graphs only, synthetic weights."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from lpt.export.fp16 import downstream_nodes, exclusions_for, precision_by_node, to_fp16
from lpt.export.graphs import graph_module, onnx_path
from lpt.models.checkpoint import load, save_official_layout
from lpt.models.synthetic import synthesize

from lpt.specs import SPECS

GRAPHS = ("appearance_feature_extractor", "motion_extractor", "stitching", "eye_retargeting", "lip_retargeting")


@pytest.fixture(scope="module")
def networks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.nn.Module]:
    states = synthesize(0, names=GRAPHS)
    weights = save_official_layout(tmp_path_factory.mktemp("fp16_weights"), states)
    return load(weights, GRAPHS)


def _feed(graph: str) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(1)
    feed = {}
    for t in SPECS[graph].inputs:
        x = torch.rand(t.shape, generator=g) if len(t.shape) == 4 else 0.1 * torch.randn(t.shape, generator=g)
        feed[t.name] = x.numpy()
    return feed


@pytest.fixture(scope="module")
def converted(networks, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("fp16_onnx")
    done = {}

    def get(graph: str):
        if graph not in done:
            spec = SPECS[graph]
            src = onnx_path(out, graph)
            feed = _feed(graph)
            module = graph_module(graph, networks)
            args = tuple(torch.from_numpy(feed[n]) for n in spec.input_names)
            names = (*spec.input_names, *spec.output_names)
            torch.onnx.export(module, args, str(src), opset_version=spec.opset, dynamo=False,
                              input_names=list(spec.input_names), output_names=list(spec.output_names),
                              dynamic_axes={n: {0: "batch"} for n in names})
            with torch.inference_mode():
                ref = {n: o.numpy() for n, o in zip(spec.output_names, module(*args))}
            result = to_fp16(src, onnx_path(out, graph, "fp16"), graph)
            done[graph] = (src, result, feed, ref)
        return done[graph]

    return get


@pytest.mark.parametrize("graph", GRAPHS)
def test_fp16_graph(graph: str, converted) -> None:
    src, result, feed, ref = converted(graph)
    spec = SPECS[graph]
    assert result.path.name == f"{graph}.fp16.onnx" and result.path.exists()
    assert not list(result.path.parent.glob(".*.tmp"))  # atomic write left nothing behind
    model = onnx.load(str(result.path))

    # I/O stays FP32
    for vi in (*model.graph.input, *model.graph.output):
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, vi.name
    assert [i.name for i in model.graph.input] == list(spec.input_names)
    assert [o.name for o in model.graph.output] == list(spec.output_names)

    # real FP16 compute inside
    fp16_inits = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert fp16_inits and result.fp16_initializers == len(fp16_inits)
    precision = precision_by_node(model)
    assert result.converted > 0 and sum(v == "fp16" for v in precision.values()) >= result.converted
    assert result.converted + result.kept_fp32 <= result.nodes

    # parity with PyTorch FP32 within the spec's fp16 tolerance
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for name, got in zip(spec.output_names, session.run(None, feed)):
        assert got.dtype == np.float32
        want = ref[name]
        tol = spec.tolerance(name, "fp16")
        excess = np.abs(got - want) - (tol.atol + tol.rtol * np.abs(want))
        assert excess.max() <= 0, f"{graph}/{name}: max abs err {np.abs(got - want).max():.3g} over tolerance"

    # the declared sensitive nodes stay FP32
    ex = exclusions_for(graph)
    original = onnx.load(str(src), load_external_data=False)
    kept = [n.name for n in original.graph.node
            if n.op_type in ex.op_types or n.name in downstream_nodes(original, ex.from_op_types)]
    for name in kept:
        assert precision.get(name) in ("fp32", "other"), f"{graph}: sensitive node {name} is {precision.get(name)}"
    if graph == "motion_extractor":  # the head-pose softmax and degrees math are declared FP32
        assert kept and all(precision[n] != "fp16" for n in kept)
        softmaxes = [n.name for n in model.graph.node if n.op_type == "Softmax"]
        assert len(softmaxes) == 3 and all(precision[n] == "fp32" for n in softmaxes)
