"""The GPU-path defects of issue 12, shown on the CPU: fakes of the TensorRT and CUDA objects record what the
runtime asks of them (the type check, tests/test_trt_typecheck.py, keeps the real API honest)."""

from __future__ import annotations

import gc
import os
import threading
import tomllib
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest
from lpt.engines import build as engine_build
from lpt.engines import environment
from lpt.engines.build import BuildOptions, BuildRow
from lpt.engines.plan import EngineJob, Platform, engine_name
from lpt.engines.sidecar import EngineRecord, cc_text, sha256_file
from lpt.export import parity
from lpt import cuda as cuda_memory
from lpt.runtime import backends, onnxruntime_backend, trt_backend
from lpt.runtime.backends import Locations, choose
from lpt.runtime.onnxruntime_backend import BackendError, OnnxRuntimeBackend, OnnxRuntimeSession
from lpt.runtime.trt_backend import DeviceTensor, TensorRTBackend, TensorRTSession, _Binding

from lpt.specs import SPECS

H100_TRT11 = Platform("11.4.0.106", "NVIDIA H100 80GB HBM3", (9, 0), "13.0", "13.0")
L4_TRT10 = Platform("10.16.1.11", "NVIDIA L4", (8, 9), "12.8", "12.9")
REPO = Path(__file__).resolve().parents[1]


# --- fakes of TensorRT and CUDA ------------------------------------------------------------------------


class FakeContext:
    """An execution context that logs shape changes and enqueues (marked when inside a graph capture)."""

    def __init__(self, log: list[str]) -> None:
        self.log, self.capturing = log, False
        self.shapes: dict[str, tuple[int, ...]] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = shape
        self.log.append(f"shape {shape[0]}")
        return True

    def execute_async_v3(self, stream: int) -> bool:
        self.log.append("captured enqueue" if self.capturing else "enqueue")
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes.get(name, (2, 3))


class FakeGraph:
    def __init__(self, context: FakeContext, stream: Any, enqueue: Any) -> None:
        self.context = context
        context.capturing = True
        try:
            enqueue()
        finally:
            context.capturing = False
        context.log.append("captured")

    def launch(self, stream: Any) -> None:
        self.context.log.append("replay")


class FakeStream:
    def __init__(self) -> None:
        self.ptr, self.handle, self.syncs = 1, 1, 0

    def synchronize(self) -> None:
        self.syncs += 1


class Memory:
    """Device and pinned memory as numpy bytes at made-up addresses; ``copy`` stands in for cudaMemcpyAsync."""

    def __init__(self) -> None:
        self.blocks: list[tuple[int, np.ndarray]] = []

    def allocate(self, nbytes: int) -> int:
        base = (len(self.blocks) + 1) << 24
        self.blocks.append((base, np.zeros(max(nbytes, 1), np.uint8)))
        return base

    def at(self, ptr: int, nbytes: int) -> np.ndarray:
        base, raw = next((b, r) for b, r in self.blocks if b <= ptr < b + len(r))
        return raw[ptr - base:ptr - base + nbytes]

    def copy(self, dst: int, src: int, nbytes: int, direction: str, stream: Any) -> None:
        self.at(dst, nbytes)[...] = self.at(src, nbytes)


class FakeDeviceBuffer:
    def __init__(self, memory: Memory, data: np.ndarray) -> None:
        self.nbytes, self.version = data.nbytes, 0
        self.ptr = memory.allocate(data.nbytes)
        memory.at(self.ptr, data.nbytes)[...] = data.view(np.uint8).ravel()


def fake_pinned(memory: Memory) -> type:
    class FakePinned:
        def __init__(self, nbytes: int) -> None:
            self.nbytes, self.ptr = nbytes, memory.allocate(nbytes)

        def array(self, shape: tuple[int, ...], dtype: np.dtype[Any], offset: int = 0) -> np.ndarray:
            count = int(np.prod(shape)) * dtype.itemsize
            return memory.at(self.ptr + offset, count).view(dtype).reshape(shape)

        def free(self) -> None:
            pass

    return FakePinned


