"""TensorRT backend: one engine per graph (`lpt build`), values kept on the GPU between graphs.

Each session owns a device buffer per I/O tensor, allocated once for the profile's largest batch and bound
to its execution context once; everything runs on the backend's one CUDA stream. ``run`` returns
``DeviceTensor`` views of the session's output buffers, which another session takes as input with a
device-to-device copy (skipped when the same contents were copied last time), so the feature volume and
the warped features never cross to the host. Host data goes through pinned buffers.

A view must stay valid while the caller holds it, though its session runs again: before a run overwrites
its outputs, the views of the previous run that are still referenced are moved to buffers of their own
(copy-on-write; none are when the caller drops results in time). ``to_host`` copies every output of a run
that is still held and not yet read in one go, so a run costs one stream synchronisation however many of its
outputs the caller reads. With ``cuda_graphs`` each session captures its enqueue once per batch size and
replays it, but never on the first enqueue after a shape change (TensorRT finishes a shape change in that
enqueue, work a graph must not hold): that one runs uncaptured. When capture fails the session runs
uncaptured and ``describe`` says so.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from lpt.engines.plan import EngineError, Platform

from lpt.specs import SPECS, GraphSpec

from lpt.cuda import (
    CudaError,
    CudaGraph,
    DeviceBuffer,
    Event,
    PinnedBuffer,
    Stream,
    copy_async,
    set_device,
    used_device_memory_mib,
)

if TYPE_CHECKING:
    import tensorrt as trt

PRECISIONS = ("fp32", "fp16", "int8")


class DeviceTensor:
    """A tensor in GPU memory, as TensorRT sessions return and take it; ``backend.to_host`` reads it."""

    __slots__ = ("__weakref__", "buffer", "dtype", "host", "shape", "siblings")

    def __init__(self, buffer: DeviceBuffer, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.buffer = buffer
        self.shape = shape
        self.dtype = dtype
        self.siblings: list[weakref.ref[DeviceTensor]] = []  # the outputs of its run, read to the host together
        self.host: np.ndarray | None = None  # its host copy, fetched with a sibling and not yet handed out

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"DeviceTensor(shape={self.shape}, dtype={self.dtype}, ptr=0x{self.buffer.ptr:x})"


def _shape(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


class _Binding:
    """One I/O tensor: its device buffer and, for an input, the pinned buffer host data is staged in."""

    def __init__(self, name: str, is_input: bool, dtype: np.dtype[Any], max_shape: tuple[int, ...]) -> None:
        self.name, self.is_input, self.dtype, self.max_shape = name, is_input, dtype, max_shape
        nbytes = int(np.prod(max_shape, dtype=np.int64)) * dtype.itemsize
        self.buffer = DeviceBuffer(nbytes)
        self.staging = PinnedBuffer(nbytes) if is_input else None
        self.staged = Event() if is_input else None  # recorded after each upload from ``staging``
        # What the buffer holds a copy of: weak, so a producer's buffer is freed when its last view goes.
        self.source: tuple[weakref.ref[DeviceBuffer], int, tuple[int, ...]] | None = None

    def holds(self, value: DeviceTensor) -> bool:
        """Whether the buffer already holds ``value``'s current contents."""
        return self.source is not None and self.source[0]() is value.buffer and \
            self.source[1:] == (value.buffer.version, value.shape)

    def close(self) -> None:
        self.buffer.free()
        if self.staging is not None:
            self.staging.free()
        if self.staged is not None:
            self.staged.close()


