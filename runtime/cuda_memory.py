"""CUDA through cuda-python's runtime bindings: device and pinned buffers, a stream, events, CUDA graphs.

pycuda needs the CUDA toolkit to build; ``cuda.bindings.runtime`` is a plain wheel. Every call returns
``(error, *values)``; ``check`` turns a failure into one line naming the call.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable
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

    def array(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        """A numpy view of the first bytes of the buffer."""
        count = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if count > self.nbytes:
            raise ValueError(f"{shape} {dtype} needs {count} bytes; the pinned buffer has {self.nbytes}")
        raw = np.ctypeslib.as_array((ctypes.c_ubyte * count).from_address(self.ptr))
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
            cudart.cudaStreamEndCapture(stream.handle)  # leaves the stream usable; the partial graph is dropped
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