def fake_session(cuda_graphs: bool, log: list[str]) -> TensorRTSession:
    """A TensorRT session of the stitching graph over a fake context, as its __init__ leaves it."""
    session = TensorRTSession.__new__(TensorRTSession)
    session.spec, session.path = SPECS["stitching"], Path("stitching.fp16.trt11.4.sm90.engine")
    session.backend = SimpleNamespace(cuda_graphs=cuda_graphs, stream=FakeStream(), lock=threading.RLock())  # type: ignore[assignment]
    session.context = FakeContext(log)  # type: ignore[assignment]
    session.batches, session.batch, session.settled = (1, 8), 8, False
    session.bindings = {"feat_stitching": SimpleNamespace(max_shape=(8, 126))}  # type: ignore[dict-item]
    session.issued, session.graphs, session.graph_failure = [], {}, ""
    return session


# --- 1: no capture or replay right after a shape change --------------------------------------------------


def test_a_shape_change_runs_one_plain_enqueue_before_any_capture_or_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    session = fake_session(cuda_graphs=True, log=log)
    monkeypatch.setattr(trt_backend, "CudaGraph", lambda stream, enqueue: FakeGraph(session.context, stream, enqueue))  # type: ignore[arg-type]
    for batch in (1, 1, 1, 2, 2, 1, 1):
        session._set_batch(batch)
        session._execute(batch)
    assert log == ["shape 1", "enqueue",  # the first enqueue (TensorRT's own set-up) is never captured
                   "captured enqueue", "captured", "replay", "replay",
                   "shape 2", "enqueue", "captured enqueue", "captured", "replay",
                   "shape 1", "enqueue",  # back to batch 1: its graph is replayed only after a plain enqueue
                   "replay"]
    after_shape = [log[i + 1] for i, event in enumerate(log) if event.startswith("shape")]
    assert after_shape == ["enqueue"] * 3


def test_without_cuda_graphs_every_run_is_one_plain_enqueue() -> None:
    log: list[str] = []
    session = fake_session(cuda_graphs=False, log=log)
    for batch in (1, 1, 2):
        session._set_batch(batch)
        session._execute(batch)
    assert log == ["shape 1", "enqueue", "enqueue", "shape 2", "enqueue"]


# --- 2: Polygraphy finds libcudart of the CUDA 13 wheels ----------------------------------------------------


def _site(tmp_path: Path, *libs: str) -> Path:
    for lib in libs:
        path = tmp_path / lib
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return tmp_path


def test_cudart_is_found_in_every_wheel_layout(tmp_path: Path) -> None:
    cu13 = _site(tmp_path / "a", "nvidia/cu13/lib/libcudart.so.13")
    assert environment.find_cudart([cu13]) == cu13 / "nvidia/cu13/lib/libcudart.so.13"
    both = _site(tmp_path / "b", "nvidia/cu13/lib/libcudart.so.13", "nvidia/cuda_runtime/lib/libcudart.so.12")
    assert environment.find_cudart([both]) == both / "nvidia/cu13/lib/libcudart.so.13"  # the newest by default
    assert environment.find_cudart([both], 12) == both / "nvidia/cuda_runtime/lib/libcudart.so.12"  # cuda-python's major
    cu12 = _site(tmp_path / "c", "nvidia/cu12/lib/libcudart.so.12")
    assert environment.find_cudart([tmp_path / "nothing", cu12], 13) == cu12 / "nvidia/cu12/lib/libcudart.so.12"
    assert environment.find_cudart([tmp_path / "nothing"]) is None


def test_polygraphy_loads_the_cudart_of_a_cuda13_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = pytest.importorskip("polygraphy.cuda.cuda")
    from polygraphy import util

    search = getattr(cuda, "_find_cuda_lib_dirs", None)
    if search is None:
        pytest.skip("this Polygraphy searches for libcudart differently")
    site = _site(tmp_path, "nvidia/cu13/lib/libcudart.so.13")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/elsewhere")
    assert str(site / "nvidia/cu13/lib") not in search()  # Polygraphy alone never looks in the CUDA 13 layout
    lib = environment.point_polygraphy_at_cudart(13, [site])
    assert lib == site / "nvidia/cu13/lib/libcudart.so.13"
    assert util.find_in_dirs("libcudart.so*", search()) == [str(lib)]  # what Polygraphy's Cuda() will dlopen
    assert environment.point_polygraphy_at_cudart(13, [site]) == lib
    assert os.environ["LD_LIBRARY_PATH"] == f"/opt/elsewhere:{lib.parent}"  # added once, after the user's entries