class TensorRTSession:
    def __init__(self, backend: TensorRTBackend, spec: GraphSpec, engine: trt.ICudaEngine, path: Path) -> None:
        import tensorrt as trt

        self.spec, self.path, self.backend, self.engine = spec, path, backend, engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if sorted(names) != sorted((*spec.input_names, *spec.output_names)):
            raise EngineError(f"{path.name}: tensors {names} are not those of lpt.specs for {spec.name}; rebuild it")
        context = engine.create_execution_context()
        if context is None:
            raise EngineError(f"{path.name}: TensorRT could not create an execution context (out of GPU memory?)")
        self.context: trt.IExecutionContext = context
        self.batches: tuple[int, int] = (0, 0)
        for name in spec.input_names:
            low, _, high = engine.get_tensor_profile_shape(name, 0)
            self.batches = (int(low[0]), int(high[0]))
            if not context.set_input_shape(name, _shape(high)):
                raise EngineError(f"{path.name}: TensorRT rejects the profile's own max shape of {name}")
        self.bindings: dict[str, _Binding] = {}
        for name in names:
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            max_shape = _shape(engine.get_tensor_profile_shape(name, 0)[2] if is_input else context.get_tensor_shape(name))
            binding = _Binding(name, is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), max_shape)
            self.bindings[name] = binding
            if not context.set_tensor_address(name, binding.buffer.ptr):
                raise EngineError(f"{path.name}: TensorRT rejects the address of {name}")
        self.batch = self.batches[1]  # the batch whose shapes are set on the context now
        self.settled = False  # whether the context has run since its shapes were last set
        self.issued: list[weakref.ref[DeviceTensor]] = []
        self.graphs: dict[int, CudaGraph] = {}
        self.graph_failure = ""

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Every spec output as a DeviceTensor; ``feeds``: numpy arrays or DeviceTensors by input name."""
        backend = self.backend
        with backend.lock:
            set_device(backend.device)
            batch = self._batch_of(feeds)
            self._detach_issued()
            for name in self.spec.input_names:
                self._stage(self.bindings[name], feeds[name])
            self._set_batch(batch)
            self._execute(batch)
            return self._outputs()

    def _set_batch(self, batch: int) -> None:
        if batch == self.batch:
            return
        for name in self.spec.input_names:
            if not self.context.set_input_shape(name, (batch, *self.bindings[name].max_shape[1:])):
                raise EngineError(f"{self.path.name}: TensorRT rejects batch {batch} for {name}")
        self.batch, self.settled = batch, False

    def _outputs(self) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        run: list[weakref.ref[DeviceTensor]] = []
        for name in self.spec.output_names:
            binding = self.bindings[name]
            binding.buffer.version += 1
            tensor = DeviceTensor(binding.buffer, _shape(self.context.get_tensor_shape(name)), binding.dtype)
            tensor.siblings = run
            run.append(weakref.ref(tensor))
            self.issued.append(weakref.ref(tensor))
            outputs[name] = tensor
        return outputs

    def _batch_of(self, feeds: Mapping[str, Any]) -> int:
        batches = set()
        for t in self.spec.inputs:
            if t.name not in feeds:
                raise EngineError(f"{self.spec.name}: input {t.name!r} missing (given: {', '.join(feeds)})")
            shape = tuple(feeds[t.name].shape)
            if len(shape) != len(t.shape) or shape[1:] != t.shape[1:]:
                raise EngineError(f"{self.spec.name}: input {t.name} has shape {shape}, expected (B, *{t.shape[1:]})")
            batches.add(shape[0])
        low, high = self.batches
        if len(batches) != 1 or not low <= next(iter(batches)) <= high:
            raise EngineError(f"{self.spec.name}: batch {sorted(batches)} outside the engine's profile {low}..{high}")
        return int(batches.pop())

    def _detach_issued(self) -> None:
        """Move the still-referenced views of the last run to buffers of their own before it is overwritten."""
        stream = self.backend.stream
        owned = {id(self.bindings[name].buffer) for name in self.spec.output_names}
        for ref in self.issued:
            tensor = ref()
            if tensor is not None and id(tensor.buffer) in owned:
                copy = DeviceBuffer(tensor.nbytes, stream)
                copy_async(copy.ptr, tensor.buffer.ptr, tensor.nbytes, "d2d", stream)
                tensor.buffer = copy
        self.issued.clear()

    def _stage(self, binding: _Binding, value: Any) -> None:
        stream = self.backend.stream
        if isinstance(value, DeviceTensor):
            if value.dtype != binding.dtype:
                raise EngineError(f"{self.spec.name}: input {binding.name} is {value.dtype}, the engine takes {binding.dtype}")
            if not binding.holds(value):
                copy_async(binding.buffer.ptr, value.buffer.ptr, value.nbytes, "d2d", stream)
                binding.source = (weakref.ref(value.buffer), value.buffer.version, value.shape)
            return
        array = np.ascontiguousarray(value, dtype=binding.dtype)
        assert binding.staging is not None and binding.staged is not None
        binding.staged.wait()  # the previous upload from the pinned buffer has been read
        binding.staging.array(array.shape, binding.dtype)[...] = array
        copy_async(binding.buffer.ptr, binding.staging.ptr, array.nbytes, "h2d", stream)
        binding.staged.record(stream)
        binding.source = None

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.backend.stream.ptr):
            raise EngineError(f"{self.path.name}: TensorRT could not enqueue the engine")

    def _execute(self, batch: int) -> None:
        """Replay (or capture) the batch's graph once the context has run with the shapes set now; the first
        enqueue after a shape change, and the very first, do TensorRT's deferred set-up and run uncaptured."""
        if not self.backend.cuda_graphs or self.graph_failure or not self.settled:
            self._enqueue()
            self.settled = True
            return
        graph = self.graphs.get(batch) or self._capture(batch)
        if graph is None:
            self._enqueue()
            return
        graph.launch(self.backend.stream)

    def _capture(self, batch: int) -> CudaGraph | None:
        try:
            graph = self.graphs[batch] = CudaGraph(self.backend.stream, self._enqueue)
        except (CudaError, EngineError) as exc:
            self.graph_failure = str(exc)
            return None
        return graph

    def close(self) -> None:
        for graph in self.graphs.values():
            graph.close()
        self.graphs.clear()
        del self.context, self.engine  # TensorRT frees on the last reference; before the buffers it points to
        for binding in self.bindings.values():
            binding.close()


