"""The installed TensorRT and the GPU, or one line saying what is missing and how to get it."""

from __future__ import annotations

import os
import re
import site
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from .plan import EngineError, Platform

INSTALL = ("`pip install -e .[trt]` (TensorRT and cuda-python for CUDA 12; `.[trt-cu13]` for a CUDA 13 driver) "
           "on a machine with an NVIDIA GPU and driver")
# Where the CUDA runtime wheels put libcudart: CUDA 13 (nvidia-cuda-runtime 13), the cu12 layout of the
# same generation, and nvidia-cuda-runtime-cu12.
CUDART_DIRS = ("nvidia/cu13/lib", "nvidia/cu12/lib", "nvidia/cuda_runtime/lib")
_TENSORRT_WHEEL = re.compile(r"tensorrt[-_]cu(\d+)(?:[-_](?:libs|bindings))?")


def tensorrt_version() -> str:
    """The installed TensorRT's full version; EngineError when it cannot be imported."""
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001 - absent, or present without its libraries: both unusable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"TensorRT is not usable here ({first}); install it with {INSTALL}") from None
    return str(trt.__version__)


def tensorrt_cuda_majors() -> dict[str, int]:
    """The installed TensorRT wheels (``tensorrt-cu13``, ...) and the CUDA major each was built for."""
    found = {}
    for dist in metadata.distributions():
        name = str(dist.metadata["Name"] or "")
        match = _TENSORRT_WHEEL.fullmatch(name.lower())
        if match:
            found[name] = int(match.group(1))
    return found


def probe(device: int = 0) -> Platform:
    """TensorRT and the GPU ``device``: what engines are built for and checked against."""
    version = tensorrt_version()
    from lpt.cuda import CudaError, check_driver, device_count, device_info

    try:
        check_driver(tensorrt_cuda_majors())
        count, why = device_count()
    except CudaError as exc:
        raise EngineError(f"{exc}") from None
    if count == 0:
        raise EngineError(f"no CUDA GPU ({why}); TensorRT {version} needs an NVIDIA GPU and driver")
    if not 0 <= device < count:
        raise EngineError(f"no CUDA device {device}: {count} visible (0..{count - 1})")
    gpu, capability, driver, runtime = device_info(device)
    return Platform(version, gpu, capability, driver, runtime)


def use_device(device: int) -> None:
    """Make ``device`` current on this thread: TensorRT builds and loads on the current device."""
    from lpt.cuda import set_device

    set_device(device)


def site_roots() -> list[Path]:
    """The folders wheels install into: site-packages, the user's, and every folder on ``sys.path``."""
    roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    return [Path(p) for p in dict.fromkeys(roots) if p and os.path.isdir(p)]


def _cudart_major(lib: Path) -> int:
    match = re.match(r"libcudart\.so\.(\d+)", lib.name)
    return int(match.group(1)) if match else 0


def find_cudart(roots: Iterable[Path], major: int | None = None) -> Path | None:
    """libcudart of the CUDA wheels under ``roots``: of CUDA ``major`` where there is one, else the newest."""
    found = [lib for root in roots for folder in CUDART_DIRS for lib in sorted((root / folder).glob("libcudart.so.*"))]
    same = [lib for lib in found if _cudart_major(lib) == major]
    return same[0] if same else max(found, key=_cudart_major, default=None)


def point_polygraphy_at_cudart(major: int | None = None, roots: Iterable[Path] | None = None) -> Path | None:
    """The wheel libcudart Polygraphy's TrtRunner will load, its folder added to LD_LIBRARY_PATH; None if none.

    Polygraphy loads libcudart itself, looking in LD_LIBRARY_PATH, /usr/local/cuda and nvidia/cuda_runtime/lib
    only, so on a pip-only CUDA 13 machine (nvidia/cu13/lib) it finds none. It reads LD_LIBRARY_PATH when it
    first needs CUDA and opens the full path it finds, so setting it in this process is enough; the folder is
    put after the entries already there, which keep precedence."""
    lib = find_cudart(site_roots() if roots is None else roots, major)
    if lib is None:
        return None
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if str(lib.parent) not in paths:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([*paths, str(lib.parent)])
    return lib
