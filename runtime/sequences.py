"""Frame sequences read one way, whatever holds them: a video file (PyAV) or an image file of several
frames (animated GIF, WebP or PNG, multi-page TIFF; Pillow, which decodes all of them, where FFmpeg reads
no animated WebP and only the first page of a TIFF).

Depends on: Pillow, numpy, ``lpt.runtime.media`` and ``lpt.runtime.video``.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from lpt.runtime.media import MAX_IMAGE_BYTES, MediaError, check_header, check_input_file, composite, read_header
from lpt.runtime.video import DEFAULT_MAX_FRAMES, FALLBACK_FPS, VideoReader
from PIL import Image, ImageSequence

if TYPE_CHECKING:
    from typing_extensions import Self


class FrameSequence(Protocol):
    """What the pipeline reads frames from: ``VideoReader`` and ``ImageSequenceReader``."""

    path: Path
    fps: Fraction
    frame_count: int
    has_audio: bool

    def __iter__(self) -> Iterator[np.ndarray]: ...

    def timed(self) -> Iterator[tuple[np.ndarray, Fraction]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *_exc: object) -> None: ...


def _frame_seconds(frame: Image.Image) -> Fraction | None:
    """How long a frame is shown, from its ``duration`` (milliseconds), None when the file does not say."""
    duration = frame.info.get("duration")
    return Fraction(int(duration), 1000) if isinstance(duration, (int, float)) and duration > 0 else None


def _rgb(frame: Image.Image) -> np.ndarray:
    if frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info:
        return composite(np.asarray(frame.convert("RGBA")))
    return np.ascontiguousarray(np.asarray(frame.convert("RGB")))


class ImageSequenceReader:
    """The frames of an animated image as (H, W, 3) uint8 RGB arrays, transparency composited over white;
    each frame's time is the sum of the display durations before it (``FALLBACK_FPS`` where none is given).
    ``max_frames`` as for ``VideoReader``."""

    has_audio = False
    start_seconds = Fraction(0)

    def __init__(self, path: Path | str, max_frames: int | None = None) -> None:
        self.path = Path(path)
        size = check_input_file(self.path, "video")
        if size > MAX_IMAGE_BYTES:
            raise MediaError(f"video {self.path} is {size / 2**20:.0f} MiB, more than the "
                             f"{MAX_IMAGE_BYTES / 2**20:.0f} MiB allowed for an image file")
        header = check_header(self.path, read_header(self.path))
        self.width, self.height = header.size
        if max_frames is None and header.frames > DEFAULT_MAX_FRAMES:
            raise MediaError(f"video {self.path} has {header.frames} frames, more than the default maximum "
                             f"{DEFAULT_MAX_FRAMES}: give a frame limit (e.g. --max-frames) to read it")
        self.frame_count = header.frames if max_frames is None else min(max_frames, header.frames)
        try:
            self._image = Image.open(self.path)
            durations = [_frame_seconds(f) for f in ImageSequence.Iterator(self._image)][:self.frame_count]
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types on corrupt frames
            raise MediaError(f"video {self.path}: its frames cannot be read: {exc}") from None
        known = [d for d in durations if d is not None]
        self.fps = len(known) / sum(known) if known and sum(known) > 0 else FALLBACK_FPS
        self._durations = [d if d is not None else 1 / self.fps for d in durations]

    def timed(self) -> Iterator[tuple[np.ndarray, Fraction]]:
        at, index = Fraction(0), 0
        try:
            for index, frame in enumerate(ImageSequence.Iterator(self._image)):
                if index == self.frame_count:
                    return
                yield _rgb(frame), at
                at += self._durations[index]
        except (OSError, ValueError, EOFError) as exc:
            raise MediaError(f"video {self.path}: frame {index} cannot be decoded: {exc}") from None

    def __iter__(self) -> Iterator[np.ndarray]:
        return (rgb for rgb, _ in self.timed())

    def close(self) -> None:
        self._image.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_frames(path: Path | str, max_frames: int | None = None) -> FrameSequence:
    """A reader for ``path``, chosen by content: an image file of several frames, or a video file."""
    header = read_header(Path(path)) if Path(path).is_file() else None
    if header is not None and header.is_sequence:
        return ImageSequenceReader(path, max_frames)
    return VideoReader(path, max_frames)
