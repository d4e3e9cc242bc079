"""S: the stitching, eye-retargeting and lip-retargeting MLPs (Linear + ReLU, then a final Linear)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class RetargetingMLP(nn.Module):
    def __init__(self, input_size: int, hidden_sizes: Sequence[int], output_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip([input_size, *hidden_sizes], hidden_sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(hidden_sizes[-1], output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def stitching_mlp() -> RetargetingMLP:
    """[x_s, x_d] flattened (126) -> 63 keypoint offsets + a shared (dx, dy)."""
    return RetargetingMLP(126, (128, 128, 64), 65)


def lip_retargeting_mlp() -> RetargetingMLP:
    """[x_s flattened, source lip ratio, target lip ratio] (65) -> 63 keypoint offsets."""
    return RetargetingMLP(65, (128, 128, 64), 63)


def eye_retargeting_mlp() -> RetargetingMLP:
    """[x_s flattened, source left/right eye ratios, target eye ratio] (66) -> 63 keypoint offsets."""
    return RetargetingMLP(66, (256, 256, 128, 128, 64), 63)
