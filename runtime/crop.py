"""The official crop geometry (spec 6.2, 6.3): a square, roll-aligned face rectangle from landmarks, the
similarity transform it defines, and the warps and point maps that use it.

Matrices are 3x3 float64 in pixel coordinates (x right, y down, integer coordinates at pixel centres,
as ``cv2.warpAffine``). ``M_o2c`` maps original-image points into the crop, ``M_c2o`` is its inverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropSettings:
    dsize: int  # side of the square crop, pixels
    scale: float  # crop side / landmark extent
    vy_ratio: float  # shift along the eye->mouth axis, in crop sides (negative: towards the forehead)
    rotate: bool  # roll-align the crop (else an axis-aligned square around the same centre)


# The official CropConfig values; vx_ratio is never forwarded by the official crop code, so it is always 0.
SOURCE = CropSettings(dsize=512, scale=2.3, vy_ratio=-0.125, rotate=True)
DRIVING = CropSettings(dsize=512, scale=2.2, vy_ratio=-0.1, rotate=False)
LANDMARK_INPUT = CropSettings(dsize=224, scale=1.5, vy_ratio=-0.1, rotate=True)  # what landmark.onnx sees

# Indices of the eye-centre and mouth-corner points in each supported landmark layout.
_LEFT_EYE = {106: (33, 35, 40, 39), 203: (0, 6, 12, 18), 5: (0,)}
_RIGHT_EYE = {106: (87, 89, 94, 93), 203: (24, 30, 36, 42), 5: (1,)}
_MOUTH_CORNERS = {106: (52, 61), 203: (48, 66), 5: (3, 4)}


@dataclass(frozen=True)
class FaceRect:
    """A square in the original image: centre (x, y), side in pixels, roll angle in radians."""

    centre: np.ndarray
    size: float
    angle: float


def anchor_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) landmarks (N = 5, 106 or 203) -> (centre between the eyes, centre between the mouth corners)."""
    n = len(points)
    if n not in _MOUTH_CORNERS:
        raise ValueError(f"landmarks must be 5, 106 or 203 points, got {points.shape}")
    left = points[list(_LEFT_EYE[n])].mean(axis=0)
    right = points[list(_RIGHT_EYE[n])].mean(axis=0)
    mouth = points[list(_MOUTH_CORNERS[n])].mean(axis=0)
    return (left + right) / 2, mouth


def face_rect(points: np.ndarray, scale: float, vy_ratio: float) -> FaceRect:
    """The official ``parse_rect_from_landmark``: axes from the eye->mouth direction, the landmarks' bounding
    box in that frame made square and scaled, then shifted along the face's vertical axis."""
    points = np.asarray(points, dtype=np.float64)
    eyes, mouth = anchor_points(points)
    uy = mouth - eyes
    length = float(np.linalg.norm(uy))
    uy = uy / length if length > 1e-3 else np.array([0.0, 1.0])
    ux = np.array([uy[1], -uy[0]])
    angle = math.acos(max(-1.0, min(1.0, ux[0])))
    if ux[1] < 0:
        angle = -angle
    mean = points.mean(axis=0)
    rotated = (points - mean) @ np.stack([ux, uy]).T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    box_centre = (low + high) / 2
    size = float(max(high - low)) * scale
    centre = mean + ux * box_centre[0] + uy * box_centre[1] + uy * (vy_ratio * size)
    return FaceRect(centre, size, angle)


def crop_matrix(rect: FaceRect, dsize: int, rotate: bool = True) -> np.ndarray:
    """3x3 original->crop similarity: ``rect`` becomes the ``dsize`` square, rolled upright when ``rotate``."""
    s = dsize / rect.size
    angle = rect.angle if rotate else 0.0
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = rect.centre
    half = dsize / 2
    return np.array([
        [s * cos, s * sin, half - s * (cos * cx + sin * cy)],
        [-s * sin, s * cos, half - s * (-sin * cx + cos * cy)],
        [0.0, 0.0, 1.0],
    ])


def crop_from_landmarks(points: np.ndarray, settings: CropSettings) -> np.ndarray:
    """3x3 ``M_o2c`` of the official crop around ``points`` with ``settings``."""
    rect = face_rect(points, settings.scale, settings.vy_ratio)
    return crop_matrix(rect, settings.dsize, settings.rotate)


def scale_matrix(from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """3x3 map from an image of (width, height) ``from_size`` resized to ``to_size`` (cv2.resize convention)."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    # cv2.resize aligns pixel areas, not centres: x' + 0.5 = (x + 0.5) * sx.
    return np.array([[sx, 0.0, 0.5 * (sx - 1)], [0.0, sy, 0.5 * (sy - 1)], [0.0, 0.0, 1.0]])


def invert(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.inv(matrix)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 2) points through a 3x3 (or 2x3) affine matrix."""
    return np.asarray(points, dtype=np.float64) @ matrix[:2, :2].T + matrix[:2, 2]


def warp(image: np.ndarray, M_o2c: np.ndarray, dsize: int | tuple[int, int]) -> np.ndarray:
    """The crop (or any affine warp) of ``image``: bilinear, zero outside the image, as the official code."""
    size = (dsize, dsize) if isinstance(dsize, int) else dsize
    return cv2.warpAffine(image, np.ascontiguousarray(M_o2c[:2], dtype=np.float64), size, flags=cv2.INTER_LINEAR)
