"""End-to-end runs, each in a process of its own so its peak memory is its own: lpt's pipeline on one
backend and precision, or the original-style pipeline. ``python -m lpt.bench.jobs JOB RESULT`` runs the
job described in the JSON file JOB and writes RESULT (JSON) and the rendered frames (``.npy``).

An lpt job makes two calls of ``Run.animate`` in one process: the first loads the models and animates
``first_frames`` frames (for lpt's default backend, all of them: that call is the one compared with the
original's), the second animates the same frames warm; its frames per second and stage times are the
warm figures, and its rendered frames are compared with the reference.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lpt.bench.measure import GpuMemoryPeak
from lpt.runtime.memory import peak_rss_mib

from lpt.errors import LptError
from lpt.files import write_atomic


@dataclass(frozen=True)
class Job:
    name: str
    kind: str  # "lpt" | "original"
    backend: str  # lpt: torch | onnxruntime | tensorrt; original: torch
    precision: str
    weights: str
    onnx: str
    engines: str
    source: str
    driving: str
    frames: int
    first_frames: int  # lpt: frames of the first (loading) call
    out_dir: str  # videos and the rendered frames

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RecordingAnimator:
    """Delegates to the pipeline's Animator and keeps every rendered 512x512 frame, in order."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.frames: list[np.ndarray] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def animate(self, *args: Any) -> np.ndarray:
        frame = self.inner.animate(*args)
        self.frames.append(frame)
        return frame


def _stage_ms(times: Any, frames: int) -> dict[str, float]:
    """Milliseconds per frame of each stage: its time over the whole call, once-per-call stages included."""
    return {stage: 1000 * seconds / max(1, frames) for stage, seconds in times.seconds.items()}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _frames_done(call: str) -> Any:
    return lambda done, total: _say(f"{call}: frame {done}/{total or '?'}")


def _lpt(job: Job) -> dict[str, Any]:
    from lpt.runtime.backends import Locations, open_backend
    from lpt.runtime.faces import FaceCropper
    from lpt.runtime.pipeline import Run, RunOptions

    out = Path(job.out_dir)
    where = Locations(Path(job.weights), Path(job.onnx), Path(job.engines))
    start = time.perf_counter()
    backend = open_backend(job.backend, job.precision, where)
    try:
        cropper = FaceCropper(Path(job.weights))
        opened = time.perf_counter() - start
        first = Run(backend, cropper, RunOptions(max_frames=job.first_frames), progress=_frames_done("first call"))
        first_report = first.animate(Path(job.source), Path(job.driving), out / f"{job.name}.first.mp4")
        call_seconds = time.perf_counter() - start
        warm = Run(backend, cropper, RunOptions(max_frames=job.frames), progress=_frames_done("warm call"))
        recorder = RecordingAnimator(warm.animator)
        warm.animator = recorder  # type: ignore[assignment]
        report = warm.animate(Path(job.source), Path(job.driving), out / f"{job.name}.mp4")
        described = backend.describe()
    finally:
        backend.close()
    np.save(out / f"{job.name}.frames.npy", np.stack(recorder.frames))
    return {
        "describe": described, "faces": report.faces,
        "call": {"frames": first_report.frames, "seconds": call_seconds, "load_s": opened + first_report.load_seconds,
                 "stage_ms": _stage_ms(first_report.times, first_report.frames)},
        "warm": {"frames": report.frames, "seconds": report.seconds, "fps": report.fps,
                 "stage_ms": _stage_ms(report.times, report.frames)},
        "video": str(out / f"{job.name}.mp4"),
    }


def _original(job: Job) -> dict[str, Any]:
    from lpt.bench.original import run_original

    out = Path(job.out_dir)
    result = run_original(Path(job.weights), Path(job.source), Path(job.driving), out / "original", job.frames,
                          progress=_say)
    np.save(out / f"{job.name}.frames.npy", result.frames)
    frames = len(result.frames)
    return {
        "describe": "original-style: torch fp32 eager, every model loaded per call, ffmpeg subprocess",
        "call": {"frames": frames, "seconds": result.seconds, "load_s": result.load_seconds,
                 "stage_ms": _stage_ms(result.times, frames)},
        "video": str(result.outputs[0]),
    }


def run_job(job: Job) -> dict[str, Any]:
    """The job's figures with this process's peak host and GPU memory; an ``error`` entry when it failed."""
    with GpuMemoryPeak() as gpu:
        try:
            result = _lpt(job) if job.kind == "lpt" else _original(job)
        except LptError as exc:
            result = {"error": str(exc).strip().splitlines()[0]}
    result.update(peak_rss_mib=peak_rss_mib(), peak_gpu_mib=gpu.mib)
    return result


def main(argv: list[str]) -> int:
    job_path, result_path = (Path(a) for a in argv)
    job = Job(**json.loads(job_path.read_text()))
    write_atomic(result_path, json.dumps(run_job(job), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
