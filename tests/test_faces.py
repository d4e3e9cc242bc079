"""Face detection, landmarks and the three crop methods (runtime/faces/).

The official models cannot be shipped, so small ONNX graphs with the same inputs and outputs stand in for
them and run through ONNX Runtime. They look at the red-minus-blue channel of what they are fed, so a
wrong channel order, normalisation or crop window changes their answer:
* the detector scores each stride cell by its mean redness and predicts a fixed-size box and keypoints
  around the cell centre;
* the landmark models answer the centroid of redness in their input, plus a fixed face-like layout.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from lpt.runtime import crop
from lpt.runtime.faces import FaceCropper, NoFaceError
from lpt.runtime.faces import cropper as cropper_module
from lpt.runtime.faces.detector import Detection, FaceDetector, largest_first
from lpt.runtime.faces.fallback import CascadeUnavailableError, cascade_file
from lpt.runtime.faces.landmarks import Landmark106, Landmark203, _normalisation
from onnx import TensorProto, helper, numpy_helper

from lpt.errors import OnnxError
from tests.test_crop import IMAGES, annotated

STRIDES = (8, 16, 32)
BOX_HALF = 64.0  # the fake detector's box half-side, detector-input pixels
KEYPOINT_OFFSETS = np.array([[-20, -10], [20, -10], [0, 5], [-15, 25], [15, 25]], np.float32)  # detector pixels
TRACKED = 100  # the landmark index the fake models put on the red centroid (no eye or mouth anchor)


def _consts(nodes: list, **arrays: np.ndarray) -> None:
    for name, value in arrays.items():
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name)))


def _redness(nodes: list, source: str) -> str:
    """Nodes computing channel 0 minus channel 2 of ``source`` as (1, 1, H, W): "red" when fed RGB."""
    _consts(nodes, c0=np.array([0]), c1=np.array([1]), c2=np.array([2]), c3=np.array([3]))
    nodes.append(helper.make_node("Slice", [source, "c0", "c1", "c1"], ["red"]))
    nodes.append(helper.make_node("Slice", [source, "c2", "c3", "c1"], ["blue"]))
    nodes.append(helper.make_node("Sub", ["red", "blue"], ["redness"]))
    return "redness"


def _save(path: Path, nodes: list, inputs: list, outputs: list) -> Path:
    model = helper.make_model(helper.make_graph(nodes, "fake", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def fake_detector(path: Path) -> Path:
    """An SCRFD-shaped graph (dynamic input, 9 outputs: scores, box and keypoint distances per stride)."""
    nodes: list = []
    redness = _redness(nodes, "input.1")
    _consts(nodes, half=np.float32(0.5), gain=np.float32(10.0), zero=np.float32(0.0), flat=np.array([-1, 1]))
    nodes.append(helper.make_node("Mul", [redness, "half"], ["red01"]))  # 1 for pure red, 0 for black
    outputs = {}
    for s in STRIDES:
        cell = s / 2  # distances chosen so the box and keypoints centre on the cell, not on its corner (the anchor)
        box = np.array([[BOX_HALF - cell, BOX_HALF - cell, BOX_HALF + cell, BOX_HALF + cell]], np.float32) / s
        kps = ((KEYPOINT_OFFSETS + cell) / s).reshape(1, 10).astype(np.float32)
        _consts(nodes, **{f"box{s}": box, f"kps{s}": kps})
        nodes += [
            helper.make_node("AveragePool", ["red01"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("Sub", [f"pool{s}", "half"], [f"centred{s}"]),
            helper.make_node("Mul", [f"centred{s}", "gain"], [f"logit{s}"]),
            helper.make_node("Sigmoid", [f"logit{s}"], [f"prob{s}"]),
            helper.make_node("Reshape", [f"prob{s}", "flat"], [f"column{s}"]),
            helper.make_node("Concat", [f"column{s}", f"column{s}"], [f"pair{s}"], axis=1),  # 2 anchors per cell
            helper.make_node("Reshape", [f"pair{s}", "flat"], [f"score{s}"]),
            helper.make_node("Mul", [f"score{s}", "zero"], [f"nil{s}"]),
            helper.make_node("Add", [f"nil{s}", f"box{s}"], [f"bbox{s}"]),
            helper.make_node("Add", [f"nil{s}", f"kps{s}"], [f"kp{s}"]),
        ]
        outputs.update({f"score{s}": 1, f"bbox{s}": 4, f"kp{s}": 10})
    ordered = [f"score{s}" for s in STRIDES] + [f"bbox{s}" for s in STRIDES] + [f"kp{s}" for s in STRIDES]
    return _save(path, nodes, [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])],
                 [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"rows_{n}", outputs[n]]) for n in ordered])


def face_layout(count: int, eyes: tuple[tuple[int, ...], tuple[int, ...]], mouth: tuple[int, int],
                radius: float) -> np.ndarray:
    """(count, 2) offsets: an upright face (eyes above the mouth) inside an ellipse, TRACKED at the origin."""
    angles = np.linspace(0, 2 * math.pi, count, endpoint=False)
    layout = np.stack([0.8 * radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    layout[list(eyes[0])] = (-0.35 * radius, -0.2 * radius)
    layout[list(eyes[1])] = (0.35 * radius, -0.2 * radius)
    layout[list(mouth)] = [(-0.25 * radius, 0.45 * radius), (0.25 * radius, 0.45 * radius)]
    layout[TRACKED] = 0
    return layout.astype(np.float32)


LAYOUT_106 = face_layout(106, ((33, 35, 40, 39), (87, 89, 94, 93)), (52, 61), 0.5)  # model units: [-1, 1]
LAYOUT_203 = face_layout(203, ((0, 6, 12, 18), (24, 30, 36, 42)), (48, 66), 0.3)  # model units: [0, 1]


def _centroid_points(nodes: list, source: str, size: int, unit: float, origin: float, layout: np.ndarray) -> str:
    """Nodes: the redness centroid of a (1, 3, size, size) input in model units, plus ``layout``, flattened."""
    redness = _redness(nodes, source)
    grid = np.arange(size, dtype=np.float32)
    _consts(nodes, gx=grid.reshape(1, 1, 1, size), gy=grid.reshape(1, 1, size, 1), axes=np.array([2, 3]),
            unit=np.float32(unit), origin=np.float32(origin), layout=layout[None], shape=np.array([1, -1]))
    nodes += [
        helper.make_node("Relu", [redness], ["weight"]),
        helper.make_node("ReduceSum", ["weight", "axes"], ["total"], keepdims=1),
        helper.make_node("Mul", ["weight", "gx"], ["wx"]),
        helper.make_node("Mul", ["weight", "gy"], ["wy"]),
        helper.make_node("ReduceSum", ["wx", "axes"], ["sx"], keepdims=1),
        helper.make_node("ReduceSum", ["wy", "axes"], ["sy"], keepdims=1),
        helper.make_node("Concat", ["sx", "sy"], ["sxy"], axis=3),  # (1, 1, 1, 2)
        helper.make_node("Div", ["sxy", "total"], ["pixel"]),
        helper.make_node("Div", ["pixel", "unit"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "origin"], ["centre"]),
        helper.make_node("Squeeze", ["centre", "c0"], ["centre3"]),  # (1, 1, 2)
        helper.make_node("Add", ["centre3", "layout"], ["points"]),  # (1, N, 2)
        helper.make_node("Reshape", ["points", "shape"], ["flat_points"]),
    ]
    return "flat_points"


def fake_landmark_106(path: Path) -> Path:
    nodes: list = []
    out = _centroid_points(nodes, "data", 192, 96.0, 1.0, LAYOUT_106)  # insightface: (v + 1) * 96 -> pixels
    nodes.append(helper.make_node("Identity", [out], ["fc1"]))
    return _save(path, nodes, [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 192, 192])],
                 [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 212])])


def fake_landmark_203(path: Path) -> Path:
    nodes: list = []
    out = _centroid_points(nodes, "input", 224, 224.0, 0.0, LAYOUT_203)  # LivePortrait: v * 224 -> pixels
    nodes += [helper.make_node("Identity", ["total"], ["aux0"]), helper.make_node("Identity", ["total"], ["aux1"]),
              helper.make_node("Identity", [out], ["pts"])]
    return _save(path, nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
                 [helper.make_tensor_value_info("aux0", TensorProto.FLOAT, [1, 1, 1, 1]),
                  helper.make_tensor_value_info("aux1", TensorProto.FLOAT, [1, 1, 1, 1]),
                  helper.make_tensor_value_info("pts", TensorProto.FLOAT, [1, 406])])


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("face_weights")
    fake_detector(root / cropper_module.DETECTOR)
    fake_landmark_106(root / cropper_module.LANDMARK_106)
    fake_landmark_203(root / cropper_module.LANDMARK_203)
    return root


def red_face(centre: tuple[float, float], size: tuple[int, int] = (640, 480), sigma: float = 12.0) -> np.ndarray:
    """A black RGB image with a red Gaussian blob: the fake models' "face"."""
    ys, xs = np.mgrid[:size[1], :size[0]]
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[..., 0] = np.round(255 * blob)
    return image


