"""The two landmark models, through ONNX Runtime (spec 6.1, 6.2).

* insightface ``2d106det.onnx``: 106 points from an axis-aligned crop around a detected box.
* LivePortrait ``landmark.onnx``: 203 points from a roll-aligned crop around earlier landmarks (106 points
  after a detection, or the previous frame's 203 points when tracking).
Both return points in original-image pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from lpt.runtime import crop
from lpt.runtime.faces.onnx_session import fixed_size, open_session

from lpt.errors import OnnxError

LANDMARK_106_BOX_MARGIN = 1.5  # the crop side is 1.5x the detected box's longer side


def _normalisation(path: Path) -> tuple[float, float]:
    """insightface's rule: graphs that subtract and multiply near their input normalise themselves (mean 0,
    std 1); others expect (pixel - 127.5) / 128."""
    try:
        nodes = onnx.load(str(path), load_external_data=False).graph.node[:8]
    except Exception as exc:
        raise OnnxError(f"{path}: not a readable ONNX model ({exc})") from exc
    names = [n.name for n in nodes]
    has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
    if "bn_data" in names[:3] or (has_sub and has_mul):
        return 0.0, 1.0
    return 127.5, 128.0


class Landmark106:
    """insightface's 2-D 106-point model (192x192 input, 212 outputs in [-1, 1])."""

    def __init__(self, path: Path) -> None:
        self.session = open_session(path)
        self.input_name = self.session.get_inputs()[0].name
        size = fixed_size(self.session)
        outputs = self.session.get_outputs()
        values = outputs[0].shape[-1] if len(outputs) == 1 else 0  # a symbolic size is accepted
        if size is None or size[0] != size[1] or (isinstance(values, int) and values != 212):
            raise OnnxError(f"{path}: not insightface's 106-point landmark model (square input, one 212-value output)")
        self.size = size[0]
        self.mean, self.std = _normalisation(path)

    def input_matrix(self, box: np.ndarray) -> np.ndarray:
        """3x3 image->model-input map: the box centre at the input centre, its longer side at 1/1.5 of it."""
        w, h = box[2] - box[0], box[3] - box[1]
        s = self.size / (max(w, h) * LANDMARK_106_BOX_MARGIN)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = self.size / 2
        return np.array([[s, 0.0, half - s * cx], [0.0, s, half - s * cy], [0.0, 0.0, 1.0]])

    def __call__(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(106, 2) points in image pixels for the face in ``box`` (x1, y1, x2, y2)."""
        to_input = self.input_matrix(box)
        patch = crop.warp(rgb, to_input, self.size)
        blob = ((patch.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)[None]
        pred = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})[0].reshape(-1, 2)
        pred = (pred.astype(np.float64) + 1) * (self.size // 2)
        return crop.transform_points(pred, crop.invert(to_input))


class Landmark203:
    """LivePortrait's own landmark model (``landmark.onnx``: 224x224 RGB in [0, 1]; the points are its third output)."""

    def __init__(self, path: Path) -> None:
        self.session = open_session(path)
        self.input_name = self.session.get_inputs()[0].name
        size = fixed_size(self.session)
        if size not in (None, (crop.LANDMARK_INPUT.dsize,) * 2) or len(self.session.get_outputs()) < 3:
            raise OnnxError(f"{path}: not LivePortrait's landmark model (1x3x224x224 input, three or more outputs)")

    def __call__(self, rgb: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        """(203, 2) points in image pixels, the model run on the official crop around ``anchor`` (106 or 203 points)."""
        settings = crop.LANDMARK_INPUT
        to_input = crop.crop_from_landmarks(anchor, settings)
        patch = crop.warp(rgb, to_input, settings.dsize)
        blob = (patch.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        pred = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})[2]
        points = pred[0].reshape(-1, 2).astype(np.float64) * settings.dsize
        if len(points) != 203:
            raise OnnxError(f"landmark.onnx returned {len(points)} points, expected 203")
        return crop.transform_points(points, crop.invert(to_input))
