"""Opening a backend by name, or the best one installed, with the reason for the choice. Graphs and engines
made from other weights than ``Locations.weights`` are never chosen, and refused when asked for.

Depends on: lpt.runtime backends (imported when opened or asked what they can run), onnxruntime (whether it
really runs on CUDA), lpt.engines (the platform probe, engine names and sidecars, provenance), lpt.errors.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lpt.engines.plan import Platform
from lpt.engines.provenance import engines_untraced
from lpt.runtime.backend import Backend

from lpt.errors import LptError

BACKENDS = ("tensorrt", "onnxruntime", "openvino", "torch")


@dataclass(frozen=True)
class Locations:
    weights: Path  # checkpoints (torch), and the face models of the official layout
    onnx: Path  # `lpt export` / `lpt quantize` output
    engines: Path  # `lpt build` output


def _has_onnx(folder: Path, graphs: tuple[str, ...], precision: str, cuda: bool) -> bool:
    from lpt.runtime.onnxruntime_backend import graph_file

    return all(graph_file(folder, g, precision, cuda).is_file() for g in graphs)


def untraced_onnx(where: Locations, precision: str, cuda: bool = False) -> str | None:
    """Why the ONNX Runtime graph files of ``precision`` cannot be traced to ``where.weights``, or None."""
    from lpt.runtime.onnxruntime_backend import untraced_files

    problem = untraced_files(where.onnx, precision, cuda, where.weights)
    return problem.line() if problem is not None else None


def untraced_engines(where: Locations, graphs: tuple[str, ...]) -> str | None:
    """Why an engine of ``graphs`` (any precision, any platform) in ``where.engines`` cannot be traced to
    ``where.onnx`` and ``where.weights``, or None."""
    engines = [e for g in graphs for e in sorted(where.engines.glob(f"{g}.*.engine"))] if where.engines.is_dir() else []
    return engines_untraced(engines, where.onnx, where.weights)


def _ort_runs_cuda() -> bool:
    from lpt.runtime.onnxruntime_backend import cuda_usable

    return cuda_usable()[0]


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


def tensorrt_platform() -> tuple[Platform | None, str]:
    """(TensorRT and GPU 0, "") or (None, why not): the probe of lpt build, which also checks the driver."""
    if importlib.util.find_spec("tensorrt") is None:
        return None, "TensorRT is not installed"
    from lpt.engines.environment import probe

    try:
        return probe(), ""
    except LptError as exc:
        return None, str(exc)


def tensorrt_usable() -> tuple[bool, str]:
    platform, why = tensorrt_platform()
    return platform is not None, why


def default_precision(backend: str) -> str:
    """FP16 where the graphs run on a GPU engine, FP32 otherwise (CPU FP16 kernels are no faster)."""
    return "fp16" if backend == "tensorrt" else "fp32"


def tensorrt_unavailable(where: Locations, graphs: tuple[str, ...], precision: str) -> str | None:
    """Why TensorRT cannot run ``graphs`` at ``precision`` here, or None when it can: every engine must be
    the one `lpt build` names for this GPU and TensorRT, its sidecar agree, and trace to the weights."""
    platform, why = tensorrt_platform()
    if platform is None:
        return why
    from lpt.engines.sidecar import engine_unusable

    checked = [engine_unusable(where.engines, g, precision, platform) for g in graphs]
    problem = next((why for _, why in checked if why is not None), None)
    if problem is not None:
        return f"not TensorRT: {problem} (engines for {platform.tag}, {precision}: `lpt build`)"
    stale = engines_untraced([path for path, _ in checked], where.onnx, where.weights)
    return f"not TensorRT: {stale}" if stale is not None else None


def choose(requested: str | None, precision: str | None, where: Locations, graphs: tuple[str, ...]) -> tuple[str, str]:
    """(backend name, why): the requested one, else TensorRT with this machine's engines, else ONNX Runtime
    with the graph files, else PyTorch; engines and graph files only when they trace back to ``where.weights``.
    ``precision`` None: each backend's default (``default_precision``)."""
    if requested is not None:
        if requested not in BACKENDS:
            raise LptError(f"--backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
        return requested, "as asked"
    not_trt = tensorrt_unavailable(where, graphs, precision or default_precision("tensorrt"))
    if not_trt is None:
        return "tensorrt", f"TensorRT and engines in {where.engines}"
    precision = precision or default_precision("onnxruntime")
    cuda = _ort_runs_cuda()
    if not cuda:
        not_ov = openvino_unavailable(where, graphs, precision)
        if not_ov is None:
            return "openvino", (f"{not_trt}; on the CPU OpenVINO runs the warping module and the generator faster "
                                f"than ONNX Runtime (`lpt bench`); graphs in {where.onnx}")
        not_trt = f"{not_trt}; {not_ov}"
    if _has_onnx(where.onnx, graphs, precision, cuda):
        stale = untraced_onnx(where, precision, cuda)
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
            missing = why == "TensorRT is not installed"
            hint = "; install it with `pip install -e .[trt]` on a CUDA machine" if missing else ""
            raise LptError(f"--backend tensorrt: {why}{hint}")
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
