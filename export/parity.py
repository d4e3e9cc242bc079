"""``lpt parity``: every exported ONNX graph against its PyTorch reference, through Polygraphy's Comparator.

Each file runs on ONNX Runtime (CPU; CUDA too where onnxruntime-gpu really reaches a GPU) and on TensorRT
where ``tensorrt`` imports, except native 5-D GridSample files on a TensorRT whose parser takes rank 4 only
(before 11.2): those are skipped there with a note, as their gather files run. The PyTorch outputs of the
same feeds (``parity_inputs``) join the run results as the runner ``pytorch``, and ``SimpleCompareFunc``
checks every runner against them elementwise with the spec's per-output tolerances: FP32 files with
``fp32_tolerance``, ``*.fp16.onnx`` with ``fp16_tolerance`` (still against PyTorch FP32). Polygraphy's
elementwise check fails an element when it is outside BOTH atol and rtol * |ref|.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lpt.errors import LptError, OnnxError
from lpt.specs import SPECS, GraphSpec

from .graphs import onnx_path
from .parity_inputs import (
    Feed,
    Reference,
    build_feeds,
    load_real_images,
    networks_needed,
)
from .parity_report import IMAGE_OUTPUTS, Row, fill_stats, summary, table, write_report
from .provenance import OTHER_WEIGHTS, ProvenanceError, untraced_all
from .trt_support import LATEST, support_for

REFERENCE = "pytorch"
VARIANTS = ("native", "gather", "fp16", "gather.fp16")  # parity variant -> onnx_path variant: native is ""
DEFAULT_VARIANTS = VARIANTS  # by default every one whose file exists (native and gather at least one)
REPORT_NAME = "parity.json"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    graph: str
    variant: str
    path: Path

    @property
    def precision(self) -> str:
        return "fp16" if self.variant.endswith("fp16") else "fp32"


@dataclass(frozen=True)
class RunnerChoice:
    name: str
    make: Callable[[Path, GraphSpec], Any]  # a Polygraphy runner for a file
    skip: Callable[[Target], str | None] | None = None  # why a file is not for this runner, or None


@dataclass
class ParityReport:
    rows: list[Row]
    meta: dict[str, Any]
    path: Path
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)


def file_variant(graph: str, variant: str) -> str:
    """The ``onnx_path`` variant of a parity variant. Graphs without the 5-D sampler are exported once, so
    their file serves the gather set too: "gather" is their plain file, "gather.fp16" their fp16 one."""
    if not SPECS[graph].samples and variant.startswith("gather"):
        variant = variant.removeprefix("gather").lstrip(".") or "native"
    return "" if variant == "native" else variant


def export_hint(graph: str, variant: str, weights_dir: Path, onnx_dir: Path) -> str:
    if variant.endswith("fp16"):
        return "FP16 files come from the FP16 conversion of the FP32 export, not from `lpt export` itself"
    command = f"lpt export --weights {weights_dir} --out {onnx_dir} --graphs {graph}"
    if SPECS[graph].samples:
        command += " --grid-sample gather" if variant == "gather" else " --grid-sample native --trt 11.2"
    return f"make it with `{command}`"


def plan(graphs: Sequence[str], variants: Sequence[str] | None, weights_dir: Path, onnx_dir: Path) -> tuple[list[Target], list[str]]:
    """The files to compare, and notes on default variants that were not found. Named variants must exist."""
    unknown = [v for v in variants or () if v not in VARIANTS]
    if unknown:
        raise LptError(f"unknown variant(s) {', '.join(unknown)}; parity knows {', '.join(VARIANTS)}")
    targets: dict[Path, Target] = {}
    notes = []
    for graph in graphs:
        found = 0
        for variant in variants or DEFAULT_VARIANTS:
            path = onnx_path(onnx_dir, graph, file_variant(graph, variant))
            if path.is_file():
                targets.setdefault(path, Target(graph, variant, path))  # one comparison per file
                found += 1
            elif variants is not None:
                raise OnnxError(f"missing {path} ({graph}, variant {variant}); {export_hint(graph, variant, weights_dir, onnx_dir)}")
            elif variant in ("native", "gather") and SPECS[graph].samples:
                notes.append(f"{graph} {variant}: {path.name} not found, skipped; {export_hint(graph, variant, weights_dir, onnx_dir)}")
        if not found:
            variant = "gather" if SPECS[graph].samples else "native"
            raise OnnxError(f"no ONNX file for {graph} in {onnx_dir}; {export_hint(graph, variant, weights_dir, onnx_dir)}")
    return list(targets.values()), notes


# --- runners -------------------------------------------------------------------------------------------


@functools.cache
def cuda_status() -> tuple[bool, str]:
    """Whether ONNX Runtime really runs on a GPU: the provider list alone says nothing about a driver or
    a device, so a one-node session is created and run, and the provider it got is checked."""
    import onnx
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False, f"not available in onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())})"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    model = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y]),
                                   opset_imports=[onnx.helper.make_opsetid("", 17)])
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
        sess.run(None, {"x": np.ones(1, np.float32)})
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable GPU
        return False, f"CUDAExecutionProvider listed but unusable: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        return False, f"CUDAExecutionProvider listed but the session fell back to {sess.get_providers()[0]}"
    return True, f"onnxruntime {ort.__version__} CUDAExecutionProvider"


def tensorrt_status() -> tuple[bool, str]:
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - absent or broken: either way not usable
        return False, "not installed, skipped"
    return True, f"tensorrt {tensorrt.__version__}"


def tensorrt_skip(target: Target, version: str) -> str | None:
    """Why TensorRT ``version`` is not given ``target``'s file: native 5-D GridSample where the parser takes
    rank 4 only (the lint's support table: before 11.2), or None."""
    if not SPECS[target.graph].samples or target.variant.startswith("gather"):
        return None
    major = int(version.split(".")[0])
    if major > max(LATEST):  # newer than the table: it parses what the newest known one does
        return None
    if major in LATEST and 5 in support_for(version).gridsample_ranks:
        return None
    return (f"{target.path.name} not run on TensorRT {version}: its parser takes GridSample of rank 4 only "
            f"(5-D from 11.2); the gather file is for it")


def runners_for(target: Target, choices: Sequence[RunnerChoice]) -> tuple[list[RunnerChoice], list[str]]:
    """The runners that take ``target``'s file, and a note for each that does not."""
    usable, notes = [], []
    for choice in choices:
        why = choice.skip(target) if choice.skip is not None else None
        if why is None:
            usable.append(choice)
        else:
            notes.append(f"{choice.name} skipped: {why}")
    return usable, notes


def _ort_runner(provider: str, name: str) -> Callable[[Path, GraphSpec], Any]:
    def make(path: Path, _spec: GraphSpec) -> Any:
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

        return OnnxrtRunner(SessionFromOnnx(str(path), providers=[provider]), name=name)

    return make


def _trt_runner(path: Path, spec: GraphSpec) -> Any:
    """An engine built from the ONNX file as `lpt build` builds it: strongly typed (TensorRT 11 has no
    weak-typing precision flags), the spec's batch profile."""
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineFromNetwork,
        NetworkFromOnnxPath,
        Profile,
        TrtRunner,
    )

    profile = Profile()
    low, opt, high = (spec.shapes(batch) for batch in spec.batch)
    for name in spec.input_names:
        profile.add(name, low[name], opt[name], high[name])
    network = NetworkFromOnnxPath(str(path), strongly_typed=True)
    return TrtRunner(EngineFromNetwork(network, CreateConfig(profiles=[profile])), name="tensorrt")


