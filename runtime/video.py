"""Video in and out, in-process with PyAV (FFmpeg's libraries): no ffmpeg executable needed.

``VideoReader`` decodes RGB frames with a bounded frame count, each with its exact presentation time;
``VideoWriter`` encodes browser-playable H.264 (libx264, yuv420p, ``+faststart``) either at a constant
(rational) frame rate or at the time given for each frame (a variable-frame-rate driving video keeps its
timing), copies the driving video's audio sample-exact from its first sample, cut where the video ends, and
writes to a temporary name that only ``close()`` renames into place.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

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
    """The frames of a video file as (H, W, 3) uint8 RGB arrays, display rotation applied; one pass, by
    iterating or by ``timed()``. ``start_seconds`` is the first frame's time in the file.

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
        self._first: tuple[np.ndarray, Fraction | None] | None = first
        self.height, self.width = first[0].shape[:2]
        # The first frame's presentation time in the file (0 when unknown): output time 0 shows it.
        self.start_seconds: Fraction = first[1] if first[1] is not None else Fraction(0)

    def _declared_frames(self) -> int:
        if self._stream.frames > 0:
            return int(self._stream.frames)
        seconds = None
        if self._stream.duration and self._stream.time_base:
            seconds = self._stream.duration * self._stream.time_base
        elif self._container.duration:
            seconds = Fraction(self._container.duration, 1_000_000)
        return round(seconds * self.fps) if seconds else 0

    def _decode(self) -> Iterator[tuple[np.ndarray, Fraction | None]]:
        """Each frame's RGB and presentation time in seconds (None without a pts)."""
        index = 0
        errors = _decode_errors()  # bound now: at interpreter exit an unclosed generator can no longer import
        try:
            for frame in self._container.decode(self._stream):
                rgb = frame.to_ndarray(format="rgb24")
                quarter_turns = round((frame.rotation or 0) / 90) % 4  # counterclockwise, as the display matrix says
                rgb = np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb
                time_base = frame.time_base or self._stream.time_base
                yield rgb, (frame.pts * Fraction(time_base) if frame.pts is not None and time_base else None)
                index += 1
        except errors as exc:
            raise MediaError(f"video {self.path}: frame {index} cannot be decoded: {_reason(exc)}") from None

    def timed(self) -> Iterator[tuple[np.ndarray, Fraction]]:
        """Each frame with its presentation time: exact seconds since the first frame (pts × time base), or
        frame index / fps for a frame without a pts. The same single pass as iterating."""
        if self._first is None:
            raise RuntimeError(f"{self.path} was already read: a VideoReader makes one pass")
        first, self._first = self._first, None
        for index, (rgb, seconds) in enumerate(chain([first], self._frames)):
            if index == self._limit:
                if self._limit_is_default:
                    raise MediaError(f"video {self.path} has more than the default maximum of {self._limit} "
                                     "frames: give a frame limit (e.g. --max-frames) to read it")
                return
            yield rgb, seconds - self.start_seconds if seconds is not None else index / self.fps

    def __iter__(self) -> Iterator[np.ndarray]:
        for rgb, _ in self.timed():
            yield rgb

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


TIMED_TIME_BASE = Fraction(1, 90_000)  # MPEG's clock: frames given a time keep it to 1/90000 s