# --- 3, 4, 5: ONNX Runtime: one wheel, CUDA only where a session ran there, the gather file on CUDA -------------


def test_both_onnxruntime_wheels_are_named_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert onnxruntime_backend.ort_wheels() == ["onnxruntime"]  # this machine: the CPU wheel only
    monkeypatch.setattr(onnxruntime_backend, "ort_wheels", lambda: ["onnxruntime", "onnxruntime-gpu"])
    monkeypatch.setattr(parity, "cuda_status", lambda: (False, "not available in onnxruntime 1.22.0 (CPUExecutionProvider)"))
    ok, why = onnxruntime_backend.cuda_usable()
    assert not ok and "both installed" in why
    assert "pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps onnxruntime-gpu" in why
    with pytest.raises(BackendError, match=r"cannot run on CUDA here .*pip uninstall -y onnxruntime") as error:
        OnnxRuntimeBackend(tmp_path, device="cuda")
    assert "\n" not in str(error.value)


def test_onnxruntime_uses_cuda_only_where_a_probe_session_ran_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(parity, "cuda_status", lambda: (False, "CUDAExecutionProvider listed but unusable: no CUDA device"))
    listed_only = OnnxRuntimeBackend(tmp_path)
    assert not listed_only.cuda and listed_only.providers == ["CPUExecutionProvider"]
    assert "on CPU (not CUDA: CUDAExecutionProvider listed but unusable: no CUDA device)" in listed_only.describe()

    monkeypatch.setattr(parity, "cuda_status", lambda: (True, "onnxruntime 1.22.0 CUDAExecutionProvider"))
    (tmp_path / "warping_module.onnx").write_bytes(b"")  # native 5-D GridSample: no CUDA kernel before ORT 1.21
    backend = OnnxRuntimeBackend(tmp_path)
    assert backend.cuda and backend.providers[0] == "CUDAExecutionProvider"
    assert backend.path("warping_module").name == "warping_module.gather.onnx"  # defect 5: the gather file on CUDA
    assert backend.path("warp_decode").name == "warp_decode.gather.onnx"
    assert "on CUDA (CUDAExecutionProvider, I/O binding)" in backend.describe()
    backend._sessions["stitching"] = SimpleNamespace(on_cuda=False, provider="CPUExecutionProvider")  # type: ignore[assignment]
    assert backend.describe().startswith("onnxruntime fp32 on CUDA (CUDAExecutionProvider, I/O binding), but "
                                         "stitching on CPUExecutionProvider")
    assert "on CPU" in OnnxRuntimeBackend(tmp_path, device="cpu").describe()


# --- 6: lpt parity gives no native 5-D GridSample file to TensorRT before 11.2 ------------------------------


def test_parity_skips_native_gridsample_files_on_tensorrt_before_11_2() -> None:
    native = parity.Target("warping_module", "native", Path("warping_module.onnx"))
    native_fp16 = parity.Target("warping_module", "fp16", Path("warping_module.fp16.onnx"))
    gather = parity.Target("warping_module", "gather", Path("warping_module.gather.onnx"))
    plain = parity.Target("stitching", "native", Path("stitching.onnx"))
    why = parity.tensorrt_skip(native, "10.16.1.11")
    assert why is not None and "warping_module.onnx not run on TensorRT 10.16.1.11" in why and "5-D from 11.2" in why
    assert parity.tensorrt_skip(native_fp16, "11.1.0.106") is not None
    assert parity.tensorrt_skip(native, "11.2.1.2") is None
    assert parity.tensorrt_skip(native, "12.0.0") is None  # newer than the support table
    assert parity.tensorrt_skip(gather, "10.16.1.11") is None
    assert parity.tensorrt_skip(plain, "10.16.1.11") is None

    def make(path: Path, spec: object) -> None:
        return None

    choices = [parity.RunnerChoice("onnxrt-cpu", make),
               parity.RunnerChoice("tensorrt", make, lambda t: parity.tensorrt_skip(t, "10.16.1.11"))]
    usable, notes = parity.runners_for(native, choices)
    assert [c.name for c in usable] == ["onnxrt-cpu"] and notes == [f"tensorrt skipped: {why}"]
    assert [c.name for c in parity.runners_for(gather, choices)[0]] == ["onnxrt-cpu", "tensorrt"]


