"""The official crop geometry (runtime/crop.py), on hand-annotated real faces and on synthetic points."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from lpt.runtime import crop

from tests.conftest import shared_file

ANNOTATIONS = Path(__file__).parent / "data" / "face_points.json"
FIVE_POINTS = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")
IMAGES = tuple(json.loads(ANNOTATIONS.read_text())["faces"])


def annotated(image: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, (5, 2) annotated points in insightface's 5-point order); skips when the assets are absent."""
    face = json.loads(ANNOTATIONS.read_text())["faces"][image]
    bgr = cv2.imread(str(shared_file(f"assets/{image}")))
    assert bgr.shape[1::-1] == tuple(face["size"]), f"{image} is not the annotated image"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.array([face[k] for k in FIVE_POINTS], dtype=np.float64)


def rotated_extent(points: np.ndarray, angle: float) -> np.ndarray:
    """Width and height of the points' bounding box in a frame rotated by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    p = points @ np.array([[c, -s], [s, c]])
    return p.max(axis=0) - p.min(axis=0)


@pytest.mark.parametrize("image", IMAGES)
def test_source_crop_of_annotated_faces_is_upright_scaled_and_centred(image: str) -> None:
    _, points = annotated(image)
    M = crop.crop_from_landmarks(points, crop.SOURCE)  # the official code accepts 5-point sets (SCRFD's)
    p = crop.transform_points(points, M)
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    # The eye-centre -> mouth-centre axis becomes the crop's vertical, pointing down.
    assert abs(eyes[0] - mouth[0]) < 1e-6 and mouth[1] > eyes[1]
    # On a real face that levels the eyes (the roll is gone; d8's head is tilted by 4 degrees).
    assert abs(math.degrees(math.atan2(p[1, 1] - p[0, 1], p[1, 0] - p[0, 0]))) < 4.0
    assert p[0, 0] < 256 < p[1, 0]
    # The square's side is scale x the landmarks' larger extent in that upright frame ...
    side = crop.SOURCE.dsize / crop.SOURCE.scale
    assert max(p.max(axis=0) - p.min(axis=0)) == pytest.approx(side, rel=1e-9)
    # ... and the landmarks' box centre sits vy_ratio crop sides below the crop centre (towards the chin).
    centre = (p.max(axis=0) + p.min(axis=0)) / 2
    expected = (256, 256 - crop.SOURCE.vy_ratio * crop.SOURCE.dsize)
    np.testing.assert_allclose(centre, expected, atol=1e-6)


def test_warp_moves_a_dot_where_transform_points_puts_it() -> None:
    rgb = np.zeros((300, 400, 3), np.uint8)
    dot = np.array([233.0, 141.0])
    cv2.circle(rgb, tuple(int(v) for v in dot), 3, (255, 255, 255), -1)
    points = np.array([[150, 100], [230, 120], [180, 150], [140, 180], [195, 200]], np.float64)  # a rolled face
    M = crop.crop_from_landmarks(points, crop.SOURCE)
    assert abs(crop.face_rect(points, 2.3, -0.125).angle) > math.radians(10)
    out = crop.warp(rgb, M, 512)[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:512, :512]
    centroid = np.array([(xs * out).sum(), (ys * out).sum()]) / out.sum()
    np.testing.assert_allclose(centroid, crop.transform_points(dot[None], M)[0], atol=0.05)


@pytest.mark.parametrize("settings", [crop.SOURCE, crop.DRIVING, crop.LANDMARK_INPUT])
def test_crop_to_original_round_trip(settings: crop.CropSettings) -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(100, 300, size=(203, 2))
    M_o2c = crop.crop_from_landmarks(points, settings)
    M_c2o = crop.invert(M_o2c)
    np.testing.assert_allclose(M_c2o @ M_o2c, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(crop.transform_points(crop.transform_points(points, M_o2c), M_c2o), points, atol=1e-9)
    # A similarity: equal scale on both axes, no shear; no rotation for the driving crop.
    a = M_o2c[:2, :2]
    np.testing.assert_allclose(a @ a.T, np.eye(2) * np.linalg.det(a), atol=1e-12)
    if not settings.rotate:
        assert a[0, 1] == 0 and a[1, 0] == 0


@pytest.mark.parametrize("roll_degrees", [-35.0, -5.0, 0.0, 20.0])
def test_roll_is_recovered_from_106_and_203_point_layouts(roll_degrees: float) -> None:
    roll = math.radians(roll_degrees)
    rotation = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    for count, left, right, mouth in ((106, (33, 35, 40, 39), (87, 89, 94, 93), (52, 61)),
                                      (203, (0, 6, 12, 18), (24, 30, 36, 42), (48, 66))):
        upright = np.random.default_rng(count).uniform(-60, 60, size=(count, 2))
        upright[list(left)] = (-30, -20)
        upright[list(right)] = (30, -20)
        upright[list(mouth)] = [(-15, 40), (15, 40)]
        points = upright @ rotation.T + (200, 180)
        rect = crop.face_rect(points, 1.0, 0.0)
        assert rect.angle == pytest.approx(roll, abs=1e-9)
        p = crop.transform_points(points, crop.crop_matrix(rect, 200))
        np.testing.assert_allclose(p[list(left)][:, 1], p[list(right)][:, 1], atol=1e-9)  # eyes level again
        assert rect.size == pytest.approx(max(rotated_extent(points, roll)), rel=1e-9)


def test_unsupported_landmark_count_is_refused() -> None:
    with pytest.raises(ValueError, match="5, 106 or 203"):
        crop.anchor_points(np.zeros((68, 2)))


def test_scale_matrix_follows_cv2_resize() -> None:
    image = np.zeros((120, 200), np.float32)
    image[40:44, 150:154] = 1.0  # centre (151.5, 41.5)
    small = cv2.resize(image, (100, 60), interpolation=cv2.INTER_AREA)
    ys, xs = np.mgrid[:60, :100]
    centroid = np.array([(xs * small).sum(), (ys * small).sum()]) / small.sum()
    expected = crop.transform_points(np.array([[151.5, 41.5]]), crop.scale_matrix((200, 120), (100, 60)))[0]
    np.testing.assert_allclose(centroid, expected, atol=1e-6)
