"""Against a real tritonserver (the one nvidia-pytriton bundles, on 127.0.0.1): both animation models of an exported
repository (`lpt_animate`, crops in; `lpt_animate_full`, crop and paste-back on the server), four concurrent streams
(one crop stream and one full-image --no-crop stream through the bench client, one `lpt triton run` each way), each
frame compared with lpt's own pipeline run in this process on the same weights and inputs.

Full-size networks cost 15-25 s a frame on 2 shared CPU cores, so the streams are short: 5 frames served, 3 recomputed.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="the triton extra (tritonclient) is not installed")

from lpt.demo import draw_portrait  # noqa: E402
from lpt.runtime.animate import AnimationOptions, Animator, Driving  # noqa: E402
from lpt.runtime.faces import FaceCropper  # noqa: E402
from lpt.runtime.pipeline import Run, RunOptions  # noqa: E402
from lpt.runtime.torch_backend import TorchBackend  # noqa: E402
from lpt.runtime.media import load_image  # noqa: E402
from lpt.triton.bench import FullStreamInput, StreamInput, run_bench  # noqa: E402
from lpt.triton.client import AnimationStream, ClientError, FullFrameStream, connect  # noqa: E402
from lpt.triton.config import AnimationParameters, CropOptions  # noqa: E402
from lpt.triton.repository import export_repository  # noqa: E402
from lpt.triton.server import LocalServer, ServerError  # noqa: E402


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _read_png(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


SHARED_ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"


def _assert_same(served: np.ndarray, reference: np.ndarray, what: str, shape: tuple[int, ...] = (512, 512, 3)) -> None:
    assert served.shape == reference.shape == shape, what
    diff = int(np.abs(served.astype(int) - reference.astype(int)).max())
    psnr = _psnr(served, reference)
    print(f"{what}: max diff {diff}, PSNR {psnr:.1f} dB")
    # The same torch on the same machine in another process: equal up to the rounding of a few pixels.
    assert diff <= 1 and psnr >= 60, f"{what}: max diff {diff}, PSNR {psnr:.1f} dB"


@pytest.fixture(scope="module")
def server(full_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    repo = tmp_path_factory.mktemp("model_repository")
    export_repository(repo, None, None, animation=AnimationParameters(weights=str(full_weights_dir), warmup=False),
                      crop_on_server=True)
    log = tmp_path_factory.mktemp("triton-log") / "tritonserver.log"
    try:
        with LocalServer(repo, log=log) as running:
            yield running
    except ServerError as exc:
        pytest.skip(f"tritonserver cannot start here: {exc}")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Two drawn sources and two driving poses, 512x512, used uncropped (resized to 256, as lpt-run --no-crop)."""
    return {"s1": draw_portrait(0, 512), "s2": draw_portrait(2, 512),
            "d0": draw_portrait(1, 512, yaw=-15.0, mouth_open=0.1, eye_open=1.0),
            "d1": draw_portrait(1, 512, yaw=15.0, mouth_open=0.8, eye_open=0.4)}


def test_unopened_stream_is_refused(server: LocalServer) -> None:
    client = connect(server.url)
    stream = AnimationStream(client)
    stream.started = True  # pretend: the server never saw this stream's first request
    with pytest.raises(ClientError, match=f"refused stream {stream.sequence_id}"):
        stream.frame(np.zeros((256, 256, 3), np.uint8))
    full = FullFrameStream(client)
    with pytest.raises(ClientError, match="source_image must be one RGB uint8 image"):
        full.frame(np.zeros((64, 64, 3), np.uint8), np.zeros((16, 64, 3), np.uint8))  # refused before any network
    full.started = True
    with pytest.raises(ClientError, match=f"stream {full.sequence_id} is not open here.*source_image"):
        full.frame(np.zeros((64, 64, 3), np.uint8))
    client.close()


