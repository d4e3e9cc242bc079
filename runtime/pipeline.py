"""The full animation: source crop and features once, then per driving frame crop, motion, warp, decode,
paste-back and encode, with decoding, inference and encoding overlapping on three threads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal, TypeVar

import cv2
import numpy as np
from lpt.models import motion as mm
from lpt.runtime.animate import AnimationOptions, Animator, Driving, StageTimes
from lpt.runtime.backend import Backend
from lpt.runtime.drivers import DrivingInput, DrivingItem, open_driving
from lpt.runtime.memory import peak_rss_mib
from lpt.runtime.outputs import check_kinds
from lpt.runtime.video import IMAGE_OUTPUTS

from lpt.errors import LptError

T = TypeVar("T")
AudioChoice = Literal["driving", "source", "none"]
STAGES = ("decode", "crop", "motion", "warp", "generator", "warp+generator", "paste-back", "encode")


@dataclass(frozen=True)
class RunOptions:
    animation: AnimationOptions = field(default_factory=AnimationOptions)
    pasteback: bool = True
    crop: bool = True
    crop_driving: bool = False  # auto-crop driving frames; always on for non-square videos, as upstream
    max_frames: int | None = None
    concat: bool = False  # driving crop | source crop | result, side by side
    audio: AudioChoice = "driving"  # whose sound the video carries (upstream: the driving video's)
    fps: Fraction | None = None  # a constant output rate instead of the driving frames' own timestamps


@dataclass
class RunReport:
    output: Path
    frames: int
    seconds: float  # first driving frame decoded to last frame encoded
    load_seconds: float
    backend: str
    faces: str
    times: StageTimes = field(default_factory=StageTimes)
    peak_rss_mib: float = 0.0
    peak_gpu_mib: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        rows = [("frames", f"{self.frames}"), ("FPS", f"{self.fps:.2f}"), ("load (s)", f"{self.load_seconds:.1f}")]
        per_frame = 1000 / max(1, self.frames)
        rows += [(f"{stage} (ms/frame)", f"{self.times.seconds[stage] * per_frame:.1f}") for stage in STAGES
                 if self.times.counts.get(stage)]
        rows += [("peak host memory (MiB)", f"{self.peak_rss_mib:.0f}")]
        if self.peak_gpu_mib is not None:
            rows += [("peak GPU memory (MiB)", f"{self.peak_gpu_mib:.0f}")]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v:>10}" for k, v in rows)


def peak_gpu_mib(backend: Backend) -> float | None:
    if backend.name == "torch" and getattr(backend, "device", None) is not None and backend.device.type == "cuda":  # type: ignore[attr-defined]
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    used = getattr(backend, "device_memory_mib", None)
    return used() if callable(used) else None


def write_image(path: Path, rgb: np.ndarray) -> None:
    from lpt.files import write_atomic

    ok, data = cv2.imencode(path.suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise LptError(f"{path}: OpenCV cannot encode a {path.suffix} image")
    write_atomic(path, data.tobytes())


PANEL_HEIGHT = 512


def panel(image: np.ndarray | None, height: int = PANEL_HEIGHT) -> np.ndarray:
    """``image`` scaled to ``height`` rows, its aspect ratio kept (the width rounded to an even number, as
    H.264's 4:2:0 needs); None (a template drives from no picture) is a black square."""
    if image is None:
        return np.zeros((height, height, 3), np.uint8)
    rows, cols = image.shape[:2]
    width = max(2, 2 * round(cols * height / rows / 2))
    if (rows, cols) == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if rows > height else cv2.INTER_LINEAR)


def side_by_side(driving: np.ndarray | None, source: np.ndarray, result: np.ndarray) -> np.ndarray:
    """Driving crop | source crop | result at one height (the official _concat layout), each panel keeping
    its own aspect ratio."""
    return np.concatenate([panel(driving), panel(source), panel(result)], axis=1)


def audio_file(choice: AudioChoice, source: Path, source_has_audio: bool, driving: DrivingInput) -> Path | None:
    """The file whose audio the output copies, or None for a silent video."""
    if choice == "source":
        return source if source_has_audio else None
    if choice == "driving":
        return driving.path if driving.kind == "video" and driving.has_audio else None
    return None