def runner_choices() -> tuple[list[RunnerChoice], dict[str, str]]:
    import onnxruntime as ort

    choices = [RunnerChoice("onnxrt-cpu", _ort_runner("CPUExecutionProvider", "onnxrt-cpu"))]
    status = {"onnxrt-cpu": f"onnxruntime {ort.__version__} CPUExecutionProvider"}
    cuda_ok, status["onnxrt-cuda"] = cuda_status()
    if cuda_ok:
        choices.append(RunnerChoice("onnxrt-cuda", _ort_runner("CUDAExecutionProvider", "onnxrt-cuda")))
    trt_ok, status["tensorrt"] = tensorrt_status()
    if trt_ok:
        import tensorrt

        skip = functools.partial(tensorrt_skip, version=str(tensorrt.__version__))
        choices.append(RunnerChoice("tensorrt", _trt_runner, skip))
    return choices, status


# --- comparison ----------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _mismatch(iterations: Sequence[Any], refs: Sequence[dict[str, np.ndarray]], output: str) -> str | None:
    """Why an output cannot be compared elementwise at all (missing, or another shape), else None."""
    for it, ref in zip(iterations, refs):
        if output not in it:
            return f"the file has no output {output!r} (outputs: {', '.join(it.keys())})"
        if tuple(it[output].shape) != ref[output].shape:
            return f"{output} has shape {tuple(it[output].shape)}, PyTorch gives {ref[output].shape}"
    return None


