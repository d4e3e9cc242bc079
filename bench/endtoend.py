"""End to end on a source and driving pair: lpt's pipeline on every backend and precision the machine has
(warm frames per second, stage times, memory, fidelity against PyTorch FP32), the original-style run,
and a cold start of ``lpt-run`` timed from process start to written video."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from lpt.bench.graphs import CANDIDATES, REFERENCE, Candidate
from lpt.bench.jobs import Job
from lpt.bench.measure import Fidelity, GpuMemoryPeak, ProcessPeakRss, frame_fidelity
from lpt.runtime.backends import Locations

from lpt.errors import LptError
from lpt.files import write_atomic

ORIGINAL = "original-style"
COLD = "lpt-run cold"


@dataclass
class EndToEndRow:
    name: str  # "torch fp32", "onnxruntime fp16", "original-style", "lpt-run cold"
    kind: str  # "lpt" | "original" | "cold"
    status: str  # "measured" | "skipped" | "failed"
    reason: str = ""
    default: bool = False  # lpt's default backend and precision on this machine
    describe: str = ""
    frames: int = 0  # of the warm call (lpt), of the one call (original-style, cold)
    call_frames: int = 0  # of the first call, the one that loads the models
    call_s: float | None = None  # that call: models loaded, every frame, video written (cold: process start to exit)
    load_s: float | None = None
    warm_fps: float | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)  # ms per frame of each stage (the warm call where there is one)
    peak_rss_mib: float | None = None
    peak_gpu_mib: float | None = None
    fidelity: Fidelity | None = None
    fidelity_of: str = ""  # what was compared with what

    @property
    def per_frame_ms(self) -> float | None:
        return 1000 / self.warm_fps if self.warm_fps else None

    def as_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "fidelity"}
        data["per_frame_ms"] = self.per_frame_ms
        data["fidelity"] = self.fidelity.as_json() if self.fidelity else None
        return data


def lpt_default(where: Locations) -> tuple[Candidate, str]:
    """The backend and precision ``lpt-run`` picks with no --backend/--precision, and why."""
    from lpt.runtime.animate import AnimationOptions
    from lpt.runtime.backends import choose, default_precision

    name, why = choose(None, None, where, AnimationOptions().graphs())
    return Candidate(name, default_precision(name)), why


def unavailable(candidate: Candidate, where: Locations) -> str | None:
    """Why ``candidate`` cannot run the pipeline here (checked without loading anything), or None."""
    from lpt.runtime.animate import AnimationOptions
    from lpt.runtime.backends import openvino_unavailable, tensorrt_usable, untraced_engines

    if candidate.backend == "torch":
        import torch

        if candidate.precision == "fp16" and not torch.cuda.is_available():
            return "the torch backend runs fp16 on CUDA only"
        return None
    if candidate.backend == "tensorrt":
        ok, why = tensorrt_usable()
        return untraced_engines(where, AnimationOptions().graphs()) if ok else why
    if candidate.backend == "openvino":
        return openvino_unavailable(where, AnimationOptions().graphs(), candidate.precision)
    import onnxruntime as ort
    from lpt.runtime.onnxruntime_backend import graph_file, untraced_files

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    missing = [graph_file(where.onnx, g, candidate.precision, cuda) for g in AnimationOptions().graphs()]
    missing = [p for p in missing if not p.is_file()]
    if missing:
        return f"{missing[0]} not found ({len(missing)} graph file(s) missing)"
    stale = untraced_files(where.onnx, candidate.precision, cuda, where.weights)
    return stale.line() if stale is not None else None


def _launch(command: list[str], log: Callable[[str], None]) -> tuple[int, float, float | None, deque[str]]:
    """Run ``command``, passing its stderr lines to ``log``; (exit status, seconds, peak RSS MiB, last lines)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1)
    memory = ProcessPeakRss(process.pid)
    tail: deque[str] = deque(maxlen=20)
    assert process.stderr is not None
    for line in process.stderr:
        line = line.rstrip("\r\n").split("\r")[-1]
        if line:
            tail.append(line)
            log(line)
    status = process.wait()
    seconds = time.perf_counter() - start
    return status, seconds, memory.stop(), tail


def _file_name(label: str) -> str:
    return label.replace(" ", "-")


def _decode(path: Path) -> np.ndarray:
    from lpt.runtime.video import VideoReader

    with VideoReader(path) as reader:
        return np.stack(list(reader))


def check_inputs(source: Path, driving: Path) -> None:
    for what, path in (("source", source), ("driving", driving)):
        if not path.is_file():
            raise LptError(f"{what} {path} not found: pass -s/--source and -d/--driving (the sample assets live in "
                           "../shared/assets beside the checkout)")


