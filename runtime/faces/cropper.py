"""From a frame to what the networks take: the face crop, its transform back to the frame, its landmarks.

Three methods, chosen once per process: the official models from the weights folder (insightface detector
and 106 points, LivePortrait's 203 points), the OpenCV cascade fallback when they are absent, and no crop
at all for inputs that are already aligned crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from lpt.runtime import crop
from lpt.runtime.faces.detector import Detection, FaceDetector
from lpt.runtime.faces.fallback import CascadeFaceFinder, approximate_rect
from lpt.runtime.faces.landmarks import Landmark106, Landmark203

from lpt.errors import LptError

CROP_SIZE = 512  # the official crop; the generator's output has this size too
NETWORK_SIZE = 256  # what F and M take
DETECTOR = "insightface/models/buffalo_l/det_10g.onnx"
LANDMARK_106 = "insightface/models/buffalo_l/2d106det.onnx"
LANDMARK_203 = "liveportrait/landmark.onnx"
DRIVING_BOX_SMOOTHING = 0.5  # fallback only: weight of the previous frame's cascade box, against its jitter


class NoFaceError(LptError):
    """No face in a frame that needs one."""


@dataclass(frozen=True)
class Crop:
    image_256: np.ndarray  # (256, 256, 3) uint8 RGB: the network input
    M_c2o: np.ndarray  # (3, 3): pixels of the 512x512 crop (the generator's output) -> original-frame pixels
    landmarks: np.ndarray | None  # (203, 2) in image_256 pixels; None without the landmark model
    method: str  # "insightface", "cascade" or "resize"
    # What the next frame tracks from: the 203 landmarks in frame pixels, or the fallback's face box.
    anchor: np.ndarray | None = field(default=None, repr=False)

    @property
    def M_o2c(self) -> np.ndarray:
        return crop.invert(self.M_c2o)


@dataclass(frozen=True)
class _OfficialModels:
    detector: FaceDetector
    landmark_106: Landmark106
    landmark_203: Landmark203


def _missing_models(weights: Path | None) -> list[str]:
    if weights is None:
        return [DETECTOR, LANDMARK_106, LANDMARK_203]
    return [name for name in (DETECTOR, LANDMARK_106, LANDMARK_203) if not (weights / name).is_file()]


def _load_official(weights: Path) -> _OfficialModels:
    return _OfficialModels(FaceDetector(weights / DETECTOR), Landmark106(weights / LANDMARK_106),
                           Landmark203(weights / LANDMARK_203))


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")


def _to_network(crop_512: np.ndarray, interpolation: int) -> np.ndarray:
    return cv2.resize(crop_512, (NETWORK_SIZE, NETWORK_SIZE), interpolation=interpolation)


class FaceCropper:
    """Built once per process; ``weights`` is the official weights folder (or None), ``no_crop`` for inputs
    that are already aligned face crops."""

    def __init__(self, weights: Path | None, no_crop: bool = False, hold_missing: bool = False) -> None:
        self.no_crop = no_crop
        self.hold_missing = hold_missing  # a later frame where the fallback finds no face keeps the last box
        self.missing = _missing_models(weights)
        self.models = _load_official(weights) if weights is not None and not self.missing else None
        self.cascade = CascadeFaceFinder() if self.models is None and not no_crop else None
        self._weights = weights

    @property
    def has_landmarks(self) -> bool:
        """Whether crops carry 203 landmarks (needed for eye/lip retargeting)."""
        return self.models is not None

    def describe(self) -> str:
        if self.no_crop:
            landmarks = "203 landmarks from the official models" if self.models else "no landmarks"
            return f"no crop: input used as an aligned 256x256 crop ({landmarks})"
        if self.models is not None:
            return "official insightface + landmark.onnx"
        where = "no weights folder" if self._weights is None else f"not in {self._weights}: {', '.join(self.missing)}"
        return f"OpenCV cascade fallback (approximate crop, no landmarks; official face models {where})"

    # -- the three entry points -------------------------------------------------------------------------

    def crop_source(self, rgb: np.ndarray, label: str = "source") -> Crop:
        """The official source crop: rolled upright, 512x512, then 256x256 (INTER_AREA) for the networks."""
        _check_rgb(rgb)
        if self.no_crop:
            return self.resize_only(rgb, label=label)
        if self.models is None:
            return self._fallback(rgb, None, label, crop.SOURCE, cv2.INTER_AREA)
        points_106 = self.models.landmark_106(rgb, self._detect(rgb, label).box)
        points_203 = self.models.landmark_203(rgb, points_106)
        M_o2c = crop.crop_from_landmarks(points_106, crop.SOURCE)
        return self._crop(rgb, M_o2c, cv2.INTER_AREA, points_203, "insightface", points_203)

    def crop_source_frame(self, rgb: np.ndarray, previous: Crop | None = None, label: str = "source frame") -> Crop:
        """A frame of a source video: as ``crop_source`` but cropped from the 203 landmarks, tracked from
        ``previous`` without a new detection, as the official code does for source videos."""
        _check_rgb(rgb)
        if self.no_crop:
            return self.resize_only(rgb, previous, label)
        if self.models is None:
            return self._fallback(rgb, previous, label, crop.SOURCE, cv2.INTER_AREA)
        points_203 = self._landmarks_203(rgb, previous, label)
        M_o2c = crop.crop_from_landmarks(points_203, crop.SOURCE)
        return self._crop(rgb, M_o2c, cv2.INTER_AREA, points_203, "insightface", points_203)

    def crop_driving(self, rgb: np.ndarray, previous: Crop | None = None, label: str = "driving frame") -> Crop:
        """The official driving crop: an axis-aligned square from this frame's landmarks, tracked from
        ``previous`` (its 203 landmarks) without a new detection, as the official code does."""
        _check_rgb(rgb)
        if self.no_crop:
            return self.resize_only(rgb, previous, label)
        if self.models is None:
            return self._fallback(rgb, previous, label, crop.DRIVING, cv2.INTER_LINEAR)
        points_203 = self._landmarks_203(rgb, previous, label)
        M_o2c = crop.crop_from_landmarks(points_203, crop.DRIVING)
        return self._crop(rgb, M_o2c, cv2.INTER_LINEAR, points_203, "insightface", points_203)

    def resize_only(self, rgb: np.ndarray, previous: Crop | None = None, label: str = "frame") -> Crop:
        """The whole frame resized to 256x256 (bilinear, as the official code for uncropped inputs), with
        its landmarks when the models are there and find a face (else None, without an error)."""
        _check_rgb(rgb)
        h, w = rgb.shape[:2]
        landmarks = None
        if self.models is not None:
            try:
                landmarks = self._landmarks_203(rgb, previous, label)
            except NoFaceError:
                landmarks = None
        M_c2o = crop.scale_matrix((CROP_SIZE, CROP_SIZE), (w, h))
        M_o2c = crop.invert(M_c2o)
        image = rgb if (h, w) == (NETWORK_SIZE, NETWORK_SIZE) else cv2.resize(rgb, (NETWORK_SIZE, NETWORK_SIZE))
        return Crop(image, M_c2o, self._in_network_pixels(landmarks, M_o2c), "resize", landmarks)

    # -- helpers ------------------------------------------------------------------------------------------

    def _detect(self, rgb: np.ndarray, label: str) -> Detection:
        assert self.models is not None
        faces = self.models.detector.detect(rgb)
        if not faces:
            raise NoFaceError(f"no face found in {label} (insightface detector)")
        return faces[0]

    def _landmarks_203(self, rgb: np.ndarray, previous: Crop | None, label: str) -> np.ndarray:
        assert self.models is not None
        if previous is not None and previous.anchor is not None and previous.anchor.shape == (203, 2):
            return self.models.landmark_203(rgb, previous.anchor)
        points_106 = self.models.landmark_106(rgb, self._detect(rgb, label).box)
        return self.models.landmark_203(rgb, points_106)

    def _fallback(self, rgb: np.ndarray, previous: Crop | None, label: str, settings: crop.CropSettings,
                  interpolation: int) -> Crop:
        box = self._cascade_box(rgb, previous, label)
        M_o2c = crop.crop_matrix(approximate_rect(box, settings), CROP_SIZE, rotate=False)
        return self._crop(rgb, M_o2c, interpolation, None, "cascade", box)

    def _cascade_box(self, rgb: np.ndarray, previous: Crop | None, label: str) -> np.ndarray:
        assert self.cascade is not None
        anchor = previous.anchor if previous is not None else None
        earlier = anchor if anchor is not None and anchor.shape == (4,) else None  # a box, not landmarks
        box = self.cascade.find(rgb, near=earlier)
        if earlier is not None and (box is not None or self.hold_missing):
            # --on-missing-face hold: like the official landmark tracking, a miss keeps the last box.
            return earlier if box is None else DRIVING_BOX_SMOOTHING * earlier + (1 - DRIVING_BOX_SMOOTHING) * box
        if box is None:
            hint = "; give --on-missing-face hold to keep the last face found" if earlier is not None else ""
            raise NoFaceError(f"no face found in {label} (OpenCV cascade fallback){hint}")
        return box

    @staticmethod
    def _in_network_pixels(points: np.ndarray | None, M_o2c: np.ndarray) -> np.ndarray | None:
        if points is None:
            return None
        to_network = crop.scale_matrix((CROP_SIZE, CROP_SIZE), (NETWORK_SIZE, NETWORK_SIZE)) @ M_o2c
        return crop.transform_points(points, to_network)

    def _crop(self, rgb: np.ndarray, M_o2c: np.ndarray, interpolation: int, points_203: np.ndarray | None,
              method: str, anchor: np.ndarray) -> Crop:
        image_512 = crop.warp(rgb, M_o2c, CROP_SIZE)
        return Crop(_to_network(image_512, interpolation), crop.invert(M_o2c),
                    self._in_network_pixels(points_203, M_o2c), method, anchor)