# --- 7: TensorRT and cuda-python paired per CUDA major; a driver too old for them said in one line --------------


def test_extras_pair_tensorrt_and_cuda_python_per_cuda_major() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["trt-cu12"] == ["tensorrt-cu12>=10", "cuda-python>=12.6,<13"]
    assert extras["trt-cu13"] == ["tensorrt-cu13>=10.13", "cuda-python>=13,<14"]
    assert extras["trt"] == extras["trt-cu12"]  # CUDA 12 runs on drivers for 12 and 13


def test_a_driver_older_than_cuda_python_is_one_line() -> None:
    why = cuda_memory.cuda_major_mismatch(12040, {"cuda-python": 13})
    assert why == ("cuda-python for CUDA 13 needs an NVIDIA driver for CUDA 13, this driver runs CUDA 12.4: "
                   "`pip install -e .[trt-cu12]` for this driver, or update the driver")
    assert cuda_memory.cuda_major_mismatch(13000, {"cuda-python": 12, "tensorrt-cu12": 12}) is None  # older is fine
    assert cuda_memory.cuda_major_mismatch(0, {"cuda-python": 13}) is None  # no driver: device_count says so
    both = cuda_memory.cuda_major_mismatch(12080, {"cuda-python": 12, "tensorrt-cu13": 13})
    assert both is not None and both.startswith("tensorrt-cu13 for CUDA 13 needs")


def test_check_driver_asks_the_driver_and_raises_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SimpleNamespace(cudaError_t=SimpleNamespace(cudaSuccess=0), cudaDriverGetVersion=lambda: (0, 12020),
                           cudaRuntimeGetVersion=lambda: (0, 13000))
    monkeypatch.setattr(cuda_memory, "cudart", fake)
    with pytest.raises(cuda_memory.CudaError, match=r"^cuda-python for CUDA 13 needs an NVIDIA driver for CUDA 13, "
                                                    r"this driver runs CUDA 12\.2"):
        cuda_memory.check_driver({})
    fake.cudaRuntimeGetVersion = lambda: (0, 12090)
    cuda_memory.check_driver({})
    with pytest.raises(cuda_memory.CudaError, match="^tensorrt-cu13 for CUDA 13 needs"):
        cuda_memory.check_driver({"tensorrt-cu13": 13})


def test_tensorrt_wheels_tell_their_cuda_major(monkeypatch: pytest.MonkeyPatch) -> None:
    dists = [SimpleNamespace(metadata={"Name": n}) for n in ("tensorrt-cu13", "tensorrt_cu13_libs", "tensorrt", "numpy")]
    monkeypatch.setattr(environment.metadata, "distributions", lambda: dists)
    assert environment.tensorrt_cuda_majors() == {"tensorrt-cu13": 13, "tensorrt_cu13_libs": 13}


# --- 8: lpt build --device N builds on GPU N ---------------------------------------------------------------


def test_build_makes_the_named_device_current_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("polygraphy")
    calls: list[str] = []
    job = EngineJob("stitching", "fp16", "native", tmp_path / "stitching.fp16.onnx",
                    tmp_path / engine_name("stitching", "fp16", H100_TRT11))
    monkeypatch.setattr(environment, "probe", lambda device: calls.append(f"probe {device}") or H100_TRT11)
    monkeypatch.setattr(cuda_memory, "set_device", lambda device: calls.append(f"cudaSetDevice {device}"))
    monkeypatch.setattr(engine_build, "plan_jobs", lambda *args: ([job], []))
    monkeypatch.setattr(engine_build, "build_one", lambda *args: calls.append("build") or BuildRow(job, "built", 0.0, 0.0))
    engine_build.build_all(tmp_path, tmp_path, device=3, options=BuildOptions(), progress=lambda line: None)
    assert calls == ["probe 3", "cudaSetDevice 3", "build"]


# --- 9: TensorRT is chosen only with the engines of this GPU, TensorRT and precision --------------------------


