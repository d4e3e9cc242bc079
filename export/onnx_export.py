"""``lpt export``: every graph of ``lpt.specs.SPECS`` to FP32 ONNX, checked, linted and recorded.

Files follow ``graphs.onnx_path``. The graphs holding the warping module (``warping_module`` and the fused
``warp_decode``) come in two grid-sample variants: ``native`` keeps the two 5-D GridSample nodes (TensorRT
>= 11.2 parses them) and is written as ``<graph>.onnx``; ``gather`` replaces them by ``TrilinearGather``
(TensorRT 10, and 11.0/11.1 whose parsers misread opset-20 GridSample) and is written as
``<graph>.gather.onnx``. The other graphs have no sampler and are written once. Every file must pass the
TensorRT lint for its target before it is put in place; ``manifest.json`` makes re-running cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from lpt.models.checkpoint import LAYOUT_HINT, checkpoint_path, liveportrait_dir, load
from lpt.models.registry import NETWORK_NAMES
from lpt.models.sampling import use_gather_sampler

from lpt.errors import CheckpointError
from lpt.files import write_atomic
from lpt.specs import SPECS

from . import onnx_build as build
from .fp16 import to_fp16
from .graphs import graph_module, onnx_path
from .lint import lint, load_model
from .manifest import Manifest, sha256_bytes, sha256_file, source_digest
from .trt_support import parse_version

GRID_SAMPLE = ("native", "gather", "both")
NATIVE_GRIDSAMPLE_SINCE = (11, 2)  # first TensorRT whose parser imports 5-D GridSample
FUSED = "warp_decode"


@dataclass(frozen=True)
class Job:
    graph: str
    sampler: str | None  # "native" or "gather" for graphs holding the warping module, else None
    path: Path
    lint: tuple[str, ...]  # TensorRT versions the file must pass
    fp16_of: Path | None = None  # for an FP16 variant: the FP32 file it is converted from


@dataclass(frozen=True)
class Result:
    path: Path
    status: str  # "exported" or "up to date"
    seconds: float
    entry: dict[str, Any]


def native_ok(trt: str) -> bool:
    return parse_version(trt)[0] >= NATIVE_GRIDSAMPLE_SINCE


def plan(out_dir: Path, graphs: Iterable[str] | None = None, grid_sample: str | None = None,
         trt: str = "10", fused: bool = True, fp16: bool = False) -> list[Job]:
    """The files to write. ``grid_sample`` None: ``native`` when ``trt`` is >= 11.2, else ``gather``.
    With ``fp16``, each FP32 file is followed by its FP16 variant (``<graph>[.gather].fp16.onnx``)."""
    try:
        parse_version(trt)
    except ValueError as exc:
        raise build.ExportError(str(exc)) from None
    names = list(graphs) if graphs is not None else [g for g in SPECS if fused or g != FUSED]
    unknown = [g for g in names if g not in SPECS]
    if unknown:
        raise build.ExportError(f"unknown graph(s) {', '.join(unknown)}; known: {', '.join(SPECS)}")
    if not fused and FUSED in names:
        raise build.ExportError(f"{FUSED} is the fused graph that --no-fused leaves out; do not name it too")
    grid_sample = grid_sample or ("native" if native_ok(trt) else "gather")
    if grid_sample not in GRID_SAMPLE:
        raise build.ExportError(f"unknown grid-sample variant {grid_sample!r}; known: {', '.join(GRID_SAMPLE)}")
    if grid_sample == "native" and not native_ok(trt):
        raise build.ExportError(f"native 5-D GridSample needs TensorRT >= 11.2, not {trt}; "
                                "use --grid-sample gather (or both)")
    targets = {"gather": trt, "native": trt if native_ok(trt) else "11.2"}
    samplers = ["native", "gather"] if grid_sample == "both" else [grid_sample]
    jobs = []
    for graph in dict.fromkeys(names):
        if SPECS[graph].samples:
            for sampler in samplers:
                path = onnx_path(out_dir, graph, "gather" if sampler == "gather" else "")
                jobs.append(Job(graph, sampler, path, (targets[sampler],)))
        else:  # no sampler: one file, which must pass every target in play
            versions = sorted({targets[s] for s in samplers}, key=lambda v: parse_version(v)[0])
            jobs.append(Job(graph, None, onnx_path(out_dir, graph), tuple(versions)))
    if fp16:
        jobs = [j for job in jobs for j in (job, Job(job.graph, job.sampler, fp16_path(job), job.lint, job.path))]
    return jobs


def fp16_path(job: Job) -> Path:
    variant = "gather.fp16" if job.sampler == "gather" else "fp16"
    return onnx_path(job.path.parent, job.graph, variant)


def _checkpoints(weights_dir: Path, graph: str, cache: dict[Path, str]) -> dict[str, str]:
    """sha256 of each checkpoint file the graph is loaded from, by its path under the liveportrait folder."""
    root = liveportrait_dir(weights_dir)
    hashes = {}
    for network in SPECS[graph].networks:
        path = checkpoint_path(weights_dir, network)
        if path not in cache:
            if not path.is_file():
                raise CheckpointError(f"missing checkpoint {path}; {LAYOUT_HINT}")
            cache[path] = sha256_file(path)
        hashes[path.relative_to(root).as_posix()] = cache[path]
    return hashes


def _lint(model: Any, job: Job, targets: Iterable[str]) -> None:
    for trt in targets:
        findings = lint(model, trt)
        if findings:
            nodes = "; ".join(f"{f.where} ({f.op_type}): {f.problem}" for f in findings)
            raise build.ExportError(f"{job.path.name} fails the {findings[0].version} lint, "
                                    f"{len(findings)} finding(s): {nodes}")


def _convert_fp16(job: Job) -> tuple[str, int, int]:
    """Convert the FP32 file to the FP16 variant and lint it; returns (sha256, bytes, nodes)."""
    assert job.fp16_of is not None
    to_fp16(job.fp16_of, job.path, job.graph)
    model = load_model(job.path)
    _lint(model, job, job.lint)
    return sha256_file(job.path), job.path.stat().st_size, len(model.graph.node)


def _export(job: Job, networks: dict[str, Any]) -> tuple[bytes, int]:
    spec = SPECS[job.graph]
    module = graph_module(job.graph, networks)
    if job.sampler == "gather":
        module = use_gather_sampler(module)
    model = build.check(build.simplify(build.trace(module, spec)), spec)
    if model.ByteSize() >= 2**31:
        raise build.ExportError(f"{job.path.name}: {model.ByteSize() / 2**30:.2f} GiB exceeds the 2 GB protobuf limit")
    _lint(model, job, job.lint)
    return model.SerializeToString(), len(model.graph.node)


def export_onnx(weights_dir: str | Path, out_dir: str | Path, graphs: Iterable[str] | None = None,
                grid_sample: str | None = None, trt: str = "10", fused: bool = True, fp16: bool = False,
                progress: Callable[[str], None] = print) -> list[Result]:
    """Export the planned graphs from the checkpoints in ``weights_dir`` (official layout) into ``out_dir``;
    with ``fp16``, also their FP16 variants (ModelOpt AutoCast, I/O FP32, see ``fp16.EXCLUSIONS``)."""
    start = time.perf_counter()
    weights_dir, out_dir = Path(weights_dir), Path(out_dir)
    jobs = plan(out_dir, graphs, grid_sample, trt, fused, fp16)
    manifest = Manifest(out_dir)
    hashes: dict[Path, str] = {}  # checkpoint file -> sha256, each file hashed once
    common = {"tools": build.tool_versions(), "source": source_digest()}
    inputs = {}
    for job in jobs:
        spec = SPECS[job.graph]
        options = {"opset": spec.opset, "dtype": "float32", "exporter": build.EXPORTER, "simplifier": build.SIMPLIFIER,
                   "batch_axis": 0, "batch_profile": dict(zip(("min", "opt", "max"), spec.batch))}
        if job.fp16_of is not None:
            options = {**options, "dtype": "float16 inside, float32 I/O", "converter": f"modelopt {version('nvidia-modelopt')} AutoCast"}
        inputs[job] = {"graph": job.graph, "grid_sample": job.sampler,
                       "checkpoints": _checkpoints(weights_dir, job.graph, hashes), **common, "options": options}
    stale = [job for job in jobs if not manifest.up_to_date(job.path, inputs[job])]
    redone = {job.path for job in stale}
    stale += [job for job in jobs if job.fp16_of in redone and job not in stale]  # a new FP32 file: convert again
    needed = {n for job in stale if job.fp16_of is None for n in SPECS[job.graph].networks}
    networks = load(weights_dir, tuple(n for n in NETWORK_NAMES if n in needed)) if needed else {}
    results, width = [], max(len(job.path.name) for job in jobs)
    for job in jobs:
        t0 = time.perf_counter()
        if job not in stale:
            entry = manifest.files[job.path.name]
            missing = [t for t in job.lint if t not in entry.get("lint", [])]
            if missing:  # same file, a new target: lint it, export nothing
                _lint(load_model(job.path), job, missing)
                manifest.record(job.path, {**entry, "lint": [*entry["lint"], *missing]})
            results.append(Result(job.path, "up to date", time.perf_counter() - t0, manifest.files[job.path.name]))
            linted = f" (now also passes the lint for TensorRT {', '.join(missing)})" if missing else ""
            progress(f"  {job.path.name:<{width}}  up to date{linted}")
            continue
        if job.fp16_of is None:
            data, nodes = _export(job, networks)
            write_atomic(job.path, data)
            digest, size = sha256_bytes(data), len(data)
        else:
            digest, size, nodes = _convert_fp16(job)
        seconds = time.perf_counter() - t0
        variant = job.path.name[len(job.graph) + 1 : -len(".onnx")]
        entry = {**inputs[job], "variant": variant,
                 "onnx": {"sha256": digest, "bytes": size, "nodes": nodes},
                 "lint": list(job.lint), "seconds": round(seconds, 2),
                 "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        manifest.record(job.path, entry)
        results.append(Result(job.path, "exported", seconds, entry))
        progress(f"  {job.path.name:<{width}}  exported in {seconds:5.1f} s  {nodes:4d} nodes  "
                 f"{size / 1e6:7.1f} MB  lint TensorRT {', '.join(job.lint)}: ok")
    written = sum(r.status == "exported" for r in results)
    progress(f"{written} exported, {len(results) - written} up to date, in {time.perf_counter() - start:.1f} s "
             f"-> {manifest.path}")
    return results