# -- the models, one by one ---------------------------------------------------------------------------------


def test_detector_decodes_boxes_and_keypoints_through_onnxruntime(weights: Path) -> None:
    detector = FaceDetector(weights / cropper_module.DETECTOR)
    assert detector.size == (512, 512) and detector.has_keypoints  # symbolic input size -> the official det_size
    # 640x480 letterboxes at scale 0.8; (305, 255) -> detector pixel (244, 204), the centre of a stride-8 cell.
    faces = detector.detect(red_face((305, 255)))
    assert len(faces) == 1  # the neighbouring cells' boxes are suppressed
    face = faces[0]
    scale = 512 / 640
    np.testing.assert_allclose(face.box, [305 - BOX_HALF / scale, 255 - BOX_HALF / scale,
                                          305 + BOX_HALF / scale, 255 + BOX_HALF / scale], atol=1e-3)
    np.testing.assert_allclose(face.keypoints, (305, 255) + KEYPOINT_OFFSETS / scale, atol=1e-3)
    assert face.score > 0.9
    # Fed as BGR the blob would be blue: nothing. The detector is handed RGB and must not swap it.
    assert detector.detect(red_face((305, 255))[..., ::-1].copy()) == []


def test_faces_come_largest_first() -> None:
    small = Detection(np.array([0, 0, 10, 10.0]), 0.99, None)
    large = Detection(np.array([50, 50, 90, 95.0]), 0.2, None)
    assert largest_first([small, large]) == [large, small]


