"""Video-to-video: a source video driven by a video, frame by frame, through the streamed pipeline."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from lpt.runtime.animate import AnimationOptions
from lpt.runtime.faces import FaceCropper
from lpt.runtime.pipeline import RunOptions
from lpt.runtime.video import VideoWriter
from lpt.runtime.video_source import VideoSourceRun

from lpt.errors import LptError

from .test_pipeline_memory import ArithmeticBackend


def _video(path: Path, frames: int, fps: int, level: int) -> Path:
    with VideoWriter(path, fps) as writer:
        for i in range(frames):
            writer.write(np.full((96, 96, 3), level + 4 * i, np.uint8))
    return path


def _run(options: RunOptions) -> VideoSourceRun:
    return VideoSourceRun(ArithmeticBackend(), FaceCropper(None, no_crop=True), options)  # type: ignore[arg-type]


@pytest.mark.parametrize("audio,rate", [("driving", 30), ("source", 24)])
def test_the_shorter_input_sets_the_length_and_the_audible_video_the_timing(tmp_path: Path, audio: str, rate: int) -> None:
    """Frames are timed by the video whose sound the result carries: the driving video by default."""
    source = _video(tmp_path / "src.mp4", 6, 24, 60)
    driving = _video(tmp_path / "drv.mp4", 4, 30, 120)
    options = RunOptions(AnimationOptions(), pasteback=False, crop=False, audio=audio)  # type: ignore[arg-type]
    report = _run(options).animate(source, driving, tmp_path / "o.mp4")
    assert report.frames == 4
    with av.open(str(tmp_path / "o.mp4")) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(video=0))
        frames, times = [f.to_ndarray(format="rgb24") for f in decoded], [float(f.time) for f in decoded]
        assert stream.average_rate == rate and len(frames) == 4 and frames[0].shape == (512, 512, 3)
    assert times == pytest.approx([i / rate for i in range(4)], abs=1e-4)
    # The arithmetic backend paints each frame with its warped input's level: the source frames show through.
    levels = [float(f.mean()) for f in frames]
    assert levels == sorted(levels) and levels[-1] > levels[0]


def test_retargeting_is_refused_for_a_source_video(tmp_path: Path) -> None:
    source = _video(tmp_path / "src.mp4", 2, 24, 60)
    options = RunOptions(AnimationOptions(eye_retargeting=True), pasteback=False, crop=False)
    with pytest.raises(LptError, match="not supported with a source video"):
        _run(options).animate(source, source, tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()
