"""One bench run: per-graph latency, end to end, the original-versus-optimized comparison; the JSON report,
the markdown tables and the chart written side by side."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lpt.bench.graphs import CANDIDATES, Budget, Candidate, GraphBench
from lpt.runtime.backends import Locations

from lpt.errors import LptError
from lpt.files import write_atomic
from lpt.specs import SPECS

SCHEMA = 1


@dataclass(frozen=True)
class BenchOptions:
    where: Locations
    out: Path  # folder: bench.json, bench.md, bench.png, and the videos under work/
    graphs: tuple[str, ...] = tuple(SPECS)
    candidates: tuple[Candidate, ...] = CANDIDATES
    budget: Budget = field(default_factory=Budget)
    source: Path | None = None  # None: no end-to-end part
    driving: Path | None = None
    frames: int = 3
    original: bool = True
    cold: bool = True
    per_graph: bool = True
    seed: int = 0


def call_frame_ms(row: dict[str, Any]) -> float:
    """Milliseconds per frame of the call that loads the models: (call - load) / frames, the one measure the
    original-style run and every lpt run share."""
    return 1000 * (row["call_s"] - row["load_s"]) / row["call_frames"]


def _headline(rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Per driving frame, the original-style run against every lpt path measured: speed-up and frame PSNR
    against PyTorch FP32, side by side (what issue 13's goals are judged by)."""
    original = next((r for r in rows if r["kind"] == "original" and r["status"] == "measured"), None)
    if original is None:
        return None
    base = call_frame_ms(original)
    lines = [{"name": original["name"], "frame_ms": base, "speedup": 1.0, "fidelity": original["fidelity"],
              "default": False}]
    for row in rows:
        if row["kind"] == "lpt" and row["status"] == "measured":
            ms = call_frame_ms(row)
            lines.append({"name": row["name"], "frame_ms": ms, "speedup": base / ms, "fidelity": row["fidelity"],
                          "default": row["default"]})
    return lines


def _comparison(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    original = next((r for r in rows if r["kind"] == "original" and r["status"] == "measured"), None)
    ours = next((r for r in rows if r["kind"] == "lpt" and r["default"] and r["status"] == "measured"), None)
    if original is None or ours is None:
        return None

    def side(row: dict[str, Any]) -> dict[str, Any]:
        frame_ms = call_frame_ms(row)
        keys = ("name", "describe", "call_s", "call_frames", "load_s", "peak_rss_mib", "peak_gpu_mib", "fidelity")
        return {k: row[k] for k in keys} | {"frame_ms": frame_ms}

    result = {"original": side(original), "lpt": side(ours)}
    result["speedup_call"] = result["original"]["call_s"] / result["lpt"]["call_s"]
    result["speedup_frame"] = result["original"]["frame_ms"] / result["lpt"]["frame_ms"]
    return result


def run_bench(options: BenchOptions, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure, write OUT/bench.json, bench.md and bench.png; the report."""
    from lpt.bench.endtoend import EndToEnd, check_inputs
    from lpt.bench.machine import describe_machine
    from lpt.bench.report import chart_png, markdown
    from lpt.models.synthetic import synthetic_marker

    unknown = [g for g in options.graphs if g not in SPECS]
    if unknown:
        raise LptError(f"--graphs: unknown graph {unknown[0]!r}; known: {', '.join(SPECS)}")
    if not options.where.weights.is_dir():
        raise LptError(f"--weights {options.where.weights}: no such folder (`make weights` writes synthetic ones)")
    end_to_end = options.source is not None and options.driving is not None
    if end_to_end:
        check_inputs(options.source, options.driving)  # type: ignore[arg-type]
    start = time.perf_counter()
    where = options.where
    report: dict[str, Any] = {
        "schema": SCHEMA, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "weights": {"path": str(where.weights), "synthetic": synthetic_marker(where.weights)},
        "locations": {"onnx": str(where.onnx), "engines": str(where.engines)},
        "budget": asdict(options.budget), "seed": options.seed,
        "load_average": {"start": os.getloadavg()[0]},  # other processes on the cores slow every figure
        "graphs": None, "end_to_end": None, "original_vs_lpt": None, "headline": None,
        "inputs": {"source": str(options.source), "driving": str(options.driving), "frames": options.frames}
        if end_to_end else None,
    }
    if report["weights"]["synthetic"]:
        progress(f"weights: {report['weights']['synthetic']} -- speed holds, fidelity compares implementations only")
    if options.per_graph:
        progress(f"per graph: {len(options.graphs)} graph(s) x {len(options.candidates)} backend/precision pair(s)")
        bench = GraphBench(where, options.graphs, options.budget, options.seed, progress)
        report["graphs"] = [row.as_json() for row in bench.run(options.candidates)]
    if end_to_end:
        e2e = EndToEnd(where, options.source, options.driving, options.frames, options.out / "work", progress)  # type: ignore[arg-type]
        rows = e2e.run(options.candidates, original=options.original, cold=options.cold)
        report["end_to_end"] = [row.as_json() for row in rows]
        report["original_vs_lpt"] = _comparison(report["end_to_end"])
        report["headline"] = _headline(report["end_to_end"])
    report["wall_s"] = time.perf_counter() - start
    report["load_average"]["end"] = os.getloadavg()[0]
    paths = {"json": options.out / "bench.json", "markdown": options.out / "bench.md", "chart": options.out / "bench.png"}
    report["outputs"] = {k: str(v) for k, v in paths.items()}
    write_atomic(paths["json"], json.dumps(_finite(report), indent=1, allow_nan=False))
    write_atomic(paths["markdown"], markdown(report) + "\n")
    write_atomic(paths["chart"], chart_png(report))
    return report


def _finite(value: Any) -> Any:
    """JSON has no infinity: a non-finite number (an identical output's PSNR) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
