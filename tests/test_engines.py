"""`lpt build` planning, naming, sidecars and engine checks (pure Python), the one-line failure without
TensorRT, and, where TensorRT and a GPU exist, a real build and run of the cheapest graph."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lpt.engines.build import BuildOptions
from lpt.engines.plan import (
    EngineError,
    EngineJob,
    Platform,
    engine_name,
    grid_sample_for,
    onnx_file,
    plan_jobs,
    profile_shapes,
)
from lpt.engines.sidecar import (
    EngineRecord,
    cc_text,
    find_engine,
    sha256_file,
    stale_reason,
    verify_engine,
)

from lpt.specs import SPECS

H100_TRT11 = Platform("11.4.0.106", "NVIDIA H100 80GB HBM3", (9, 0), "13.0", "13.0")
L4_TRT10 = Platform("10.16.1.11", "NVIDIA L4", (8, 9), "12.8", "12.9")
LPT = Path(sys.executable).parent / "lpt"
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.parametrize("graph", list(SPECS))
def test_profile_shapes_follow_the_spec_batch_profile(graph: str) -> None:
    spec = SPECS[graph]
    shapes = profile_shapes(spec)
    assert list(shapes) == list(spec.input_names)
    for t in spec.inputs:
        assert [s[0] for s in shapes[t.name]] == list(spec.batch)
        assert all(s[1:] == t.shape[1:] for s in shapes[t.name])


def test_grid_sample_variant_follows_the_installed_tensorrt() -> None:
    assert [grid_sample_for(v) for v in [(10, 16), (11, 1), (11, 2), (11, 4), (12, 0)]] == \
        ["gather", "gather", "native", "native", "native"]


def test_file_names() -> None:
    assert onnx_file(Path("o"), "warping_module", "fp16", "gather").name == "warping_module.gather.fp16.onnx"
    assert onnx_file(Path("o"), "warp_decode", "int8", "gather").name == "warp_decode.gather.int8.onnx"
    assert onnx_file(Path("o"), "warping_module", "fp32", "native").name == "warping_module.onnx"
    assert onnx_file(Path("o"), "stitching", "fp16", "gather").name == "stitching.fp16.onnx"  # no sampler: one file
    assert engine_name("warping_module", "fp16", H100_TRT11) == "warping_module.fp16.trt11.4.sm90.engine"
    assert engine_name("stitching", "int8", L4_TRT10) == "stitching.int8.trt10.16.sm89.engine"


def _onnx_dir(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "onnx"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(name.encode())
    return folder


def test_plan_takes_the_grid_variant_and_the_int8_graphs_that_exist(tmp_path: Path) -> None:
    names = ["warping_module.gather.onnx", "warping_module.gather.fp16.onnx", "warping_module.gather.int8.onnx",
             "stitching.onnx", "stitching.fp16.onnx", "warping_module.onnx", "warping_module.fp16.onnx"]
    onnx_dir = _onnx_dir(tmp_path, names)
    jobs, notes = plan_jobs(onnx_dir, tmp_path / "engines", L4_TRT10, "warping_module,stitching")
    assert [(j.onnx.name, j.engine.name) for j in jobs] == [
        ("warping_module.gather.onnx", "warping_module.fp32.trt10.16.sm89.engine"),
        ("warping_module.gather.fp16.onnx", "warping_module.fp16.trt10.16.sm89.engine"),
        ("warping_module.gather.int8.onnx", "warping_module.int8.trt10.16.sm89.engine"),
        ("stitching.onnx", "stitching.fp32.trt10.16.sm89.engine"),
        ("stitching.fp16.onnx", "stitching.fp16.trt10.16.sm89.engine"),
    ]
    assert notes == ["stitching int8: no stitching.int8.onnx, skipped (`make int8-onnx` writes it)"]
    native, _ = plan_jobs(onnx_dir, tmp_path / "engines", H100_TRT11, "warping_module")
    assert [j.onnx.name for j in native] == ["warping_module.onnx", "warping_module.fp16.onnx"]


def test_plan_names_what_is_missing(tmp_path: Path) -> None:
    onnx_dir = _onnx_dir(tmp_path, ["stitching.onnx", "warping_module.onnx", "warping_module.fp16.onnx"])
    with pytest.raises(EngineError, match=r"missing in .*stitching\.fp16\.onnx; make them with `make onnx`"):
        plan_jobs(onnx_dir, tmp_path, H100_TRT11, "stitching")
    with pytest.raises(EngineError, match=r"warping_module\.gather\.onnx.*TensorRT 10\.16\.1\.11 takes the gather"):
        plan_jobs(onnx_dir, tmp_path, L4_TRT10, "warping_module")
    with pytest.raises(EngineError, match=r"warping_module\.int8\.onnx.*make int8-onnx"):
        plan_jobs(onnx_dir, tmp_path, H100_TRT11, "warping_module", "int8")
    with pytest.raises(EngineError, match="--precisions: expected names among fp32, fp16, int8"):
        plan_jobs(onnx_dir, tmp_path, H100_TRT11, "warping_module", "fp8")


def _built(tmp_path: Path, platform: Platform = H100_TRT11) -> tuple[EngineJob, dict]:
    """An engine file and its sidecar as `lpt build` writes them (the bytes stand in for a plan)."""
    onnx_dir = _onnx_dir(tmp_path, ["stitching.fp16.onnx"])
    job = EngineJob("stitching", "fp16", "native", onnx_dir / "stitching.fp16.onnx",
                    tmp_path / engine_name("stitching", "fp16", platform))
    job.engine.write_bytes(b"serialized plan")
    options = BuildOptions(opt_level=3).recorded(job)
    EngineRecord("stitching", "fp16", "native", job.onnx.name, sha256_file(job.onnx), job.engine.name,
                 sha256_file(job.engine), job.engine.stat().st_size, platform.tensorrt, platform.gpu,
                 cc_text(platform), platform.cuda_driver, platform.cuda_runtime, options).write(job.sidecar)
    return job, options


def test_up_to_date_until_an_input_changes(tmp_path: Path) -> None:
    job, options = _built(tmp_path)
    onnx_sha = sha256_file(job.onnx)
    assert stale_reason(job.engine, onnx_sha, H100_TRT11, options) is None  # survives the JSON round trip
    assert stale_reason(job.engine, "0" * 64, H100_TRT11, options) == "its ONNX file changed"
    assert stale_reason(job.engine, onnx_sha, L4_TRT10, options) == "built with TensorRT 11.4.0.106"
    assert stale_reason(job.engine, onnx_sha, H100_TRT11, BuildOptions(opt_level=5).recorded(job)) == "build options changed"
    job.engine.write_bytes(b"serialized plaN")
    assert stale_reason(job.engine, onnx_sha, H100_TRT11, options) == "the engine file does not match its sidecar"
    job.sidecar.unlink()
    assert stale_reason(job.engine, onnx_sha, H100_TRT11, options) == f"no readable sidecar {job.sidecar.name}"


def test_verify_refuses_engines_for_another_machine_or_precision(tmp_path: Path) -> None:
    job, _ = _built(tmp_path)
    assert verify_engine(job.engine, H100_TRT11, "fp16").graph == "stitching"
    other_gpu = Platform("11.4.0.106", "NVIDIA L40S", (8, 9))
    with pytest.raises(EngineError, match=r"built for compute capability 9\.0 \(NVIDIA H100 80GB HBM3\), this machine "
                                          r"has TensorRT 11\.4\.0\.106 on NVIDIA L40S \(sm89\): rebuild it"):
        verify_engine(job.engine, other_gpu, "fp16")
    with pytest.raises(EngineError, match=r"built with TensorRT 11\.4\.0\.106, this machine has TensorRT 10\.16\.1\.11"):
        verify_engine(job.engine, L4_TRT10, "fp16")
    with pytest.raises(EngineError, match="is a fp16 engine, fp32 was asked for"):
        verify_engine(job.engine, H100_TRT11, "fp32")
    with pytest.raises(EngineError, match="sha256 differs"):
        verify_engine(job.engine, H100_TRT11, "fp16", data=b"truncated")
    job.sidecar.write_text("{not json")
    with pytest.raises(EngineError, match="has no readable sidecar"):
        verify_engine(job.engine, H100_TRT11, "fp16")


def test_find_engine_names_the_engines_that_are_there(tmp_path: Path) -> None:
    job, _ = _built(tmp_path, L4_TRT10)
    with pytest.raises(EngineError, match=r"no stitching fp16 engine for trt11\.4\.sm90 .* found "
                                          r"stitching\.fp16\.trt10\.16\.sm89\.engine"):
        find_engine(tmp_path, "stitching", "fp16", H100_TRT11)
    assert find_engine(tmp_path, "stitching", "fp16", L4_TRT10) == job.engine


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the missing-TensorRT message cannot be seen")
@pytest.mark.parametrize("command", [["build", "--onnx", "build/onnx"], ["parity-engines", "--weights", "w"]])
def test_commands_without_tensorrt_fail_at_once_in_one_line(command: list[str]) -> None:
    result = subprocess.run([str(LPT), *command], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lpt: error: TensorRT is not usable here")
    assert "pip install -e .[trt]" in lines[0]


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed")
def test_backend_without_tensorrt_is_one_error() -> None:
    from lpt.runtime.trt_backend import TensorRTBackend

    with pytest.raises(EngineError, match="precision must be one of fp32, fp16, int8"):
        TensorRTBackend("build/engines", "bf16")
    with pytest.raises(EngineError, match=r"TensorRT is not usable here .*pip install -e \.\[trt\]"):
        TensorRTBackend("build/engines", "fp16")


def _cuda_device_or_skip() -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install -e .[trt])")
    try:
        from lpt.cuda import device_count
    except ImportError:
        pytest.skip("cuda-python is not installed")
    count, why = device_count()
    if not count:
        pytest.skip(f"no CUDA GPU: {why}")


def test_build_and_run_the_stitching_engine(small_networks_dir: Path, tmp_path: Path) -> None:
    """On a GPU with TensorRT: build, skip when up to date, run on the device, match PyTorch, keep a held
    output across the session's next run."""
    _cuda_device_or_skip()
    import torch
    from lpt.engines.build import build_all
    from lpt.export.onnx_export import export_onnx
    from lpt.models.checkpoint import load
    from lpt.runtime.trt_backend import DeviceTensor, TensorRTBackend

    onnx_dir, engines = tmp_path / "onnx", tmp_path / "engines"
    export_onnx(small_networks_dir, onnx_dir, ["stitching"], fused=False, progress=lambda _: None)
    first = build_all(onnx_dir, engines, graphs="stitching", precisions="fp32", progress=lambda _: None)
    again = build_all(onnx_dir, engines, graphs="stitching", precisions="fp32", progress=lambda _: None)
    assert [r.status for r in first] == ["built"] and [r.status for r in again] == ["up to date"]

    net = load(small_networks_dir, ("stitching",))["stitching"]
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, 126)).astype(np.float32) for n in (2, 1))
    backend = TensorRTBackend(engines, "fp32", cuda_graphs=True)
    try:
        session = backend.session("stitching")
        held = session.run({"feat_stitching": a})["delta"]
        assert isinstance(held, DeviceTensor) and held.shape == (2, 65)
        for _ in range(3):  # uncaptured, captured, replayed
            session.run({"feat_stitching": b})
        with torch.inference_mode():
            want_a, want_b = (net(torch.from_numpy(x)).numpy() for x in (a, b))
        np.testing.assert_allclose(backend.to_host(held), want_a, atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(backend.to_host(session.run({"feat_stitching": b})["delta"]), want_b,
                                   atol=1e-4, rtol=1e-3)
    finally:
        backend.close()


def _matmul_onnx(path: Path, weight: np.ndarray) -> Path:
    """A graph with stitching's tensors: delta = feat_stitching @ weight."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["feat_stitching", "w"], ["delta"])], "stitching",
        [helper.make_tensor_value_info("feat_stitching", TensorProto.FLOAT, ["B", 126])],
        [helper.make_tensor_value_info("delta", TensorProto.FLOAT, ["B", 65])],
        [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_int8_engines_are_judged_by_snr_not_elementwise(tmp_path: Path) -> None:
    """The INT8 rule of `lpt parity-engines`, run through a real runner (ONNX Runtime stands in for TensorRT)."""
    pytest.importorskip("polygraphy")
    from lpt.runtime.engine_parity import EngineTarget, compare_int8
    from lpt.export.parity import RunnerChoice
    from lpt.export.parity_inputs import Feed
    from lpt.export.parity_report import Row
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((126, 65)).astype(np.float32)
    feeds = [Feed(f"f{i}", "random", {"feat_stitching": rng.standard_normal((b, 126)).astype(np.float32)})
             for i, b in enumerate((1, 2))]
    refs = [{"delta": f.tensors["feat_stitching"] @ weight} for f in feeds]
    choice = RunnerChoice("onnxrt", lambda path, _spec: OnnxrtRunner(SessionFromOnnx(str(path)), name="onnxrt"))
    threshold = SPECS["stitching"].int8_threshold.min_snr_db

    def judge(w: np.ndarray, name: str) -> tuple[Row, float]:
        target = EngineTarget("stitching", "int8", _matmul_onnx(tmp_path / name, w), engine_precision="int8")
        rows, _, measured = compare_int8(target, feeds, refs, [choice])
        assert [r.output for r in rows] == ["delta"] and rows[0].error is None
        return rows[0], float(measured[0].split("SNR ")[1].split()[0])

    step = float(np.abs(weight).max()) / 127  # weights rounded to 8 bits: elementwise far off, SNR high
    row, snr = judge(np.round(weight / step) * step, "int8ish.onnx")
    assert row.passed and snr > threshold and row.max_abs is not None and row.max_abs > 1e-2
    row, snr = judge(weight + 0.5 * rng.standard_normal(weight.shape).astype(np.float32), "noisy.onnx")
    assert not row.passed and snr < threshold and row.failed_feeds == [f"SNR {snr:.1f} dB"]