class VideoWriter:
    """Encodes RGB frames to H.264 at ``path`` (see the module doc). Use as a context manager: on an
    exception the temporary file is removed and nothing appears at ``path``.

    A frame is shown at the time ``write(frame, at)`` gives (kept to ``TIMED_TIME_BASE``) or, when no frame
    gives one, at frame number / ``fps``; ``fps`` is the stream's declared (average) rate either way. The
    last frame lasts as long as the one before it (``1 / fps`` when it is the only one): the video, and the
    audio copied from ``audio_from``, end there. That audio is aligned so that its time ``audio_start``
    (default: its first video frame's as its container says; a ``VideoReader``'s ``start_seconds``) plays
    at output time 0.

    Odd frame sizes are padded by one row/column (repeating the edge), as yuv420p needs even sizes.
    """

    def __init__(self, path: Path | str, fps: Fraction | float, audio_from: Path | str | None = None,
                 *, crf: int = 18, preset: str = "medium", audio_start: Fraction | None = None) -> None:
        self.path = check_output_path(path)
        self.fps = as_fraction(fps)
        self.frames_written = 0
        self._crf, self._preset = crf, preset
        self._audio_from = Path(audio_from) if audio_from is not None else None
        self._audio_start = audio_start
        self._size: tuple[int, int] | None = None
        self._timed = False
        self._time_base = 1 / self.fps
        self._last_pts: int | None = None
        self._end = 0  # where the video written so far ends, in ticks of _time_base
        self._durations: dict[int, int] = {}  # frame pts -> its duration, until its packet is muxed
        self._waiting: list[Any] = []  # encoded packets whose frame's duration is not known yet
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

    def write(self, frame: np.ndarray, at: Fraction | float | None = None) -> None:
        """Append one (H, W, 3) uint8 RGB frame, shown ``at`` seconds after the start of the output (None:
        frame number / fps). Every frame has the first frame's size, and a time exactly when the first had
        one; times strictly increase. ``ValueError`` otherwise."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        if self._size is None:
            self._start(width, height, timed=at is not None)
        elif (width, height) != self._size:
            raise ValueError(f"frame {self.frames_written} is {width}x{height}, the video is {self._size[0]}x{self._size[1]}")
        pts = self._pts(at)
        if height % 2 or width % 2:
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        video_frame = _av().VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts, video_frame.time_base = pts, self._time_base
        self._place(pts)
        self._mux_video(self._video.encode(video_frame))
        self.frames_written += 1
        if self._audio is not None:
            self._audio.copy_until(pts * self._time_base)

    def _pts(self, at: Fraction | float | None) -> int:
        """The frame's time in ticks of the video's time base."""
        index = self.frames_written
        if (at is not None) != self._timed:
            raise ValueError(f"frame {index} {'has a' if at is not None else 'has no'} time (at=), frame 0 "
                             f"{'had none' if at is not None else 'had one'}: give a time for every frame or for none")
        if at is None:
            return index
        pts = round(Fraction(at) / self._time_base)
        if pts < 0:
            raise ValueError(f"frame {index} is at {float(at):.6f} s, before the start of the video")
        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"frame {index} is at {float(at):.6f} s, not after frame {index - 1} at "
                             f"{float(self._last_pts * self._time_base):.6f} s")
        return pts

    def _place(self, pts: int) -> None:
        """The previous frame lasts until ``pts``; this one as long as that (``1 / fps`` if the first)."""
        if self._last_pts is None:
            interval = max(1, round(1 / self.fps / self._time_base))
        else:
            interval = pts - self._last_pts
            self._durations[self._last_pts] = interval
        self._end, self._last_pts = pts + interval, pts

    def _start(self, width: int, height: int, *, timed: bool) -> None:
        self._size = (width, height)
        self._timed = timed
        self._time_base = TIMED_TIME_BASE if timed else 1 / self.fps
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = self._time_base
        stream.options = {"crf": str(self._crf), "preset": self._preset}
        stream.thread_type = "AUTO"
        self._video = stream
        if self._audio_from is not None:
            self._audio = _AudioCopy.open(self._audio_from, self._container, self._audio_start)

    def _mux_video(self, packets: list[Any]) -> None:
        """Mux the encoded packets, in order, once their frame's duration is known (when the next frame
        came): the muxer ends the video at the largest pts + duration."""
        self._waiting.extend(packets)
        ready = 0
        while ready < len(self._waiting) and self._waiting[ready].pts in self._durations:
            packet = self._waiting[ready]
            packet.duration = self._durations.pop(packet.pts)
            ready += 1
        self._container.mux(self._waiting[:ready])
        del self._waiting[:ready]

    def _finish_video(self) -> None:
        if self._last_pts is not None:
            self._durations[self._last_pts] = self._end - self._last_pts
        self._mux_video(self._video.encode(None))

    def close(self) -> Path:
        """Finish the file and move it to ``path``; the final path."""
        if self._container is None:
            return self.path
        try:
            if self._video is None:
                raise ValueError(f"no frames were written to {self.path}")
            self._finish_video()
            if self._audio is not None:
                self._audio.finish(self._end * self._time_base)
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


class _Piece(NamedTuple):
    """A run of audio placed on the output's sample grid: a packet to remux or a decoded frame to encode."""

    start: int  # its first sample (negative: before output time 0)
    samples: int
    data: Any

    @property
    def end(self) -> int:
        return self.start + self.samples