def test_landmark_106_maps_model_points_back_to_the_image(weights: Path) -> None:
    model = Landmark106(weights / cropper_module.LANDMARK_106)
    assert (model.mean, model.std) == (127.5, 128.0)
    box = np.array([250.0, 190.0, 370.0, 330.0])  # not centred on the blob: the crop window must be undone
    points = model(red_face((301.3, 262.8)), box)
    assert points.shape == (106, 2)
    np.testing.assert_allclose(points[TRACKED], (301.3, 262.8), atol=0.1)
    # The layout comes back at the crop's scale: model units * 96 pixels / (192 / (1.5 * 140)).
    scale = 96 * 1.5 * 140 / 192
    np.testing.assert_allclose(points - points[TRACKED], LAYOUT_106 * scale, atol=1e-3)


def test_landmark_203_runs_on_the_rolled_crop_around_its_anchor(weights: Path) -> None:
    model = Landmark203(weights / cropper_module.LANDMARK_203)
    roll = math.radians(25)
    rotation = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    anchor = LAYOUT_106.astype(np.float64) @ rotation.T * 150 + (330, 250)
    points = model(red_face((322.4, 247.1)), anchor)
    np.testing.assert_allclose(points[TRACKED], (322.4, 247.1), atol=0.1)
    # The 203 layout comes back rolled with the crop: its eyes are 25 degrees off level in the image.
    eyes = [points[[0, 6, 12, 18]].mean(axis=0), points[[24, 30, 36, 42]].mean(axis=0)]
    assert math.degrees(math.atan2(*(eyes[1] - eyes[0])[::-1])) == pytest.approx(25, abs=1e-6)


