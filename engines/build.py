"""``lpt build``: a TensorRT engine per graph and precision, through Polygraphy's loaders.

Networks are strongly typed: the precision is the ONNX graph's own (FP16 from AutoCast, INT8 from Q/DQ),
so no precision flag is set and the same code builds on TensorRT 10 and 11 (11 has no such flags).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lpt
from lpt.files import write_atomic

from .plan import (
    EngineError,
    EngineJob,
    Platform,
    plan_jobs,
    profile_shapes,
    timing_cache_path,
)
from .sidecar import EngineRecord, cc_text, sha256_file, stale_reason

if TYPE_CHECKING:
    import tensorrt as trt

Progress = Callable[[str], None]
OPT_LEVELS = range(6)  # TensorRT's builder optimisation levels; 3 is its default


@dataclass(frozen=True)
class BuildOptions:
    opt_level: int = 3
    force: bool = False

    def recorded(self, job: EngineJob) -> dict[str, Any]:
        """What, beside the ONNX file and the platform, decides the engine: a change rebuilds it."""
        return {
            "strongly_typed": True,
            "tf32": False,  # FP32 engines compute in FP32, as the parity tolerances assume
            "builder_optimization_level": self.opt_level,
            "profiles": {name: [list(s) for s in shapes] for name, shapes in profile_shapes(job.spec).items()},
        }


@dataclass
class BuildRow:
    job: EngineJob
    status: str  # "built" | "up to date"
    seconds: float
    megabytes: float


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_io(job: EngineJob, network: trt.INetworkDefinition) -> None:
    """The parsed network must have the spec's tensors: the runtime binds them by these names."""
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    if sorted(inputs) != sorted(job.spec.input_names) or sorted(outputs) != sorted(job.spec.output_names):
        raise EngineError(f"{job.onnx.name}: tensors {inputs} -> {outputs} do not match lpt.specs "
                          f"{list(job.spec.input_names)} -> {list(job.spec.output_names)}; re-export it")


def _io_table(engine: trt.ICudaEngine) -> dict[str, Any]:
    import tensorrt as trt

    table = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        table[name] = {"mode": mode, "dtype": str(engine.get_tensor_dtype(name)).removeprefix("DataType.")}
    return table


def build_engine(job: EngineJob, options: BuildOptions, cache: Path) -> tuple[bytes, dict[str, Any]]:
    """The serialized engine and its I/O table; the timing cache at ``cache`` is read and extended."""
    import tensorrt as trt
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineBytesFromNetwork,
        NetworkFromOnnxPath,
        Profile,
    )

    try:
        loaded: tuple[trt.Builder, trt.INetworkDefinition, trt.OnnxParser] = \
            NetworkFromOnnxPath(str(job.onnx), strongly_typed=True)()
        builder, network, parser = loaded
        _check_io(job, network)
        profile = Profile()
        for name, (low, opt, high) in profile_shapes(job.spec).items():
            profile.add(name, low, opt, high)
        config: trt.IBuilderConfig = CreateConfig(
            profiles=[profile], tf32=False, builder_optimization_level=options.opt_level,
            load_timing_cache=str(cache) if cache.is_file() else None)(builder, network)
        serialized: trt.IHostMemory = EngineBytesFromNetwork((builder, network, parser), config)()
        data = bytes(serialized)
        engine = trt.Runtime(trt.Logger(trt.ILogger.Severity.WARNING)).deserialize_cuda_engine(data)
        if engine is None:
            raise EngineError(f"{job.onnx.name}: TensorRT built an engine it cannot load back")
        timing = config.get_timing_cache()
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - Polygraphy and TensorRT raise their own types; one line for the user
        raise EngineError(f"{job.onnx.name}: TensorRT {trt.__version__} could not build it: {_first_line(exc)}") from None
    if timing is not None:  # written only after a successful build, and atomically: a cache is never half-merged
        write_atomic(cache, bytes(timing.serialize()))
    return data, _io_table(engine)


def build_one(job: EngineJob, platform: Platform, options: BuildOptions, cache: Path) -> BuildRow:
    onnx_sha = sha256_file(job.onnx)
    recorded = options.recorded(job)
    if not options.force and stale_reason(job.engine, onnx_sha, platform, recorded) is None:
        return BuildRow(job, "up to date", 0.0, job.engine.stat().st_size / 1e6)
    start = time.perf_counter()
    data, io = build_engine(job, options, cache)
    seconds = time.perf_counter() - start
    write_atomic(job.engine, data)
    EngineRecord(
        graph=job.graph, precision=job.precision, grid_sample=job.grid_sample, onnx_file=job.onnx.name,
        onnx_sha256=onnx_sha, engine_file=job.engine.name, engine_sha256=hashlib.sha256(data).hexdigest(),
        engine_bytes=len(data), tensorrt=platform.tensorrt, gpu=platform.gpu, compute_capability=cc_text(platform),
        cuda_driver=platform.cuda_driver, cuda_runtime=platform.cuda_runtime, options=recorded,
        build_seconds=round(seconds, 1), built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        lpt=lpt.__version__, io=io,
    ).write(job.sidecar)
    return BuildRow(job, "built", seconds, len(data) / 1e6)


def format_table(rows: list[BuildRow]) -> str:
    head = ("graph", "precision", "grid", "engine", "MB", "build s", "status")
    body = [(r.job.graph, r.job.precision, r.job.grid_sample, r.job.engine.name, f"{r.megabytes:.1f}",
             f"{r.seconds:.1f}" if r.status == "built" else "-", r.status) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in (head, *body))


def build_all(onnx_dir: Path, out_dir: Path, *, graphs: str | None = None, precisions: str | None = None,
              grid_sample: str = "auto", options: BuildOptions = BuildOptions(), timing_cache: Path | None = None,
              device: int = 0, progress: Progress = print) -> list[BuildRow]:
    """Build (or keep, when up to date) every engine of the plan; print a table at the end."""
    from .environment import probe, use_device

    if options.opt_level not in OPT_LEVELS:
        raise EngineError(f"--opt-level must be 0..5 (TensorRT's builder optimisation level), got {options.opt_level}")
    platform = probe(device)
    use_device(device)  # TensorRT builds on the current device: the one the engines are named for
    jobs, notes = plan_jobs(onnx_dir, out_dir, platform, graphs, precisions, grid_sample)
    cache = timing_cache or timing_cache_path(out_dir, platform)
    progress(f"lpt build: {len(jobs)} engine(s) for {platform.describe()}, CUDA driver {platform.cuda_driver}; "
             f"builder optimisation level {options.opt_level}; timing cache {cache}")
    for note in notes:
        progress(f"note: {note}")
    from polygraphy.logger import G_LOGGER

    rows = []
    with G_LOGGER.verbosity(G_LOGGER.WARNING):  # Polygraphy's per-build INFO lines would drown the progress
        for i, job in enumerate(jobs, 1):
            row = build_one(job, platform, options, cache)
            rows.append(row)
            timing = f" in {row.seconds:.1f} s" if row.status == "built" else ""
            progress(f"[{i}/{len(jobs)}] {job.onnx.name} -> {job.engine.name}: {row.status}{timing}")
    progress(format_table(rows))
    return rows
