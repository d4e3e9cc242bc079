"""The measuring instruments: latency statistics, clocks (CUDA events on a GPU, a monotonic clock on the
CPU), output fidelity against a reference, and peak memory of this process."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from lpt.runtime.memory import peak_rss_mib

from lpt.metrics import UINT8_PEAK, max_abs_error, psnr_db, range_peak

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass(frozen=True)
class Latency:
    """Seconds of ``runs`` timed calls, summarised."""

    runs: int
    median_s: float
    p90_s: float
    min_s: float
    mean_s: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            raise ValueError("no timed run to summarise")
        values = np.asarray(seconds, dtype=np.float64)
        return cls(len(values), float(np.median(values)), float(np.percentile(values, 90)), float(values.min()),
                   float(values.mean()))


class CpuClock:
    """Wall time of a call on the host (``time.perf_counter``): what a CPU backend's caller waits."""

    name = "perf_counter"

    def time(self, call: Callable[[], object]) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start


class CudaEventClock:
    """GPU time between two CUDA events recorded around a call on ``stream`` (0: the legacy default stream,
    which orders itself after the work of every blocking stream)."""

    name = "cuda events"

    def __init__(self, stream: Any = 0) -> None:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]

        self._cudart = cudart
        self._stream = stream
        self._start = self._check(cudart.cudaEventCreate())
        self._end = self._check(cudart.cudaEventCreate())

    def _check(self, result: tuple[Any, ...]) -> Any:
        err, *values = result
        if int(err) != 0:
            raise RuntimeError(f"CUDA runtime call failed: {getattr(err, 'name', err)}")
        return values[0] if values else None

    def time(self, call: Callable[[], object]) -> float:
        cudart = self._cudart
        self._check(cudart.cudaEventRecord(self._start, self._stream))
        call()
        self._check(cudart.cudaEventRecord(self._end, self._stream))
        self._check(cudart.cudaEventSynchronize(self._end))
        return float(self._check(cudart.cudaEventElapsedTime(self._start, self._end))) / 1000


class TorchCudaClock:
    """CUDA events through torch (on torch's current stream), for torch's own CUDA work."""

    name = "cuda events"

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def time(self, call: Callable[[], object]) -> float:
        self._start.record()
        call()
        self._end.record()
        self._end.synchronize()
        return float(self._start.elapsed_time(self._end)) / 1000


Clock = CpuClock | CudaEventClock | TorchCudaClock


@dataclass(frozen=True)
class Fidelity:
    """Difference of an output from the reference: the largest absolute difference and the PSNR."""

    max_abs: float  # inf for a NaN output
    psnr_db: float  # inf when identical, -inf for a NaN output

    def as_json(self) -> dict[str, float | None]:
        return {"max_abs": self.max_abs, "psnr_db": None if self.psnr_db == math.inf else self.psnr_db}


def tensor_fidelity(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> tuple[Fidelity, str]:
    """The worst output of a graph against the reference: (largest |difference| over the outputs, lowest
    PSNR with each output's reference range as its peak), and the name of the lowest-PSNR output."""
    worst_name, worst_psnr, largest = "", math.inf, 0.0
    for name, ref in reference.items():
        ours = np.asarray(outputs[name])
        if ours.shape != np.shape(ref):
            raise ValueError(f"output {name}: shape {ours.shape}, the reference's is {np.shape(ref)}")
        largest = max(largest, max_abs_error(ours, ref))
        value = psnr_db(ours, ref, range_peak(ref))
        if value < worst_psnr or not worst_name:
            worst_name, worst_psnr = name, value
    return Fidelity(largest, worst_psnr), worst_name


def frame_fidelity(frames: np.ndarray, reference: np.ndarray) -> Fidelity:
    """Rendered uint8 frames against the reference frames: max pixel difference (0..255) and PSNR (peak 255)."""
    if frames.shape != reference.shape:
        raise ValueError(f"{frames.shape[0]} frame(s) of {frames.shape[1:]} against a reference of "
                         f"{reference.shape[0]} frame(s) of {reference.shape[1:]}")
    return Fidelity(max_abs_error(frames, reference), psnr_db(frames, reference, UINT8_PEAK))


class ProcessPeakRss:
    """The peak RSS of another running process, read from /proc every ``period_s`` until ``stop`` (VmHWM only
    grows, so the last reading before the process ends is its peak)."""

    def __init__(self, pid: int, period_s: float = 0.05) -> None:
        self.mib: float | None = None
        self._stop = threading.Event()

        def sample() -> None:
            while True:
                reading = peak_rss_mib(pid)
                if reading is not None:
                    self.mib = max(self.mib or 0.0, reading)
                if self._stop.wait(period_s):
                    return

        self._thread = threading.Thread(target=sample, name="lpt-bench-rss", daemon=True)
        self._thread.start()

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.mib


class GpuMemoryPeak:
    """Peak device memory in use on GPU 0 while the watch runs, above what was in use when it started,
    sampled through NVML every ``period_s``; ``mib`` is None without a GPU or NVML. It counts the CUDA
    context and every allocator's pool, which torch's own counters do not."""

    def __init__(self, period_s: float = 0.02) -> None:
        self.mib: float | None = None
        self._period = period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no driver, no GPU or no NVML: nothing to watch
            self._nvml = None

    def _used(self) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)  # type: ignore[union-attr]

    def __enter__(self) -> Self:
        if self._nvml is not None:
            baseline = self._used()
            self.mib = 0.0

            def sample() -> None:
                while not self._stop.wait(self._period):
                    self.mib = max(self.mib or 0.0, (self._used() - baseline) / 2**20)

            self._thread = threading.Thread(target=sample, name="lpt-bench-nvml", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
