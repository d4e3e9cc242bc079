"""G: the SPADE generator. The warped 256-channel feature -> a 512x512 RGB image in (0, 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import SpectralNormConv2d


def conv2d(in_ch: int, out_ch: int, kernel_size: int, spectral_norm: bool, bias: bool = True) -> nn.Module:
    if spectral_norm:
        return SpectralNormConv2d(in_ch, out_ch, kernel_size, bias=bias)
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=bias)


class SPADE(nn.Module):
    """Parameter-free instance norm, modulated per pixel by (1 + gamma, beta) predicted from the segmap."""

    def __init__(self, channels: int, label_channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        hidden = self.mlp_shared(segmap)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(hidden)) + self.mlp_beta(hidden)


class SPADEResBlock(nn.Module):
    """Two SPADE -> LeakyReLU(0.2) -> conv steps; a learned 1x1 shortcut (SPADE, no activation, no
    bias) when the width changes."""

    def __init__(self, fin: int, fout: int, label_channels: int, spectral_norm: bool = True) -> None:
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = conv2d(fin, fmiddle, 3, spectral_norm)
        self.conv_1 = conv2d(fmiddle, fout, 3, spectral_norm)
        if self.learned_shortcut:
            self.conv_s = conv2d(fin, fout, 1, spectral_norm, bias=False)
        self.norm_0 = SPADE(fin, label_channels)
        self.norm_1 = SPADE(fmiddle, label_channels)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_channels)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, segmap)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, segmap), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, segmap), 0.2))
        return shortcut + dx


class SPADEGenerator(nn.Module):
    """``spectral_norm=True`` builds the layout of the official checkpoint (``weight_orig``/``_u``/``_v``);
    the loader folds it and builds ``spectral_norm=False``, plain convolutions, for inference."""

    def __init__(
        self,
        label_channels: int = 256,
        middle_blocks: int = 6,
        out_channels: int = 64,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        width = 2 * label_channels
        self.fc = nn.Conv2d(label_channels, width, 3, padding=1)
        for i in range(middle_blocks):
            self.add_module(f"G_middle_{i}", SPADEResBlock(width, width, label_channels, spectral_norm))
        self.middle_blocks = middle_blocks
        self.up_0 = SPADEResBlock(width, label_channels, label_channels, spectral_norm)
        self.up_1 = SPADEResBlock(label_channels, out_channels, label_channels, spectral_norm)
        self.conv_img = nn.Sequential(nn.Conv2d(out_channels, 3 * 2 * 2, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.fc(feature)
        for i in range(self.middle_blocks):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_0(F.interpolate(x, scale_factor=2.0, mode="nearest"), feature)
        x = self.up_1(F.interpolate(x, scale_factor=2.0, mode="nearest"), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))
