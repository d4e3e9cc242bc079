"""OpenVINO backend (CPU): the ONNX graphs of ``lpt export``, compiled once per graph and run by OpenVINO's
CPU plugin, which is faster than ONNX Runtime's kernels on the warping module and the generator.

OpenVINO reads no 5-D GridSample, so the graphs with the warping module run from their gather files.
Compiled models are kept in OpenVINO's model cache (in the user cache), so a second run skips compiling.
Given the weights folder, graph files that cannot be traced to it are refused before anything compiles.

Depends on: openvino (optional: ``pip install -e .[openvino]``), lpt.export (file names, provenance),
lpt.files (the cache folder), lpt.specs.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from lpt.export.graphs import onnx_path
from lpt.export.provenance import Untraced, untraced

from lpt.errors import LptError
from lpt.files import cache_dir
from lpt.specs import SPECS, GraphSpec

PRECISIONS = ("fp32", "int8")  # OpenVINO's CPU plugin runs FP32 graphs in FP32 (FP16 files gain nothing here)
CACHE_FOLDER = "openvino-model-cache"


class OpenVinoError(LptError):
    """OpenVINO is missing, or cannot read or compile a graph file."""


def installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def graph_file(onnx_dir: Path, graph: str, precision: str) -> Path:
    """The file OpenVINO runs for ``graph``: the gather variant where the graph samples, and for INT8
    ONNX Runtime's static-quantized flavour (QDQ, which OpenVINO executes as INT8)."""
    sampler = "gather" if SPECS[graph].samples else ""
    flavour = "int8-cpu" if precision == "int8" else ""
    return onnx_path(onnx_dir, graph, ".".join(p for p in (sampler, flavour) if p))


def untraced_files(onnx_dir: Path, precision: str, weights: Path) -> Untraced | None:
    """The first graph file of ``precision`` in ``onnx_dir`` not made from ``weights``, or None."""
    files = (graph_file(onnx_dir, g, precision) for g in SPECS)
    return untraced(onnx_dir, [f.name for f in files if f.is_file()], weights)


class OpenVinoSession:
    def __init__(self, core: Any, path: Path, spec: GraphSpec, config: dict[str, Any]) -> None:
        try:
            self.compiled = core.compile_model(str(path), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            raise OpenVinoError(f"{path}: OpenVINO cannot compile it: {str(exc).strip().splitlines()[0]}") from None
        self.spec = spec
        declared = {name for port in self.compiled.inputs for name in port.get_names()}
        if not set(spec.input_names) <= declared:
            raise OpenVinoError(f"{path}: inputs {sorted(declared)} do not match the spec's {list(spec.input_names)}")
        self.request = self.compiled.create_infer_request()

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        arrays = {n: np.ascontiguousarray(np.asarray(feeds[n], dtype=np.float32)) for n in self.spec.input_names}
        results = self.request.infer(arrays)
        # The request reuses its output buffers on the next call: the pipeline keeps values across calls.
        return {name: np.array(results[self.compiled.output(name)]) for name in self.spec.output_names}


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, onnx_dir: str | Path, precision: str = "fp32", *, weights: str | Path | None = None,
                 threads: int | None = None) -> None:
        """``weights``: the checkpoints the graph files must have been made from (None checks nothing);
        ``threads``: inference threads, default the cores this process may use."""
        if not installed():
            raise OpenVinoError("OpenVINO is not installed: pip install -e .[openvino]")
        if precision not in PRECISIONS:
            raise OpenVinoError(f"the openvino backend runs {' or '.join(PRECISIONS)}, not {precision}")
        import openvino as ov

        self.onnx_dir, self.precision = Path(onnx_dir), precision
        self.weights = Path(weights) if weights is not None else None
        self.threads = threads or len(os.sched_getaffinity(0))
        self.cache = cache_dir() / CACHE_FOLDER
        self.version = ov.__version__.split("-")[0]
        self._core = ov.Core()
        # FP32 asked for is FP32 computed: on CPUs with BF16 units (AVX512-BF16, AMX) the plugin would
        # otherwise run in BF16 (measured here: head-pose logits off by 0.3, warped features by 1.8).
        self._config = {"CACHE_DIR": str(self.cache), "INFERENCE_NUM_THREADS": self.threads,
                        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        self._sessions: dict[str, OpenVinoSession] = {}
        if self.weights is not None:
            problem = untraced_files(self.onnx_dir, precision, self.weights)
            if problem is not None:
                raise OpenVinoError(problem.line())

    def path(self, graph: str) -> Path:
        return graph_file(self.onnx_dir, graph, self.precision)

    @property
    def fused(self) -> bool:
        """Whether W and G run as the one warp_decode graph: where its file exists, as it is faster than the two
        graphs (measured on 2 CPU cores: 6.5 s against 2.6 + 4.2 s a frame)."""
        return self.path("warp_decode").is_file()

    def check_files(self, graphs: tuple[str, ...]) -> None:
        """Fail before any work when a graph file is missing, naming the file and the command that makes it."""
        missing = [self.path(g) for g in graphs if not self.path(g).is_file()]
        if missing:
            make = "make int8-onnx" if self.precision == "int8" else f"lpt export --out {self.onnx_dir}"
            raise OpenVinoError(f"{missing[0]} not found ({len(missing)} graph file(s) missing for OpenVINO "
                                f"{self.precision}): run `{make}` or pass --onnx DIR")

    def session(self, graph: str) -> OpenVinoSession:
        if graph not in self._sessions:
            self.check_files((graph,))  # traced to the weights already: the constructor checked every file here
            self.cache.mkdir(parents=True, exist_ok=True)
            self._sessions[graph] = OpenVinoSession(self._core, self.path(graph), SPECS[graph], self._config)
        return self._sessions[graph]

    def to_host(self, value: Any) -> np.ndarray:
        return np.asarray(value, dtype=np.float32)

    def describe(self) -> str:
        return (f"openvino {self.version} {self.precision} on CPU ({self.threads} threads), graphs from "
                f"{self.onnx_dir}")

    def close(self) -> None:
        self._sessions.clear()