class Run:
    """One source against one driving input, with every model loaded once."""

    def __init__(self, backend: Backend, cropper: object, options: RunOptions,
                 progress: Callable[[int, int | None], None] | None = None,
                 announce: Callable[[], None] | None = None) -> None:
        self.backend = backend
        self.cropper = cropper
        self.options = options
        self.times = StageTimes()
        self.animator = Animator(backend, options.animation, self.times)
        self.progress = progress or (lambda done, total: None)
        self.announce = announce or (lambda: None)  # says which backend and faces run, once the inputs are known good

    def load(self) -> float:
        self.announce()
        start = time.perf_counter()
        for graph in self.options.animation.graphs():
            self.backend.session(graph)
        return time.perf_counter() - start

    def _driving_crop(self, item: DrivingItem, info: DrivingInput, previous: object | None) -> object:
        rgb = item.rgb
        assert rgb is not None
        square = rgb.shape[0] == rgb.shape[1]
        label = f"driving frame {item.index} of {info.path.name}" if info.kind == "video" else f"driving {info.path.name}"
        if self.options.crop and (self.options.crop_driving or not square):
            return self.cropper.crop_driving(rgb, previous, label=label)  # type: ignore[attr-defined]
        return self.cropper.resize_only(rgb, previous, label=label)  # type: ignore[attr-defined]

    def driving_frame(self, item: DrivingItem, info: DrivingInput, previous: object | None) -> tuple[Driving, object | None]:
        """A driving item's motion (and eye/lip ratios when its crop has landmarks), with the crop it came from."""
        if item.motion is not None:
            return item.motion, None
        with self.times("crop"):
            crop = self._driving_crop(item, info, previous)
        frame = Driving(self.animator.motion(crop.image_256))  # type: ignore[attr-defined]
        if crop.landmarks is not None:  # type: ignore[attr-defined]
            lmk = np.asarray(crop.landmarks, np.float32)[None]  # type: ignore[attr-defined]
            frame.eye_ratio, frame.lip_ratio = mm.eye_close_ratio(lmk), mm.lip_close_ratio(lmk)
        return frame, crop

    def animate(self, source_path: Path, driving_path: Path, output: Path) -> RunReport:
        from lpt.runtime.media import load_image
        from lpt.runtime.pasteback import PasteBack
        opts = self.options
        # Inputs are read and checked before the networks load, so a bad file fails in a second.
        source_rgb = load_image(source_path)
        info, items = open_driving(driving_path, opts.max_frames)
        check_kinds("image", info.kind, output)
        with self.times("crop"):
            crop = self.cropper.crop_source(source_rgb, label=f"source {source_path.name}")  # type: ignore[attr-defined]
        if opts.animation.retargeting and crop.landmarks is None:
            raise LptError("eye/lip retargeting needs landmarks: put liveportrait/landmark.onnx and the insightface "
                           "models in the weights folder")
        load_seconds = self.load()
        source = self.animator.prepare_source(crop.image_256, crop.landmarks)
        paste = None
        if opts.pasteback and opts.crop and opts.animation.stitching:
            paste = PasteBack(source_rgb, crop.M_c2o)
        state: dict[str, object] = {"first": None, "crop": None}

        def work(item: DrivingItem) -> np.ndarray:
            frame, dcrop = self.driving_frame(item, info, state["crop"])
            state["crop"] = dcrop
            driving_crop = None if dcrop is None else dcrop.image_256  # type: ignore[attr-defined]
            if state["first"] is None:
                state["first"] = frame
            first = None if info.single_image or not opts.animation.relative else state["first"]
            result = self.animator.animate(source, frame, first)  # type: ignore[arg-type]
            with self.times("paste-back"):
                out = paste.paste(result) if paste is not None else result
            if opts.concat:
                out = side_by_side(driving_crop, crop.image_256, out)
            return out

        start = time.perf_counter()
        done = self.write(items, work, info, source_path, output)
        return self.report(output, done, start, load_seconds)

    def write(self, items: Iterator[DrivingItem], work: Callable[[DrivingItem], np.ndarray], info: DrivingInput,
              source_path: Path, output: Path) -> int:
        """``work`` on the driving items, written to ``output``: one image, or the video (the frames timed as
        the options say, the chosen sound); the number of frames written."""
        opts = self.options
        if output.suffix.lower() in IMAGE_OUTPUTS:
            frame = work(next(items))
            with self.times("encode"):
                write_image(output, frame)
            return 1
        total = info.frame_count if opts.max_frames is None or info.frame_count is None else min(info.frame_count, opts.max_frames)
        done = self.encode(items, work, output, opts.fps or info.fps, audio_file(opts.audio, source_path, False, info),
                           total, at=None if opts.fps else (lambda item: item.at))
        if done == 0:
            raise LptError(f"{info.path}: no driving frame was read")
        return done

    def encode(self, items: Iterable[T], work: Callable[[T], np.ndarray], output: Path, fps: Fraction | float,
               audio_from: Path | None, total: int | None, at: Callable[[T], Fraction | None] | None = None) -> int:
        """Decode (``items``), ``work`` and encode overlapping, timed per stage; the number of frames written.
        ``at`` gives an item's output time (None: the frame rate places it)."""
        time_of = at or (lambda item: None)
        from lpt.runtime.streaming import stream
        from lpt.runtime.video import VideoWriter

        def decoded() -> Iterator[T]:
            iterator = iter(items)
            while True:
                with self.times("decode"):
                    item = next(iterator, None)
                if item is None:
                    return
                yield item

        done = 0
        with VideoWriter(output, fps, audio_from=audio_from) as writer:
            def sink(frame_at: tuple[np.ndarray, Fraction | None]) -> None:
                nonlocal done
                with self.times("encode"):
                    writer.write(*frame_at)
                done += 1
                self.progress(done, total)

            stream(decoded(), lambda item: (work(item), time_of(item)), sink)
        return done

    def report(self, output: Path, frames: int, start: float, load_seconds: float) -> RunReport:
        return RunReport(output, frames, time.perf_counter() - start, load_seconds, self.backend.describe(),
                         self.cropper.describe(), self.times, peak_rss_mib() or 0.0, peak_gpu_mib(self.backend))  # type: ignore[attr-defined]
