"""The one place calibration turns a picture into a network input.

For now this is the centred square of ``export.parity_inputs.centre_crop``; the official landmark-aligned
face crop (runtime/crop.py) replaces it here, and only here, when it lands.
"""

from __future__ import annotations

import numpy as np
import torch
from lpt.export.parity_inputs import centre_crop

CROP_METHOD = "centre square, area-resized to 256x256 (stand-in for the official face crop)"


def face_crop(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 RGB -> (1, 3, 256, 256) float32 RGB in [0, 1]."""
    return centre_crop(rgb)
