"""F: the appearance feature extractor. A 256x256 RGB image in [0, 1] -> the 3-D feature volume f_s."""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvNormAct2d, DownBlock2d, ResBlock3d


class AppearanceFeatureExtractor(nn.Module):
    def __init__(
        self,
        image_channels: int = 3,
        block_expansion: int = 64,
        num_down_blocks: int = 2,
        max_features: int = 512,
        reshape_channels: int = 32,
        reshape_depth: int = 16,
        num_resblocks: int = 6,
    ) -> None:
        super().__init__()
        self.reshape_channels = reshape_channels
        self.reshape_depth = reshape_depth
        self.first = ConvNormAct2d(image_channels, block_expansion)
        widths = [min(max_features, block_expansion * 2**i) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(a, b) for a, b in zip(widths, widths[1:]))
        self.second = nn.Conv2d(widths[-1], max_features, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channels))

    def forward(self, source_image: torch.Tensor) -> torch.Tensor:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        # Channel c*depth + d becomes (c, d): the official view, channel-major.
        volume = out.view(b, self.reshape_channels, self.reshape_depth, h, w)
        return self.resblocks_3d(volume)
