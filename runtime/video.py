"""Video in and out, in-process with PyAV (FFmpeg's libraries): no ffmpeg executable needed.

``VideoReader`` decodes RGB frames with a bounded frame count; ``VideoWriter`` encodes browser-playable
H.264 (libx264, yuv420p, ``+faststart``) at the driving video's exact (rational) frame rate, copies the
driving video's audio, and writes to a temporary name that only ``close()`` renames into place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from lpt.runtime.media import MediaError, check_input_file

if TYPE_CHECKING:
    from typing_extensions import Self

DEFAULT_MAX_FRAMES = 10_000
FALLBACK_FPS = Fraction(25)  # the official pipeline's fps when a video does not declare one
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}  # ISO media files: H.264, AAC, faststart


def _av() -> Any:
    import av  # imported on use: `lpt --help` must not load FFmpeg

    return av


def _decode_errors() -> tuple[type[BaseException], ...]:
    # FFmpeg reports broken input as FFmpegError; PyAV turns some malformed fields into the rest (found by
    # tests/test_fuzz.py: e.g. UnicodeDecodeError, a ValueError, from corrupt metadata).
    return _av().error.FFmpegError, ValueError, TypeError, OverflowError, ZeroDivisionError, IndexError


def as_fraction(fps: Fraction | float) -> Fraction:
    """An exact frame rate: 29.97002997 becomes 30000/1001. ``ValueError`` unless finite and positive."""
    rate = Fraction(fps).limit_denominator(10_000) if isinstance(fps, float) else Fraction(fps)
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    return rate


class VideoReader:
    """The frames of a video file as (H, W, 3) uint8 RGB arrays, display rotation applied; one pass.

    ``max_frames=None`` reads the whole video but refuses one longer than ``DEFAULT_MAX_FRAMES``;
    ``max_frames=N`` reads the first N frames of a video of any length.
    """

    def __init__(self, path: Path | str, max_frames: int | None = None) -> None:
        av = _av()
        self.path = Path(path)
        check_input_file(self.path, "video")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        self._limit = max_frames if max_frames is not None else DEFAULT_MAX_FRAMES
        self._limit_is_default = max_frames is None
        try:
            self._container = av.open(str(self.path), mode="r", metadata_errors="replace")
        except _decode_errors() as exc:
            raise MediaError(f"video {self.path} cannot be opened as a video: {_reason(exc)}") from None
        try:
            self._open_stream()
        except BaseException:
            self._container.close()
            raise

    def _open_stream(self) -> None:
        if not self._container.streams.video:
            raise MediaError(f"video {self.path} has no video frames (no video stream)")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._stream = stream
        rate = stream.average_rate or stream.guessed_rate
        self.fps: Fraction = Fraction(rate) if rate and rate > 0 else FALLBACK_FPS
        declared = self._declared_frames()
        if self._limit_is_default and declared > self._limit:
            raise MediaError(f"video {self.path} has about {declared} frames, more than the default maximum "
                             f"{self._limit}: give a frame limit (e.g. --max-frames) to read it")
        # As the container declares it (an estimate when only the duration is known; 0 when unknown).
        self.frame_count: int = min(declared, self._limit)
        self.has_audio: bool = bool(self._container.streams.audio)
        self._frames = self._decode()
        first = next(self._frames, None)
        if first is None:
            raise MediaError(f"video {self.path} has no video frames (none could be decoded)")
        self._first: np.ndarray | None = first
        self.height, self.width = first.shape[:2]

    def _declared_frames(self) -> int:
        if self._stream.frames > 0:
            return int(self._stream.frames)
        seconds = None
        if self._stream.duration and self._stream.time_base:
            seconds = self._stream.duration * self._stream.time_base
        elif self._container.duration:
            seconds = Fraction(self._container.duration, 1_000_000)
        return round(seconds * self.fps) if seconds else 0

    def _decode(self) -> Iterator[np.ndarray]:
        index = 0
        errors = _decode_errors()  # bound now: at interpreter exit an unclosed generator can no longer import
        try:
            for frame in self._container.decode(self._stream):
                rgb = frame.to_ndarray(format="rgb24")
                quarter_turns = round((frame.rotation or 0) / 90) % 4  # counterclockwise, as the display matrix says
                yield np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb
                index += 1
        except errors as exc:
            raise MediaError(f"video {self.path}: frame {index} cannot be decoded: {_reason(exc)}") from None

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._first is None:
            raise RuntimeError(f"{self.path} was already read: a VideoReader makes one pass")
        first, self._first = self._first, None
        yield first
        count = 1
        for frame in self._frames:
            if count == self._limit:
                if self._limit_is_default:
                    raise MediaError(f"video {self.path} has more than the default maximum of {self._limit} "
                                     "frames: give a frame limit (e.g. --max-frames) to read it")
                return
            yield frame
            count += 1

    def close(self) -> None:
        self._frames.close()
        self._container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


IMAGE_OUTPUTS = (".jpg", ".jpeg", ".png")  # a single frame: a driving image animates one


def check_output_path(path: Path | str) -> Path:
    """``MediaError`` unless a video (or, for a driving image, an image) can be written at ``path``: a known
    suffix, an existing writable folder, not a folder itself. Call it before any work, so a bad output path
    fails in a second, not after."""
    path = Path(path)
    if path.suffix.lower() not in (*OUTPUT_FORMATS, *IMAGE_OUTPUTS):
        raise MediaError(f"output {path}: the name must end in {', '.join(OUTPUT_FORMATS)} (H.264 video) "
                         f"or {', '.join(IMAGE_OUTPUTS)} (one frame, for a driving image)")
    if path.is_dir():
        raise MediaError(f"output {path} is a folder; give a file name such as {path / 'result.mp4'}")
    folder = path.parent
    if not folder.exists():
        raise MediaError(f"output folder {folder} does not exist")
    if not folder.is_dir():
        raise MediaError(f"output folder {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise MediaError(f"output folder {folder} is not writable: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)
    return path


class VideoWriter:
    """Encodes RGB frames to H.264 at ``path`` (see the module doc). Use as a context manager: on an
    exception the temporary file is removed and nothing appears at ``path``.

    Odd frame sizes are padded by one row/column (repeating the edge), as yuv420p needs even sizes.
    """

    def __init__(self, path: Path | str, fps: Fraction | float, audio_from: Path | str | None = None,
                 *, crf: int = 18, preset: str = "medium") -> None:
        self.path = check_output_path(path)
        self.fps = as_fraction(fps)
        self.frames_written = 0
        self._crf, self._preset = crf, preset
        self._audio_from = Path(audio_from) if audio_from is not None else None
        self._size: tuple[int, int] | None = None
        self._container: Any = None
        self._video: Any = None
        self._audio: _AudioCopy | None = None
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        try:
            self._container = _av().open(tmp, mode="w", format=OUTPUT_FORMATS[self.path.suffix.lower()],
                                         options={"movflags": "+faststart"})
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame; every frame must have the first frame's size."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        if self._size is None:
            self._start(width, height)
        elif (width, height) != self._size:
            raise ValueError(f"frame {self.frames_written} is {width}x{height}, the video is {self._size[0]}x{self._size[1]}")
        if height % 2 or width % 2:
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        video_frame = _av().VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.fps
        self._container.mux(self._video.encode(video_frame))
        self.frames_written += 1
        if self._audio is not None:
            self._audio.copy_until(float(self.frames_written / self.fps))

    def _start(self, width: int, height: int) -> None:
        self._size = (width, height)
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / self.fps
        stream.options = {"crf": str(self._crf), "preset": self._preset}
        stream.thread_type = "AUTO"
        self._video = stream
        if self._audio_from is not None:
            self._audio = _AudioCopy.open(self._audio_from, self._container)

    def close(self) -> Path:
        """Finish the file and move it to ``path``; the final path."""
        if self._container is None:
            return self.path
        try:
            if self._video is None:
                raise ValueError(f"no frames were written to {self.path}")
            self._container.mux(self._video.encode(None))
            if self._audio is not None:
                self._audio.finish(float(self.frames_written / self.fps))
            self._container.close()
            self._container = None
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the video from other users
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary file; nothing appears at ``path``."""
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001, S110 - the file is deleted next; its trailer no longer matters
                pass
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# Audio copied as it is: what MP4 holds and every browser plays. Anything else (PCM, Vorbis, Opus, AC-3...)
# is transcoded to AAC.
_MP4_AUDIO_CODECS = frozenset({"aac", "mp3"})


