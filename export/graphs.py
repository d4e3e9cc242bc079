"""The PyTorch side of every exported graph: positional inputs and a tuple of outputs in spec order.

Export traces these modules, and parity runs them as the reference, so both always agree on what a
graph computes. File names are a contract too: ``<graph>.onnx`` and variants ``<graph>.<variant>.onnx``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from lpt.models.motion import headpose_to_degrees
from torch import nn

from lpt.specs import SPECS, GraphSpec

VARIANTS = ("fp16", "gather", "gather.fp16", "int8", "int8-cpu", "gather.int8", "gather.int8-cpu")


def onnx_path(out_dir: str | Path, graph: str, variant: str = "") -> Path:
    if variant and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return Path(out_dir) / (f"{graph}.{variant}.onnx" if variant else f"{graph}.onnx")


class GraphModule(nn.Module):
    """Runs a graph's networks and returns its outputs as a tuple in the spec's order."""

    def __init__(self, spec: GraphSpec, networks: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.spec = spec
        self.nets = nn.ModuleDict({name: networks[name] for name in spec.networks})

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.spec.input_names, inputs))
        if self.spec.name == "warp_decode":
            warped = self.nets["warping_module"](named["feature_3d"], named["kp_driving"], named["kp_source"])
            outputs = {"out": self.nets["spade_generator"](warped["out"])}
        else:
            (network,) = self.spec.networks
            result = self.nets[network](*inputs)
            outputs = {self.spec.output_names[0]: result} if isinstance(result, torch.Tensor) else dict(result)
        if self.spec.name == "motion_extractor":
            for angle in ("pitch", "yaw", "roll"):
                outputs[f"{angle}_deg"] = headpose_to_degrees(outputs[angle]).unsqueeze(1)
        return tuple(outputs[name] for name in self.spec.output_names)


def graph_module(graph: str, networks: Mapping[str, nn.Module]) -> GraphModule:
    return GraphModule(SPECS[graph], networks).eval()
