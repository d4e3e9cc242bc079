"""The ONNX Runtime and PyTorch backends run the same per-frame pipeline to the same frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from lpt.runtime.animate import AnimationOptions, Animator, Driving, frame_image, image_tensor
from lpt.runtime.backends import Locations, choose, open_backend
from lpt.runtime import openvino_backend
from lpt.runtime.onnxruntime_backend import OnnxRuntimeBackend, graph_file
from lpt.runtime.openvino_backend import OpenVinoBackend
from lpt.runtime.torch_backend import TorchBackend

from lpt.errors import LptError
from lpt.specs import SPECS

from .conftest import shared_file


def _crop(rgb: np.ndarray) -> np.ndarray:
    side = min(rgb.shape[:2])
    y, x = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
    return cv2.resize(rgb[y:y + side, x:x + side], (256, 256), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    source = cv2.cvtColor(cv2.imread(str(shared_file("assets/source/s0.jpg"))), cv2.COLOR_BGR2RGB)
    capture = cv2.VideoCapture(str(shared_file("assets/driving/d18.mp4")))
    frames = []
    for _ in range(12):
        ok, frame = capture.read()
        assert ok
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return {"source": _crop(source), "d0": _crop(frames[0]), "d11": _crop(frames[11])}


def _animate(backend: object, crops: dict[str, np.ndarray], options: AnimationOptions) -> tuple[np.ndarray, dict]:
    animator = Animator(backend, options)  # type: ignore[arg-type]
    source = animator.prepare_source(crops["source"])
    first, frame = Driving(animator.motion(crops["d0"])), Driving(animator.motion(crops["d11"]))
    x_d = animator.driven_keypoints(source, frame, first)
    return animator.render(source, x_d), {"x_d": x_d.numpy(), "x_s": source.x_s.numpy()}


def test_onnxruntime_and_torch_give_the_same_frames(full_weights_dir: Path, full_onnx_dir: tuple[Path, list, list],
                                                    crops: dict[str, np.ndarray]) -> None:
    options = AnimationOptions(eye_retargeting=False)
    ours, ours_kp = _animate(OnnxRuntimeBackend(full_onnx_dir[0]), crops, options)
    ref, ref_kp = _animate(TorchBackend(full_weights_dir), crops, options)
    tol = SPECS["motion_extractor"].tolerance("kp", "fp32")
    np.testing.assert_allclose(ours_kp["x_d"], ref_kp["x_d"], atol=tol.atol, rtol=tol.rtol)
    np.testing.assert_allclose(ours_kp["x_s"], ref_kp["x_s"], atol=tol.atol, rtol=tol.rtol)
    # Frames are uint8: a float difference within the generator's tolerance moves a pixel by at most one level.
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
    assert ours.std() > 1.0  # a real picture, not a constant


@pytest.mark.parametrize("fused", [False, True], ids=["W-then-G", "fused-warp_decode"])
def test_openvino_and_torch_give_the_same_frames(full_weights_dir: Path, full_onnx_dir: tuple[Path, list, list],
                                                 crops: dict[str, np.ndarray], fused: bool) -> None:
    backend = OpenVinoBackend(full_onnx_dir[0], weights=full_weights_dir)
    assert backend.fused  # the export wrote warp_decode.gather.onnx: the runtime takes it on OpenVINO
    ours, ours_kp = _animate(backend, crops, AnimationOptions(fused=fused))
    ref, ref_kp = _animate(TorchBackend(full_weights_dir), crops, AnimationOptions())
    assert backend.path("warping_module").name == "warping_module.gather.onnx"  # OpenVINO reads no 5-D GridSample
    tol = SPECS["motion_extractor"].tolerance("kp", "fp32")
    np.testing.assert_allclose(ours_kp["x_d"], ref_kp["x_d"], atol=tol.atol, rtol=tol.rtol)
    diff = np.abs(ours.astype(int) - ref.astype(int))
    # FP32 with other kernels (oneDNN's summation order, the gather sampler): the frame differs by up to 1e-4,
    # a quarter of a level, which truncation to uint8 turns into one level on a few percent of the pixels
    # (measured: 1.4%); a BF16 run would differ by tens of levels.
    psnr = 10 * np.log10(255**2 / max(float(np.mean(diff.astype(float) ** 2)), 1e-12))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.03 and psnr > 60, (diff.max(), (diff > 0).mean(), psnr)
    assert ours.std() > 1.0


def test_onnxruntime_runs_the_gather_file_where_plain_export_wrote_only_that(tmp_path: Path) -> None:
    """Plain `lpt export` (TensorRT 10 target) writes the warping graphs as gather files only."""
    assert graph_file(tmp_path, "warping_module", "fp32", cuda=False).name == "warping_module.onnx"
    (tmp_path / "warping_module.gather.onnx").write_bytes(b"")
    assert graph_file(tmp_path, "warping_module", "fp32", cuda=False).name == "warping_module.gather.onnx"
    (tmp_path / "warping_module.onnx").write_bytes(b"")  # with both, the CPU takes the native file (faster on ORT)
    assert graph_file(tmp_path, "warping_module", "fp32", cuda=False).name == "warping_module.onnx"
    assert graph_file(tmp_path, "warping_module", "fp32", cuda=True).name == "warping_module.gather.onnx"
    assert graph_file(tmp_path, "spade_generator", "int8", cuda=False).name == "spade_generator.int8-cpu.onnx"


def test_stitching_changes_the_keypoints(full_weights_dir: Path, crops: dict[str, np.ndarray]) -> None:
    backend = TorchBackend(full_weights_dir)
    animator = Animator(backend, AnimationOptions(stitching=False))
    stitched = Animator(backend, AnimationOptions(stitching=True))
    source = animator.prepare_source(crops["source"])
    first, frame = Driving(animator.motion(crops["d0"])), Driving(animator.motion(crops["d11"]))
    plain = animator.driven_keypoints(source, frame, first)
    assert not np.allclose(plain.numpy(), stitched.driven_keypoints(source, frame, first).numpy())


def test_retargeting_without_ratios_is_refused_in_one_line(full_weights_dir: Path, crops: dict[str, np.ndarray]) -> None:
    animator = Animator(TorchBackend(full_weights_dir), AnimationOptions(eye_retargeting=True))
    source = animator.prepare_source(crops["source"])
    frame = Driving(animator.motion(crops["d0"]))
    with pytest.raises(LptError, match="eye retargeting needs eye ratios"):
        animator.driven_keypoints(source, frame, frame)


def test_image_tensor_and_frame_image_follow_the_official_scaling() -> None:
    crop = np.full((256, 256, 3), 255, np.uint8)
    assert image_tensor(crop).shape == (1, 3, 256, 256) and image_tensor(crop).max() == 1.0
    out = np.full((1, 3, 512, 512), 0.5019, np.float32)  # 127.98: truncated, not rounded
    assert frame_image(out)[0, 0, 0] == 127
    assert frame_image(out * 3)[0, 0, 0] == 255


def test_missing_graph_file_names_the_file_and_the_command(tmp_path: Path) -> None:
    backend = OnnxRuntimeBackend(tmp_path, "int8")
    with pytest.raises(LptError, match=r"motion_extractor\.int8-cpu\.onnx not found .*make int8-onnx"):
        backend.session("motion_extractor")


def test_default_backend_choice_follows_what_exists(tmp_path: Path, full_weights_dir: Path,
                                                    full_onnx_dir: tuple[Path, list, list]) -> None:
    graphs = AnimationOptions().graphs()
    empty = Locations(tmp_path, tmp_path / "onnx", tmp_path / "engines")
    assert choose(None, "fp32", empty, graphs)[0] == "torch"
    with_onnx = Locations(full_weights_dir, full_onnx_dir[0], tmp_path / "engines")  # graphs of these weights
    assert choose(None, "fp32", with_onnx, graphs)[0] == "openvino"  # the fastest on a CPU (`lpt bench`)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(openvino_backend, "installed", lambda: False)
        name, why = choose(None, "fp32", with_onnx, graphs)
        assert name == "onnxruntime" and "OpenVINO is not installed" in why
    with pytest.raises(LptError, match="INT8 needs quantized graphs"):
        choose(None, "int8", empty, graphs)
    with pytest.raises(LptError, match="torch backend runs fp16 on CUDA only"):
        open_backend("torch", "fp16", empty)