def _engine(folder: Path, graph: str, precision: str, platform: Platform) -> Path:
    folder.mkdir(exist_ok=True)
    engine = folder / engine_name(graph, precision, platform)
    engine.write_bytes(b"serialized plan")
    EngineRecord(graph, precision, "native", f"{graph}.onnx", "0" * 64, engine.name, sha256_file(engine),
                 engine.stat().st_size, platform.tensorrt, platform.gpu, cc_text(platform), platform.cuda_driver,
                 platform.cuda_runtime, {}).write(engine.with_suffix(".json"))
    return engine


def test_tensorrt_is_chosen_only_with_engines_for_this_gpu_tensorrt_and_precision(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    where, graphs = Locations(tmp_path / "w", tmp_path / "onnx", tmp_path / "engines"), ("stitching",)
    name, why = choose(None, "fp16", where, graphs)
    assert name != "tensorrt" and why.startswith("TensorRT is not installed")  # this machine
    monkeypatch.setattr(backends, "tensorrt_platform", lambda: (H100_TRT11, ""))
    monkeypatch.setattr(backends, "engines_untraced", lambda engines, onnx_dir, weights: None)
    _engine(where.engines, "stitching", "fp16", L4_TRT10)  # any engine used to be enough
    name, why = choose(None, "fp16", where, graphs)
    assert name != "tensorrt"
    assert why.startswith(f"not TensorRT: no stitching.fp16.trt11.4.sm90.engine in {where.engines} "
                          "(engines for trt11.4.sm90, fp16: `lpt build`)")
    engine = _engine(where.engines, "stitching", "fp16", H100_TRT11)
    assert choose(None, "fp16", where, graphs) == ("tensorrt", f"TensorRT and engines in {where.engines}")
    assert choose(None, None, where, graphs)[0] == "tensorrt"  # no precision asked: TensorRT's default, fp16
    assert "no stitching.fp32.trt11.4.sm90.engine" in choose(None, "fp32", where, graphs)[1]
    engine.write_bytes(b"serialized plaN")
    name, why = choose(None, "fp16", where, graphs)
    assert name != "tensorrt" and "stitching.fp16.trt11.4.sm90.engine does not match its sidecar" in why


# --- 10: one synchronisation per run; ONNX Runtime inputs copied into OrtValues kept per input -----------------


def test_to_host_reads_every_output_of_a_run_with_one_synchronisation(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = Memory()
    monkeypatch.setattr(trt_backend, "copy_async", memory.copy)
    monkeypatch.setattr(trt_backend, "PinnedBuffer", fake_pinned(memory))
    monkeypatch.setattr(trt_backend, "set_device", lambda device: None)
    backend = TensorRTBackend.__new__(TensorRTBackend)
    backend.lock, backend.device, backend.stream, backend.host = threading.RLock(), 0, FakeStream(), None  # type: ignore[assignment]
    spec = SPECS["motion_extractor"]
    rng = np.random.default_rng(0)
    values = {t.name: rng.standard_normal((1, *t.shape[1:])).astype(np.float32) for t in spec.outputs}
    session = TensorRTSession.__new__(TensorRTSession)
    session.spec, session.issued = spec, []
    session.context = SimpleNamespace(get_tensor_shape=lambda name: values[name].shape)  # type: ignore[assignment]
    session.bindings = {n: SimpleNamespace(buffer=FakeDeviceBuffer(memory, v), dtype=np.dtype(np.float32))  # type: ignore[misc]
                        for n, v in values.items()}
    outputs = session._outputs()
    assert len(outputs) > 3
    host = {n: backend.to_host(outputs[n]) for n in spec.output_names}
    assert backend.stream.syncs == 1  # type: ignore[attr-defined]
    for name, value in values.items():
        np.testing.assert_array_equal(host[name], value)
    np.testing.assert_array_equal(backend.to_host(outputs["exp"]), values["exp"])  # read again: fetched again
    assert backend.stream.syncs == 2  # type: ignore[attr-defined]


def _stitching_graph(path: Path) -> np.ndarray:
    weight = np.random.default_rng(0).standard_normal((126, 65)).astype(np.float32)
    x = onnx.helper.make_tensor_value_info("feat_stitching", onnx.TensorProto.FLOAT, ["B", 126])
    y = onnx.helper.make_tensor_value_info("delta", onnx.TensorProto.FLOAT, ["B", 65])
    w = onnx.numpy_helper.from_array(weight, "w")
    graph = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["feat_stitching", "w"], ["delta"])], "g", [x], [y], [w])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    return weight


