"""Per-graph latency: every graph on every backend and precision the machine has, at batch 1 and at the
largest batch of its profile, with the output error against PyTorch FP32 on the same inputs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from lpt.bench.measure import (
    Clock,
    CpuClock,
    CudaEventClock,
    Fidelity,
    Latency,
    TorchCudaClock,
    tensor_fidelity,
)
from lpt.runtime.backend import Backend, GraphSession
from lpt.runtime.backends import Locations

from lpt.errors import LptError
from lpt.specs import SPECS


@dataclass(frozen=True)
class Candidate:
    backend: str  # "torch" | "onnxruntime" | "openvino" | "tensorrt"
    precision: str  # "fp32" | "fp16" | "int8"

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"


REFERENCE = Candidate("torch", "fp32")
CANDIDATES = (REFERENCE, Candidate("torch", "fp16"),
              *(Candidate("onnxruntime", p) for p in ("fp32", "fp16", "int8")),
              *(Candidate("openvino", p) for p in ("fp32", "int8")),
              *(Candidate("tensorrt", p) for p in ("fp32", "fp16", "int8")))


@dataclass(frozen=True)
class Budget:
    """How long each measurement (one graph, backend, precision and batch) may take."""

    runs: int = 20  # timed runs at most
    min_runs: int = 3  # timed runs at least, whatever the time
    warmup: int = 3  # untimed runs at most; at least one, and no more once they took half of ``seconds``
    seconds: float = 10.0  # timed runs stop after this much, once ``min_runs`` are done


@dataclass
class GraphRow:
    graph: str
    candidate: Candidate
    batch: int
    status: str  # "measured" | "skipped" | "failed"
    reason: str = ""
    device: str = ""
    clock: str = ""
    load_s: float | None = None  # the graph's session: file read, engine built or module loaded
    latency: Latency | None = None
    fidelity: Fidelity | None = None  # against PyTorch FP32, same inputs
    worst_output: str = ""

    @property
    def throughput(self) -> float | None:
        """Items (images, keypoint sets) per second at this batch."""
        return self.batch / self.latency.median_s if self.latency and self.latency.median_s > 0 else None

    def as_json(self) -> dict[str, Any]:
        lat = self.latency
        return {
            "graph": self.graph, "backend": self.candidate.backend, "precision": self.candidate.precision,
            "batch": self.batch, "status": self.status, "reason": self.reason, "device": self.device,
            "clock": self.clock, "load_s": self.load_s,
            "runs": lat.runs if lat else 0,
            "median_ms": 1000 * lat.median_s if lat else None, "p90_ms": 1000 * lat.p90_s if lat else None,
            "min_ms": 1000 * lat.min_s if lat else None, "mean_ms": 1000 * lat.mean_s if lat else None,
            "throughput_per_s": self.throughput,
            "fidelity": {**self.fidelity.as_json(), "worst_output": self.worst_output} if self.fidelity else None,
        }


def example_feeds(graph: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs in each input's natural range; item i of the batch is the seed + i example."""
    from lpt.models.named_io import example_inputs

    items = [example_inputs(graph, seed + i) for i in range(batch)]
    return {name: np.concatenate([item[name].numpy() for item in items]) for name in SPECS[graph].input_names}


def device_of(backend: Backend) -> str:
    if backend.name == "torch":
        return backend.device.type  # type: ignore[attr-defined]
    if backend.name == "onnxruntime":
        return "cuda" if backend.cuda else "cpu"  # type: ignore[attr-defined]
    return "cpu" if backend.name == "openvino" else "cuda"


def clock_for(backend: Backend) -> Clock:
    """CUDA events for GPU backends: on the backend's own stream (TensorRT), else on the legacy default
    stream, which waits for the work of every blocking stream (torch; ONNX Runtime returns when done anyway)."""
    if device_of(backend) == "cpu":
        return CpuClock()
    stream = getattr(backend, "stream", None)
    if stream is None and backend.name == "torch":
        return TorchCudaClock()
    try:
        return CudaEventClock(stream=stream.handle if stream is not None else 0)
    except ImportError:  # no cuda-python: torch's events serve for the default stream, else the host clock
        import torch

        return TorchCudaClock() if stream is None and torch.cuda.is_available() else CpuClock()


def resident(backend: Backend, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """The feeds moved into the backend's memory once, so the timed runs measure the graph, not the copy."""
    if backend.name == "torch":
        return {n: _torch_tensor(backend, a) for n, a in feeds.items()}
    if backend.name == "onnxruntime" and backend.cuda:  # type: ignore[attr-defined]
        import onnxruntime as ort

        return {n: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), "cuda", 0) for n, a in feeds.items()}
    if backend.name == "tensorrt":
        from lpt.cuda import DeviceBuffer, copy_async
        from lpt.runtime.trt_backend import DeviceTensor

        moved = {}
        for name, array in feeds.items():
            array = np.ascontiguousarray(array, dtype=np.float32)
            buffer = DeviceBuffer(array.nbytes)
            copy_async(buffer.ptr, array.ctypes.data, array.nbytes, "h2d", backend.stream)  # type: ignore[attr-defined]
            moved[name] = DeviceTensor(buffer, array.shape, array.dtype)
        backend.stream.synchronize()  # type: ignore[attr-defined]
        return moved
    return feeds


