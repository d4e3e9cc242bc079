"""Which engines to build from which ONNX files, and what they are called. Pure Python: no TensorRT here.

An engine runs only on the TensorRT version and GPU architecture it was built with, so both are in its
name: ``<graph>.<precision>.trt<major>.<minor>.sm<cc>.engine`` (``warping_module.fp16.trt11.4.sm90.engine``),
beside a JSON sidecar of the same stem. The ONNX side follows ``lpt export``'s contract
``<graph>[.gather][.<precision>].onnx``; it is spelt here rather than imported from ``lpt.export.graphs``,
which imports torch, so that ``lpt build`` starts (and fails) at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lpt.errors import LptError
from lpt.specs import SPECS, GraphSpec

PRECISIONS = ("fp32", "fp16", "int8")
REQUIRED_PRECISIONS = ("fp32", "fp16")  # `make onnx` writes both; INT8 graphs come from `make int8-onnx`
GRID_SAMPLES = ("native", "gather")

Version = tuple[int, int]
ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


class EngineError(LptError):
    """An engine cannot be built, found or loaded: missing inputs or tools, or made for another machine."""


@dataclass(frozen=True)
class Platform:
    """What an engine is bound to: the TensorRT build and the GPU."""

    tensorrt: str  # full version, e.g. "11.4.0.106"
    gpu: str
    compute_capability: Version
    cuda_driver: str = ""
    cuda_runtime: str = ""

    @property
    def trt_version(self) -> Version:
        return parse_trt_version(self.tensorrt)

    @property
    def sm(self) -> str:
        return f"sm{self.compute_capability[0]}{self.compute_capability[1]}"

    @property
    def tag(self) -> str:
        """``trt11.4.sm90``: the part of an engine's name that says where it runs."""
        major, minor = self.trt_version
        return f"trt{major}.{minor}.{self.sm}"

    def describe(self) -> str:
        cc = ".".join(map(str, self.compute_capability))
        return f"TensorRT {self.tensorrt} on {self.gpu} (compute capability {cc}, {self.sm})"


@dataclass(frozen=True)
class EngineJob:
    graph: str
    precision: str
    grid_sample: str  # "native" | "gather"; the graph's own file when it has no 5-D sampler
    onnx: Path
    engine: Path

    @property
    def spec(self) -> GraphSpec:
        return SPECS[self.graph]

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.engine)


def parse_trt_version(text: str) -> Version:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise EngineError(f"cannot read the TensorRT version {text!r}") from None


def grid_sample_for(trt_version: Version) -> str:
    """Native 5-D GridSample where the installed parser takes rank 5 (11.2 on, by the lint's support table),
    the gather-based graphs before. A major newer than the table keeps what its newest major has."""
    from lpt.export.trt_support import LATEST, support_for

    if trt_version[0] > max(LATEST):
        trt_version = LATEST[max(LATEST)]
    if trt_version[0] not in LATEST:  # older than the table: rank-4 GridSample only
        return "gather"
    return "native" if 5 in support_for(f"{trt_version[0]}.{trt_version[1]}").gridsample_ranks else "gather"


def onnx_file(onnx_dir: Path, graph: str, precision: str, grid_sample: str) -> Path:
    parts = [graph]
    if grid_sample == "gather" and SPECS[graph].samples:
        parts.append("gather")
    if precision != "fp32":
        parts.append(precision)
    return onnx_dir / (".".join(parts) + ".onnx")


def engine_name(graph: str, precision: str, platform: Platform) -> str:
    return f"{graph}.{precision}.{platform.tag}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_suffix(".json")


def timing_cache_path(out_dir: Path, platform: Platform) -> Path:
    """One cache per full TensorRT version and GPU architecture: its entries are valid for nothing else."""
    return out_dir / f"timing-cache.trt{platform.tensorrt}.{platform.sm}.bin"


def profile_shapes(spec: GraphSpec) -> dict[str, ShapeRange]:
    """min / opt / max shape of every input, from the spec's batch profile."""
    low, opt, high = (spec.shapes(b) for b in spec.batch)
    return {name: (low[name], opt[name], high[name]) for name in spec.input_names}


def _split(text: str | None, known: tuple[str, ...], what: str) -> list[str] | None:
    if text is None:
        return None
    names = list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise EngineError(f"--{what}: expected names among {', '.join(known)}, got {text!r}")
    return names


def plan_jobs(onnx_dir: Path, out_dir: Path, platform: Platform, graphs: str | None = None,
              precisions: str | None = None, grid_sample: str = "auto") -> tuple[list[EngineJob], list[str]]:
    """The engines to build, and notes on the INT8 graphs that are not there. FP32 and FP16 files, and
    every precision named in ``precisions``, must exist: a missing one is an error naming the command."""
    graph_names = _split(graphs, tuple(SPECS), "graphs") or list(SPECS)
    named = _split(precisions, PRECISIONS, "precisions")
    if grid_sample not in ("auto", *GRID_SAMPLES):
        raise EngineError(f"--grid-sample: expected auto, native or gather, got {grid_sample!r}")
    grid = grid_sample_for(platform.trt_version) if grid_sample == "auto" else grid_sample
    if not onnx_dir.is_dir():
        raise EngineError(f"ONNX folder {onnx_dir} not found; make it with `make onnx`")
    jobs, notes, missing = [], [], []
    for graph in graph_names:
        for precision in named or PRECISIONS:
            path = onnx_file(onnx_dir, graph, precision, grid)
            if not path.is_file():
                if named is None and precision not in REQUIRED_PRECISIONS:
                    notes.append(f"{graph} {precision}: no {path.name}, skipped (`make int8-onnx` writes it)")
                else:
                    missing.append(path.name)
                continue
            jobs.append(EngineJob(graph, precision, grid if SPECS[graph].samples else "native", path,
                                  out_dir / engine_name(graph, precision, platform)))
    if missing:
        why = f" (TensorRT {platform.tensorrt} takes the {grid} grid-sample graphs)" if grid == "gather" else ""
        raise EngineError(f"missing in {onnx_dir}: {', '.join(missing)}{why}; "
                          f"make them with `make onnx`{' / `make int8-onnx`' if 'int8' in (named or ()) else ''}")
    return jobs, notes
