"""PyTorch backend: the reference. The networks of ``lpt.models`` run as the exported graphs do
(``lpt.export.graphs.graph_module``), so every backend answers with the same tensor names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lpt.export.graphs import GraphModule, graph_module
from lpt.models.checkpoint import load

from lpt.errors import LptError
from lpt.specs import SPECS, GraphSpec


class TorchSession:
    def __init__(self, module: GraphModule, device: torch.device, dtype: torch.dtype) -> None:
        self.module = module
        self.spec: GraphSpec = module.spec
        self.device = device
        self.dtype = dtype

    def _tensor(self, value: Any) -> torch.Tensor:
        tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value, dtype=np.float32))
        return tensor.to(self.device, self.dtype)

    @torch.inference_mode()
    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        outputs = self.module(*(self._tensor(feeds[n]) for n in self.spec.input_names))
        return dict(zip(self.spec.output_names, outputs))


class TorchBackend:
    name = "torch"

    def __init__(self, weights_dir: str | Path, precision: str = "fp32", device: str = "auto") -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise LptError(f"torch {torch.__version__} sees no CUDA device: use --device cpu or a CUDA build of torch")
        if precision == "int8":
            raise LptError("the torch backend runs fp32 or fp16; INT8 needs --backend onnxruntime or tensorrt")
        if precision == "fp16" and device == "cpu":
            raise LptError("the torch backend runs fp16 on CUDA only; on CPU use fp32, or --backend onnxruntime")
        self.weights_dir = Path(weights_dir)
        self.precision = precision
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self._networks: dict[str, torch.nn.Module] = {}
        self._sessions: dict[str, TorchSession] = {}

    def session(self, graph: str) -> TorchSession:
        if graph not in self._sessions:
            needed = tuple(n for n in SPECS[graph].networks if n not in self._networks)
            if needed:
                for name, net in load(self.weights_dir, needed).items():
                    self._networks[name] = net.to(self.device, self.dtype)
            module = graph_module(graph, self._networks)
            self._sessions[graph] = TorchSession(module, self.device, self.dtype)
        return self._sessions[graph]

    def to_host(self, value: Any) -> np.ndarray:
        if isinstance(value, torch.Tensor):
            return value.detach().float().cpu().numpy()
        return np.asarray(value, dtype=np.float32)

    def describe(self) -> str:
        return f"torch {self.precision} on {self.device.type.upper()}, networks from {self.weights_dir}"

    def close(self) -> None:
        self._sessions.clear()
        self._networks.clear()
