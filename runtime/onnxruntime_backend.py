"""ONNX Runtime backend: one InferenceSession per graph file of ``lpt export`` / ``lpt quantize``.

On the CPU provider values are numpy arrays. With the CUDA provider (onnxruntime-gpu) inputs and
outputs are bound to device OrtValues, so the feature volume and warped features stay on the GPU; a host
input is copied into the session's OrtValue of that input while its shape holds, not re-allocated. CUDA is
used only where a probe session really ran on it (a listed provider says nothing about a driver or device).
Given the weights folder, the backend refuses graph files that cannot be traced to it (export/provenance.py)
before any session is made.

Depends on: onnxruntime (imported when a backend is made), lpt.export (file names, provenance), lpt.specs.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from lpt.export.graphs import onnx_path
from lpt.export.provenance import Untraced, check_provenance, untraced

from lpt.errors import LptError
from lpt.specs import SPECS, GraphSpec

PRECISIONS = ("fp32", "fp16", "int8")


class BackendError(LptError):
    """A backend cannot run what was asked: missing files, library or device."""


def graph_file(onnx_dir: Path, graph: str, precision: str, cuda: bool) -> Path:
    """The file a graph runs from. INT8 on CPU uses ONNX Runtime's own quantization (``.int8-cpu``);
    the Q/DQ graphs made for TensorRT (``.int8``) are for GPUs. A graph with the 5-D sampler runs its
    native file on the CPU where there is one (faster there), else the gather file (all that plain
    `lpt export` writes); on CUDA always the gather file, as releases before ONNX Runtime 1.21 have no
    5-D GridSample CUDA kernel and run it on the CPU."""
    flavour = {"fp32": "", "fp16": "fp16", "int8": "int8" if cuda else "int8-cpu"}[precision]
    variants = [flavour]
    if SPECS[graph].samples:
        gather = ".".join(part for part in ("gather", flavour) if part)
        variants = [gather] if cuda else [flavour, gather]
    paths = [onnx_path(onnx_dir, graph, variant) for variant in variants]
    return next((path for path in paths if path.is_file()), paths[0])


def present_files(onnx_dir: Path, precision: str, cuda: bool) -> list[str]:
    """The names of the graph files of ``precision`` that ``onnx_dir`` holds."""
    files = (graph_file(onnx_dir, g, precision, cuda) for g in SPECS)
    return [f.name for f in files if f.is_file()]


def untraced_files(onnx_dir: Path, precision: str, cuda: bool, weights: Path) -> Untraced | None:
    """The first graph file of ``precision`` in ``onnx_dir`` not made from ``weights``, or None. Every file of
    the folder counts, not only those a run needs: the automatic choice and the backend then agree."""
    return untraced(onnx_dir, present_files(onnx_dir, precision, cuda), weights)


def ort_wheels() -> list[str]:
    """The ONNX Runtime wheels installed: ``onnxruntime`` and ``onnxruntime-gpu`` share one package folder, so
    with both the one installed last wins, file by file, and the CUDA provider may be gone."""
    found = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def cuda_usable() -> tuple[bool, str]:
    """(whether ONNX Runtime really runs on CUDA here, what it said): `lpt parity`'s probe, a one-node session
    run on the CUDA provider, plus the fix when both ONNX Runtime wheels are installed."""
    from lpt.export.parity import cuda_status

    ok, why = cuda_status()
    if not ok and len(ort_wheels()) == 2:
        why += ("; onnxruntime and onnxruntime-gpu are both installed and overwrite one folder: keep one with "
                "`pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps onnxruntime-gpu`")
    return ok, why


def _make_hint(precision: str) -> str:
    return "make int8-onnx" if precision == "int8" else "make onnx"


class OnnxRuntimeSession:
    device = "cuda"  # where bound OrtValues live when the session runs on CUDA

    def __init__(self, path: Path, spec: GraphSpec, providers: list[str]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 (ORT raises its own Fail/InvalidGraph types)
            raise BackendError(f"{path}: ONNX Runtime cannot load it: {str(exc).splitlines()[0]}") from None
        self.spec = spec
        self.provider = self.session.get_providers()[0]
        self.on_cuda = self.provider == "CUDAExecutionProvider"
        self.inputs: dict[str, Any] = {}  # input name -> the device OrtValue host data is copied into
        declared = {i.name for i in self.session.get_inputs()}
        if declared != set(spec.input_names):
            raise BackendError(f"{path}: inputs {sorted(declared)} do not match the spec's {list(spec.input_names)}")

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        if not self.on_cuda:
            arrays = {n: _host_array(feeds[n]) for n in self.spec.input_names}
            return dict(zip(self.spec.output_names, self.session.run(list(self.spec.output_names), arrays)))
        binding = self.session.io_binding()
        for name in self.spec.input_names:
            binding.bind_ortvalue_input(name, self._bound(name, feeds[name]))
        for name in self.spec.output_names:  # fresh outputs: a result the caller holds is never overwritten
            binding.bind_output(name, self.device, 0)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.spec.output_names, binding.get_outputs()))

    def _bound(self, name: str, value: Any) -> Any:
        """``value`` as a device OrtValue: as given when it is one, else copied into this input's own."""
        import onnxruntime as ort

        if isinstance(value, ort.OrtValue):
            return value
        array = np.ascontiguousarray(value, dtype=np.float32)
        held = self.inputs.get(name)
        if held is None or tuple(held.shape()) != array.shape:
            held = self.inputs[name] = ort.OrtValue.ortvalue_from_shape_and_type(array.shape, np.float32, self.device, 0)
        held.update_inplace(array)
        return held


