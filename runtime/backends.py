"""Opening a backend by name, or the best one installed, with the reason for the choice."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lpt.runtime.backend import Backend

from lpt.errors import LptError

BACKENDS = ("tensorrt", "onnxruntime", "torch")


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


def choose(requested: str | None, precision: str, where: Locations, graphs: tuple[str, ...]) -> tuple[str, str]:
    """(backend name, why): the requested one, else TensorRT with engines, else ONNX Runtime with the
    graph files, else PyTorch."""
    if requested is not None:
        if requested not in BACKENDS:
            raise LptError(f"--backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
        return requested, "as asked"
    trt_ok, trt_why = tensorrt_usable()
    if trt_ok and _has_engines(where.engines):
        return "tensorrt", f"TensorRT and engines in {where.engines}"
    if _has_onnx(where.onnx, graphs, precision):
        reason = trt_why if not trt_ok else f"no engines in {where.engines}"
        return "onnxruntime", f"{reason}; ONNX graphs in {where.onnx}"
    if precision == "int8":
        raise LptError(f"INT8 needs quantized graphs in {where.onnx} (`make int8-onnx`) or TensorRT engines")
    return "torch", f"no TensorRT engines and no {precision} ONNX graphs in {where.onnx} (`make onnx`)"


def open_backend(name: str, precision: str, where: Locations) -> Backend:
    if name == "tensorrt":
        ok, why = tensorrt_usable()
        if not ok:
            raise LptError(f"--backend tensorrt: {why}; install it with `pip install -e .[trt]` on a CUDA machine")
        from lpt.runtime.trt_backend import TensorRTBackend

        return TensorRTBackend(where.engines, precision)
    if name == "onnxruntime":
        from lpt.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(where.onnx, precision)
    from lpt.runtime.torch_backend import TorchBackend

    return TorchBackend(where.weights, precision)
