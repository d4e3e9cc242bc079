"""The one interface the pipeline runs graphs through: tensors addressed by the names in ``lpt.specs``.

A backend owns one session per graph and keeps values in its own memory (device buffers for
TensorRT, torch tensors for PyTorch, numpy arrays for ONNX Runtime on CPU). The pipeline passes those
values from graph to graph as they are and asks for host copies only of what its own math needs, so
the feature volume and warped features never cross to the host on a GPU backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from lpt.specs import GraphSpec

# A value in the backend's own memory. A numpy array is accepted by every backend as an input.
Value = Any


class GraphSession(Protocol):
    """One loaded graph (engine, ONNX session or module); built once per process."""

    spec: GraphSpec

    def run(self, feeds: Mapping[str, Value]) -> dict[str, Value]:
        """Run on ``feeds`` (every spec input, by name; numpy or this backend's values); every spec output."""
        ...


class Backend(Protocol):
    name: str  # "tensorrt" | "onnxruntime" | "torch"
    precision: str  # "fp32" | "fp16" | "int8"

    def session(self, graph: str) -> GraphSession:
        """The session for ``graph`` (a key of ``lpt.specs.SPECS``), loaded on first use and kept."""
        ...

    def to_host(self, value: Value) -> np.ndarray:
        """A float32 numpy copy of ``value`` (waits for the work that produces it)."""
        ...

    def describe(self) -> str:
        """One line for the user: backend, precision, device and where the graphs came from."""
        ...

    def close(self) -> None:
        """Release sessions, buffers and streams."""
        ...
