"""``lpt quantize``: INT8 graphs from the FP32 ONNX files and a calibration set, in two flavours.

- ``int8``: Q/DQ placed by NVIDIA ModelOpt for TensorRT (explicit quantization; TensorRT 11 has no other
  INT8), one file per grid-sample variant: ``<graph>.int8.onnx`` and ``<graph>.gather.int8.onnx``.
- ``int8-cpu``: ONNX Runtime's static quantizer, whose QDQ pattern its CPU kernels fuse into integer
  kernels: ``<graph>.int8-cpu.onnx`` (from the native file, or ``<graph>.gather.int8-cpu.onnx`` from the
  gather one when only that was exported).

Each quantizer runs in a subprocess of its own (ModelOpt patches ONNX Runtime's quantizer). What a graph keeps
in high precision is its spec's ``int8_exclude``. ``int8-manifest.json`` records what every file was made
from (source hash, calibration set, options, exclusions, tool versions) with its measurements, so an
up-to-date file is neither quantized nor measured again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from lpt.calibration.dataset import CalibrationSet
from lpt.calibration.ptq_job import QUIET_ENV, Job
from lpt.calibration.sampling import HELD_OUT
from lpt.models.checkpoint import liveportrait_dir
from lpt.models.synthetic import synthetic_marker

from lpt.errors import LptError
from lpt.files import write_atomic
from lpt.specs import SPECS, Int8Exclusions

from .graphs import onnx_path
from .manifest import INT8_MANIFEST, sha256_file
from .provenance import check_provenance, file_sha256

Progress = Callable[[str], None]
FLAVOURS = ("int8", "int8-cpu")
QUANTIZER = {"int8": "lpt.calibration.ptq_modelopt", "int8-cpu": "lpt.calibration.ptq_ort"}
FORMAT = 1


class QuantizeError(LptError):
    """Quantization cannot start or a quantizer failed."""


def int8_path(onnx_dir: str | Path, graph: str, flavour: str, grid_sample: str | None = None) -> Path:
    """``<graph>[.gather].int8.onnx`` (TensorRT Q/DQ) or ``<graph>[.gather].int8-cpu.onnx`` (ONNX Runtime CPU)."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown INT8 flavour {flavour!r}; known: {', '.join(FLAVOURS)}")
    return onnx_path(onnx_dir, graph, f"gather.{flavour}" if grid_sample == "gather" else flavour)


def fp32_path(onnx_dir: str | Path, graph: str, grid_sample: str | None = None) -> Path:
    return onnx_path(onnx_dir, graph, "gather" if grid_sample == "gather" else "")


@dataclass(frozen=True)
class Target:
    graph: str
    flavour: str
    sampler: str | None  # "native" / "gather" for graphs holding the warping module, else None
    src: Path
    dst: Path


def plan(onnx_dir: Path, graphs: Iterable[str], flavours: Iterable[str]) -> list[Target]:
    """The TensorRT flavour for every exported grid-sample variant; the CPU flavour once per graph, from the
    native file when there is one."""
    targets = []
    for graph in graphs:
        samplers: list[str | None] = ["native", "gather"] if SPECS[graph].samples else [None]
        present = [s for s in samplers if fp32_path(onnx_dir, graph, s).is_file()]
        if not present:
            raise QuantizeError(f"no FP32 ONNX file of {graph} in {onnx_dir} (expected "
                                f"{fp32_path(onnx_dir, graph).name}); run `lpt export` first")
        for flavour in flavours:
            for sampler in present if flavour == "int8" else present[:1]:
                targets.append(Target(graph, flavour, sampler, fp32_path(onnx_dir, graph, sampler),
                                      int8_path(onnx_dir, graph, flavour, sampler)))
    return targets


def check_weights(weights_dir: Path, calib: CalibrationSet, targets: Iterable[Target], onnx_dir: Path) -> None:
    """The calibration set and the FP32 files quantized (as the manifest traces them) must come from the
    checkpoints in ``weights_dir``."""
    root = liveportrait_dir(weights_dir)
    for key, value in calib.weights.get("checkpoints", {}).items():
        if not (root / key).is_file():
            raise QuantizeError(f"missing checkpoint {root / key}")
        if file_sha256(root / key) != value:
            raise QuantizeError(f"calibration set {calib.root} was built from other weights than {weights_dir} "
                                f"({key} differs); rebuild it with `lpt calib build --weights {weights_dir}`")
    check_provenance(onnx_dir, [t.src.name for t in targets], weights_dir)


