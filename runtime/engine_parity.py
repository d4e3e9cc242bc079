"""``lpt parity-engines``: every engine `lpt build` made for this machine against PyTorch.

The feeds, PyTorch references, tolerances, table and JSON report are ``lpt parity``'s. Two runners per
engine: Polygraphy's TrtRunner over the verified engine file (``polygraphy``), and lpt's own TensorRT
backend behind a Polygraphy runner interface (``lpt``, CUDA graphs on by default), so the runtime that
``lpt-run`` uses is checked on the GPU too. A device check then runs the warping module into the generator
on the GPU and compares with the same through the host (same engine, same data: equal up to kernel
noise), and an output held across a later run of its session must keep its values exactly.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from lpt.engines.environment import point_polygraphy_at_cudart, probe, use_device
from lpt.engines.plan import PRECISIONS, REQUIRED_PRECISIONS, EngineError, Platform, engine_name
from lpt.engines.sidecar import EngineRecord, verify_engine
from lpt.export.parity import ParityReport, RunnerChoice, Target, compare
from lpt.export.parity_inputs import (
    Feed,
    Reference,
    build_feeds,
    load_real_images,
    networks_needed,
)
from lpt.export.parity_report import (
    IMAGE_OUTPUTS,
    Row,
    fill_stats,
    summary,
    table,
    write_report,
)
from lpt.runtime.trt_backend import TensorRTBackend
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from lpt.errors import LptError
from lpt.specs import SPECS, GraphSpec

RUNNERS = ("polygraphy", "lpt")
REPORT_NAME = "parity-engines.json"
Progress = Callable[[str], None]


def engine_runner(path: Path, spec: GraphSpec) -> Any:
    """Polygraphy's TrtRunner over an engine file of `lpt build`, checked against its sidecar first (this
    TensorRT, this GPU architecture, the file intact) so a foreign engine fails in one line."""
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    record = EngineRecord.read(path.with_suffix(".json"))
    data = path.read_bytes()
    verify_engine(path, probe(), record.precision if record is not None else "", data)
    if record is not None and record.graph != spec.name:
        raise LptError(f"{path.name} is an engine of {record.graph}, not of {spec.name}")
    return TrtRunner(EngineFromBytes(data), name="polygraphy")


@dataclass(frozen=True)
class EngineTarget(Target):
    """An engine file; its tolerance table is the engine's precision, not read from a variant name."""

    engine_precision: str = "fp32"

    @property
    def precision(self) -> str:
        return self.engine_precision