class _SampleClock:
    """Places pieces of audio on the output's sample grid: each follows the previous one to the sample,
    unless its timestamp says it starts later (a gap in the input) by more than the timestamps' resolution,
    which may be coarser than a sample (Matroska's is a millisecond)."""

    def __init__(self, rate: int, start: Fraction) -> None:
        self._rate = rate
        self._start = start  # the input time that output time 0 shows
        self._next: int | None = None

    def place(self, seconds: Fraction | None, time_base: Fraction, samples: int, priming: int = 0) -> int:
        """The output sample where a piece of ``samples`` stamped ``seconds`` (to ``time_base``) starts.
        Decoders drop its first ``priming`` samples and stamp the next one ``seconds + priming`` rounded to
        ``time_base``: that sample goes to that time less ``start``."""
        expected = self._next if self._next is not None else round(-self._start * self._rate)
        stamp = expected
        if seconds is not None:
            kept = seconds + round(Fraction(priming, self._rate) / time_base) * time_base
            stamp = round((kept - self._start) * self._rate) - priming
        tolerance = max(1, math.ceil(time_base * self._rate))
        start = stamp if self._next is None or stamp - expected > tolerance else expected
        self._next = start + samples
        return start


_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def _known_layout(layout: Any) -> Any:
    """``layout``, or the usual one for its channel count where it names no channels (PCM in Matroska)."""
    unnamed = all(channel.name == "NONE" for channel in layout.channels)
    return _DEFAULT_LAYOUTS.get(len(layout.channels), layout) if unnamed else layout


def _video_start(source: Any) -> Fraction:
    """The first video frame's time in ``source`` as its container says (0 when unknown)."""
    video = source.streams.video[0] if source.streams.video else None
    if video is None or video.start_time is None or not video.time_base:
        return Fraction(0)
    return video.start_time * Fraction(video.time_base)


def _skipped(packet: Any) -> tuple[int, int]:
    """The samples a decoder drops at the start and the end of ``packet``: FFmpeg's skip-samples side data,
    the priming and padding that the demuxer read from an edit list, a codec delay or a discard padding."""
    if not packet.has_sidedata("skip_samples"):
        return 0, 0
    data = bytes(packet.get_sidedata("skip_samples"))
    return int.from_bytes(data[0:4], "little"), int.from_bytes(data[4:8], "little")


def _audio_frame(like: Any, data: np.ndarray, pts: int) -> Any:
    """An audio frame of ``like``'s format holding ``data`` (as ``to_ndarray`` gives), at sample ``pts``."""
    frame = _av().AudioFrame.from_ndarray(np.ascontiguousarray(data), format=like.format.name,
                                          layout=like.layout.name)
    frame.sample_rate = like.sample_rate
    frame.pts, frame.time_base = pts, Fraction(1, like.sample_rate)
    return frame


