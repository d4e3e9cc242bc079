"""ConvNeXt-V2 (tiny) backbone with the LivePortrait motion heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import GlobalResponseNorm, LayerNorm2d

HEADS = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")


class ConvNeXtV2Block(nn.Module):
    """Depthwise 7x7 conv -> LayerNorm -> Linear x4 -> GELU -> GRN -> Linear, plus the input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """ConvNeXt-V2 whose classifier is replaced by the keypoint, pose and expression heads."""

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        num_kp: int = 21,
        num_bins: int = 66,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_channels, dims[0], 4, stride=4), LayerNorm2d(dims[0]))]
        )
        for a, b in zip(dims, dims[1:]):
            self.downsample_layers.append(nn.Sequential(LayerNorm2d(a), nn.Conv2d(a, b, 2, stride=2)))
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtV2Block(dim) for _ in range(depth))) for dim, depth in zip(dims, depths)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.fc_kp = nn.Linear(dims[-1], 3 * num_kp)
        self.fc_scale = nn.Linear(dims[-1], 1)
        self.fc_pitch = nn.Linear(dims[-1], num_bins)
        self.fc_yaw = nn.Linear(dims[-1], num_bins)
        self.fc_roll = nn.Linear(dims[-1], num_bins)
        self.fc_t = nn.Linear(dims[-1], 3)
        self.fc_exp = nn.Linear(dims[-1], 3 * num_kp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        x = self.norm(x.mean([-2, -1]))
        return {name: getattr(self, f"fc_{name}")(x) for name in HEADS}