def compare(target: Target, feeds: Sequence[Feed], refs: Sequence[dict[str, np.ndarray]],
            choices: Sequence[RunnerChoice]) -> tuple[list[Row], dict[str, float]]:
    """One row per runner and output of ``target``, and each runner's seconds."""
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.CRITICAL + 1):  # lpt prints its own table; runner failures are raised
        return _compare(target, feeds, refs, choices)


def _compare(target: Target, feeds: Sequence[Feed], refs: Sequence[dict[str, np.ndarray]],
             choices: Sequence[RunnerChoice]) -> tuple[list[Row], dict[str, float]]:
    from polygraphy.comparator import Comparator, RunResults, SimpleCompareFunc

    spec = SPECS[target.graph]
    tol = {o: spec.tolerance(o, target.precision) for o in spec.output_names}
    data = [f.tensors for f in feeds]
    labels = [f.label for f in feeds]
    results, errors, seconds = RunResults(), {}, {}
    for choice in choices:  # one Comparator.run each: a runner that cannot load the file fails alone
        t0 = time.perf_counter()
        try:
            results.extend(Comparator.run([choice.make(target.path, spec)], data_loader=data))
        except Exception as exc:  # noqa: BLE001 - reported as that runner's failure
            errors[choice.name] = _first_line(exc)
        seconds[choice.name] = time.perf_counter() - t0
    ran = [name for name, _ in results]
    results.add([dict(r) for r in refs], runner_name=REFERENCE)
    verdicts = {}
    if ran:
        func = SimpleCompareFunc(atol={o: t.atol for o, t in tol.items()}, rtol={o: t.rtol for o, t in tol.items()},
                                 check_error_stat="elemwise")
        accuracy = Comparator.compare_accuracy(results, comparisons=[(i, len(ran)) for i in range(len(ran))],
                                               compare_func=func)[0]
        verdicts = {name: accuracy[(name, REFERENCE)] for name in ran}
    rows = []
    for choice in choices:
        for output in spec.output_names:
            row = Row(target.graph, target.variant, target.path.name, target.precision, choice.name, output,
                      tol[output].atol, tol[output].rtol, passed=False, image=(target.graph, output) in IMAGE_OUTPUTS,
                      seconds=round(seconds[choice.name], 2))
            if choice.name in errors:
                row.error, row.feeds = errors[choice.name], len(feeds)
            elif problem := _mismatch(results[choice.name], refs, output):
                row.error, row.feeds = problem, len(feeds)
            else:
                iterations = results[choice.name]
                fill_stats(row, [(it[output], ref[output]) for it, ref in zip(iterations, refs)], labels, row.image)
                per_feed = [bool(v[output]) for v in verdicts[choice.name]]
                row.failed_feeds = [label for label, ok in zip(labels, per_feed) if not ok]
                row.passed = len(per_feed) == len(feeds) and all(per_feed)
            rows.append(row)
    return rows, seconds


# --- the command ---------------------------------------------------------------------------------------


def _provenance_notes(targets: Iterable[Target], weights_dir: Path, onnx_dir: Path) -> list[str]:
    """Refuse files the manifests say were made from other weights: they cannot match, and comparing them
    would only blame the graphs. Files nothing traces (hand-made, edited) are what parity is for: a note."""
    problems = untraced_all(onnx_dir, [t.path.name for t in targets], weights_dir)
    other = next((p for p in problems if p.kind == OTHER_WEIGHTS), None)
    if other is not None:
        raise ProvenanceError(other.line())
    return [p.line() for p in problems]


