"""Video reading and writing, audio copy, and streaming with flat memory and no hangs."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import psutil
import pytest
from lpt.runtime import video as video_module
from lpt.runtime.media import MediaError
from lpt.runtime.streaming import stream
from lpt.runtime.video import VideoReader, VideoWriter, check_output_path

NTSC = Fraction(30000, 1001)


def frames_of(count: int, height: int = 48, width: int = 64) -> Iterator[np.ndarray]:
    """Smooth moving gradients: what H.264 keeps well, so PSNR says whether pixels survived."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        phase = i / 8
        yield np.stack([
            127 + 100 * np.sin(x / 15 + phase), 127 + 100 * np.cos(y / 12 - phase), 127 + 60 * np.sin((x + y) / 20),
        ], -1).astype(np.uint8)


def make_video(path: Path, count: int, height: int = 48, width: int = 64, fps: Fraction = NTSC,
               audio: str | None = None, container_format: str = "mp4") -> Path:
    """``count`` frames of ``frames_of`` written with PyAV directly (not with the code under test), with a
    sine 0.5 s longer than the video when ``audio`` names an encoder."""
    with av.open(str(path), "w", format=container_format) as out:
        stream_v = out.add_stream("libx264", rate=fps)
        stream_v.height, stream_v.width, stream_v.pix_fmt = height, width, "yuv420p"
        stream_v.options = {"preset": "ultrafast"}
        stream_a = out.add_stream(audio, rate=16000) if audio is not None else None
        for i, frame in enumerate(frames_of(count, height, width)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, 1 / fps
            out.mux(stream_v.encode(vf))
        out.mux(stream_v.encode(None))
        if stream_a is not None:
            _write_sine(out, stream_a, seconds=float(count / fps) + 0.5)
    return path


def _write_sine(out: av.container.OutputContainer, stream_a: av.AudioStream, seconds: float) -> None:
    rate = stream_a.codec_context.sample_rate
    samples = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)
    sample_format = "s16" if stream_a.codec_context.name.startswith("pcm") else "fltp"
    for start in range(0, len(samples), 1024):
        chunk = samples[start:start + 1024]
        data = (chunk * 32767).astype(np.int16) if sample_format == "s16" else chunk.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data[None], format=sample_format, layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        out.mux(stream_a.encode(frame))
    out.mux(stream_a.encode(None))