def _host_array(value: Any) -> np.ndarray:
    if hasattr(value, "numpy"):  # an OrtValue of a session that runs on CUDA
        value = value.numpy()
    return np.ascontiguousarray(np.asarray(value, dtype=np.float32))


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_dir: str | Path, precision: str = "fp32", device: str = "auto", *,
                 weights: str | Path | None = None) -> None:
        """``weights``: the checkpoints the graph files must have been made from; None checks nothing."""
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if device not in ("auto", "cuda", "cpu"):
            raise BackendError(f"device must be auto, cuda or cpu, got {device!r}")
        self.onnx_dir = Path(onnx_dir)
        self.precision = precision
        listed = "CUDAExecutionProvider" in ort.get_available_providers()
        self.cuda, self.not_cuda = cuda_usable() if device != "cpu" else (False, "the CPU was asked for")
        if device == "cuda" and not self.cuda:
            gpu_wheel = "onnxruntime-gpu" in ort_wheels()
            hint = "" if gpu_wheel else ": `pip install -e .[gpu]`, then keep only the GPU wheel (README)"
            raise BackendError(f"onnxruntime cannot run on CUDA here ({self.not_cuda}){hint}")
        if self.cuda or not listed:
            self.not_cuda = ""  # said only when a GPU build is installed but unusable
        self.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.cuda else ["CPUExecutionProvider"]
        self._sessions: dict[str, OnnxRuntimeSession] = {}
        self.weights = Path(weights) if weights is not None else None
        self._traced: set[str] = set()
        self._check_provenance(present_files(self.onnx_dir, precision, self.cuda))

    def _check_provenance(self, names: list[str]) -> None:
        names = [n for n in names if n not in self._traced]
        if self.weights is not None and names:
            check_provenance(self.onnx_dir, names, self.weights)
            self._traced.update(names)

    def path(self, graph: str) -> Path:
        return graph_file(self.onnx_dir, graph, self.precision, self.cuda)

    @property
    def fused(self) -> bool:
        """Whether W and G run as the one warp_decode graph: where its file exists, as it is faster than the two
        graphs (measured on 2 CPU cores: 6.9 s against 3.0 + 4.3 s a frame) and keeps the warped feature inside."""
        return self.path("warp_decode").is_file()

    def check_files(self, graphs: tuple[str, ...]) -> None:
        """Fail before any work when a graph file is missing, naming the file and the command that makes it."""
        missing = [self.path(g) for g in graphs if not self.path(g).is_file()]
        if missing:
            raise BackendError(f"{missing[0]} not found ({len(missing)} graph file(s) missing for "
                               f"{self.precision}): run `{_make_hint(self.precision)}` or pass --onnx DIR")

    def session(self, graph: str) -> OnnxRuntimeSession:
        if graph not in self._sessions:
            self.check_files((graph,))
            self._check_provenance([self.path(graph).name])
            self._sessions[graph] = OnnxRuntimeSession(self.path(graph), SPECS[graph], self.providers)
        return self._sessions[graph]

    def to_host(self, value: Any) -> np.ndarray:
        if hasattr(value, "numpy"):  # OrtValue on a device
            value = value.numpy()
        return np.asarray(value, dtype=np.float32)

    def describe(self) -> str:
        """What runs: CUDA where the probe ran there, and the graphs whose sessions fell back to another provider."""
        if not self.cuda:
            device = f"CPU (not CUDA: {self.not_cuda})" if self.not_cuda else "CPU"
        else:
            device = "CUDA (CUDAExecutionProvider, I/O binding)"
            fallen = [f"{g} on {s.provider}" for g, s in self._sessions.items() if not s.on_cuda]
            device += f", but {', '.join(fallen)}" if fallen else ""
        return f"onnxruntime {self.precision} on {device}, graphs from {self.onnx_dir}"

    def close(self) -> None:
        self._sessions.clear()