@dataclass
class EndToEnd:
    where: Locations
    source: Path
    driving: Path
    frames: int
    work: Path  # videos, frames and job files
    progress: Callable[[str], None] = print

    def run(self, candidates: tuple[Candidate, ...] = CANDIDATES, original: bool = True, cold: bool = True) -> list[EndToEndRow]:
        self.work.mkdir(parents=True, exist_ok=True)
        for stale in (*self.work.glob("*.frames.npy"), *self.work.glob("*.result.json"), *self.work.glob("*.mp4")):
            stale.unlink()  # a run that fails this time must not be judged by the last run's files
        default, why = lpt_default(self.where)
        self.progress(f"lpt's default here: {default.label} ({why})")
        ordered = [REFERENCE] + [c for c in candidates if c != REFERENCE]
        if default not in ordered:
            ordered.append(default)
        rows = [self._lpt(c, c == default) for c in ordered]
        if original:
            rows.append(self._job(Job(_file_name(ORIGINAL), "original", "torch", "fp32", **self._common(self.frames)),
                                  ORIGINAL, False))
        reference = self.work / f"{_file_name(REFERENCE.label)}.frames.npy"
        for row in rows:
            if row.status == "measured" and reference.is_file():
                frames = np.load(self.work / f"{_file_name(row.name)}.frames.npy")
                row.fidelity = frame_fidelity(frames, np.load(reference))
                row.fidelity_of = "rendered 512x512 frames against lpt on torch fp32"
        if cold:
            rows.append(self._cold(default))
        return rows

    def _common(self, first_frames: int) -> dict[str, Any]:
        return {"weights": str(self.where.weights), "onnx": str(self.where.onnx), "engines": str(self.where.engines),
                "source": str(self.source), "driving": str(self.driving), "frames": self.frames,
                "first_frames": first_frames, "out_dir": str(self.work)}

    def _lpt(self, candidate: Candidate, is_default: bool) -> EndToEndRow:
        reason = unavailable(candidate, self.where)
        if reason is not None:
            self.progress(f"end to end, {candidate.label}: skipped ({reason})")
            return EndToEndRow(candidate.label, "lpt", "skipped", reason, default=is_default)
        # lpt's default makes its first call on every frame: that call is the one set against the original's
        job = Job(_file_name(candidate.label), "lpt", candidate.backend, candidate.precision,
                  **self._common(self.frames if is_default else 1))
        return self._job(job, candidate.label, is_default)

    def _job(self, job: Job, label: str, is_default: bool) -> EndToEndRow:
        job_file, result_file = self.work / f"{job.name}.job.json", self.work / f"{job.name}.result.json"
        write_atomic(job_file, json.dumps(job.as_json()))
        self.progress(f"end to end, {label}: in a process of its own")
        status, _, _, tail = _launch([sys.executable, "-m", "lpt.bench.jobs", str(job_file), str(result_file)],
                                     lambda line: self.progress(f"  {line}"))
        if status != 0 or not result_file.is_file():
            reason = tail[-1] if tail else f"exit status {status}"
            self.progress(f"end to end, {label}: FAILED: {reason}")
            return EndToEndRow(label, job.kind, "failed", reason, default=is_default)
        result = json.loads(result_file.read_text())
        if "error" in result:
            self.progress(f"end to end, {label}: skipped ({result['error']})")
            return EndToEndRow(label, job.kind, "skipped", result["error"], default=is_default)
        call, warm = result["call"], result.get("warm")
        shown = warm or call
        row = EndToEndRow(label, job.kind, "measured", default=is_default, describe=result["describe"],
                          frames=shown["frames"], call_frames=call["frames"], call_s=call["seconds"],
                          load_s=call["load_s"], warm_fps=warm["fps"] if warm else None, stage_ms=shown["stage_ms"],
                          peak_rss_mib=result["peak_rss_mib"], peak_gpu_mib=result["peak_gpu_mib"])
        warm_text = f", warm {row.warm_fps:.3f} frames/s" if row.warm_fps else ""
        self.progress(f"end to end, {label}: first call {row.call_s:.1f} s ({row.call_frames} frame(s)){warm_text}")
        return row

    def _cold(self, default: Candidate) -> EndToEndRow:
        output = self.work / "cold.mp4"
        script = Path(sys.executable).with_name("lpt-run")
        command = [str(script)] if script.is_file() else [sys.executable, "-c", "from lpt.runtime.cli import run_main; run_main()"]
        command += ["-s", str(self.source), "-d", str(self.driving), "-o", str(output), "--weights", str(self.where.weights),
                    "--onnx", str(self.where.onnx), "--engines", str(self.where.engines), "--max-frames", str(self.frames),
                    "--overwrite"]
        self.progress(f"end to end, {COLD}: `lpt-run --max-frames {self.frames}` as a new process ({default.label})")
        with GpuMemoryPeak() as gpu:
            status, seconds, rss, tail = _launch(command, lambda line: None)
        if status != 0 or not output.is_file():
            return EndToEndRow(COLD, "cold", "failed", tail[-1] if tail else f"exit status {status}", default=True)
        row = EndToEndRow(COLD, "cold", "measured", default=True, describe=f"{default.label}, new process",
                          frames=self.frames, call_frames=self.frames, call_s=seconds, peak_rss_mib=rss,
                          peak_gpu_mib=gpu.mib)
        same_backend = self.work / f"{_file_name(default.label)}.mp4"
        if same_backend.is_file():  # the in-process run of the same backend, whose rendered frames are compared
            row.fidelity = frame_fidelity(_decode(output), _decode(same_backend))
            row.fidelity_of = f"written video against the in-process {default.label} run's video (same encoder)"
        self.progress(f"end to end, {COLD}: {seconds:.1f} s from process start to written video")
        return row