def tool_versions() -> dict[str, str]:
    return {name: version(name) for name in ("onnx", "onnxruntime", "nvidia-modelopt")}


def code_digest() -> str:
    """The quantizer subprocess code: editing it makes every INT8 file stale."""
    import hashlib

    import lpt.calibration.ptq_job as job_module

    folder = Path(job_module.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(folder.glob("ptq_*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class Int8Manifest:
    """``<onnx dir>/int8-manifest.json``: per INT8 file, what it was made from and what was measured on it."""

    def __init__(self, onnx_dir: Path) -> None:
        self.path = onnx_dir / INT8_MANIFEST
        self.files: dict[str, dict[str, Any]] = {}
        self.chains: dict[str, dict[str, Any]] = {}
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") == FORMAT:
                self.files, self.chains = dict(data.get("files", {})), dict(data.get("chains", {}))
        except (OSError, ValueError, AttributeError):
            pass  # absent or unreadable: everything is made again

    def up_to_date(self, target: Target, inputs: dict[str, Any]) -> bool:
        entry = self.files.get(target.dst.name)
        return (entry is not None and entry.get("inputs") == inputs and target.dst.is_file()
                and entry.get("onnx", {}).get("sha256") == sha256_file(target.dst))

    def save(self) -> None:
        data = {"format": FORMAT, "files": dict(sorted(self.files.items())), "chains": dict(sorted(self.chains.items()))}
        write_atomic(self.path, json.dumps(data, indent=1) + "\n")


@dataclass(frozen=True)
class Options:
    exclusions: str = "spec"  # "spec" (each graph's int8_exclude) or "none" (measuring what they buy)
    method: str = "max"  # ModelOpt calibration: max or entropy (equal here with its 128 bins, and 2.4x slower)
    high_precision: str = "fp32"  # what ModelOpt leaves unquantized layers in: fp32 or fp16
    max_samples: int | None = None  # calibration samples used; None: all
    timing_runs: int = 3

    def exclusions_for(self, graph: str) -> Int8Exclusions:
        return SPECS[graph].int8_exclude if self.exclusions == "spec" else Int8Exclusions()

    def exclusion_fields(self, graph: str) -> dict[str, Any]:
        """The exclusions as the quantizer job takes them (the explanation left out)."""
        return {k: v for k, v in asdict(self.exclusions_for(graph)).items() if k != "why"}

    def quantizer_options(self, flavour: str) -> dict[str, Any]:
        return {"method": self.method, "high_precision": self.high_precision} if flavour == "int8" else {}


def job_inputs(target: Target, calib: CalibrationSet, options: Options, src_hash: str) -> dict[str, Any]:
    ex = options.exclusion_fields(target.graph)
    inputs = {"graph": target.graph, "flavour": target.flavour, "grid_sample": target.sampler,
              "source": {"file": target.src.name, "sha256": src_hash}, "calibration": calib.digest,
              "max_samples": options.max_samples, "exclusions": ex, "options": options.quantizer_options(target.flavour),
              "tools": tool_versions(), "code": code_digest()}
    return dict(json.loads(json.dumps(inputs)))  # as the manifest will read it back (tuples become lists)


def run_quantizer(target: Target, calib: CalibrationSet, options: Options) -> dict[str, Any]:
    job = Job(target.graph, str(target.src), str(target.dst), str(calib.root), options.exclusion_fields(target.graph),
              options.quantizer_options(target.flavour), options.max_samples)
    proc = subprocess.run([sys.executable, "-m", QUANTIZER[target.flavour], job.to_json()], capture_output=True,
                          text=True, env={**os.environ, **QUIET_ENV}, check=False)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise QuantizeError(f"{target.dst.name}: {QUANTIZER[target.flavour]} failed: "
                            f"{lines[-1] if lines else f'exit status {proc.returncode}'}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def quantize_all(targets: list[Target], calib: CalibrationSet, manifest: Int8Manifest, options: Options,
                 force: bool, progress: Progress) -> dict[Target, bool]:
    """Quantize every stale target; returns, per target, whether it was (re)made."""
    hashes: dict[Path, str] = {}
    made = {}
    width = max(len(t.dst.name) for t in targets)
    for target in targets:
        if target.src not in hashes:
            hashes[target.src] = sha256_file(target.src)
        inputs = job_inputs(target, calib, options, hashes[target.src])
        if not force and manifest.up_to_date(target, inputs):
            progress(f"  {target.dst.name:<{width}}  up to date")
            made[target] = False
            continue
        t0 = time.perf_counter()
        summary = run_quantizer(target, calib, options)
        manifest.files[target.dst.name] = {
            "inputs": inputs, "onnx": {"sha256": sha256_file(target.dst), "bytes": target.dst.stat().st_size},
            "quantizer": summary,
        }
        manifest.save()
        made[target] = True
        q, dq = summary.get("QuantizeLinear", 0), summary.get("DequantizeLinear", 0)
        progress(f"  {target.dst.name:<{width}}  quantized in {time.perf_counter() - t0:5.1f} s  {summary['samples']} "
                 f"samples  {q} Q / {dq} DQ  {len(summary.get('excluded', []))} nodes kept high precision")
    return made


def weights_description(weights_dir: Path) -> dict[str, Any]:
    marker = synthetic_marker(weights_dir)
    return {"dir": str(weights_dir), "synthetic": marker is not None, "marker": marker}


@dataclass(frozen=True)
class QuantizeResult:
    ok: bool
    failures: list[str]
    report: Path


def quantize_graphs(weights_dir: str | Path, onnx_dir: str | Path, calib_dir: str | Path,
                    graphs: Iterable[str] | None = None, flavours: Iterable[str] = FLAVOURS,
                    options: Options = Options(), report: Path | None = None, force: bool = False,
                    progress: Progress = print) -> QuantizeResult:
    """Quantize, measure on the held-out samples, print the tables, write the JSON report."""
    from . import int8_eval, int8_report

    start = time.perf_counter()
    weights_dir, onnx_dir = Path(weights_dir), Path(onnx_dir)
    names = list(graphs) if graphs is not None else list(SPECS)
    unknown = [g for g in names if g not in SPECS]
    if unknown or not names:
        raise QuantizeError(f"unknown graph(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(SPECS)}")
    flavours = list(flavours)
    if not flavours or any(f not in FLAVOURS for f in flavours):
        raise QuantizeError(f"unknown flavour(s) in {', '.join(flavours) or '(none)'}; known: {', '.join(FLAVOURS)}")
    if not onnx_dir.is_dir():
        raise QuantizeError(f"ONNX folder {onnx_dir} not found; run `lpt export` first")
    calib = CalibrationSet(calib_dir)
    missing = [g for g in names if g not in calib.graphs]
    if missing:
        raise QuantizeError(f"calibration set {calib.root} has no data for {', '.join(missing)}; rebuild it with "
                            "`lpt calib build` for those graphs")
    if calib.count(HELD_OUT) == 0:
        raise QuantizeError(f"calibration set {calib.root} has no held-out samples to measure accuracy on; "
                            "rebuild it with --held-out 1 or more")
    targets = plan(onnx_dir, names, flavours)
    check_weights(weights_dir, calib, targets, onnx_dir)
    weights = weights_description(weights_dir)
    progress(f"INT8 for {len(targets)} file(s) from {calib.root} ({calib.count()} calibration + "
             f"{calib.count(HELD_OUT)} held-out samples), weights {weights_dir}"
             f"{' (SYNTHETIC: numbers say nothing about the real weights)' if weights['synthetic'] else ''}")
    manifest = Int8Manifest(onnx_dir)
    made = quantize_all(targets, calib, manifest, options, force, progress)
    int8_eval.evaluate_targets(targets, made, calib, manifest, options.timing_runs, progress)
    chains = int8_eval.evaluate_chains(onnx_dir, targets, calib, manifest, progress)
    failures = int8_report.verdict(targets, chains, manifest)
    for line in ["", *int8_report.accuracy_table(targets, manifest), "", *int8_report.timing_table(targets, manifest)]:
        progress(line)
    for key in chains:
        c = manifest.chains[key]
        progress(f"final 512x512 frame, F -> W -> G ({key}) vs FP32: PSNR {c['psnr_db']:.2f} dB, SSIM {c['ssim']:.4f}")
    report = report or onnx_dir / "int8-report.json"
    context = {"weights": weights, "versions": tool_versions(), "options": asdict(options),
               "calibration": {"dir": str(calib.root), "digest": calib.digest, "samples": calib.count(),
                               "held_out": calib.count(HELD_OUT), "weights": calib.weights}}
    int8_report.write_report(report, targets, chains, manifest, context, failures)
    progress(f"{len(targets)} INT8 file(s), {len(failures)} threshold failure(s), in {time.perf_counter() - start:.0f} s "
             f"-> {report}")
    return QuantizeResult(not failures, failures, report)