def top_level_boxes(path: Path) -> list[str]:
    """The ISO-BMFF top-level box types in file order."""
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def test_round_trip_keeps_frames_rate_size_and_is_browser_playable(tmp_path: Path) -> None:
    original = list(frames_of(24))
    out = tmp_path / "out.mp4"
    with VideoWriter(out, NTSC) as writer:
        for frame in original:
            writer.write(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temporary file left
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264" and video.codec_context.format.name == "yuv420p"
        assert not container.streams.audio
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart: playable before fully downloaded
    with VideoReader(out) as reader:
        assert (reader.fps, reader.width, reader.height, reader.frame_count) == (NTSC, 64, 48, 24)
        decoded = list(reader)
    assert len(decoded) == 24
    assert min(psnr(a, b) for a, b in zip(original, decoded, strict=True)) > 35


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    frames = [f[:47, :63] for f in frames_of(6)]
    with VideoWriter(tmp_path / "odd.mp4", 25) as writer:
        for frame in frames:
            writer.write(frame)
    with VideoReader(tmp_path / "odd.mp4") as reader:
        decoded = list(reader)
    assert decoded[0].shape == (48, 64, 3)
    assert psnr(decoded[3][:47, :63], frames[3]) > 35


@pytest.mark.parametrize(("codec", "container_format", "suffix"), [("aac", "mp4", ".mp4"), ("pcm_s16le", "mov", ".mov")])
def test_driving_audio_is_copied_and_cut_to_the_video(tmp_path: Path, codec: str, container_format: str,
                                                       suffix: str) -> None:
    driving = make_video(tmp_path / f"driving{suffix}", 45, audio=codec, container_format=container_format)
    out = tmp_path / "out.mp4"
    with VideoReader(driving) as reader:
        assert reader.has_audio
        with VideoWriter(out, reader.fps, audio_from=driving) as writer:
            for frame in reader:
                writer.write(frame)
    with av.open(str(out)) as container:
        audio, video = container.streams.audio[0], container.streams.video[0]
        assert audio.codec_context.name == "aac"  # remuxed as it is, or PCM transcoded: MP4 takes no PCM
        audio_s = float(audio.duration * audio.time_base)
        video_s = float(video.duration * video.time_base)
        decoded = sum(f.samples for f in container.decode(audio))
    assert video_s == pytest.approx(45 / float(NTSC), abs=0.01)
    assert abs(audio_s - video_s) < 0.1  # the driving audio ran 0.5 s longer: cut as with -shortest
    assert decoded / 16000 == pytest.approx(video_s, abs=0.1)


def test_no_audio_stream_when_the_driving_video_has_none(tmp_path: Path) -> None:
    driving = make_video(tmp_path / "silent.mp4", 5)
    with VideoWriter(tmp_path / "out.mp4", 25, audio_from=driving) as writer:
        for frame in frames_of(5):
            writer.write(frame)
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert not container.streams.audio


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "phone.mp4"
    marked = np.zeros((32, 64, 3), np.uint8)
    marked[:8, :8] = 255  # top-left corner
    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(90)  # counterclockwise, as phones record portrait video
        vf = av.VideoFrame.from_ndarray(marked, format="rgb24")
        vf.pts, vf.time_base = 0, Fraction(1, 25)
        out.mux(s.encode(vf))
        out.mux(s.encode(None))
    with VideoReader(path) as reader:
        frame = next(iter(reader))
        assert (reader.width, reader.height) == (32, 64)
    rows, cols = np.nonzero(frame[..., 0] > 128)
    assert rows.min() >= 56 and cols.max() <= 7  # turned counterclockwise: now bottom-left


def test_frame_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_video(tmp_path / "thirty.mp4", 30)
    with VideoReader(path, max_frames=7) as reader:
        assert reader.frame_count == 7 and len(list(reader)) == 7
    monkeypatch.setattr(video_module, "DEFAULT_MAX_FRAMES", 20)
    with pytest.raises(MediaError, match="more than the default maximum 20"):
        VideoReader(path)
    with VideoReader(path, max_frames=100) as reader:
        assert len(list(reader)) == 30


def _one_line(error: pytest.ExceptionInfo[MediaError], path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_bad_videos_give_one_line(tmp_path: Path) -> None:
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, np.uint8).tobytes())
    empty_track = tmp_path / "zero_frames.mp4"
    with av.open(str(empty_track), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()  # a header with a video track, and no frame
    audio_only = tmp_path / "audio_only.mp4"
    with av.open(str(audio_only), "w", format="mp4") as out:
        _write_sine(out, out.add_stream("aac", rate=16000), seconds=0.5)
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases = {noise: "cannot be opened", empty_track: "no video frames", audio_only: "no video frames",
             tmp_path / "empty.mp4": "empty", tmp_path / "missing.mp4": "does not exist"}
    for path, expected in cases.items():
        with pytest.raises(MediaError) as error:
            VideoReader(path)
        assert expected in _one_line(error, path)


def test_bad_output_paths_fail_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    cases = {tmp_path / "missing" / "out.mp4": "does not exist", tmp_path / "file" / "out.mp4": "not a folder",
             tmp_path / "out.avi": "must end in", tmp_path: "must end in"}
    (tmp_path / "dir.mp4").mkdir()
    cases[tmp_path / "dir.mp4"] = "is a folder"
    for path, expected in cases.items():
        with pytest.raises(MediaError) as error:
            VideoWriter(path, 25)
        assert expected in _one_line(error, path.parent if expected in ("does not exist", "not a folder") else path)
    read_only = Path("/sys/lpt-output.mp4")  # sysfs refuses new files even to root
    if read_only.parent.is_dir():
        with pytest.raises(MediaError, match="not writable"):
            check_output_path(read_only)


def _finishes(fn: Callable[[], object], seconds: float = 30) -> BaseException | None:
    """Run ``fn`` on a thread; the exception it raised (None if none). Fails the test if it hangs."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds} s: a stage hangs"
    return outcome[0]


class Boom(RuntimeError):
    pass


def _fail_at(index: int) -> Callable[[np.ndarray], np.ndarray]:
    seen = [0]

    def step(frame: np.ndarray) -> np.ndarray:
        seen[0] += 1
        if seen[0] > index:
            raise Boom(f"failed at item {index}")
        return frame

    return step


@pytest.mark.parametrize("stage", ["source", "work", "sink"])
def test_an_exception_in_any_stage_reaches_the_caller_and_leaves_no_output(tmp_path: Path, stage: str) -> None:
    driving = make_video(tmp_path / "driving.mp4", 40)
    out = tmp_path / "out.mp4"

    def run() -> None:
        with VideoReader(driving) as reader, VideoWriter(out, reader.fps) as writer:
            source = map(_fail_at(12), reader) if stage == "source" else reader
            work = _fail_at(12) if stage == "work" else np.copy
            failing = _fail_at(12)
            sink = (lambda f: writer.write(failing(f))) if stage == "sink" else writer.write
            stream(source, work, sink, depth=2)

    error = _finishes(run)
    assert isinstance(error, Boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["driving.mp4"]


def test_stream_keeps_order_and_stops_at_max_items() -> None:
    received: list[int] = []
    stats = stream(range(1000), lambda i: i * 2, received.append, depth=3, max_items=50)
    assert received == [2 * i for i in range(50)] and stats.items == 50


def test_memory_stays_flat_with_video_length(tmp_path: Path) -> None:
    driving = make_video(tmp_path / "long.mp4", 1000, 120, 160)
    process = psutil.Process()

    def peak_rss(max_frames: int) -> int:
        peak = [0]

        def sink(frame: np.ndarray) -> None:
            writer.write(frame)
            peak[0] = max(peak[0], process.memory_info().rss)

        with VideoReader(driving, max_frames=max_frames) as reader, \
                VideoWriter(tmp_path / "out.mp4", reader.fps, preset="ultrafast") as writer:
            stats = stream(reader, lambda f: 255 - f, sink, depth=8)
        assert stats.items == max_frames
        return peak[0]

    short, long = peak_rss(200), peak_rss(1000)
    frame_bytes = 120 * 160 * 3
    # Keeping every frame would add 800 frames = 46 MB (measured: +47 MiB); the bounded pipeline adds ~3 MiB.
    assert long - short < 200 * frame_bytes, f"peak RSS grew {(long - short) / 2**20:.1f} MiB from 200 to 1000 frames"