def run_parity(weights_dir: str | Path, onnx_dir: str | Path, graphs: Sequence[str] | None = None,
               variants: Sequence[str] | None = None, *, report: str | Path | None = None,
               assets: str | Path | None = None, quick: bool = False, seed: int = 0,
               progress: Progress = print) -> ParityReport:
    """Compare the ONNX files of ``graphs`` (default: all) in ``onnx_dir`` with PyTorch on the networks in
    ``weights_dir``; write the JSON report (default ``onnx_dir/parity.json``) and return it.
    ``variants`` None: every variant whose file exists; named variants must all exist."""
    start = time.perf_counter()
    try:
        import polygraphy  # noqa: F401
    except ImportError:
        raise LptError("lpt parity needs Polygraphy: pip install polygraphy") from None
    weights_dir, onnx_dir = Path(weights_dir), Path(onnx_dir)
    if (graphs is not None and not graphs) or (variants is not None and not variants):
        raise LptError("--graphs and --variants need at least one name when given")
    graphs = list(dict.fromkeys(graphs)) if graphs is not None else list(SPECS)
    unknown = [g for g in graphs if g not in SPECS]
    if unknown:
        raise LptError(f"unknown graph(s) {', '.join(unknown)}; known: {', '.join(SPECS)}")
    if not onnx_dir.is_dir():
        raise OnnxError(f"ONNX folder {onnx_dir} not found; make it with `lpt export --weights {weights_dir} --out {onnx_dir}`")
    targets, notes = plan(graphs, variants, weights_dir, onnx_dir)
    notes += _provenance_notes(targets, weights_dir, onnx_dir)
    images = load_real_images(Path(assets) if assets is not None else None)

    from lpt.models import load
    from lpt.models.synthetic import synthetic_marker

    networks = load(weights_dir, networks_needed(graphs))
    notes += images.notes
    choices, status = runner_choices()
    progress(f"parity: {len(targets)} file(s) of {len(graphs)} graph(s); runners: "
             + "; ".join(f"{k}: {v}" for k, v in status.items()))
    progress(f"inputs: {images.description}" + ("" if images.origin == "assets" else "  [NOT the real assets]"))
    for note in notes:
        progress(f"note: {note}")

    reference = Reference(networks)
    t0 = time.perf_counter()
    feeds = build_feeds(graphs, reference, images, quick=quick, seed=seed)
    progress(f"feeds built in {time.perf_counter() - t0:.1f} s")
    rows: list[Row] = []
    timing: dict[str, dict[str, float]] = {}
    for i, graph in enumerate(graphs, 1):
        t0 = time.perf_counter()
        refs = [reference.outputs(graph, f) for f in feeds[graph]]
        timing[graph] = {"pytorch": round(time.perf_counter() - t0, 2)}
        line = [f"[{i}/{len(graphs)}] {graph}: {len(refs)} feeds (batch {','.join(str(f.batch) for f in feeds[graph])}), "
                f"pytorch {timing[graph]['pytorch']:.1f} s"]
        for target in (t for t in targets if t.graph == graph):
            usable, skipped = runners_for(target, choices)
            notes += skipped
            line += skipped
            target_rows, seconds = compare(target, feeds[graph], refs, usable)
            rows += target_rows
            for runner, s in seconds.items():
                timing[graph][f"{target.variant} {runner}"] = round(s, 2)
                mine = [r for r in target_rows if r.runner == runner]
                line.append(f"{target.variant} {runner} {sum(r.passed for r in mine)}/{len(mine)} pass {s:.1f} s")
        progress("; ".join(line))

    meta = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "weights": str(weights_dir), "synthetic_weights": synthetic_marker(weights_dir), "onnx_dir": str(onnx_dir),
        "reference": f"{REFERENCE}: lpt.export.graphs.graph_module in float32 on CPU",
        "check": "polygraphy SimpleCompareFunc, check_error_stat=elemwise, per-output atol/rtol from lpt.specs",
        "runners": status, "quick": quick, "seed": seed,
        "inputs": {"origin": images.origin, "description": images.description,
                   "feeds": {g: [{"label": f.label, "kind": f.kind, "batch": f.batch} for f in fs] for g, fs in feeds.items()}},
        "notes": notes, "seconds": {"total": round(time.perf_counter() - start, 1), **timing},
    }
    path = Path(report) if report is not None else onnx_dir / REPORT_NAME
    write_report(path, rows, meta)
    progress(table(rows))
    progress(f"report: {path}")
    progress(summary(rows))
    return ParityReport(rows, meta, path, notes)