def test_concurrent_streams_match_lpt(server: LocalServer, full_weights_dir: Path, pictures: dict[str, np.ndarray],
                                      tmp_path: Path) -> None:
    crop = lambda name: FaceCropper(None, no_crop=True).resize_only(pictures[name]).image_256  # noqa: E731
    streams = [StreamInput(crop("s2"), (crop("d1"), crop("d0")))]
    # The CLI's pair again, whole, to the model that crops on the server, told --no-crop: lpt-run --no-crop's frame.
    full_streams = [FullStreamInput(pictures["s1"], (pictures["d1"],), relative_to_first=False,
                                    crop=CropOptions(crop=False))]
    source, driving, served_png = (_write_png(tmp_path / "s1.png", pictures["s1"]),
                                   _write_png(tmp_path / "d1.png", pictures["d1"]), tmp_path / "served.png")
    lpt = Path(sys.executable).parent / "lpt"
    commands = {"run": [str(lpt), "triton", "run", "-s", str(source), "-d", str(driving), "-o", str(served_png),
                        "--no-crop", "--url", server.url]}
    # A real photograph, cropped (OpenCV's cascade: no face models in these weights) and pasted back on the server.
    photo, photo_driving = SHARED_ASSETS / "source/s6.jpg", SHARED_ASSETS / "driving/d8.jpg"
    full_png = tmp_path / "served-full.png"
    if photo.is_file() and photo_driving.is_file():
        commands["full"] = [str(lpt), "triton", "run", "--crop-on-server", "-s", str(photo), "-d", str(photo_driving),
                            "-o", str(full_png), "--url", server.url]
    cli: dict[str, subprocess.CompletedProcess[str]] = {}
    full_report: list[object] = []
    threads = [threading.Thread(target=lambda k=key: cli.setdefault(k, subprocess.run(commands[k], capture_output=True,
                                                                                       text=True))) for key in commands]
    threads.append(threading.Thread(target=lambda: full_report.append(
        run_bench(server.url, "lpt_animate_full", full_streams, keep_frames=True))))
    for thread in threads:
        thread.start()  # concurrent with the bench's crop stream, on both models at once
    report = run_bench(server.url, "lpt_animate", streams, keep_frames=True)
    for thread in threads:
        thread.join()

    assert [r.error for r in report.results] == [None], server.log_tail()
    for key, done in cli.items():
        assert done.returncode == 0, done.stderr + server.log_tail()
    assert "backend: Triton lpt_animate at" in cli["run"].stderr and f"wrote {served_png}" in cli["run"].stdout
    assert report.streams == 1 and report.frames == 2 and report.fps > 0
    table = report.table()
    print(table)
    assert "frames/s, all streams" in table and "latency p50 (ms)" in table and "CPU, machine" in table
    full = full_report[0]
    assert [r.error for r in full.results] == [None], server.log_tail()  # type: ignore[attr-defined]

    # lpt's own pipeline, in this process: lpt-run's Run for the CLI's pictures, the Animator for the streams.
    backend = TorchBackend(full_weights_dir)
    reference_png = tmp_path / "reference.png"
    Run(backend, FaceCropper(None, no_crop=True), RunOptions(crop=False)).animate(source, driving, reference_png)
    _assert_same(_read_png(served_png), _read_png(reference_png), "lpt triton run vs lpt-run's pipeline")
    _assert_same(full.results[0].frames[0], _read_png(reference_png),  # type: ignore[attr-defined]
                 "lpt_animate_full --no-crop vs lpt-run --no-crop")
    if "full" in commands:
        assert "backend: Triton lpt_animate_full at" in cli["full"].stderr and "faces: on the server" in cli["full"].stderr
        reference_full = tmp_path / "reference-full.png"
        Run(backend, FaceCropper(None), RunOptions()).animate(photo, photo_driving, reference_full)
        shape = load_image(photo).shape
        _assert_same(_read_png(full_png), _read_png(reference_full), "lpt triton run --crop-on-server vs lpt-run", shape)
        assert shape != (512, 512, 3)  # the source's own size: pasted back
    animator = Animator(backend, AnimationOptions())
    data, result, other = streams[0], report.results[0], full.results[0]  # type: ignore[attr-defined]
    assert len(result.frames) == 2 and len(other.frames) == 1 and other.frames[0].shape == (512, 512, 3)
    first, last = (Driving(animator.motion(c)) for c in data.driving_crops)
    # The second frame needs the stream's state: its own source features and its own first driving frame.
    reference = animator.animate(animator.prepare_source(data.source_crop), last, first)
    _assert_same(result.frames[1], reference, "stream 0 frame 2")
    assert not np.array_equal(result.frames[1], other.frames[0])
