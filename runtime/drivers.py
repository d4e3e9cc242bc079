"""What drives the animation: a video, a single image, or a motion template, as one stream of frames."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from lpt.models import motion as mm
from lpt.runtime.animate import Driving
from lpt.runtime.outputs import InputKind, driving_kind
from lpt.runtime.templates import MotionFrame

DEFAULT_FPS = 25.0  # the official fallback for images and templates without one


@dataclass
class DrivingItem:
    index: int
    rgb: np.ndarray | None  # a decoded frame (video, image); None for template frames
    motion: Driving | None = None  # template frames carry their motion
    at: Fraction | None = None  # a video frame's time since the first frame; None: the frame rate decides


@dataclass
class DrivingInput:
    path: Path
    kind: InputKind  # "video" (a video file or an animated image) | "image" | "template"
    fps: Fraction | float
    frame_count: int | None  # None when the container does not say
    has_audio: bool = False

    @property
    def single_image(self) -> bool:
        return self.kind == "image"


def _template_driving(frame: MotionFrame, eye: np.ndarray | None, lip: np.ndarray | None) -> Driving:
    def tensor(value: np.ndarray, *shape: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(value, dtype=np.float32).reshape(shape))

    motion = mm.Motion(R=tensor(frame.R, 1, 3, 3), exp=tensor(frame.exp, 1, mm.NUM_KP, 3),
                       scale=tensor(frame.scale, 1, 1), t=tensor(frame.t, 1, 3))
    return Driving(motion, None if eye is None else np.asarray(eye, np.float32).reshape(1, -1),
                   None if lip is None else np.asarray(lip, np.float32).reshape(1, 1))


def open_driving(path: Path, max_frames: int | None) -> tuple[DrivingInput, Iterator[DrivingItem]]:
    """Probe ``path`` (failing at once with one line on a bad file) and give its frames lazily."""
    from lpt.runtime.media import load_image
    from lpt.runtime.sequences import open_frames
    from lpt.runtime.templates import load_template

    kind = driving_kind(path)
    if kind == "template":
        template = load_template(path)
        n = len(template.frames) if max_frames is None else min(max_frames, len(template.frames))
        info = DrivingInput(path, "template", template.fps or DEFAULT_FPS, n)

        def template_items() -> Iterator[DrivingItem]:
            for i in range(n):
                eye = template.eye_ratios[i] if template.eye_ratios is not None else None
                lip = template.lip_ratios[i] if template.lip_ratios is not None else None
                yield DrivingItem(i, None, _template_driving(template.frames[i], eye, lip))

        return info, template_items()
    if kind == "image":
        image = load_image(path)
        return DrivingInput(path, "image", DEFAULT_FPS, 1), iter([DrivingItem(0, image)])
    reader = open_frames(path, max_frames=max_frames)
    info = DrivingInput(path, "video", reader.fps, reader.frame_count, reader.has_audio)
    return info, (DrivingItem(i, frame, at=at) for i, (frame, at) in enumerate(reader.timed()))
