"""CUDA through cuda-python's runtime bindings: device and pinned buffers, a stream, events, CUDA graphs.

pycuda needs the CUDA toolkit to build; ``cuda.bindings.runtime`` is a plain wheel. Every call returns
``(error, *values)``; ``check`` turns a failure into one line naming the call.

The one module that imports cuda-python: the engine builders (which GPU, which driver) and the runtime
(buffers, streams, graphs) both come here, so it sits below both stages.

Depends on: cuda-python (optional, imported on first use), numpy, lpt.errors.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lpt.errors import LptError


class CudaError(LptError):
    """A CUDA runtime call failed: no driver, no device, out of memory, or a failed launch."""


try:
    from cuda.bindings import runtime as cudart
except ImportError as exc:  # reported in one line by the first call that needs CUDA
    cudart = None  # type: ignore[assignment]
    _MISSING = str(exc)


def require_cuda() -> None:
    if cudart is None:
        raise CudaError(f"cuda-python >= 12.6 is needed for TensorRT: `pip install -e .[trt]` ({_MISSING})")


def check(result: tuple[Any, ...], call: str) -> Any:
    """The value(s) after the error code of a cuda-python call, or CudaError naming ``call``."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        name = getattr(err, "name", str(err))
        raise CudaError(f"{call} failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> tuple[int, str]:
    """(number of GPUs, why none); only a missing cuda-python raises: the driver may be missing altogether."""
    require_cuda()
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        return 0, f"cudaGetDeviceCount says {getattr(err, 'name', err)}"
    return int(count), "" if count else "no CUDA device is visible"


def _version(code: int) -> str:
    return f"{code // 1000}.{code % 1000 // 10}"


def device_info(device: int) -> tuple[str, tuple[int, int], str, str]:
    """(GPU name, compute capability, driver CUDA version, runtime CUDA version)."""
    props = check(cudart.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    driver = check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")
    runtime = check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
    return name.strip("\0 "), (int(props.major), int(props.minor)), _version(int(driver)), _version(int(runtime))


def cuda_major_mismatch(driver: int, built_for: Mapping[str, int]) -> str | None:
    """One line when a package was built for a newer CUDA major than the driver runs, else None. ``driver``:
    cudaDriverGetVersion's code (12040 for 12.4; 0 without a driver, reported elsewhere); ``built_for``: package ->
    CUDA major. An older major is fine: drivers run the runtimes of earlier CUDA majors."""
    major = driver // 1000
    newer = {name: m for name, m in built_for.items() if m > major}
    if not driver or not newer:
        return None
    what = ", ".join(f"{name} for CUDA {m}" for name, m in newer.items())
    pair = f"`pip install -e .[trt-cu{major}]` for this driver, or " if major in (12, 13) else ""
    return (f"{what} needs an NVIDIA driver for CUDA {max(newer.values())}, this driver runs CUDA {_version(driver)}: "
            f"{pair}update the driver")


def check_driver(built_for: Mapping[str, int]) -> None:
    """CudaError, one line, when cuda-python (or a package of ``built_for``: name -> CUDA major) needs a newer
    driver: its calls would otherwise fail later as cudaErrorInsufficientDriver, which names no package."""
    require_cuda()
    err, driver = cudart.cudaDriverGetVersion()
    err_runtime, runtime = cudart.cudaRuntimeGetVersion()
    if err != cudart.cudaError_t.cudaSuccess or err_runtime != cudart.cudaError_t.cudaSuccess:
        return  # no driver at all: device_count says so
    why = cuda_major_mismatch(int(driver), {"cuda-python": int(runtime) // 1000, **built_for})
    if why is not None:
        raise CudaError(why)


def set_device(device: int) -> None:
    check(cudart.cudaSetDevice(device), f"cudaSetDevice({device})")


def used_device_memory_mib() -> float:
    free, total = check(cudart.cudaMemGetInfo(), "cudaMemGetInfo")
    return (int(total) - int(free)) / 2**20


class Stream:
    """One non-blocking stream: everything a backend does is ordered on it."""

    def __init__(self) -> None:
        require_cuda()
        self.handle: Any = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self.closed = False

    @property
    def ptr(self) -> int:
        return int(self.handle) if not self.closed else 0

    def synchronize(self) -> None:
        check(cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            check(cudart.cudaStreamDestroy(self.handle), "cudaStreamDestroy")


class Event:
    """Marks a point on a stream; the host waits for it before it reuses what the work before it read."""

    def __init__(self) -> None:
        self.handle: Any = check(cudart.cudaEventCreateWithFlags(cudart.cudaEventDisableTiming), "cudaEventCreateWithFlags")
        self.recorded = False

    def record(self, stream: Stream) -> None:
        check(cudart.cudaEventRecord(self.handle, stream.handle), "cudaEventRecord")
        self.recorded = True

    def wait(self) -> None:
        if self.recorded:
            check(cudart.cudaEventSynchronize(self.handle), "cudaEventSynchronize")

    def close(self) -> None:
        check(cudart.cudaEventDestroy(self.handle), "cudaEventDestroy")


class DeviceBuffer:
    """GPU memory. ``version`` counts the writes of an engine into it, so a reader can tell new contents."""

    def __init__(self, nbytes: int, stream: Stream | None = None) -> None:
        self.nbytes = max(int(nbytes), 1)
        self.stream = stream  # stream-ordered allocation from the pool when given
        if stream is None:
            ptr = check(cudart.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})")
        else:
            ptr = check(cudart.cudaMallocAsync(self.nbytes, stream.handle), f"cudaMallocAsync({self.nbytes})")
        self.ptr = int(ptr)
        self.version = 0

    def free(self) -> None:
        if not self.ptr:
            return
        ptr, self.ptr = self.ptr, 0
        if self.stream is None:
            check(cudart.cudaFree(ptr), "cudaFree")
        else:  # after the stream is gone, the legacy default stream orders the free
            check(cudart.cudaFreeAsync(ptr, self.stream.handle if not self.stream.closed else 0), "cudaFreeAsync")

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the bindings may be gone already
            self.free()


class PinnedBuffer:
    """Page-locked host memory (cudaHostAlloc): the only host memory async copies really overlap with."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(int(nbytes), 1)
        self.ptr: int = int(check(cudart.cudaHostAlloc(self.nbytes, cudart.cudaHostAllocDefault),
                                  f"cudaHostAlloc({self.nbytes})"))

    def array(self, shape: tuple[int, ...], dtype: np.dtype[Any], offset: int = 0) -> np.ndarray:
        """A numpy view of the buffer's bytes from ``offset`` on."""
        count = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + count > self.nbytes:
            raise ValueError(f"{shape} {dtype} at byte {offset} needs {offset + count}; the pinned buffer has {self.nbytes}")
        raw = np.ctypeslib.as_array((ctypes.c_ubyte * count).from_address(self.ptr + offset))
        return raw.view(dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(cudart.cudaFreeHost(ptr), "cudaFreeHost")

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the bindings may be gone already
            self.free()


def copy_async(dst: int, src: int, nbytes: int, direction: str, stream: Stream) -> None:
    """``direction``: "h2d", "d2h" or "d2d"."""
    kind = {"h2d": cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, "d2h": cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
            "d2d": cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice}[direction]
    check(cudart.cudaMemcpyAsync(dst, src, nbytes, kind, stream.handle), f"cudaMemcpyAsync({direction}, {nbytes} bytes)")


def _end_failed_capture(stream: Stream) -> None:
    """Take the stream out of capture mode and destroy the partial graph it returns (errors ignored: the
    caller is already raising the one that matters)."""
    err, graph = cudart.cudaStreamEndCapture(stream.handle)
    if err == cudart.cudaError_t.cudaSuccess and graph is not None and int(graph):
        cudart.cudaGraphDestroy(graph)


class CudaGraph:
    """The work ``enqueue`` puts on ``stream``, captured once and replayed by ``launch``.

    trtexec's pattern: the caller runs the work once uncaptured first (TensorRT initialises lazily), then
    captures. Capture mode is thread-local so another thread's CUDA calls cannot invalidate it.
    """

    def __init__(self, stream: Stream, enqueue: Callable[[], None]) -> None:
        self.exec: Any = None
        check(cudart.cudaStreamBeginCapture(stream.handle, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            _end_failed_capture(stream)
            raise
        graph = check(cudart.cudaStreamEndCapture(stream.handle), "cudaStreamEndCapture")
        try:
            self.exec = check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            check(cudart.cudaGraphDestroy(graph), "cudaGraphDestroy")

    def launch(self, stream: Stream) -> None:
        check(cudart.cudaGraphLaunch(self.exec, stream.handle), "cudaGraphLaunch")

    def close(self) -> None:
        if self.exec is not None:
            exec_, self.exec = self.exec, None
            check(cudart.cudaGraphExecDestroy(exec_), "cudaGraphExecDestroy")