def _torch_tensor(backend: Backend, array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(array).to(backend.device, backend.dtype)  # type: ignore[attr-defined]


def measure(session: GraphSession, feeds: dict[str, Any], clock: Clock, budget: Budget) -> tuple[Latency, dict[str, Any]]:
    """Warm-up runs, then timed runs within the budget; the latency and the last run's outputs."""
    warm_start = time.perf_counter()
    for _ in range(max(1, budget.warmup)):
        session.run(feeds)
        if time.perf_counter() - warm_start > budget.seconds / 2:
            break
    seconds: list[float] = []
    last: dict[str, Any] = {}

    def call() -> None:
        last.clear()  # TensorRT copies outputs still referenced before a run overwrites them: keep none
        last["outputs"] = session.run(feeds)

    while len(seconds) < budget.runs and (len(seconds) < budget.min_runs or sum(seconds) < budget.seconds):
        seconds.append(clock.time(call))
    return Latency.of(seconds), last["outputs"]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if isinstance(exc, LptError) else f"{type(exc).__name__}: {text}"


@dataclass
class GraphBench:
    """Runs the candidates in order, PyTorch FP32 first: its outputs are the reference of the others."""

    where: Locations
    graphs: tuple[str, ...]
    budget: Budget = field(default_factory=Budget)
    seed: int = 0
    progress: Callable[[str], None] = print
    reference: dict[tuple[str, int], dict[str, np.ndarray]] = field(default_factory=dict)

    def run(self, candidates: Iterable[Candidate] = CANDIDATES) -> list[GraphRow]:
        ordered = sorted(candidates, key=lambda c: c != REFERENCE)
        if ordered and ordered[0] != REFERENCE:
            ordered.insert(0, REFERENCE)  # the reference is measured in any case: every error is against it
        rows: list[GraphRow] = []
        for candidate in ordered:
            rows += self._candidate(candidate)
        return rows

    def batches(self, graph: str) -> tuple[int, ...]:
        largest = SPECS[graph].batch[2]
        return (1, largest) if largest > 1 else (1,)

    def _candidate(self, candidate: Candidate) -> list[GraphRow]:
        from lpt.runtime.backends import open_backend

        try:
            backend = open_backend(candidate.backend, candidate.precision, self.where)
        except (LptError, ImportError, OSError) as exc:
            reason = _first_line(exc)
            self.progress(f"{candidate.label}: skipped ({reason})")
            return [GraphRow(g, candidate, b, "skipped", reason) for g in self.graphs for b in self.batches(g)]
        try:
            return [row for graph in self.graphs for row in self._graph(backend, candidate, graph)]
        finally:
            backend.close()

    def _graph(self, backend: Backend, candidate: Candidate, graph: str) -> list[GraphRow]:
        start = time.perf_counter()
        try:
            session = backend.session(graph)
        except (LptError, ImportError, OSError) as exc:
            reason = _first_line(exc)
            self.progress(f"{graph:<30} {candidate.label:<17} skipped: {reason}")
            return [GraphRow(graph, candidate, b, "skipped", reason) for b in self.batches(graph)]
        load_s = time.perf_counter() - start
        clock, device = clock_for(backend), device_of(backend)
        rows: list[GraphRow] = []
        for batch in self.batches(graph):
            row = GraphRow(graph, candidate, batch, "measured", device=device, clock=clock.name, load_s=load_s)
            reason = self._not_worth_it(rows[0], batch) if rows else None
            rows.append(row)
            if reason is not None:
                row.status, row.reason = "skipped", reason
                self.progress(f"{graph:<30} {candidate.label:<17} batch {batch}: skipped, {reason}")
                continue
            try:
                self._measure(backend, session, candidate, row, clock)
            except Exception as exc:  # noqa: BLE001 - one failing measurement is reported, the others go on
                row.status, row.reason, row.latency = "failed", _first_line(exc), None
                self.progress(f"{graph:<30} {candidate.label:<17} batch {batch}: FAILED: {row.reason}")
        return rows

    def _not_worth_it(self, first: GraphRow, batch: int) -> str | None:
        """Why the largest batch is not measured after batch 1 (``first``), or None."""
        if first.latency is None:
            return f"batch 1 was not measured ({first.reason})"
        estimate = first.latency.median_s * batch
        if estimate > self.budget.seconds:
            return (f"one batch-{batch} run would take about {estimate:.0f} s (batch 1: {first.latency.median_s:.1f} s), "
                    f"over --cell-seconds {self.budget.seconds:g}")
        return None

    def _measure(self, backend: Backend, session: GraphSession, candidate: Candidate, row: GraphRow, clock: Clock) -> None:
        host_feeds = example_feeds(row.graph, row.batch, self.seed)
        latency, outputs = measure(session, resident(backend, host_feeds), clock, self.budget)
        host = {name: backend.to_host(value) for name, value in outputs.items()}
        key = (row.graph, row.batch)
        if candidate == REFERENCE:
            self.reference[key] = host
        elif key not in self.reference:
            self.reference[key] = self._reference_outputs(row.graph, host_feeds)
        row.latency = latency
        row.fidelity, row.worst_output = tensor_fidelity(host, self.reference[key])
        fid = row.fidelity
        self.progress(f"{row.graph:<30} {candidate.label:<17} batch {row.batch}: median {1000 * latency.median_s:9.2f} ms"
                      f"  p90 {1000 * latency.p90_s:9.2f} ms  ({latency.runs} runs)  max|diff| {fid.max_abs:.2g}")

    def _reference_outputs(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One PyTorch FP32 run, when the reference's own measurement of this cell was skipped."""
        from lpt.runtime.torch_backend import TorchBackend

        backend = TorchBackend(self.where.weights, "fp32")
        try:
            outputs = backend.session(graph).run(feeds)
            return {name: backend.to_host(value) for name, value in outputs.items()}
        finally:
            backend.close()
