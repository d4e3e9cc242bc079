"""``lpt-run`` as people use it (issue 14), through the real program in a process of its own: the default
output, animated images and variable frame rates driving, audio that follows the driving video (also in
video-to-video), two runs on one output, the source's size and transparency, --concat panels, and every
stop signal cleaning up. Inputs are generated here; each check is what a user would look at."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from lpt.demo import draw_portrait
from PIL import Image

from tests.bad_inputs.run import program

from .conftest import shared_file

RATE = 48_000
VFR_TIMES = (Fraction(0), Fraction(40, 1000), Fraction(160, 1000), Fraction(200, 1000))  # seconds
GIF_MS = (50, 150, 100)


def run(cwd: Path, *args: str | Path, wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    argv = [program("lpt-run"), *map(str, args)]
    env = {**os.environ, "LPT_CACHE": str(cwd / ".cache"), "PYTHONUNBUFFERED": "1"}
    if not wait:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300)


def tone(samples: int) -> np.ndarray:
    """A rising chirp: any missing or shifted start shows as a mismatch."""
    t = np.arange(samples) / RATE
    return (0.5 * np.sin(2 * np.pi * (220 + 400 * t) * t)).astype(np.float32)


def vfr_video_with_audio(path: Path, size: int = 256) -> Path:
    """Drawn faces at the irregular times VFR_TIMES, with AAC audio from sample 0 (as a phone writes)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        audio = out.add_stream("aac", rate=RATE)
        audio.layout = "mono"
        signal_ = tone(RATE // 2)
        for start in range(0, len(signal_), 1024):
            frame = av.AudioFrame.from_ndarray(signal_[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        for index, at in enumerate(VFR_TIMES):
            frame = av.VideoFrame.from_ndarray(draw_portrait(1, size, yaw=8.0 * index), format="rgb24")
            frame.pts, frame.time_base = int(at * 1000), Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def video_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [Fraction(f.pts) * f.time_base - Fraction(frames[0].pts) * frames[0].time_base for f in frames]


def audio_samples(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return np.zeros(0, np.float32)
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(chunks).astype(np.float32)


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("usage-inputs")
    portrait = folder / "portrait.png"
    cv2.imwrite(str(portrait), cv2.cvtColor(draw_portrait(0, 256), cv2.COLOR_RGB2BGR))
    frames = [Image.fromarray(draw_portrait(2, 256, yaw=yaw)) for yaw in (0.0, 10.0, -10.0)]
    gif = folder / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=list(GIF_MS), loop=0)
    return {"portrait": portrait, "gif": gif, "vfr": vfr_video_with_audio(folder / "vfr.mp4")}


@pytest.mark.usage("2, 5", "default output folder made; an animated GIF drives every frame at its own delays")
def test_default_output_folder_is_made_and_an_animated_gif_drives_every_frame(
        tmp_path: Path, inputs: dict[str, Path], full_weights_dir: Path) -> None:
    done = ok(run(tmp_path, "-s", inputs["portrait"], "-d", inputs["gif"], "--no-crop", "--weights", full_weights_dir,
                  "--backend", "torch"))
    output = tmp_path / "animations" / "portrait--anim.mp4"
    assert output.is_file() and f"wrote {Path('animations/portrait--anim.mp4')}" in done.stdout
    starts = np.cumsum((0, *GIF_MS[:-1])) / 1000
    assert [float(t) for t in video_times(output)] == pytest.approx(starts.tolist(), abs=1e-3)  # the GIF's own delays
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".cache") == ["animations"]
    assert sorted(p.name for p in output.parent.iterdir()) == [output.name]  # no lock or temporary file left


@pytest.mark.usage("1, 6, 8", "VFR times and audio kept from the first sample; -y replaces; a second run on the output fails")
def test_vfr_timestamps_and_audio_are_kept_and_a_second_run_on_the_output_is_refused(
        tmp_path: Path, inputs: dict[str, Path], full_weights_dir: Path) -> None:
    output = tmp_path / "out.mp4"
    output.write_bytes(b"an earlier result")
    args = ("-s", inputs["portrait"], "-d", inputs["vfr"], "-o", output, "--no-crop", "--weights", full_weights_dir,
            "--backend", "torch")
    first = run(tmp_path, *args, "--overwrite", wait=False)
    lock = tmp_path / ".out.mp4.lpt-lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run(tmp_path, *args, "-y")
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    assert second.returncode == 2 and "being written by another lpt-run" in second.stderr, second.stderr
    assert [line for line in second.stderr.splitlines() if line.startswith("lpt: error:")] == second.stderr.splitlines()
    assert video_times(output) == list(VFR_TIMES)  # the driving frames' own times, not a constant rate
    heard, played = audio_samples(output), audio_samples(inputs["vfr"])
    assert heard.size > 0.2 * RATE
    np.testing.assert_allclose(heard[:4096], played[:4096], atol=1e-6)  # from the first sample, no fade-in
    assert not lock.exists()


@pytest.mark.usage("6", "--fps writes a constant rate; --audio none is silent")
def test_fps_option_writes_a_constant_rate(tmp_path: Path, inputs: dict[str, Path], full_weights_dir: Path) -> None:
    output = tmp_path / "constant.mp4"
    ok(run(tmp_path, "-s", inputs["portrait"], "-d", inputs["vfr"], "-o", output, "--no-crop", "--weights",
           full_weights_dir, "--backend", "torch", "--fps", "10", "--max-frames", "2", "--audio", "none"))
    assert video_times(output) == [Fraction(0), Fraction(1, 10)]
    assert audio_samples(output).size == 0


@pytest.mark.usage("5, 7", "video-to-video: the driving audio, the source size (never padded)")
def test_video_to_video_takes_the_driving_audio_and_the_source_size(
        tmp_path: Path, inputs: dict[str, Path], full_weights_dir: Path) -> None:
    """A silent, odd-sized source sequence (an APNG of real video frames) driven by a video with sound:
    the result has the driving sound, and the source's size as upstream prepares it (even sides, never
    padded)."""
    with av.open(str(shared_file("assets/driving/d18.mp4"))) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(2), container.decode(video=0))]
    odd = [Image.fromarray(np.ascontiguousarray(f[:383, :479])) for f in frames]  # d18 is 480x480
    source = tmp_path / "source.png"
    odd[0].save(source, save_all=True, append_images=odd[1:], duration=[40, 40])
    output = tmp_path / "v2v.mp4"
    ok(run(tmp_path, "-s", source, "-d", inputs["vfr"], "-o", output, "--weights", full_weights_dir, "--backend",
           "torch", "--max-frames", "2"))
    with av.open(str(output)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (478, 382)
        assert container.streams.audio
    assert video_times(output) == list(VFR_TIMES[:2])
    np.testing.assert_allclose(audio_samples(output)[:2048], audio_samples(inputs["vfr"])[:2048], atol=1e-6)


@pytest.fixture(scope="module")
def transparent_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample portrait at an odd size, its top-left corner transparent over black colour values."""
    rgb = cv2.cvtColor(cv2.imread(str(shared_file("assets/source/s0.jpg"))), cv2.COLOR_BGR2RGB)[:481, :599]  # of 600x704
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:60, :60] = 0
    rgba = np.dstack([rgb, alpha])
    rgba[:60, :60, :3] = 0
    path = tmp_path_factory.mktemp("transparent") / "cutout.png"
    Image.fromarray(rgba).save(path)
    return path


@pytest.mark.usage("7", "a transparent source over white, said so, at the source size")
def test_transparent_source_is_composited_over_white_at_the_source_size(
        tmp_path: Path, transparent_source: Path, full_weights_dir: Path) -> None:
    output = tmp_path / "one.png"
    done = ok(run(tmp_path, "-s", transparent_source, "-d", shared_file("assets/driving/d8.jpg"), "-o", output,
                  "--weights", full_weights_dir, "--backend", "torch"))
    assert "transparent parts: composited over white" in done.stderr
    result = cv2.imread(str(output))
    assert result.shape == (480, 598, 3)  # 599x481 prepared as upstream: sides cropped to even, nothing padded
    assert result[:50, :50].min() >= 250  # white, as a viewer shows the transparent corner, not black


@pytest.mark.usage("7", "--concat panels keep their aspect ratio")
def test_concat_panels_keep_their_aspect_ratio(tmp_path: Path, transparent_source: Path, full_weights_dir: Path) -> None:
    output = tmp_path / "concat.png"
    ok(run(tmp_path, "-s", transparent_source, "-d", shared_file("assets/driving/d8.jpg"), "-o", output,
           "--weights", full_weights_dir, "--backend", "torch", "--concat"))
    result = cv2.imread(str(output))
    assert result.shape == (512, 512 + 512 + 638, 3)  # the 598x480 result at 512 rows is 638 wide, not squeezed


@pytest.mark.usage("4", "SIGTERM/SIGHUP/SIGINT: one line, exit 128+N, nothing left")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_every_stop_signal_cleans_up_in_one_line(stop: signal.Signals, tmp_path: Path, inputs: dict[str, Path],
                                                 full_weights_dir: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    running = run(tmp_path, "-s", inputs["portrait"], "-d", inputs["gif"], "-o", out / "x.mp4", "--no-crop",
                  "--weights", full_weights_dir, "--backend", "torch", wait=False)
    deadline = time.monotonic() + 120
    while not list(out.glob(".x.mp4.*.tmp")) and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.poll() is None, running.communicate()
    running.send_signal(stop)
    _, stderr = running.communicate(timeout=120)
    assert running.returncode == 128 + stop, stderr
    assert stderr.splitlines()[-1] == f"lpt: stopped by {stop.name}; nothing half-written was left behind", stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == []  # no temporary file, no lock, no output


@pytest.mark.usage("also", "help and argument errors answer at once (no torch)")
@pytest.mark.parametrize("argv", [["--help"], ["-s", "missing.jpg", "-d", "missing.mp4"]])
def test_help_and_argument_errors_do_not_load_torch(argv: list[str], tmp_path: Path) -> None:
    """They answer at once: the networks' libraries load only when there is work for them."""
    probe = ("import sys; from click.testing import CliRunner; from lpt.runtime.cli import run_main; "
             f"result = CliRunner().invoke(run_main, {argv!r}); "
             "print(result.exit_code, 'torch' in sys.modules, 'onnxruntime' in sys.modules)")
    done = subprocess.run([str(Path(program("lpt-run")).with_name("python")), "-c", probe], cwd=tmp_path,
                          capture_output=True, text=True, check=True, timeout=60)
    code, torch_loaded, ort_loaded = done.stdout.split()
    assert (torch_loaded, ort_loaded) == ("False", "False") and code == ("0" if argv == ["--help"] else "2")


@pytest.mark.usage("9", "lpt bench in an empty folder runs on the cached synthetic weights and says so")
def test_bench_without_weights_uses_the_cached_synthetic_set(tmp_path: Path, full_weights_dir: Path) -> None:
    from lpt.models.synthetic import MARKER, marker_text

    cached = tmp_path / "cache" / "synthetic-weights-seed0"  # as `lpt weights synth` leaves it in the cache
    cached.mkdir(parents=True)
    (cached / "liveportrait").symlink_to(full_weights_dir / "liveportrait", target_is_directory=True)
    (cached / MARKER).write_text(marker_text(0))
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [str(Path(program("lpt-run")).with_name("lpt")), "bench", "--no-e2e", "--graphs", "stitching", "--backends",
            "torch,onnxruntime", "--precisions", "fp32", "--runs", "2", "--min-runs", "1", "--cell-seconds", "0.2"]
    done = subprocess.run(argv, cwd=empty, env={**os.environ, "LPT_CACHE": str(tmp_path / "cache")},
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"weights: synthetic, {cached}" in done.stderr and "| stitching | torch fp32 |" in done.stdout
    assert "build/onnx" in done.stdout  # ONNX Runtime skipped, saying which folder had no graphs
    assert (empty / "build" / "bench" / "bench.json").is_file()
