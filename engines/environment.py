"""The installed TensorRT and the GPU, or one line saying what is missing and how to get it."""

from __future__ import annotations

from .plan import EngineError, Platform

INSTALL = "`pip install -e .[trt]` (TensorRT and cuda-python) on a machine with an NVIDIA GPU and driver"


def tensorrt_version() -> str:
    """The installed TensorRT's full version; EngineError when it cannot be imported."""
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001 - absent, or present without its libraries: both unusable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"TensorRT is not usable here ({first}); install it with {INSTALL}") from None
    return str(trt.__version__)


def probe(device: int = 0) -> Platform:
    """TensorRT and the GPU ``device``: what engines are built for and checked against."""
    version = tensorrt_version()
    from lpt.runtime.cuda_memory import CudaError, device_count, device_info

    try:
        count, why = device_count()
    except CudaError as exc:
        raise EngineError(f"{exc}") from None
    if count == 0:
        raise EngineError(f"no CUDA GPU ({why}); TensorRT {version} needs an NVIDIA GPU and driver")
    if not 0 <= device < count:
        raise EngineError(f"no CUDA device {device}: {count} visible (0..{count - 1})")
    gpu, capability, driver, runtime = device_info(device)
    return Platform(version, gpu, capability, driver, runtime)
