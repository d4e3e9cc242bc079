"""Frame timing and sample-exact audio: variable-frame-rate driving videos keep their frames' times, and the
driving audio survives from its first sample in every codec and container PyAV can write.

Every input is made here with PyAV: a 64x64 video of a few frames at known (variable) times and a stereo
signal that is loud from sample 0 (cosines), so a lost start or a fade-in shows in the first milliseconds.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from lpt.runtime.video import TIMED_TIME_BASE, VideoReader, VideoWriter

RATE = 48_000
VFR_TIMES = (Fraction(0), Fraction(4, 100), Fraction(12, 100), Fraction(13, 100), Fraction(30, 100))
VIDEO_TIME_BASE = Fraction(1, 100)
AAC_FRAME = 1024  # the AAC encoder's frame: its end padding, which FFmpeg's decoder does not trim from MP4
REMUXED = {"aac", "libmp3lame"}  # copied packet for packet; the rest is transcoded to AAC

# (audio encoder, container format, suffix, video encoder): every audio encoder of this PyAV build that
# one of these containers takes.
CASES = [
    ("aac", "mp4", ".mp4", "libx264"),
    ("aac", "matroska", ".mkv", "libx264"),
    ("libmp3lame", "mp4", ".mp4", "libx264"),
    ("libmp3lame", "matroska", ".mkv", "libx264"),
    ("libopus", "matroska", ".mkv", "libx264"),
    ("libopus", "webm", ".webm", "libvpx"),
    ("vorbis", "matroska", ".mkv", "libx264"),
    ("vorbis", "webm", ".webm", "libvpx"),
    ("flac", "matroska", ".mkv", "libx264"),
    ("pcm_s16le", "mov", ".mov", "libx264"),
    ("pcm_s16le", "matroska", ".mkv", "libx264"),
    ("pcm_s24le", "mov", ".mov", "libx264"),
    ("alac", "mov", ".mov", "libx264"),
    ("ac3", "matroska", ".mkv", "libx264"),
    ("eac3", "matroska", ".mkv", "libx264"),
    ("mp2", "matroska", ".mkv", "libx264"),
]


def signal(samples: int) -> np.ndarray:
    """(2, samples) float32 in [-0.6, 0.6], at full level from sample 0."""
    t = np.arange(samples) / RATE
    left = 0.4 * np.cos(2 * np.pi * 440 * t) + 0.2 * np.cos(2 * np.pi * 1250 * t)
    right = 0.4 * np.cos(2 * np.pi * 660 * t) + 0.2 * np.sin(2 * np.pi * 2000 * t + 1)
    return np.stack([left, right]).astype(np.float32)


def _require_encoder(name: str) -> None:
    try:
        av.Codec(name, "w")
    except av.codec.codec.UnknownCodecError:  # pragma: no cover - depends on the PyAV build
        pytest.skip(f"this PyAV build has no {name} encoder")


def _as_encoder_input(samples: np.ndarray, stream: Any) -> Any:
    """An audio frame in the encoder's first sample format (planar or packed, float or integer)."""
    fmt = av.AudioFormat(stream.codec_context.codec.audio_formats[0].name)
    data = samples
    if fmt.packed.name in ("s16", "s32"):
        integer = np.int16 if fmt.bytes == 2 else np.int32
        data = np.round(samples * float(np.iinfo(integer).max)).astype(integer)
    if not fmt.is_planar:
        data = data.T.reshape(1, -1)
    return av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt.name, layout="stereo")


def make_input(path: Path, audio: str, container_format: str, video: str = "libx264",
               times: tuple[Fraction, ...] = VFR_TIMES, audio_seconds: float = 0.8) -> Path:
    """A video whose frames are at ``times`` and whose audio, ``audio_seconds`` of ``signal``, starts at 0."""
    with av.open(str(path), "w", format=container_format) as out:
        stream_v = out.add_stream(video, rate=25)
        stream_v.width = stream_v.height = 64
        stream_v.pix_fmt = "yuv420p"
        stream_v.codec_context.time_base = VIDEO_TIME_BASE
        stream_a = out.add_stream(audio, rate=RATE)
        stream_a.layout = "stereo"
        if audio == "vorbis":
            stream_a.codec_context.options = {"strict": "experimental"}  # FFmpeg's own Vorbis encoder
        for i, at in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(at / VIDEO_TIME_BASE), VIDEO_TIME_BASE
            out.mux(stream_v.encode(frame))
        out.mux(stream_v.encode(None))
        samples = signal(int(audio_seconds * RATE))
        for start in range(0, samples.shape[1], 1000):  # not the encoders' frame size: they re-frame
            frame = _as_encoder_input(samples[:, start:start + 1000], stream_a)
            frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
            out.mux(stream_a.encode(frame))
        out.mux(stream_a.encode(None))
    return path