def _samples(frame: Any, start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of an audio frame, as ``to_ndarray`` lays them out (packed: interleaved)."""
    step = 1 if frame.format.is_planar else len(frame.layout.channels)
    return frame.to_ndarray()[:, start * step:stop * step]


def _silence(like: Any, samples: int) -> np.ndarray:
    """``samples`` of silence laid out as ``_samples`` gives ``like``'s."""
    one = _samples(like, 0, 1)
    zero = 128 if one.dtype == np.uint8 else 0  # unsigned 8-bit PCM is offset
    return np.full((one.shape[0], one.shape[1] * samples), zero, one.dtype)


class _AudioCopy:
    """Moves the driving video's first audio stream into the output, interleaved with the video as it is
    written and cut where the video ends (as ``ffmpeg -shortest``); output time 0 is the input's ``start``.

    Sample-exact from the first sample: remuxed packets keep their priming (and any audio before ``start``)
    at negative times, which MP4 stores as an edit list that decoders apply; transcoded audio is decoded (the
    decoder drops the priming), cut to the video's span to the sample, and encoded to AAC, whose own priming
    the muxer stores the same way."""

    def __init__(self, path: Path, source: Any, output: Any, start: Fraction | None) -> None:
        self._path = path
        self._source = source
        self._input = source.streams.audio[0]
        self._rate: int = self._input.codec_context.sample_rate
        self._remux = self._input.codec_context.codec.canonical_name in _MP4_AUDIO_CODECS  # not the decoder's
        if self._remux:
            self._output = output.add_stream_from_template(self._input)
        else:
            self._output = output.add_stream("aac", rate=self._rate)
            self._output.layout = _known_layout(self._input.codec_context.layout)
        self._container = output
        self._clock = _SampleClock(self._rate, start if start is not None else _video_start(source))
        self._pieces = self._packets() if self._remux else self._frames()
        self._pending: _Piece | None = None
        self._encoded = 0  # transcoding: the output sample the encoder has reached

    @classmethod
    def open(cls, path: Path, output: Any, start: Fraction | None = None) -> _AudioCopy | None:
        """A copier for ``path``'s audio, or None when it has none (or cannot be read: video still matters more)."""
        try:
            source = _av().open(str(path), mode="r", metadata_errors="replace")
        except _decode_errors():
            return None
        if not source.streams.audio:
            source.close()
            return None
        try:
            return cls(path, source, output, start)
        except _decode_errors() as exc:
            source.close()
            raise MediaError(f"the audio of {path} cannot be copied: {_reason(exc)}") from None

    def _packets(self) -> Iterator[_Piece]:
        """Remuxing: each packet with the samples it codes (its priming included, its padding not)."""
        frame_size = self._input.codec_context.frame_size
        for packet in self._source.demux(self._input):
            if packet.pts is None or packet.size == 0:
                continue
            priming, padding = _skipped(packet)
            time_base = Fraction(packet.time_base)
            samples = (frame_size or round((packet.duration or 0) * time_base * self._rate)) - padding
            yield _Piece(self._clock.place(packet.pts * time_base, time_base, samples, priming), samples, packet)

    def _frames(self) -> Iterator[_Piece]:
        """Transcoding: each decoded frame (the decoder dropped the priming and padding)."""
        for packet in self._source.demux(self._input):
            for frame in packet.decode():  # the last, empty packet flushes the decoder
                time_base = Fraction(frame.time_base or self._input.time_base)
                seconds = frame.pts * time_base if frame.pts is not None else None
                yield _Piece(self._clock.place(seconds, time_base, frame.samples), frame.samples, frame)

    def copy_until(self, seconds: Fraction, *, last: bool = False) -> None:
        """Mux the audio that ends by ``seconds`` of output time; when ``last``, all that starts before it,
        cut there, and flush."""
        try:
            self._copy_until(round(seconds * self._rate), last=last)
            if last and not self._remux:
                self._container.mux(self._output.encode(None))
        except _decode_errors() as exc:
            raise MediaError(f"the audio of {self._path} cannot be copied: {_reason(exc)}") from None

    def _copy_until(self, end: int, *, last: bool) -> None:
        while True:
            piece = self._pending if self._pending is not None else next(self._pieces, None)
            self._pending = None
            if piece is None:
                return
            if piece.start >= end or (piece.end > end and not last):
                self._pending = piece
                return
            self._mux(piece, min(piece.samples, end - piece.start))

    def _mux(self, piece: _Piece, samples: int) -> None:
        """Mux the first ``samples`` of ``piece``."""
        if self._remux:
            packet = piece.data  # its data as it is; the last one's shorter duration ends MP4's edit list
            packet.pts = packet.dts = piece.start
            packet.duration = samples
            packet.time_base = Fraction(1, self._rate)
            packet.stream = self._output
            self._container.mux(packet)
            return
        frame, skip = piece.data, max(0, -piece.start)  # samples before output time 0 are not the video's
        if skip >= samples:
            return
        start = piece.start + skip
        if start > self._encoded:  # a gap in the input (or audio starting late): silence keeps it in place
            self._container.mux(self._output.encode(_audio_frame(frame, _silence(frame, start - self._encoded), self._encoded)))
        self._container.mux(self._output.encode(_audio_frame(frame, _samples(frame, skip, samples), start)))
        self._encoded = piece.start + samples

    def finish(self, end_seconds: Fraction) -> None:
        try:
            self.copy_until(end_seconds, last=True)
        finally:
            self.close()

    def close(self) -> None:
        self._source.close()