class TensorRTBackend:
    """Sessions over the engines in ``engines_dir`` that match this GPU, TensorRT and ``precision``."""

    name = "tensorrt"

    def __init__(self, engines_dir: str | Path, precision: str = "fp16", *, cuda_graphs: bool = False,
                 device: int = 0, onnx_dir: str | Path | None = None, weights: str | Path | None = None) -> None:
        """With ``onnx_dir`` and ``weights``, an engine is loaded only when its sidecar traces it to the ONNX
        file the folder's manifest records and that file to the weights (engines/provenance.py)."""
        if precision not in PRECISIONS:
            raise EngineError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        from lpt.engines.environment import probe

        self.platform: Platform = probe(device)  # one line when TensorRT, cuda-python or the GPU is missing
        import tensorrt as trt

        self.engines_dir, self.precision, self.cuda_graphs, self.device = Path(engines_dir), precision, cuda_graphs, device
        self.origin = (Path(onnx_dir), Path(weights)) if onnx_dir is not None and weights is not None else None
        set_device(device)
        self.lock = threading.RLock()
        self.stream = Stream()
        self.logger = trt.Logger(trt.ILogger.Severity.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.sessions: dict[str, TensorRTSession] = {}
        self.host: PinnedBuffer | None = None  # staging for to_host, grown to the largest read

    def session(self, graph: str) -> TensorRTSession:
        if graph not in self.sessions:
            if graph not in SPECS:
                raise EngineError(f"unknown graph {graph!r}; known: {', '.join(SPECS)}")
            self.sessions[graph] = self._load(graph)
        return self.sessions[graph]

    def _load(self, graph: str) -> TensorRTSession:
        from lpt.engines.provenance import check_engine_provenance
        from lpt.engines.sidecar import find_engine, verify_engine

        path = find_engine(self.engines_dir, graph, self.precision, self.platform)
        data = path.read_bytes()
        verify_engine(path, self.platform, self.precision, data)
        if self.origin is not None:
            check_engine_provenance(path, *self.origin)
        with self.lock:
            set_device(self.device)
            engine = self.runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise EngineError(f"{path.name}: TensorRT {self.platform.tensorrt} could not load it; rebuild it")
            return TensorRTSession(self, SPECS[graph], engine, path)

    def to_host(self, value: Any) -> np.ndarray:
        if not isinstance(value, DeviceTensor):
            return np.array(value, dtype=np.float32)
        with self.lock:
            if value.host is None:
                siblings = [t for ref in value.siblings if (t := ref()) is not None and t.host is None]
                self._fetch(siblings if value in siblings else [value])
            host, value.host = value.host, None
            assert host is not None
            return host

    def _fetch(self, tensors: list[DeviceTensor]) -> None:
        """Host copies of ``tensors`` into their ``host``: one pinned buffer, one synchronisation."""
        offsets, total = [], 0
        for tensor in tensors:
            offsets.append(total)
            total += -(-tensor.nbytes // 256) * 256  # aligned, so every view is aligned for its dtype
        set_device(self.device)
        if self.host is None or self.host.nbytes < total:
            if self.host is not None:
                self.host.free()
            self.host = PinnedBuffer(total)
        for tensor, offset in zip(tensors, offsets):
            copy_async(self.host.ptr + offset, tensor.buffer.ptr, tensor.nbytes, "d2h", self.stream)
        self.stream.synchronize()
        for tensor, offset in zip(tensors, offsets):
            tensor.host = self.host.array(tensor.shape, tensor.dtype, offset).astype(np.float32, copy=True)

    def describe(self) -> str:
        graphs = "CUDA graphs on" if self.cuda_graphs else "no CUDA graphs"
        failed = [f"{g} ({s.graph_failure})" for g, s in self.sessions.items() if s.graph_failure]
        if failed:
            graphs += f", but uncaptured for {', '.join(failed)}"
        return f"tensorrt {self.precision}: {self.platform.describe()}, engines from {self.engines_dir}; {graphs}"

    def device_memory_mib(self) -> float:
        return used_device_memory_mib()

    def close(self) -> None:
        with self.lock:
            if self.stream.closed:
                return
            self.stream.synchronize()
            for session in self.sessions.values():
                session.close()
            self.sessions.clear()
            if self.host is not None:
                self.host.free()
            self.stream.close()
