"""Calling a network by the tensor names of its spec, and seeded example inputs for it."""

from __future__ import annotations

import torch

from lpt.specs import SPECS, TensorSpec, ValueRange


def _draw(shape: tuple[int, ...], value_range: ValueRange | None, g: torch.Generator) -> torch.Tensor:
    """Uniform over ``value_range``; unit normal where the spec gives none (feature maps)."""
    if value_range is None:
        return torch.randn(shape, generator=g)
    low, high = value_range
    return torch.rand(shape, generator=g) * (high - low) + low


def _example(t: TensorSpec, g: torch.Generator) -> torch.Tensor:
    if not t.segments:
        return _draw(t.shape, t.value_range, g)
    return torch.cat([_draw((*t.shape[:-1], s.size), s.value_range, g) for s in t.segments], dim=-1)


def example_inputs(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded inputs of the spec's shapes, each element uniform over its spec value range (images in [0, 1],
    keypoints in ``KEYPOINT_RANGE``, the MLPs' ratios in theirs), feature maps unit normal."""
    g = torch.Generator().manual_seed(seed)
    return {t.name: _example(t, g) for t in SPECS[name].inputs}


def run(network: torch.nn.Module, name: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Call a network with inputs in spec order; its official outputs by name, whatever it returns."""
    output = network(*(inputs[n] for n in SPECS[name].input_names))
    names = [t.name for t in SPECS[name].official_outputs]
    if isinstance(output, torch.Tensor):
        (only,) = names
        return {only: output}
    return {n: output[n] for n in names}
