"""`lpt triton export` without a server: every config.pbtxt parses with Triton's own model-config protobuf
(tritonclient's model_config_pb2) and says what lpt.specs declares; engines and ONNX graphs land where Triton
looks for them."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="the triton extra (tritonclient) is not installed")

from lpt.engines.plan import Platform, engine_name, sidecar_path  # noqa: E402
from lpt.engines.sidecar import EngineRecord  # noqa: E402
from lpt.export.graphs import onnx_path  # noqa: E402
from lpt.triton import config as cfg  # noqa: E402
from lpt.triton.repository import check_repository, export_repository  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

from lpt.errors import LptError  # noqa: E402
from lpt.specs import SPECS  # noqa: E402

PLATFORM = Platform("10.8.0.43", "NVIDIA H100", (9, 0))
WITH_ENGINES = ("motion_extractor", "warping_module", "spade_generator")


@pytest.mark.parametrize("backend", [cfg.TENSORRT, cfg.ONNXRUNTIME, cfg.OPENVINO])
@pytest.mark.parametrize("graph", list(SPECS))
def test_graph_config_parses_and_matches_spec(graph: str, backend: str) -> None:
    spec = SPECS[graph]
    parsed = cfg.check_graph_config(cfg.graph_config(spec, backend, instances=2), graph)
    assert parsed.backend == backend and parsed.max_batch_size == spec.batch[2]
    assert [(t.name, list(t.dims)) for t in parsed.input] == [(t.name, list(t.shape[1:])) for t in spec.inputs]
    assert [t.name for t in parsed.output] == list(spec.output_names)
    assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in (*parsed.input, *parsed.output))
    assert parsed.instance_group[0].count == 2
    kinds = {cfg.TENSORRT: "KIND_GPU", cfg.ONNXRUNTIME: "KIND_AUTO", cfg.OPENVINO: "KIND_CPU"}
    assert parsed.instance_group[0].kind == getattr(model_config_pb2.ModelInstanceGroup, kinds[backend])
    assert parsed.HasField("dynamic_batching") == (graph not in cfg.PER_SOURCE_GRAPHS)
    assert sorted(w.batch_size for w in parsed.model_warmup) == sorted({1, spec.batch[2]})
    warm = parsed.model_warmup[-1].inputs
    assert set(warm) == set(spec.input_names) and all(v.zero_data for v in warm.values())


def test_config_that_disagrees_with_spec_is_refused() -> None:
    text = cfg.graph_config(SPECS["warping_module"], cfg.ONNXRUNTIME).replace("dims: [ 21, 3 ]", "dims: [ 21, 2 ]", 1)
    with pytest.raises(cfg.ConfigError, match=r"input kp_driving: \('TYPE_FP32', \(21, 2\)\), expected"):
        cfg.check_graph_config(text, "warping_module/config.pbtxt")
    with pytest.raises(cfg.ConfigError, match="not a Triton model configuration"):
        cfg.parse_config("name: 'x' max_batch_size: many", "broken.pbtxt")


def test_animation_config_parses_with_sequence_batcher() -> None:
    params = cfg.AnimationParameters(weights="/w", warmup=False, region="lip", driving_multiplier=1.5)
    parsed = cfg.parse_config(cfg.animation_config(params.strings(), instances=2), "lpt_animate")
    assert parsed.backend == "python" and parsed.instance_group[0].count == 2
    assert parsed.sequence_batching.HasField("oldest")
    assert [c.name for c in parsed.sequence_batching.control_input] == list(cfg.SEQUENCE_CONTROLS)
    assert {t.name: t.optional for t in parsed.input} == {"source_crop": True, "driving_crop": True,
                                                         "relative_to_first": True}
    assert list(parsed.output[0].dims) == [512, 512, 3]
    strings = {k: v.string_value for k, v in parsed.parameters.items()}
    assert cfg.AnimationParameters.from_strings(strings) == params


def test_full_animation_config_has_variable_image_dims() -> None:
    """lpt_animate_full (--crop-on-server): full images in and out, so -1 for height and width, which Triton's
    schema takes; every input optional (an END carries none, later requests no source)."""
    params = cfg.AnimationParameters(weights="/w", warmup=False, crop_on_server=True)
    parsed = cfg.parse_config(cfg.animation_config(params.strings(), crop_on_server=True), "lpt_animate_full")
    assert parsed.name == cfg.FULL_ANIMATION_MODEL and parsed.backend == "python"
    assert parsed.sequence_batching.HasField("oldest")
    dims = {t.name: list(t.dims) for t in parsed.input}
    assert dims == {"source_image": [-1, -1, 3], "driving_image": [-1, -1, 3], "relative_to_first": [1],
                    "crop": [1], "crop_driving": [1], "pasteback": [1], "hold_missing": [1]}
    assert all(t.optional for t in parsed.input)
    assert all(t.data_type == model_config_pb2.TYPE_BOOL for t in parsed.input if t.name not in ("source_image", "driving_image"))
    assert [(t.name, list(t.dims), t.data_type) for t in parsed.output] == [("frame", [-1, -1, 3], model_config_pb2.TYPE_UINT8)]
    strings = {k: v.string_value for k, v in parsed.parameters.items()}
    assert strings["crop_on_server"] == "true" and cfg.AnimationParameters.from_strings(strings) == params
    assert set(cfg.CropOptions().flags()) == set(dims) - {"source_image", "driving_image", "relative_to_first"}


def test_crop_on_server_exports_both_animation_models(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    models = export_repository(repo, None, None, animation=cfg.AnimationParameters(weights="/w"), crop_on_server=True)
    assert [m.name for m in models] == [cfg.ANIMATION_MODEL, cfg.FULL_ANIMATION_MODEL]
    assert (repo / "lpt_animate_full/1/model.py").read_text() == (repo / "lpt_animate/1/model.py").read_text()
    crops = cfg.parse_config((repo / "lpt_animate/config.pbtxt").read_text(), "lpt_animate")
    assert {k: v.string_value for k, v in crops.parameters.items()}["crop_on_server"] == "false"
    assert list(crops.output[0].dims) == [512, 512, 3]
    assert check_repository(repo) == [f"{name}: python, max batch 4, {n} inputs, 1 outputs: ok"
                                      for name, n in ((cfg.ANIMATION_MODEL, 3), (cfg.FULL_ANIMATION_MODEL, 7))]
    with pytest.raises(LptError, match="--crop-on-server writes the full-image animation model"):
        export_repository(tmp_path / "other", None, None, crop_on_server=True)


def _fake_engine(folder: Path, graph: str) -> Path:
    path = folder / engine_name(graph, "fp16", PLATFORM)
    data = f"not a real engine: {graph}".encode()
    path.write_bytes(data)
    EngineRecord(graph=graph, precision="fp16", grid_sample="native", onnx_file=f"{graph}.fp16.onnx", onnx_sha256="0",
                 engine_file=path.name, engine_sha256=hashlib.sha256(data).hexdigest(), engine_bytes=len(data),
                 tensorrt=PLATFORM.tensorrt, gpu=PLATFORM.gpu, compute_capability="9.0", cuda_driver="", cuda_runtime="",
                 options={}).write(sidecar_path(path))
    return path


def _tiny_onnx(path: Path, external: bool) -> None:
    """A one-node graph standing in for a real one (the layout is under test, not the network)."""
    weight = numpy_helper.from_array(np.full(256, 0.5, np.float32), "w")  # raw data, so it can live outside
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 256])], [weight])
    model = helper.make_model(graph)
    if external:
        onnx.save(model, str(path), save_as_external_data=True, location=f"{path.name}.data", size_threshold=0)
    else:
        onnx.save(model, str(path))


def test_export_repository_layout(tmp_path: Path) -> None:
    engines, graphs, repo = tmp_path / "engines", tmp_path / "onnx", tmp_path / "repo"
    engines.mkdir()
    graphs.mkdir()
    for graph in WITH_ENGINES:
        _fake_engine(engines, graph)
    for graph in SPECS:
        _tiny_onnx(onnx_path(graphs, graph), external=graph == "spade_generator")
    lines: list[str] = []
    models = export_repository(repo, engines, graphs, precision="fp16", instances=1,
                               animation=cfg.AnimationParameters(weights="/w"), progress=lines.append)
    backends = {m.name: m.backend for m in models}
    assert backends == {**{g: cfg.TENSORRT if g in WITH_ENGINES else cfg.ONNXRUNTIME for g in SPECS},
                        cfg.ANIMATION_MODEL: cfg.PYTHON}
    assert (repo / "warping_module/1/model.plan").read_bytes() == (engines / engine_name("warping_module", "fp16", PLATFORM)).read_bytes()
    assert (repo / "stitching/1/model.onnx").read_bytes() == onnx_path(graphs, "stitching").read_bytes()
    assert not (repo / "spade_generator/1/model.onnx").exists()  # that graph has an engine
    assert "from lpt.triton.python_model import TritonPythonModel" in (repo / "lpt_animate/1/model.py").read_text()
    report = check_repository(repo)
    assert len(report) == len(SPECS) + 1 and all(line.endswith(": ok") for line in report)
    assert not list(repo.rglob("*.tmp"))


def test_openvino_serves_the_gather_files(tmp_path: Path) -> None:
    graphs, repo = tmp_path / "onnx", tmp_path / "repo"
    graphs.mkdir()
    for graph, variant in (("warping_module", ""), ("warping_module", "gather"), ("stitching", "")):
        _tiny_onnx(onnx_path(graphs, graph, variant), external=False)
    models = export_repository(repo, None, graphs, onnx_backend=cfg.OPENVINO)
    assert {(m.name, m.backend, m.source) for m in models} == {
        ("warping_module", cfg.OPENVINO, "warping_module.gather.onnx"), ("stitching", cfg.OPENVINO, "stitching.onnx")}
    assert (repo / "warping_module/1/model.onnx").read_bytes() == onnx_path(graphs, "warping_module", "gather").read_bytes()
    assert all(line.endswith(": ok") for line in check_repository(repo))


def test_onnx_external_data_travels(tmp_path: Path) -> None:
    graphs, repo = tmp_path / "onnx", tmp_path / "repo"
    graphs.mkdir()
    _tiny_onnx(onnx_path(graphs, "spade_generator"), external=True)
    export_repository(repo, None, graphs)
    assert (repo / "spade_generator/1/spade_generator.onnx.data").is_file()
    onnx.checker.check_model(str(repo / "spade_generator/1/model.onnx"))  # resolves the external data from there
    assert [p.name for p in repo.iterdir()] == ["spade_generator"]


def test_cli_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    lpt = Path(sys.executable).parent / "lpt"
    result = subprocess.run([str(lpt), "triton", "export", "--onnx", str(tmp_path / "missing"), "--out", str(tmp_path / "r")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"lpt: error: --onnx {tmp_path / 'missing'} is not a folder"]
    broken = tmp_path / "repo" / "x"
    broken.mkdir(parents=True)
    (broken / "config.pbtxt").write_text("name: 'x' dims: oops")
    result = subprocess.run([str(lpt), "triton", "check", str(tmp_path / "repo")], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("lpt: error: ") and "not a Triton model configuration" in result.stderr


def test_crop_on_server_refuses_what_needs_the_crops_on_the_client(tmp_path: Path) -> None:
    lpt = Path(sys.executable).parent / "lpt"
    base = [str(lpt), "triton", "run", "-s", "s.png", "-d", "d.png", "--url", "127.0.0.1:1", "--crop-on-server"]
    for extra, why in ((["--concat"], "--concat needs the crops"), (["--weights", str(tmp_path)], "the server finds faces")):
        result = subprocess.run(base + extra, capture_output=True, text=True)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("lpt: error: ") and why in result.stderr
