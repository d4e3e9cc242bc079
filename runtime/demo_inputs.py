"""The demo pair that ``lpt-run`` (and ``lpt triton run``) animate when given no inputs, drawn by lpt.

Depends on: OpenCV, ``lpt.demo`` (the drawing), ``lpt.files`` and ``lpt.runtime.video`` (the writers).
"""

from __future__ import annotations

from pathlib import Path

import cv2
from lpt.demo import draw_portrait, driving_poses
from lpt.runtime.video import VideoWriter

from lpt.files import write_atomic


def write_demo_inputs(folder: Path, frames: int = 12, fps: float = 12.0, seed: int = 0) -> tuple[Path, Path]:
    """The project's own demo pair: ``source.png`` (a drawn face) and ``driving.mp4`` (the same face of
    another seed, moving). Kept when already there, so repeated runs reuse them."""
    folder.mkdir(parents=True, exist_ok=True)
    source, driving = folder / "source.png", folder / f"driving-{frames}f.mp4"
    if not source.is_file():
        _ok, png = cv2.imencode(".png", cv2.cvtColor(draw_portrait(seed, 512), cv2.COLOR_RGB2BGR))
        write_atomic(source, png.tobytes())
    if not driving.is_file():
        with VideoWriter(driving, fps) as writer:
            for yaw, mouth, eye in driving_poses(frames):
                writer.write(draw_portrait(seed + 1, 512, yaw=yaw, mouth_open=mouth, eye_open=eye))
    return source, driving
