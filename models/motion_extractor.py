"""M: the motion extractor. A 256x256 RGB image in [0, 1] -> raw pose bins, keypoints and expression."""

from __future__ import annotations

import torch
from torch import nn

from .convnextv2 import ConvNeXtV2


class MotionExtractor(nn.Module):
    """Returns the official dict: ``pitch``, ``yaw``, ``roll`` (B, 66 bin logits), ``t`` (B, 3),
    ``exp`` (B, 63), ``scale`` (B, 1), ``kp`` (B, 63). Degrees and reshapes are in ``motion.kp_info``."""

    def __init__(self, num_kp: int = 21, num_bins: int = 66) -> None:
        super().__init__()
        self.detector = ConvNeXtV2(num_kp=num_kp, num_bins=num_bins)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.detector(image)
