"""What the numbers were measured on: CPU, memory, GPU and driver, and the versions of every library."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("lpt", "torch", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "cuda-python", "numpy",
             "opencv-python-headless", "av", "imageio-ffmpeg", "nvidia-ml-py")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def gpus() -> list[dict[str, Any]]:
    """Every GPU NVML sees, with the driver version; an empty list without a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML library or no driver: no GPU to describe
        return []
    driver = pynvml.nvmlSystemGetDriverVersion()
    found = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(handle)
        found.append({"index": index, "name": name.decode() if isinstance(name, bytes) else name,
                      "memory_mib": round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20),
                      "driver": driver.decode() if isinstance(driver, bytes) else driver})
    return found


def describe_machine() -> dict[str, Any]:
    import psutil
    import torch

    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
    except ImportError:
        providers = []
    return {
        "cpu": cpu_model(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "gpus": gpus(),
        "torch_cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "onnxruntime_providers": providers,
        "libraries": library_versions(),
    }


def one_line(machine: dict[str, Any]) -> str:
    """The machine in one line for the tables' heading."""
    cores = f"{machine['cpu_cores_usable']} usable cores"
    gpu = ", ".join(f"{g['name']} (driver {g['driver']})" for g in machine["gpus"]) or "no GPU"
    libs = machine["libraries"]
    versions = ", ".join(f"{k} {libs[k]}" for k in ("torch", "onnxruntime", "onnxruntime-gpu", "tensorrt") if k in libs)
    return f"{machine['cpu']}, {cores}, {machine['memory_gib']} GiB; {gpu}; {versions}"
