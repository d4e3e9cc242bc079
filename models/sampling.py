"""Coordinate grids and 5-D volume sampling as the warping module uses them."""

from __future__ import annotations

from copy import deepcopy

import torch
import torch.nn.functional as F
from torch import nn


def identity_grid(depth: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(D, H, W, 3) grid of (x, y, z) in [-1, 1], corner-aligned: the first sample is -1, the last +1."""

    def axis(n: int) -> torch.Tensor:
        return 2 * (torch.arange(n, dtype=like.dtype, device=like.device) / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(depth), axis(height), axis(width), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def keypoint_gaussians(kp: torch.Tensor, grid: torch.Tensor, variance: float = 0.01) -> torch.Tensor:
    """(B, K, 3) keypoints on a (D, H, W, 3) grid -> (B, K, D, H, W) Gaussian heatmaps."""
    b, k, _ = kp.shape
    diff = grid.unsqueeze(0).unsqueeze(0) - kp.view(b, k, 1, 1, 1, 3)
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / variance)


class GridSample3d(nn.Module):
    """Trilinear 5-D ``grid_sample`` with zero padding and ``align_corners=False``.

    The official code samples its corner-aligned grids with ``align_corners=False``, so boundary voxels
    are read half outside the volume. That quirk is part of the function and is kept. A module (not a
    function) so that export can swap in another implementation with the same semantics.
    """

    def forward(self, volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class TrilinearGather(nn.Module):
    """``GridSample3d`` (trilinear, zeros padding, ``align_corners=False``) as plain indexing arithmetic.

    For runtimes without a 5-D GridSample (TensorRT < 11.2). Per axis: unnormalise
    (``((g + 1) * size - 1) / 2``), floor, the two neighbouring indices and their weights (distance to the
    opposite neighbour, as ATen computes them); a neighbour outside ``[0, size)`` is clamped to the edge
    and gets weight 0 (zeros padding). The 8 corners are the outer sum/product of the per-axis pairs, read
    by ONE row Gather from a ``(N*D*H*W, C)`` table and summed with their weights. Exports at opset 17+ as
    Floor/Clip/Min/Cast/Gather/Mul/Add/ReduceSum (no GridSample) and keeps the batch axis dynamic: only
    C, D, H and W, static in every graph, are read as Python ints. It follows ATen's operation order, so
    eager results equal ``F.grid_sample``'s on most inputs and differ by float round-off (~1e-7) elsewhere.

    volume (N, C, D, H, W), grid (N, Do, Ho, Wo, 3) of (x, y, z) -> (N, C, Do, Ho, Wo). Both must be finite
    (as they are in the warping module): an out-of-range corner reads a real voxel and multiplies it by 0,
    where ``F.grid_sample`` skips it, so an inf or NaN would spread instead of being dropped.
    """

    def forward(self, volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        n = volume.shape[0]
        c, d, h, w = (int(s) for s in volume.shape[1:])
        if d * h * w > 2**24:
            raise ValueError(f"TrilinearGather: a {d}x{h}x{w} volume has more voxels than float32 indexes exactly")
        out_dims = grid.shape[1:4]
        size = torch.tensor([w, h, d], dtype=grid.dtype, device=grid.device)  # per axis x, y, z
        stride = torch.tensor([1, w, h * w], dtype=grid.dtype, device=grid.device).view(3, 1)
        pos = (((grid.reshape(n, -1, 3) + 1) * size - 1) / 2).unsqueeze(-1)  # (N, P, 3, 1)
        low = torch.floor(pos)
        neighbours = torch.cat([low, low + 1], dim=-1)  # (N, P, 3 axes, 2 neighbours)
        inside = (neighbours >= 0) & (neighbours <= size.view(3, 1) - 1)
        weights = torch.cat([low + 1 - pos, pos - low], dim=-1) * inside.to(grid.dtype)
        # Offsets along each axis in the flattened D*H*W volume; floats are exact here (< 2**24).
        offsets = (torch.minimum(neighbours.clamp(min=0), size.view(3, 1) - 1) * stride).to(torch.int64)
        ox, oy, oz = offsets.unbind(2)  # (N, P, 2) each
        wx, wy, wz = weights.unbind(2)
        ox = ox + (torch.arange(n, device=volume.device) * (d * h * w)).view(-1, 1, 1)  # batch n's first row
        # Corners in ATen's order (z-major, x fastest), weights multiplied x * y * z as ATen does.
        index = oz[..., :, None, None] + oy[..., None, :, None] + ox[..., None, None, :]  # (N, P, 2, 2, 2)
        weight = wx[..., None, None, :] * wy[..., None, :, None] * wz[..., :, None, None]
        table = volume.reshape(n, c, d * h * w).transpose(1, 2).reshape(-1, c)  # (N*D*H*W, C)
        rows = table.index_select(0, index.reshape(-1)).view(n, -1, 8, c)  # the one Gather
        sampled = (rows * weight.reshape(n, -1, 8, 1)).sum(dim=2)  # (N, P, C)
        return sampled.transpose(1, 2).contiguous().view(n, c, *out_dims)


def use_gather_sampler(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every ``GridSample3d`` submodule replaced by a ``TrilinearGather``.

    The copy shares its parameters and buffers with ``module`` (no weight memory is duplicated) but has
    its own module objects, so ``module`` itself keeps its native samplers: one set of loaded networks
    can be exported both ways. Returns ``module`` unchanged (not copied) when it has no GridSample3d.
    """
    if not any(isinstance(m, GridSample3d) for m in module.modules()):
        return module
    shared = {id(t): t for t in (*module.parameters(), *module.buffers())}
    copy = deepcopy(module, shared)
    for parent in list(copy.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GridSample3d):
                setattr(parent, name, TrilinearGather())
    return copy
