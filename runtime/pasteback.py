"""Paste-back (spec 5.7): the generated 512x512 crop warped into the full source frame through the crop's
``M_c2o`` and blended with a feathered mask, so the crop's square border never shows.

The official mask is a PNG shipped with the official code (``mask_template.png``). It is made here
instead, by a formula: 1 inside the square inset by ``FEATHER`` pixels, falling linearly to 0 over the
``FEATHER`` pixels outside it (Euclidean distance, so the corners are rounded); that is, grey level
``255 - 16 * distance`` at 512 pixels and a 16-pixel ramp. Against the official PNG it differs by at most
1 grey level (measured). It is kept as float32 in [0, 1], one channel, so the warped mask is not rounded
to 1/255 steps as the official uint8 one is.
"""

from __future__ import annotations

import cv2
import numpy as np
from lpt.runtime.crop import transform_points

FEATHER = 16  # ramp width, pixels of the 512 crop


def feather_mask(size: int = 512, feather: int = FEATHER) -> np.ndarray:
    """(size, size) float32 weights: 1 in the middle, a linear ramp to 0 across the outer ``feather`` pixels."""
    coords = np.arange(size, dtype=np.float64)
    outside = np.maximum(np.maximum(feather - coords, coords - (size - feather)), 0.0)  # distance beyond the inset square
    distance = np.hypot(outside[:, None], outside[None, :])
    # (255 - 16 d) / 255 at 512 / 16: the official ramp reaches 0 at the image edge, 1 at the inset square.
    return np.clip(1.0 - distance * feather / (feather * feather - 1), 0.0, 1.0).astype(np.float32)


class PasteBack:
    """Prepared once per source frame (the mask warped into it), then ``paste`` per generated frame."""

    def __init__(self, source_rgb: np.ndarray, M_c2o: np.ndarray, dsize: int = 512) -> None:
        self.source = source_rgb
        self.dsize = dsize
        height, width = source_rgb.shape[:2]
        corners = transform_points(np.array([[0, 0], [dsize, 0], [0, dsize], [dsize, dsize]], float) - 0.5, M_c2o)
        # Only the crop's footprint changes; everything outside it is the source as it is.
        x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [width, height])
        x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, 0, [width, height])
        self.region = (slice(y0, y1), slice(x0, x1))
        self.M = np.asarray(M_c2o, np.float64)[:2].copy()
        self.M[:, 2] -= (x0, y0)  # warping into the region's own pixels
        self.size = (int(x1 - x0), int(y1 - y0))
        if self.size[0] > 0 and self.size[1] > 0:
            mask = cv2.warpAffine(feather_mask(dsize), self.M, self.size, flags=cv2.INTER_LINEAR)
            self.mask = mask[..., None]
            self.background = source_rgb[self.region].astype(np.float32) * (1.0 - self.mask)

    def paste(self, result_rgb: np.ndarray) -> np.ndarray:
        """The full source frame with ``result_rgb`` (dsize x dsize x 3 uint8 RGB) blended into the face region."""
        if result_rgb.shape != (self.dsize, self.dsize, 3):
            raise ValueError(f"paste-back expects a {self.dsize}x{self.dsize}x3 frame, got {result_rgb.shape}")
        out = self.source.copy()
        if self.size[0] > 0 and self.size[1] > 0:
            warped = cv2.warpAffine(result_rgb, self.M, self.size, flags=cv2.INTER_LINEAR)
            blended = self.mask * warped + self.background
            out[self.region] = np.clip(blended, 0, 255).astype(np.uint8)  # truncation, as the official code
        return out
