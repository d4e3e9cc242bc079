"""The insightface ``buffalo_l`` face detector (``det_10g.onnx``, an SCRFD network) through ONNX Runtime,
decoded as the vendored insightface code does (spec 6.1): letterbox, anchor-distance decoding, NMS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from lpt.runtime.faces.onnx_session import fixed_size, open_session

from lpt.errors import OnnxError

DETECTION_SIZE = (512, 512)  # official det_size, used when the model's input height/width are symbolic
SCORE_THRESHOLD = 0.15  # official CLI det_thresh
NMS_THRESHOLD = 0.4
# Output count -> (strides, anchors per location, has 5-point keypoints); outputs come as
# [scores per stride..., box distances per stride..., keypoint distances per stride...].
_LAYOUTS = {
    6: ((8, 16, 32), 2, False),
    9: ((8, 16, 32), 2, True),
    10: ((8, 16, 32, 64, 128), 1, False),
    15: ((8, 16, 32, 64, 128), 1, True),
}


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # (4,) x1, y1, x2, y2 in image pixels
    score: float
    keypoints: np.ndarray | None  # (5, 2): eyes, nose, mouth corners (image left first)

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


def largest_first(detections: list[Detection]) -> list[Detection]:
    """The official face order ("large-small"): box area, largest first; the pipeline uses the first."""
    return sorted(detections, key=lambda d: d.area, reverse=True)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_THRESHOLD) -> list[int]:
    """Indices kept by greedy non-maximum suppression, in descending score (insightface's +1 pixel areas)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)[::-1]
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= threshold]
    return keep


def anchor_centres(height: int, width: int, stride: int, anchors: int) -> np.ndarray:
    """(height * width * anchors, 2) anchor centres (x, y), row-major, each location repeated ``anchors`` times."""
    ys, xs = np.mgrid[:height, :width]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, anchors, axis=0)


class FaceDetector:
    def __init__(self, path: Path, threshold: float = SCORE_THRESHOLD) -> None:
        self.session = open_session(path)
        outputs = len(self.session.get_outputs())
        if outputs not in _LAYOUTS:
            raise OnnxError(f"{path}: not an SCRFD face detector (expected 6, 9, 10 or 15 outputs, found {outputs})")
        self.strides, self.anchors, self.has_keypoints = _LAYOUTS[outputs]
        self.input_name = self.session.get_inputs()[0].name
        self.size = fixed_size(self.session) or DETECTION_SIZE
        self.threshold = threshold

    def letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """The image resized into the detector input, aspect kept, top-left aligned, zero padded; and its scale."""
        width, height = self.size
        h, w = rgb.shape[:2]
        if h / w > height / width:
            new_h, new_w = height, int(height / (h / w))
        else:
            new_w, new_h = width, int(width * (h / w))
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h))
        return canvas, new_h / h

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, largest first."""
        canvas, det_scale = self.letterbox(rgb)
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]  # RGB, as insightface feeds it
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})
        n = len(self.strides)
        scores, boxes, points = [], [], []
        for i, stride in enumerate(self.strides):
            centres = anchor_centres(canvas.shape[0] // stride, canvas.shape[1] // stride, stride, self.anchors)
            score = outs[i].reshape(-1)
            keep = score >= self.threshold
            d = outs[i + n].reshape(-1, 4)[keep] * stride
            c = centres[keep]
            scores.append(score[keep])
            boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
            if self.has_keypoints:
                k = outs[i + 2 * n].reshape(len(centres), -1, 2)[keep] * stride
                points.append(c[:, None, :] + k)
        all_scores = np.concatenate(scores)
        all_boxes = np.concatenate(boxes) / det_scale
        kept = nms(all_boxes, all_scores)
        all_points = np.concatenate(points) / det_scale if self.has_keypoints else None
        return largest_first([
            Detection(all_boxes[i], float(all_scores[i]), None if all_points is None else all_points[i]) for i in kept
        ])