class _AudioCopy:
    """Moves the driving video's first audio stream into the output, interleaved with the video as it is
    written and cut where the video ends (as ``ffmpeg -shortest``); timed from the driving video's first
    video frame."""

    def __init__(self, path: Path, source: Any, output: Any) -> None:
        self._path = path
        self._source = source
        self._input = source.streams.audio[0]
        video = source.streams.video[0] if source.streams.video else None
        start = video.start_time if video is not None and video.start_time is not None else 0
        self._offset = float(start * video.time_base) if video is not None and video.time_base else 0.0
        self._remux = self._input.codec_context.name in _MP4_AUDIO_CODECS
        if self._remux:
            self._output = output.add_stream_from_template(self._input)
        else:
            self._output = output.add_stream("aac", rate=self._input.codec_context.sample_rate)
            self._output.layout = self._input.codec_context.layout
        self._container = output
        self._packets = source.demux(self._input)
        self._pending: Any = None
        self._exhausted = False

    @classmethod
    def open(cls, path: Path, output: Any) -> _AudioCopy | None:
        """A copier for ``path``'s audio, or None when it has none (or cannot be read: video still matters more)."""
        try:
            source = _av().open(str(path), mode="r", metadata_errors="replace")
        except _decode_errors():
            return None
        if not source.streams.audio:
            source.close()
            return None
        try:
            return cls(path, source, output)
        except _decode_errors() as exc:
            source.close()
            raise MediaError(f"the audio of {path} cannot be copied: {_reason(exc)}") from None

    def _seconds(self, packet: Any) -> float:
        return float(packet.pts * packet.time_base) - self._offset

    def copy_until(self, end_seconds: float, *, last: bool = False) -> None:
        """Mux every audio packet that starts before ``end_seconds`` of output time (then flush if ``last``)."""
        try:
            self._copy_until(end_seconds)
            if last and not self._remux:
                self._container.mux(self._output.encode(None))
        except _decode_errors() as exc:
            raise MediaError(f"the audio of {self._path} cannot be copied: {_reason(exc)}") from None

    def _copy_until(self, end_seconds: float) -> None:
        while not self._exhausted:
            packet = self._pending if self._pending is not None else self._next_packet()
            self._pending = None
            if packet is None:
                self._exhausted = True
                return
            start = self._seconds(packet)
            if start >= end_seconds:
                self._pending = packet
                return
            if start >= 0:
                self._mux(packet)

    def _next_packet(self) -> Any:
        for packet in self._packets:
            if packet.pts is not None and packet.size > 0:
                return packet
        return None

    def _mux(self, packet: Any) -> None:
        shift = round(self._offset / packet.time_base)
        if self._remux:
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self._output
            self._container.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = frame.pts - shift if frame.pts is not None else None
            self._container.mux(self._output.encode(frame))

    def finish(self, end_seconds: float) -> None:
        try:
            self.copy_until(end_seconds, last=True)
        finally:
            self.close()

    def close(self) -> None:
        self._source.close()
