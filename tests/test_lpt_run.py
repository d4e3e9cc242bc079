"""``lpt-run`` end to end on the sample assets, and its bad-input contract: one line, a non-zero exit,
no output file left behind."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result
from lpt.runtime.cli import run_main

from .conftest import shared_file


def lpt_run(*args: str | Path) -> Result:
    return CliRunner().invoke(run_main, [str(a) for a in args])


def one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("lpt: error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def decoded(path: Path) -> tuple[list[np.ndarray], dict[str, object], bool]:
    """The frames, the video stream's codec, pixel format and declared rate, and whether there is sound."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        video = {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                 "rate": stream.average_rate}
        return frames, video, bool(container.streams.audio)


def no_leftovers(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == [], "an output or temporary file was left behind"


@pytest.fixture(scope="module")
def pair() -> tuple[Path, Path]:
    return shared_file("assets/source/s0.jpg"), shared_file("assets/driving/d18.mp4")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, pair: tuple[Path, Path], full_weights_dir: Path,
            full_onnx_dir: tuple[Path, list, list]) -> dict[str, Path]:
    """Two driving-video frames through ONNX Runtime; the driving image through each backend, to PNG
    (lossless, so the backends are compared before any video encoding)."""
    out = tmp_path_factory.mktemp("runs")
    common = ["--weights", full_weights_dir, "--onnx", full_onnx_dir[0]]
    paths = {"video": out / "ort.mp4", "onnxruntime": out / "ort.png", "torch": out / "torch.png"}
    runs = [("video", pair[1], "onnxruntime", ["--max-frames", "2"])]
    runs += [(b, shared_file("assets/driving/d8.jpg"), b, []) for b in ("onnxruntime", "torch")]
    for key, driving, backend, extra in runs:
        result = lpt_run("-s", pair[0], "-d", driving, "-o", paths[key], *common, "--backend", backend, *extra)
        assert result.exit_code == 0, result.output
        assert "frames" in result.stderr and "generator (ms/frame)" in result.stderr
    return paths


def test_output_is_a_browser_playable_video_with_the_driving_audio(outputs: dict[str, Path], pair: tuple[Path, Path]) -> None:
    frames, stream, has_audio = decoded(outputs["video"])
    source = cv2.imread(str(pair[0]))
    assert len(frames) == 2 and frames[0].shape == source.shape  # pasted back into the full source image
    assert stream["codec"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert stream["rate"] == 30 and has_audio
    with open(outputs["video"], "rb") as f:
        head = f.read(1 << 16)
    moov, mdat = head.find(b"moov"), head.find(b"mdat")
    assert moov >= 0 and (mdat < 0 or moov < mdat)  # faststart: the index comes before the media data


def test_onnxruntime_and_torch_backends_render_the_same_frame(outputs: dict[str, Path]) -> None:
    ours = cv2.imread(str(outputs["onnxruntime"])).astype(int)
    ref = cv2.imread(str(outputs["torch"])).astype(int)
    diff = np.abs(ours - ref)
    # Within the generator's FP32 tolerance a pixel moves by at most one level (truncation to uint8).
    assert ours.shape == ref.shape and diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


def test_pasted_frames_keep_the_source_away_from_the_face(outputs: dict[str, Path], pair: tuple[Path, Path]) -> None:
    pasted = cv2.imread(str(outputs["torch"])).astype(float)
    source = cv2.imread(str(pair[0])).astype(float)
    bottom = slice(source.shape[0] - 100, None)  # the dress, far below the face crop
    np.testing.assert_array_equal(pasted[bottom], source[bottom])
    assert np.abs(pasted - source).max() > 50  # and the face region did change


# ---- bad input --------------------------------------------------------------------------------------------


def test_missing_source(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = lpt_run("-s", tmp_path / "nope.jpg", "-d", pair[1], "-o", out / "x.mp4", "--weights", tmp_path)
    one_line_error(result, "nope.jpg", "does not exist")
    no_leftovers(out)


@pytest.mark.parametrize("name,content,what", [("fake.jpg", b"\x00\x01garbage" * 100, "source"),
                                                ("fake.mp4", b"\x00\x01garbage" * 100, "driving")])
def test_files_that_are_not_media(tmp_path: Path, pair: tuple[Path, Path], name: str, content: bytes, what: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    out = tmp_path / "out"
    out.mkdir()
    source, driving = (bad, pair[1]) if what == "source" else (pair[0], bad)
    result = lpt_run("-s", source, "-d", driving, "-o", out / "x.mp4", "--weights", tmp_path)
    one_line_error(result, name)
    no_leftovers(out)


def test_unwritable_output_fails_before_any_work(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    result = lpt_run("-s", pair[0], "-d", pair[1], "-o", tmp_path / "missing" / "x.mp4", "--weights", tmp_path)
    one_line_error(result, "missing")
    assert not (tmp_path / "missing").exists()


def test_source_without_a_face_is_named(tmp_path: Path, pair: tuple[Path, Path], full_weights_dir: Path) -> None:
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.full((300, 300, 3), 128, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    result = lpt_run("-s", flat, "-d", pair[1], "-o", out / "x.mp4", "--weights", full_weights_dir, "--backend", "torch")
    one_line_error(result, "no face", "source flat.png")
    no_leftovers(out)


def _face_then_blank(path: Path, source: Path, faces: int, blanks: int) -> None:
    from lpt.runtime.video import VideoWriter

    face = cv2.cvtColor(cv2.imread(str(source)), cv2.COLOR_BGR2RGB)[:400, 100:500]
    with VideoWriter(path, 10) as writer:
        for _ in range(faces):
            writer.write(face)
        for _ in range(blanks):
            writer.write(np.full_like(face, 90))


def test_driving_frame_without_a_face_names_the_frame_and_leaves_no_file(
        tmp_path: Path, pair: tuple[Path, Path], full_weights_dir: Path) -> None:
    driving = tmp_path / "drv.mp4"
    _face_then_blank(driving, pair[0], faces=1, blanks=1)
    out = tmp_path / "out"
    out.mkdir()
    result = lpt_run("-s", pair[0], "-d", driving, "-o", out / "x.mp4", "--weights", full_weights_dir,
                     "--backend", "torch", "--crop-driving")
    one_line_error(result, "no face", "driving frame 1 of drv.mp4", "--on-missing-face hold")
    no_leftovers(out)


def test_animal_template_is_rejected(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = lpt_run("-s", pair[0], "-d", shared_file("assets/driving/wink.pkl"), "-o", out / "x.mp4", "--weights", tmp_path)
    one_line_error(result, "wink.pkl")
    no_leftovers(out)


def test_hold_keeps_the_last_face_through_a_frame_without_one(tmp_path: Path, pair: tuple[Path, Path],
                                                              full_weights_dir: Path) -> None:
    driving = tmp_path / "drv.mp4"
    _face_then_blank(driving, pair[0], faces=1, blanks=1)
    out = tmp_path / "held.mp4"
    result = lpt_run("-s", pair[0], "-d", driving, "-o", out, "--weights", full_weights_dir, "--backend", "torch",
                     "--crop-driving", "--on-missing-face", "hold", "--no-pasteback")
    assert result.exit_code == 0, result.output
    frames, _, has_audio = decoded(out)
    assert len(frames) == 2 and frames[0].shape == (512, 512, 3) and not has_audio
