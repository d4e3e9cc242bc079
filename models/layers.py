"""Building blocks shared by the LivePortrait networks.

Attribute names (``conv``, ``norm``, ``pool``, ...) are the official state-dict names: a checkpoint
loads into these modules without any key rewriting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct2d(nn.Module):
    """Conv2d -> BatchNorm2d -> ReLU (or LeakyReLU(0.01)), resolution kept (official ``SameBlock2d``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, leaky: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(out_ch)
        self.ac: nn.Module = nn.LeakyReLU(0.01) if leaky else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ac(self.norm(self.conv(x)))


class DownBlock2d(nn.Module):
    """Conv2d k3 -> BatchNorm2d -> ReLU -> AvgPool 2x2."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm = nn.BatchNorm2d(out_ch)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class DownBlock3d(nn.Module):
    """Conv3d k3 -> BatchNorm3d -> ReLU -> AvgPool (1, 2, 2): depth is kept, H and W halve."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_ch, out_ch, 3, padding=1)
        self.norm = nn.BatchNorm3d(out_ch)
        self.pool = nn.AvgPool3d((1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class UpBlock3d(nn.Module):
    """Nearest upsample (1, 2, 2) -> Conv3d k3 -> BatchNorm3d -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_ch, out_ch, 3, padding=1)
        self.norm = nn.BatchNorm3d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class ResBlock3d(nn.Module):
    """Pre-activation residual block: (BN3d -> ReLU -> Conv3d) twice, plus the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (ConvNeXt's "channels_first" LayerNorm)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN on an NHWC tensor: L2 norm over H, W per channel, divided by its channel mean."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * n) + self.beta + x


class SpectralNormConv2d(nn.Module):
    """Conv2d stored as the official checkpoints store a spectral-normalised conv.

    Holds ``weight_orig`` with the ``weight_u`` / ``weight_v`` power-iteration buffers and computes the
    eval-mode weight ``weight_orig / (u . (W v))`` (no power iteration, as torch's hook in eval mode).
    Inference never uses this module: the loader folds it into a plain ``nn.Conv2d`` (see
    ``checkpoint.fold_spectral_norm``); it exists so the official layout has a module to live in.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(out_ch))
        else:
            self.register_parameter("bias", None)
        self.weight_orig = nn.Parameter(torch.empty(out_ch, in_ch, kernel_size, kernel_size))
        self.register_buffer("weight_u", F.normalize(torch.randn(out_ch), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(in_ch * kernel_size * kernel_size), dim=0))
        nn.init.kaiming_uniform_(self.weight_orig, a=5**0.5)

    def effective_weight(self) -> torch.Tensor:
        return spectral_normalised(self.weight_orig, self.weight_u, self.weight_v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)


def spectral_normalised(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    sigma = torch.dot(u, torch.mv(weight_orig.reshape(weight_orig.shape[0], -1), v))
    return weight_orig / sigma