def decoded_audio(path: Path) -> tuple[np.ndarray, Fraction]:
    """All the decoded samples of the first audio stream as (channels, samples) floats, and the first's time."""
    chunks, first = [], None
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.audio[0]):
            first = frame.pts * frame.time_base if first is None else first
            data = frame.to_ndarray()
            if not frame.format.is_planar:
                data = data.reshape(-1, len(frame.layout.channels)).T
            if data.dtype.kind == "i":
                data = data / float(np.iinfo(data.dtype).max)
            chunks.append(data.astype(np.float64))
    return np.concatenate(chunks, axis=1), Fraction(first)


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def video_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [frame.pts for frame in container.decode(stream)]
        return [(p - pts[0]) * Fraction(stream.time_base) for p in pts]


def copy(driving: Path, out: Path, *, timed: bool = True, fps: Fraction | None = None) -> list[Fraction]:
    """``out`` written from ``driving`` as the pipeline does; the frame times read."""
    with VideoReader(driving) as reader:
        frames = list(reader.timed())
        with VideoWriter(out, fps or reader.fps, audio_from=driving, preset="ultrafast",
                         audio_start=reader.start_seconds) as writer:
            for rgb, at in frames:
                writer.write(rgb, at if timed else None)
    return [at for _, at in frames]


def presented_seconds(path: Path) -> Fraction:
    """The first track's presentation length as its MP4 edit list says (version 0 boxes, as FFmpeg writes)."""
    data = path.read_bytes()
    mvhd, elst = data.index(b"mvhd"), data.index(b"elst")
    timescale = int.from_bytes(data[mvhd + 16:mvhd + 20], "big")
    return Fraction(int.from_bytes(data[elst + 12:elst + 16], "big"), timescale)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


@pytest.mark.parametrize(("codec", "container_format", "suffix", "video"), CASES,
                         ids=[f"{c}-{s[1:]}" for c, _, s, _ in CASES])
def test_timestamps_and_audio_survive(tmp_path: Path, codec: str, container_format: str, suffix: str,
                                      video: str) -> None:
    _require_encoder(codec)
    driving = make_input(tmp_path / f"in{suffix}", codec, container_format, video)
    out = tmp_path / "out.mp4"
    times = copy(driving, out)
    assert times == list(VFR_TIMES)  # the reader gives the frames' exact times

    written = video_times(out)
    assert len(written) == len(times)
    assert max(abs(a - b) for a, b in zip(written, times, strict=True)) <= TIMED_TIME_BASE

    reference, reference_start = decoded_audio(driving)
    assert reference_start == 0
    got, got_start = decoded_audio(out)
    assert got_start == 0
    span = round((VFR_TIMES[-1] + (VFR_TIMES[-1] - VFR_TIMES[-2])) * RATE)  # the last frame lasts 0.17 s
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        remuxed = audio.codec_context.codec.canonical_name == {"libmp3lame": "mp3"}.get(codec, codec)
        assert remuxed == (codec in REMUXED)
        # The container ends the audio at the video's end, to the sample (decoded, see below).
        assert audio.duration * audio.time_base == Fraction(span, RATE)
    if remuxed:
        packets = audio_packets(out)
        assert packets == audio_packets(driving)[:len(packets)]  # the same packets, from the first
        frame = 1024 if codec == "aac" else 1152
        # Whole packets: the last one reaches past the video's end (FFmpeg's decoder plays all of it).
        assert span <= got.shape[1] < span + frame
        assert np.array_equal(got, reference[:, :got.shape[1]])  # the same decoder output, sample for sample
        return
    assert span <= got.shape[1] <= span + AAC_FRAME  # transcoded: AAC's end padding, as said above
    got, want = got[:, :span], reference[:, :span]
    assert correlation(got, want) > 0.99
    first = slice(0, 480)  # the first 10 ms: no missing start, no fade-in
    assert correlation(got[:, first], want[:, first]) > 0.95
    assert np.sqrt(np.mean(got[:, first] ** 2) / np.mean(want[:, first] ** 2)) == pytest.approx(1, abs=0.15)


