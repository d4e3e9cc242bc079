"""Memory stays flat over a long driving video: the streamed pipeline keeps no frame it has written.

The networks cost seconds per frame on a CPU, so this test drives the real pipeline (reader, crops,
motion math, stitching, paste-back, encoder, threads) with a backend that honours the backend protocol
with cheap arithmetic of the spec's shapes; the frames it renders still follow the driving motion.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from lpt.runtime.animate import AnimationOptions
from lpt.runtime.faces import FaceCropper
from lpt.runtime.pipeline import Run, RunOptions
from lpt.runtime.video import VideoWriter

from lpt.specs import SPECS


class ArithmeticSession:
    def __init__(self, graph: str) -> None:
        self.spec = SPECS[graph]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        level = float(np.mean(next(iter(feeds.values()))))
        out = {t.name: np.full(t.shape, 0.0, np.float32) for t in self.spec.outputs}
        if self.spec.name == "motion_extractor":
            out["scale"][:] = 1.0
            out["exp"][:] = level * 0.01
        if self.spec.name in ("appearance_feature_extractor", "warping_module", "spade_generator"):
            out[self.spec.output_names[-1]][:] = level  # the picture's brightness flows F -> W -> G
        return out


class ArithmeticBackend:
    name, precision = "arithmetic", "fp32"

    def session(self, graph: str) -> ArithmeticSession:
        return ArithmeticSession(graph)

    def to_host(self, value: Any) -> np.ndarray:
        return np.asarray(value, np.float32)

    def describe(self) -> str:
        return "arithmetic test backend"

    def close(self) -> None:
        pass


def _driving(path: Path, frames: int) -> Path:
    with VideoWriter(path, 30) as writer:
        for i in range(frames):
            writer.write(np.full((64, 64, 3), (i * 7) % 256, np.uint8))
    return path


def _peak_after(frames: int, tmp_path: Path) -> float:
    source = tmp_path / "source.png"
    import cv2

    cv2.imwrite(str(source), np.full((256, 256, 3), 100, np.uint8))
    run = Run(ArithmeticBackend(), FaceCropper(None, no_crop=True),  # type: ignore[arg-type]
              RunOptions(AnimationOptions(), pasteback=False, crop=False))
    report = run.animate(source, _driving(tmp_path / f"drv{frames}.mp4", frames), tmp_path / f"out{frames}.mp4")
    assert report.frames == frames
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_in_fresh_process(frames: int, tmp_path: Path) -> float:
    """Peak RSS (MiB) of a new process that streams ``frames`` frames: this process's peak is the test
    session's (the exports), which would hide any growth."""
    code = ("import sys; from pathlib import Path; from tests.test_pipeline_memory import _peak_after; "
            f"_peak_after(20, Path(sys.argv[1])); print(_peak_after({frames}, Path(sys.argv[1])))")
    folder = tmp_path / str(frames)
    folder.mkdir()
    done = subprocess.run([sys.executable, "-c", code, str(folder)], check=False, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.split()[-1])


def test_peak_memory_does_not_grow_with_the_video_length(tmp_path: Path) -> None:
    short = _peak_in_fresh_process(100, tmp_path)
    long = _peak_in_fresh_process(400, tmp_path)
    # 300 more 512x512 frames are 225 MiB of pixels: a pipeline that kept them would grow by that much.
    assert long - short < 24, (short, long)
