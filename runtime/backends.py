"""Opening a backend by name, or the best one installed, with the reason for the choice. Graphs and engines
made from other weights than ``Locations.weights`` are never chosen, and refused when asked for.

Depends on: lpt.runtime backends (imported when opened or asked what they can run), onnxruntime (whether it
lists CUDA), lpt.engines.provenance, lpt.errors.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lpt.engines.provenance import engines_untraced
from lpt.runtime.backend import Backend

from lpt.errors import LptError

BACKENDS = ("tensorrt", "onnxruntime", "openvino", "torch")


@dataclass(frozen=True)
class Locations:
    weights: Path  # checkpoints (torch), and the face models of the official layout
    onnx: Path  # `lpt export` / `lpt quantize` output
    engines: Path  # `lpt build` output


def _has_engines(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.engine"))


def _has_onnx(folder: Path, graphs: tuple[str, ...], precision: str) -> bool:
    from lpt.runtime.onnxruntime_backend import graph_file

    return all(graph_file(folder, g, precision, cuda=False).is_file() for g in graphs)


def untraced_onnx(where: Locations, precision: str) -> str | None:
    """Why the ONNX Runtime graph files of ``precision`` cannot be traced to ``where.weights``, or None."""
    from lpt.runtime.onnxruntime_backend import untraced_files

    problem = untraced_files(where.onnx, precision, False, where.weights)
    return problem.line() if problem is not None else None


def untraced_engines(where: Locations, graphs: tuple[str, ...]) -> str | None:
    """Why an engine of ``graphs`` (any precision, any platform) in ``where.engines`` cannot be traced to
    ``where.onnx`` and ``where.weights``, or None."""
    engines = [e for g in graphs for e in sorted(where.engines.glob(f"{g}.*.engine"))] if where.engines.is_dir() else []
    return engines_untraced(engines, where.onnx, where.weights)


def _ort_lists_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def openvino_unavailable(where: Locations, graphs: tuple[str, ...], precision: str) -> str | None:
    """Why OpenVINO cannot run ``graphs`` from ``where.onnx`` at ``precision``, or None when it can."""
    from lpt.runtime import openvino_backend as ov

    if not ov.installed():
        return "OpenVINO is not installed"
    if precision not in ov.PRECISIONS:
        return f"OpenVINO runs no {precision}"
    missing = [path for path in (ov.graph_file(where.onnx, g, precision) for g in graphs) if not path.is_file()]
    if missing:
        return f"no {missing[0].name} for OpenVINO"
    stale = ov.untraced_files(where.onnx, precision, where.weights)
    return f"not OpenVINO: {stale.line()}" if stale is not None else None


def tensorrt_usable() -> tuple[bool, str]:
    if importlib.util.find_spec("tensorrt") is None:
        return False, "TensorRT is not installed"
    try:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]
    except ImportError:
        return False, "cuda-python is not installed"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        return False, "no CUDA device"
    return True, ""


def default_precision(backend: str) -> str:
    """FP16 where the graphs run on a GPU engine, FP32 otherwise (CPU FP16 kernels are no faster)."""
    return "fp16" if backend == "tensorrt" else "fp32"


def _not_tensorrt(where: Locations, graphs: tuple[str, ...]) -> str | None:
    """Why TensorRT cannot run ``graphs`` here, or None when it can."""
    ok, why = tensorrt_usable()
    if not ok:
        return why
    if not _has_engines(where.engines):
        return f"no engines in {where.engines}"
    stale = untraced_engines(where, graphs)
    return f"not TensorRT: {stale}" if stale is not None else None


def choose(requested: str | None, precision: str, where: Locations, graphs: tuple[str, ...]) -> tuple[str, str]:
    """(backend name, why): the requested one, else TensorRT with engines, else ONNX Runtime with the
    graph files, else PyTorch; engines and graph files only when they trace back to ``where.weights``."""
    if requested is not None:
        if requested not in BACKENDS:
            raise LptError(f"--backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
        return requested, "as asked"
    not_trt = _not_tensorrt(where, graphs)
    if not_trt is None:
        return "tensorrt", f"TensorRT and engines in {where.engines}"
    if not _ort_lists_cuda():
        not_ov = openvino_unavailable(where, graphs, precision)
        if not_ov is None:
            return "openvino", (f"{not_trt}; on the CPU OpenVINO runs the warping module and the generator faster "
                                f"than ONNX Runtime (`lpt bench`); graphs in {where.onnx}")
        not_trt = f"{not_trt}; {not_ov}"
    if _has_onnx(where.onnx, graphs, precision):
        stale = untraced_onnx(where, precision)
        if stale is None:
            return "onnxruntime", f"{not_trt}; ONNX graphs in {where.onnx}"
        if precision == "int8":
            raise LptError(f"INT8 needs quantized graphs made from {where.weights}: {stale}")
        return "torch", f"{not_trt}; not ONNX Runtime: {stale}"
    if precision == "int8":
        raise LptError(f"INT8 needs quantized graphs in {where.onnx} (`make int8-onnx`) or TensorRT engines")
    return "torch", f"{not_trt}; no {precision} ONNX graphs in {where.onnx} (`lpt export`)"


def open_backend(name: str, precision: str, where: Locations) -> Backend:
    if name == "tensorrt":
        ok, why = tensorrt_usable()
        if not ok:
            raise LptError(f"--backend tensorrt: {why}; install it with `pip install -e .[trt]` on a CUDA machine")
        from lpt.runtime.trt_backend import TensorRTBackend

        return TensorRTBackend(where.engines, precision, onnx_dir=where.onnx, weights=where.weights)
    if name == "onnxruntime":
        from lpt.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(where.onnx, precision, weights=where.weights)
    if name == "openvino":
        from lpt.runtime.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(where.onnx, precision, weights=where.weights)
    from lpt.runtime.torch_backend import TorchBackend

    return TorchBackend(where.weights, precision)
