"""Calling a network by the tensor names of its spec, and seeded example inputs for it."""

from __future__ import annotations

import torch

from lpt.specs import SPECS

IMAGE_INPUTS = ("source_image", "image")
KEYPOINT_INPUTS = ("kp_driving", "kp_source")


def example_inputs(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded inputs of the spec's shapes in each input's natural range: images in [0, 1], keypoints
    within [-0.8, 0.8], MLP features small, feature maps unit normal."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in SPECS[name].inputs:
        if t.name in IMAGE_INPUTS:
            out[t.name] = torch.rand(t.shape, generator=g)
        elif t.name in KEYPOINT_INPUTS:
            out[t.name] = torch.rand(t.shape, generator=g) * 1.6 - 0.8
        elif t.name.startswith("feat_"):
            out[t.name] = torch.randn(t.shape, generator=g) * 0.1
        else:
            out[t.name] = torch.randn(t.shape, generator=g)
    return out


def run(network: torch.nn.Module, name: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Call a network with inputs in spec order; its official outputs by name, whatever it returns."""
    output = network(*(inputs[n] for n in SPECS[name].input_names))
    names = [t.name for t in SPECS[name].official_outputs]
    if isinstance(output, torch.Tensor):
        (only,) = names
        return {only: output}
    return {n: output[n] for n in names}
