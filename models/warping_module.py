"""W: the warping module. Warps f_s from source keypoints to driving keypoints.

It holds the dense-motion network (an hourglass 3-D U-Net that turns the 21 keypoint pairs into a dense
deformation field and an occlusion map) and the head that decodes the warped volume to 256 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNormAct2d, DownBlock3d, UpBlock3d
from .sampling import GridSample3d, identity_grid, keypoint_gaussians


class HourglassEncoder(nn.Module):
    def __init__(self, in_features: int, block_expansion: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        widths = [in_features] + [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]
        self.down_blocks = nn.ModuleList(DownBlock3d(a, b) for a, b in zip(widths, widths[1:]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    def __init__(self, in_features: int, block_expansion: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            width = min(max_features, block_expansion * 2 ** (i + 1))
            in_ch = width if i == num_blocks - 1 else 2 * width
            blocks.append(UpBlock3d(in_ch, min(max_features, block_expansion * 2**i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_channels = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_channels, self.out_channels, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_channels)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips[-1]
        for block, skip in zip(self.up_blocks, reversed(skips[:-1])):
            out = torch.cat([block(out), skip], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    def __init__(self, in_features: int, block_expansion: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.encoder = HourglassEncoder(in_features, block_expansion, num_blocks, max_features)
        self.decoder = HourglassDecoder(in_features, block_expansion, num_blocks, max_features)
        self.out_channels = self.decoder.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DenseMotionNetwork(nn.Module):
    """Keypoint pairs + compressed f_s -> deformation (B, D, H, W, 3) and occlusion map (B, 1, H, W)."""

    def __init__(
        self,
        num_kp: int = 21,
        feature_channels: int = 32,
        block_expansion: int = 32,
        num_blocks: int = 5,
        max_features: int = 1024,
        reshape_depth: int = 16,
        compress: int = 4,
    ) -> None:
        super().__init__()
        self.hourglass = Hourglass((num_kp + 1) * (compress + 1), block_expansion, num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_channels, num_kp + 1, 7, padding=3)
        self.compress = nn.Conv3d(feature_channels, compress, 1)
        self.norm = nn.BatchNorm3d(compress)
        self.occlusion = nn.Conv2d(self.hourglass.out_channels * reshape_depth, 1, 7, padding=3)
        self.sampler: nn.Module = GridSample3d()

    def forward(
        self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        feature = F.relu(self.norm(self.compress(feature)))
        b, c, d, h, w = feature.shape
        k = kp_driving.shape[1]
        grid = identity_grid(d, h, w, feature)

        # Sparse motions: entry 0 is the identity (background), entry k+1 translates driving to source
        # around keypoint k.
        grid6 = grid.view(1, 1, d, h, w, 3)
        shifted = grid6 - kp_driving.view(b, k, 1, 1, 1, 3) + kp_source.view(b, k, 1, 1, 1, 3)
        sparse = torch.cat([grid6.expand(b, 1, d, h, w, 3), shifted], dim=1)

        repeated = feature.unsqueeze(1).expand(b, k + 1, c, d, h, w).reshape(b * (k + 1), c, d, h, w)
        deformed = self.sampler(repeated, sparse.reshape(b * (k + 1), d, h, w, 3)).view(b, k + 1, c, d, h, w)

        heatmap = keypoint_gaussians(kp_driving, grid) - keypoint_gaussians(kp_source, grid)
        heatmap = torch.cat([heatmap.new_zeros(b, 1, d, h, w), heatmap], dim=1).unsqueeze(2)

        prediction = self.hourglass(torch.cat([heatmap, deformed], dim=2).view(b, -1, d, h, w))
        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (sparse * mask.unsqueeze(-1)).sum(dim=1)
        occlusion_map = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)))
        return {"deformation": deformation, "occlusion_map": occlusion_map}


class WarpingModule(nn.Module):
    """Returns the official dict: ``occlusion_map`` (B, 1, 64, 64), ``deformation`` (B, 16, 64, 64, 3) and
    ``out`` (B, 256, 64, 64), the generator's input. Positional order is the official one:
    ``(feature_3d, kp_driving, kp_source)``; callers pass the keypoints by keyword."""

    def __init__(
        self,
        num_kp: int = 21,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        reshape_channels: int = 32,
    ) -> None:
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, feature_channels=reshape_channels)
        width = block_expansion * 2**num_down_blocks
        self.third = ConvNormAct2d(max_features, width, leaky=True)
        self.fourth = nn.Conv2d(width, width, 1)
        self.sampler: nn.Module = GridSample3d()

    def forward(
        self, feature_3d: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        motion = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        warped = self.sampler(feature_3d, motion["deformation"])
        b, c, d, h, w = warped.shape
        out = self.fourth(self.third(warped.view(b, c * d, h, w)))
        return {
            "occlusion_map": motion["occlusion_map"],
            "deformation": motion["deformation"],
            "out": out * motion["occlusion_map"],
        }