@pytest.mark.parametrize("codec", ["aac", "libopus"])
def test_audio_before_the_first_frame_keeps_its_alignment(tmp_path: Path, codec: str) -> None:
    """The first frame at 0.1 s: output time 0 plays the input's sample at 0.1 s (remuxed: the 0.1 s
    before it and the priming are kept, and skipped by MP4's edit list; transcoded: cut to the sample)."""
    times = tuple(t + Fraction(1, 10) for t in VFR_TIMES)
    driving = make_input(tmp_path / "late.mkv", codec, "matroska", times=times)
    with VideoReader(driving) as reader:
        assert reader.start_seconds == Fraction(1, 10)
    out = tmp_path / "out.mp4"
    assert copy(driving, out) == list(VFR_TIMES)
    reference, _ = decoded_audio(driving)
    got, got_start = decoded_audio(out)
    assert got_start == 0
    offset = RATE // 10
    span = round((VFR_TIMES[-1] + Fraction(17, 100)) * RATE)
    assert span <= got.shape[1] <= span + AAC_FRAME
    want = reference[:, offset:offset + got.shape[1]]
    if codec == "aac":
        assert np.array_equal(got, want)
    else:
        first = slice(0, 480)
        assert correlation(got[:, :span], want[:, :span]) > 0.99
        assert correlation(got[:, first], want[:, first]) > 0.95


def test_constant_rate_output_still_works(tmp_path: Path) -> None:
    """Without times the frames are at i / fps, whatever the driving video's times; the audio ends there."""
    driving = make_input(tmp_path / "in.mp4", "aac", "mp4")
    out = tmp_path / "out.mp4"
    copy(driving, out, timed=False, fps=Fraction(25))
    assert video_times(out) == [Fraction(i, 25) for i in range(5)]
    got, _ = decoded_audio(out)
    with av.open(str(out)) as container:
        audio, video = container.streams.audio[0], container.streams.video[0]
        assert video.duration * video.time_base == Fraction(5, 25)
        assert audio.duration * audio.time_base == Fraction(5, 25)
    assert 5 * RATE // 25 <= got.shape[1] < 5 * RATE // 25 + 1024


def test_the_video_ends_one_frame_interval_after_the_last_frame(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 25, preset="medium") as writer:  # with B-frames: packets leave out of order
        for i, at in enumerate(VFR_TIMES):
            writer.write(np.full((64, 64, 3), 40 * i, np.uint8), at)
    assert video_times(out) == list(VFR_TIMES)
    # The edit list, which players follow (FFmpeg reports the decoding timeline's 0.41 s instead).
    assert presented_seconds(out) == Fraction(47, 100)  # 0.30 + (0.30 - 0.13)


def test_times_must_increase_and_be_given_for_all_frames_or_none(tmp_path: Path) -> None:
    frame = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r"frame 2 is at 0\.040000 s, not after frame 1 at 0\.040000 s"), \
            VideoWriter(tmp_path / "a.mp4", 25) as writer:
        for at in (Fraction(0), Fraction(1, 25), Fraction(1, 25)):
            writer.write(frame, at)
    with pytest.raises(ValueError, match="frame 1 has no time"), VideoWriter(tmp_path / "b.mp4", 25) as writer:
        writer.write(frame, Fraction(0))
        writer.write(frame)
    with pytest.raises(ValueError, match="frame 1 has a time"), VideoWriter(tmp_path / "c.mp4", 25) as writer:
        writer.write(frame)
        writer.write(frame, Fraction(1))
    with pytest.raises(ValueError, match="before the start"), VideoWriter(tmp_path / "d.mp4", 25) as writer:
        writer.write(frame, -0.5)
    assert not list(tmp_path.iterdir())


def test_iterating_and_timed_share_one_pass(tmp_path: Path) -> None:
    driving = make_input(tmp_path / "in.mkv", "flac", "matroska")
    with VideoReader(driving, max_frames=3) as reader:
        assert reader.start_seconds == 0
        it = iter(reader)
        next(it)
        with pytest.raises(RuntimeError, match="one pass"):
            next(reader.timed())
        assert len(list(it)) == 2  # the limit holds across both
    with VideoReader(driving, max_frames=3) as reader:
        assert [at for _, at in reader.timed()] == list(VFR_TIMES[:3])