class BackendRunner(BaseRunner):  # Polygraphy is untyped: BaseRunner is Any to mypy
    """A session of lpt's TensorRT backend as a Polygraphy runner: numpy in, host copies out."""

    def __init__(self, backend: TensorRTBackend, spec: GraphSpec) -> None:
        super().__init__(name="lpt")
        self.backend, self.spec = backend, spec

    def activate_impl(self) -> None:
        self.backend.session(self.spec.name)

    def get_input_metadata_impl(self) -> TensorMetadata:
        meta = TensorMetadata()
        for t in self.spec.inputs:
            meta.add(t.name, np.float32, (-1, *t.shape[1:]))
        return meta

    def infer_impl(self, feed_dict: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = self.backend.session(self.spec.name).run(feed_dict)
        host = OrderedDict((name, self.backend.to_host(value)) for name, value in outputs.items())
        self.inference_time = time.perf_counter() - start
        return host


def plan_targets(engines_dir: Path, platform: Platform, graphs: Sequence[str] | None,
                 precisions: Sequence[str] | None) -> list[EngineTarget]:
    """Named graphs and precisions must all have engines; by default every engine here for this machine."""
    unknown = [g for g in graphs or () if g not in SPECS] + [p for p in precisions or () if p not in PRECISIONS]
    if unknown:
        raise EngineError(f"unknown graph(s) or precision(s): {', '.join(unknown)}")
    explicit = graphs is not None or precisions is not None
    targets, missing = [], []
    for graph in graphs or SPECS:
        for precision in precisions or PRECISIONS:
            path = engines_dir / engine_name(graph, precision, platform)
            if path.is_file():
                targets.append(EngineTarget(graph, precision, path, engine_precision=precision))
            elif explicit and (precisions is not None or precision in REQUIRED_PRECISIONS):
                missing.append(path.name)
    if missing or not targets:
        what = ", ".join(missing) if missing else f"for {platform.tag}"
        raise EngineError(f"no engine {what} in {engines_dir}; build with `lpt build --onnx <onnx folder> --out {engines_dir}`")
    return targets


def snr_db(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """10 log10(signal / noise) over every feed, as `lpt quantize` measures INT8 graphs."""
    signal = sum(float(np.sum(np.square(ref, dtype=np.float64))) for _, ref in pairs)
    noise = sum(float(np.sum(np.square(ours.astype(np.float64) - ref))) for ours, ref in pairs)
    if noise == 0 or not math.isfinite(noise):
        return math.inf if noise == 0 else -math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def compare_int8(target: EngineTarget, feeds: Sequence[Feed], refs: Sequence[dict[str, np.ndarray]],
                 choices: Sequence[RunnerChoice]) -> tuple[list[Row], dict[str, float], list[str]]:
    """INT8 engines are judged as `lpt quantize` judges INT8 graphs (the spec's ``int8_threshold``: SNR of
    every output over all feeds, and a max abs error where the spec bounds one), not elementwise: rows,
    each runner's seconds, and the SNR measured per output."""
    from polygraphy.comparator import Comparator

    spec = SPECS[target.graph]
    threshold = spec.int8_threshold
    labels = [f.label for f in feeds]
    rows, seconds, measured = [], {}, []
    for choice in choices:
        start = time.perf_counter()
        error = None
        try:
            iterations = Comparator.run([choice.make(target.path, spec)], data_loader=[f.tensors for f in feeds])[0][1]
        except Exception as exc:  # noqa: BLE001 - reported as that runner's failure
            error, iterations = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}", []
        seconds[choice.name] = time.perf_counter() - start
        for output in spec.output_names:
            bound = threshold.max_abs.get(output, 0.0)
            row = Row(target.graph, f"int8 (SNR >= {threshold.min_snr_db:g} dB)", target.path.name, "int8", choice.name,
                      output, bound, 0.0, passed=False, image=(target.graph, output) in IMAGE_OUTPUTS,
                      seconds=round(seconds[choice.name], 2), error=error)
            if error is None:
                pairs = [(np.asarray(it[output]), ref[output]) for it, ref in zip(iterations, refs)]
                fill_stats(row, pairs, labels, row.image)
                snr = snr_db(pairs)
                row.passed = snr >= threshold.min_snr_db and (not bound or (row.max_abs or math.inf) <= bound)
                row.failed_feeds = [] if row.passed else [f"SNR {snr:.1f} dB"]
                measured.append(f"{target.path.name} {choice.name} {output}: SNR {snr:.1f} dB")
            rows.append(row)
    return rows, seconds, measured


def check_device_chain(backend: TensorRTBackend, seed: int = 0) -> str:
    """W -> G on the device equals W -> host -> G, and a held output survives its session's next run
    unchanged; EngineError otherwise."""
    rng = np.random.default_rng(seed)
    warp, generator = backend.session("warping_module"), backend.session("spade_generator")

    def feed() -> dict[str, np.ndarray]:
        return {t.name: rng.uniform(-1, 1, t.shape).astype(np.float32) for t in warp.spec.inputs}

    held = warp.run(feed())["out"]
    expected = backend.to_host(held)
    on_device = backend.to_host(generator.run({"feature": held})["out"])
    through_host = backend.to_host(generator.run({"feature": expected})["out"])
    warp.run(feed())  # overwrites the session's buffers: ``held`` must have been moved first
    if not np.array_equal(backend.to_host(held), expected):
        raise EngineError("device check: an output held across its session's next run changed (copy-on-write broken)")
    difference = float(np.abs(on_device - through_host).max())
    if difference > 1e-5 * max(1.0, float(np.abs(through_host).max())):  # same engine, same data: only kernel noise
        raise EngineError(f"device check: W -> G on the device differs from W -> host -> G by {difference:.3g}")
    return (f"device chain {backend.precision}: W -> G on the device matches through the host "
            f"(max difference {difference:.2g}); held output intact")


def run_engine_parity(weights_dir: Path, engines_dir: Path, graphs: Sequence[str] | None = None,
                      precisions: Sequence[str] | None = None, *, runners: Sequence[str] = RUNNERS,
                      report: Path | None = None, assets: Path | None = None, quick: bool = False, seed: int = 0,
                      cuda_graphs: bool = True, device: int = 0, progress: Progress = print) -> ParityReport:
    from lpt.models import load
    from lpt.models.synthetic import synthetic_marker

    start = time.perf_counter()
    bad = [r for r in runners if r not in RUNNERS]
    if bad or not runners:
        raise EngineError(f"--runners: expected names among {', '.join(RUNNERS)}, got {', '.join(runners) or 'none'}")
    platform = probe(device)
    use_device(device)  # Polygraphy's TrtRunner runs on the current device
    if "polygraphy" in runners:
        point_polygraphy_at_cudart(int(platform.cuda_runtime.split(".")[0] or 0) or None)
    targets = plan_targets(engines_dir, platform, graphs, precisions)
    for target in targets:
        verify_engine(target.path, platform, target.precision)
    names = list(dict.fromkeys(t.graph for t in targets))
    images = load_real_images(assets)
    reference = Reference(load(weights_dir, networks_needed(names)))
    progress(f"parity-engines: {len(targets)} engine(s) for {platform.describe()}; runners {', '.join(runners)}"
             f"{' (CUDA graphs on)' if cuda_graphs and 'lpt' in runners else ''}")
    progress(f"inputs: {images.description}")
    feeds = build_feeds(names, reference, images, quick=quick, seed=seed)
    backends: dict[str, TensorRTBackend] = {}

    def choices(precision: str) -> list[RunnerChoice]:
        made = [RunnerChoice("polygraphy", engine_runner)] if "polygraphy" in runners else []
        if "lpt" in runners:
            if precision not in backends:
                backends[precision] = TensorRTBackend(engines_dir, precision, cuda_graphs=cuda_graphs, device=device)
            backend = backends[precision]
            made.append(RunnerChoice("lpt", lambda _path, spec: BackendRunner(backend, spec)))
        return made

    rows: list[Row] = []
    notes: list[str] = list(images.notes)
    try:
        for i, graph in enumerate(names, 1):
            refs = [reference.outputs(graph, f) for f in feeds[graph]]
            for target in (t for t in targets if t.graph == graph):
                if target.precision == "int8":
                    target_rows, seconds, measured = compare_int8(target, feeds[graph], refs, choices("int8"))
                    notes += measured
                else:
                    target_rows, seconds = compare(target, feeds[graph], refs, choices(target.precision))
                rows += target_rows
                progress(f"[{i}/{len(names)}] {target.path.name}: "
                         + "; ".join(f"{r} {sum(x.passed for x in target_rows if x.runner == r)}/"
                                     f"{sum(x.runner == r for x in target_rows)} pass {s:.1f} s" for r, s in seconds.items()))
        for precision, backend in backends.items():
            have = {t.graph for t in targets if t.precision == precision}
            if {"warping_module", "spade_generator"} <= have:
                notes.append(check_device_chain(backend, seed))
                progress(notes[-1])
            notes += [f"{precision} {g}: CUDA graph capture failed, ran uncaptured: {s.graph_failure}"
                      for g, s in backend.sessions.items() if s.graph_failure]
    finally:
        for backend in backends.values():
            backend.close()
    meta = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "weights": str(weights_dir),
        "synthetic_weights": synthetic_marker(weights_dir), "engines_dir": str(engines_dir),
        "platform": platform.describe(), "runners": list(runners), "cuda_graphs": cuda_graphs, "quick": quick,
        "seed": seed, "inputs": {"origin": images.origin, "description": images.description},
        "notes": notes, "seconds": round(time.perf_counter() - start, 1),
    }
    path = report if report is not None else engines_dir / REPORT_NAME
    write_report(path, rows, meta)
    progress(table(rows))
    progress(f"report: {path}")
    progress(summary(rows))
    return ParityReport(rows, meta, path, notes)


def parse_names(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text is not None else None


def failed_outputs(result: ParityReport) -> list[str]:
    return sorted({f"{r.graph} {r.variant} {r.runner} {r.output}" for r in result.rows if not r.passed})

