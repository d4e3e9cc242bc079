"""The offline fallback when the official face models are absent: OpenCV's bundled Haar cascade finds the
face box and an approximate crop is derived from it. No landmarks, so no roll alignment and no eye/lip
ratios.

The official crop is built from the 106 landmarks' extent (spec 6.2). Here that extent and its centre are
estimated from the cascade box, and the official scale and vertical offset are applied to the estimate:
* the ``frontalface_alt2`` box is 2.38 eye-to-mouth distances wide (2.24-2.47 on the three hand-annotated
  sample faces, tests/data/face_points.json), with the eyes' midpoint 0.10 box widths above its centre;
* insightface's mean face (``meanshape_68``; its contour and brows span the face as the 106 points do) is
  2.26 eye-to-mouth distances wide, its landmark box centred 0.66 of them below the eyes.
Hence the landmark extent is about 0.95 box widths, its centre 0.18 box widths below the box centre.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from lpt.runtime.crop import CropSettings, FaceRect

from lpt.errors import LptError

CASCADE = "haarcascade_frontalface_alt2.xml"  # the default cascade misses the tilted, bespectacled d8.jpg face
LANDMARK_EXTENT_PER_BOX = 0.95
LANDMARK_CENTRE_BELOW_BOX_CENTRE = 0.18  # in box widths
SEARCH_MAX_SIDE = 1280  # a full search runs on the frame shrunk to this size (the official source limit) ...
SMALLEST_FACE = 1 / 12  # ... for faces at least this fraction of the frame's shorter side
TRACKED_FACE_WIDTH = 80  # a search near the previous box runs with that box shrunk to this width
TRACKED_MARGIN = 0.75  # the region searched around the previous box, in box widths on each side (sizes 0.6-1.6x)


class CascadeUnavailableError(LptError):
    """This OpenCV has no Haar cascade to fall back on."""


def cascade_file() -> Path:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / CASCADE
    if not hasattr(cv2, "CascadeClassifier") or not folder or not path.is_file():
        raise CascadeUnavailableError(
            f"OpenCV {cv2.__version__} ships no Haar face cascade (OpenCV 5 moved them out of the main package) and "
            "the official face models are not in the weights folder: install opencv-python-headless<5, or put "
            "insightface/models/buffalo_l/{det_10g,2d106det}.onnx and liveportrait/landmark.onnx there")
    return path


class CascadeFaceFinder:
    def __init__(self) -> None:
        self.classifier = cv2.CascadeClassifier(str(cascade_file()))

    def find(self, rgb: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        """The largest face box (x1, y1, x2, y2) in image pixels, or None. With ``near`` (the previous
        frame's box), the region around it is searched first, at a scale where that face is small: fast."""
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if near is not None:
            width = float(near[2] - near[0])
            x0, y0 = np.maximum(np.floor(near[:2] - TRACKED_MARGIN * width), 0).astype(int)
            x1, y1 = np.ceil(near[2:] + TRACKED_MARGIN * width).astype(int)
            shrink = min(1.0, TRACKED_FACE_WIDTH / width)
            box = self._search(gray[y0:y1, x0:x1], shrink, int(0.6 * width * shrink), int(1.6 * width * shrink) + 1)
            if box is not None:
                return box + (x0, y0, x0, y0)
        shrink = min(1.0, SEARCH_MAX_SIDE / max(gray.shape))
        return self._search(gray, shrink, max(24, int(min(gray.shape) * shrink * SMALLEST_FACE)), 0)

    def _search(self, gray: np.ndarray, shrink: float, smallest: int, largest: int) -> np.ndarray | None:
        if min(gray.shape) * shrink < smallest:
            return None
        if shrink < 1.0:
            gray = cv2.resize(gray, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        boxes = self.classifier.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest),
                                                 maxSize=(largest, largest))
        if len(boxes) == 0:
            return None
        x, y, w, h = max(boxes, key=lambda b: int(b[2]) * int(b[3]))
        return np.array([x, y, x + w, y + h], dtype=np.float64) / shrink


def approximate_rect(box: np.ndarray, settings: CropSettings) -> FaceRect:
    """The crop square the official code would likely derive from this face's landmarks (no roll)."""
    width = float(box[2] - box[0])
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2 + LANDMARK_CENTRE_BELOW_BOX_CENTRE * width])
    size = LANDMARK_EXTENT_PER_BOX * width * settings.scale
    centre[1] += settings.vy_ratio * size
    return FaceRect(centre, size, 0.0)