def test_mxnet_style_landmark_graphs_normalise_themselves(tmp_path: Path) -> None:
    nodes = [helper.make_node("Sub", ["x", "x"], ["a"], name="Sub_0"), helper.make_node("Mul", ["a", "x"], ["y"], name="Mul_1")]
    path = _save(tmp_path / "m.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    assert _normalisation(path) == (0.0, 1.0)


def test_model_files_that_are_not_the_expected_models_are_refused(weights: Path, tmp_path: Path) -> None:
    broken = tmp_path / "det_10g.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(OnnxError, match="det_10g.onnx: not a readable ONNX model") as info:
        FaceDetector(broken)
    assert "\n" not in str(info.value)
    with pytest.raises(OnnxError, match="not an SCRFD face detector"):
        FaceDetector(weights / cropper_module.LANDMARK_106)
    with pytest.raises(OnnxError, match="not LivePortrait's landmark model"):
        Landmark203(weights / cropper_module.LANDMARK_106)


# -- FaceCropper with the official models ---------------------------------------------------------------------


def test_official_chain_crops_the_face_and_tracks_it(weights: Path) -> None:
    cropper = FaceCropper(weights)
    assert cropper.describe() == "official insightface + landmark.onnx" and cropper.has_landmarks
    image = red_face((305, 255))
    source = cropper.crop_source(image, label="source red.png")
    assert source.method == "insightface" and source.image_256.shape == (256, 256, 3)
    # The crop is the official one from the 106 points, and its landmarks are the 203 in image_256 pixels.
    points_106 = cropper.models.landmark_106(image, cropper.models.detector.detect(image)[0].box)
    np.testing.assert_allclose(source.M_o2c, crop.crop_from_landmarks(points_106, crop.SOURCE), atol=1e-9)
    to_256 = crop.scale_matrix((512, 512), (256, 256)) @ source.M_o2c
    np.testing.assert_allclose(source.landmarks[TRACKED], crop.transform_points(np.array([[305, 255]]), to_256)[0],
                               atol=0.1)
    red = source.image_256[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:256, :256]
    np.testing.assert_allclose([(xs * red).sum() / red.sum(), (ys * red).sum() / red.sum()],
                               source.landmarks[TRACKED], atol=0.3)

    # Driving frames: the first is detected, the next ones tracked from the previous 203 points only.
    calls = []
    detect = cropper.models.detector.detect
    cropper.models.detector.detect = lambda rgb: calls.append(1) or detect(rgb)
    first = cropper.crop_driving(image, None, label="driving frame 0")
    moved = cropper.crop_driving(red_face((318, 249)), first, label="driving frame 1")
    assert len(calls) == 1
    np.testing.assert_allclose(crop.transform_points(moved.landmarks[TRACKED:TRACKED + 1], moved.M_c2o @
                                                     crop.scale_matrix((256, 256), (512, 512)))[0], (318, 249), atol=0.1)
    assert moved.M_o2c[0, 1] == 0  # the driving crop is axis-aligned


def test_no_face_names_the_frame(weights: Path) -> None:
    cropper = FaceCropper(weights)
    with pytest.raises(NoFaceError, match="no face found in driving frame 17"):
        cropper.crop_driving(np.zeros((200, 300, 3), np.uint8), None, label="driving frame 17")
    # Without a crop, a missing face only means no landmarks.
    assert cropper.resize_only(np.zeros((200, 300, 3), np.uint8)).landmarks is None


# -- the fallback and no-crop ----------------------------------------------------------------------------------


def cascade_or_skip() -> None:
    try:
        cascade_file()
    except CascadeUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("image", IMAGES)
def test_cascade_fallback_crops_around_the_annotated_eyes(image: str, tmp_path: Path) -> None:
    rgb, points = annotated(image)
    cascade_or_skip()
    cropper = FaceCropper(tmp_path)
    assert not cropper.has_landmarks
    assert cropper.describe().startswith("OpenCV cascade fallback (approximate crop")
    assert "det_10g.onnx" in cropper.describe()
    result = cropper.crop_source(rgb, label=f"source {image}")
    assert result.method == "cascade" and result.landmarks is None
    eyes = crop.transform_points(points[:2], result.M_o2c)
    assert ((eyes > 0) & (eyes < 512)).all()
    # Near the official framing (insightface's mean face puts the eyes' midpoint at the crop centre and
    # their distance at 0.18 of the crop side): a loose bound, the cascade box is only a box.
    assert np.abs(eyes.mean(axis=0) - 256).max() < 0.1 * 512
    assert 0.13 < np.linalg.norm(eyes[1] - eyes[0]) / 512 < 0.23


def test_cascade_fallback_without_a_face_names_the_frame(tmp_path: Path) -> None:
    cascade_or_skip()
    cropper = FaceCropper(None)
    assert "no weights folder" in cropper.describe()
    flat = np.full((240, 320, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    for frame, label in ((flat, "source flat.png"), (noise, "driving frame 3")):
        with pytest.raises(NoFaceError, match=f"no face found in {label} \\(OpenCV cascade fallback\\)"):
            cropper.crop_driving(frame, None, label=label)


def test_cascade_fallback_follows_the_face_and_holds_it_when_lost() -> None:
    rgb, points = annotated("source/s6.jpg")
    cascade_or_skip()
    cropper = FaceCropper(None)
    first = cropper.crop_driving(rgb, None, label="driving frame 0")
    moved = np.roll(rgb, (12, -20), axis=(0, 1))  # the face moves 20 px left and 12 px down
    second = cropper.crop_driving(moved, first, label="driving frame 1")
    # The box follows, half-way (smoothed against the cascade's jitter), within the cascade's own jitter.
    step = (second.anchor - first.anchor).reshape(2, 2).mean(axis=0)
    np.testing.assert_allclose(step, (-20 * 0.5, 12 * 0.5), atol=3)
    eyes = crop.transform_points(points[:2] + (-20, 12), second.M_o2c)
    assert ((eyes > 0) & (eyes < 512)).all()
    # A frame where the cascade finds nothing fails, naming the frame (--on-missing-face fail, the default) ...
    with pytest.raises(NoFaceError, match="no face found in driving frame 2"):
        cropper.crop_driving(np.full_like(rgb, 128), second, label="driving frame 2")
    # ... or keeps the last box (hold), as the official tracking never loses a face.
    held = FaceCropper(None, hold_missing=True).crop_driving(np.full_like(rgb, 128), second, label="driving frame 2")
    np.testing.assert_array_equal(held.anchor, second.anchor)


def test_no_crop_resizes_and_maps_the_512_result_onto_the_input() -> None:
    cropper = FaceCropper(None, no_crop=True)
    assert cropper.describe().startswith("no crop: input used as an aligned 256x256 crop")
    aligned = np.random.default_rng(1).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    same = cropper.crop_source(aligned)
    assert same.image_256 is aligned and same.landmarks is None and same.method == "resize"
    larger = cropper.crop_source(cv2.resize(aligned, (512, 512), interpolation=cv2.INTER_NEAREST))
    np.testing.assert_array_equal(larger.image_256, aligned)
    np.testing.assert_allclose(same.M_c2o @ [511.5, 511.5, 1], [255.5, 255.5, 1])  # crop edge -> input edge



# -- against the official code (opt-in) --------------------------------------------------------------------------
# With LPT_OFFICIAL_SRC pointing at a checkout of KwaiVGI/LivePortrait, the official crop, detector decoding,
# landmark runner and paste-back run on the same inputs (the fake models above, a sample image); else skipped.

OFFICIAL_SRC = os.environ.get("LPT_OFFICIAL_SRC")


@pytest.fixture(scope="module")
def official() -> Iterator[dict[str, Any]]:
    if not OFFICIAL_SRC:
        pytest.skip("set LPT_OFFICIAL_SRC to a checkout of KwaiVGI/LivePortrait to compare against the official code")
    root = Path(OFFICIAL_SRC).resolve()
    saved = {k: m for k, m in sys.modules.items() if k == "src" or k.startswith("src.")}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(root))
    try:
        modules: dict[str, Any] = {
            "crop": importlib.import_module("src.utils.crop"),
            "landmark_runner": importlib.import_module("src.utils.human_landmark_runner"),
        }
    finally:
        sys.path.remove(str(root))
    # The insightface package imports scikit-image on the way; the detector's own file needs only numpy and cv2.
    path = root / "src/utils/dependencies/insightface/model_zoo/retinaface.py"
    spec = importlib.util.spec_from_file_location("official_retinaface", path)
    assert spec is not None and spec.loader is not None
    modules["retinaface"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(modules["retinaface"])
    modules["mask"] = cv2.imread(str(root / "src/utils/resources/mask_template.png"), cv2.IMREAD_COLOR)
    yield modules
    for k in [k for k in sys.modules if k == "src" or k.startswith("src.")]:
        del sys.modules[k]
    sys.modules.update(saved)


def test_crop_matrices_match_the_official_code(official: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    blank = np.zeros((500, 500, 3), np.uint8)
    for count in (5, 106, 203):
        points = rng.uniform(100, 400, size=(count, 2)).astype(np.float32)
        for settings in (crop.SOURCE, crop.LANDMARK_INPUT):
            theirs = official["crop"].crop_image(blank, points, dsize=settings.dsize, scale=settings.scale,
                                                 vy_ratio=settings.vy_ratio)["M_o2c"]
            np.testing.assert_allclose(crop.crop_from_landmarks(points, settings), theirs, atol=1e-3)  # theirs: float32
        box = official["crop"].parse_bbox_from_landmark(points, scale=crop.DRIVING.scale, vy_ratio=crop.DRIVING.vy_ratio)
        theirs = official["crop"].crop_image_by_bbox(blank, [*box["bbox"][0], *box["bbox"][2]], dsize=512)["M_o2c"]
        np.testing.assert_allclose(crop.crop_from_landmarks(points, crop.DRIVING), theirs, atol=1e-3)


def test_detector_and_landmark_runner_match_the_official_code(official: dict[str, Any], weights: Path) -> None:
    import onnxruntime as ort

    path = weights / cropper_module.DETECTOR
    theirs = official["retinaface"].RetinaFace(model_file=str(path), session=ort.InferenceSession(str(path)))
    theirs.prepare(-1, input_size=(512, 512), det_thresh=0.15)
    ours = FaceDetector(path)
    for size in ((640, 480), (480, 640)):
        image = np.maximum(red_face((305, 255), size), red_face((120, 90), size, sigma=8))  # two faces
        boxes, points = theirs.detect(np.ascontiguousarray(image[..., ::-1]))  # insightface takes BGR
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        faces = ours.detect(image)
        assert len(faces) == len(boxes) == 2
        np.testing.assert_allclose([f.box for f in faces], boxes[order, :4], atol=1e-3)
        np.testing.assert_allclose([f.keypoints for f in faces], points[order], atol=1e-3)

    runner = official["landmark_runner"].LandmarkRunner(ckpt_path=str(weights / cropper_module.LANDMARK_203),
                                                        onnx_provider="cpu")
    anchor = LAYOUT_106.astype(np.float64) * 160 + (300, 250)
    image = red_face((309.5, 244.2))
    np.testing.assert_allclose(Landmark203(weights / cropper_module.LANDMARK_203)(image, anchor),
                               runner.run(image, anchor.astype(np.float32)), atol=0.01)


def test_paste_back_matches_the_official_code(official: dict[str, Any]) -> None:
    from lpt.runtime.pasteback import PasteBack

    source, points = annotated("source/s6.jpg")
    M_c2o = crop.invert(crop.crop_from_landmarks(points, crop.SOURCE))
    result = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 256, (512, 512, 3), dtype=np.uint8), (9, 9), 3)
    mask = official["crop"].prepare_paste_back(official["mask"], M_c2o, dsize=source.shape[1::-1])
    theirs = official["crop"].paste_back(result, M_c2o, source, mask)
    difference = np.abs(PasteBack(source, M_c2o).paste(result).astype(int) - theirs)
    assert difference.max() <= 2 and difference.mean() < 0.01