def test_onnxruntime_binds_host_inputs_into_ortvalues_it_keeps(tmp_path: Path) -> None:
    """The I/O-binding path of the CUDA provider, run with CPU OrtValues: same shape, same OrtValue."""
    weight = _stitching_graph(tmp_path / "stitching.onnx")
    session = OnnxRuntimeSession(tmp_path / "stitching.onnx", SPECS["stitching"], ["CPUExecutionProvider"])
    session.on_cuda, session.device = True, "cpu"
    rng = np.random.default_rng(1)
    first, second = (rng.standard_normal((1, 126)).astype(np.float32) for _ in range(2))
    kept = first.copy()
    out = session.run({"feat_stitching": first})["delta"]
    held = session.inputs["feat_stitching"]
    np.testing.assert_allclose(out.numpy(), first @ weight, rtol=1e-5, atol=1e-5)
    again = session.run({"feat_stitching": second})["delta"]
    assert session.inputs["feat_stitching"] is held  # copied into, not re-allocated
    np.testing.assert_allclose(again.numpy(), second @ weight, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.numpy(), first @ weight, rtol=1e-5, atol=1e-5)  # an earlier result is intact
    np.testing.assert_array_equal(first, kept)  # and so is the caller's array
    batch = rng.standard_normal((3, 126)).astype(np.float32)
    np.testing.assert_allclose(session.run({"feat_stitching": batch})["delta"].numpy(), batch @ weight, rtol=1e-5, atol=1e-5)
    assert session.inputs["feat_stitching"] is not held and tuple(session.inputs["feat_stitching"].shape()) == (3, 126)


# --- 11: a failed capture frees its graph; a staged source is not kept alive ---------------------------------


def test_a_failed_capture_destroys_the_partial_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    destroyed: list[int] = []
    fake = SimpleNamespace(
        cudaError_t=SimpleNamespace(cudaSuccess=0),
        cudaStreamCaptureMode=SimpleNamespace(cudaStreamCaptureModeThreadLocal=2),
        cudaStreamBeginCapture=lambda stream, mode: (0,), cudaStreamEndCapture=lambda stream: (0, 7),
        cudaGraphDestroy=lambda graph: destroyed.append(int(graph)) or (0,),
        cudaGraphInstantiate=lambda graph, flags: (0, "exec"))
    monkeypatch.setattr(cuda_memory, "cudart", fake)
    stream = SimpleNamespace(handle=1)

    def failing() -> None:
        raise trt_backend.EngineError("stitching: TensorRT could not enqueue the engine")

    with pytest.raises(trt_backend.EngineError):
        cuda_memory.CudaGraph(stream, failing)  # type: ignore[arg-type]
    assert destroyed == [7]
    assert cuda_memory.CudaGraph(stream, lambda: None).exec == "exec"  # type: ignore[arg-type]
    assert destroyed == [7, 7]  # the instantiated graph's template is freed too


def _device_tensor(memory: Memory) -> DeviceTensor:
    buffer = FakeDeviceBuffer(memory, np.ones((1, 126), np.float32))
    return DeviceTensor(buffer, (1, 126), np.dtype(np.float32))  # type: ignore[arg-type]


def test_a_staged_source_buffer_is_not_kept_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    memory, copies = Memory(), []
    monkeypatch.setattr(trt_backend, "copy_async", lambda dst, src, n, direction, stream: copies.append(src))
    session = fake_session(cuda_graphs=False, log=[])
    binding = _Binding.__new__(_Binding)
    binding.name, binding.dtype, binding.source = "feat_stitching", np.dtype(np.float32), None
    binding.buffer = FakeDeviceBuffer(memory, np.zeros((8, 126), np.float32))  # type: ignore[assignment]
    value = _device_tensor(memory)
    session._stage(binding, value)
    session._stage(binding, value)  # the same contents: no second copy
    assert len(copies) == 1
    value.buffer.version += 1
    session._stage(binding, value)
    assert len(copies) == 2
    gone = weakref.ref(value.buffer)
    del value
    gc.collect()
    assert gone() is None  # the binding remembers what it copied without holding the producer's memory
    other = _device_tensor(memory)
    session._stage(binding, other)
    assert len(copies) == 3
