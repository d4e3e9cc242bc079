"""The per-frame animation as one Triton model (Python backend): a stream's source features are computed on its
first request and kept, by correlation ID, until its last; every driving crop in gives a 512x512 frame out.

Triton's sequence batcher (Oldest strategy) sends all requests of a stream to the same instance, so the state
lives here, in the instance. The math is lpt's own ``Animator`` on a backend opened by ``open_backend``.

Depends on: triton_python_backend_utils (only inside Triton's Python backend), torch (DLPack), lpt.runtime,\nlpt.triton.config.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.dlpack
import triton_python_backend_utils as pb_utils
from lpt.runtime.animate import AnimationOptions, Animator, Driving, Source
from lpt.runtime.backends import Locations, open_backend
from lpt.triton.config import AnimationParameters, model_parameters

from lpt.errors import LptError



@dataclass
class Stream:
    source: Source
    relative_to_first: bool
    first: Driving | None = None
    seen: float = 0.0  # monotonic time of the last request


# Tensors cross the Python backend by DLPack, never as numpy arrays: the stub bundled with nvidia-pytriton 0.7 was
# built against NumPy 1 and garbles arrays in and out under NumPy 2 (measured: inputs read wrong, outputs empty).
def _input(request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else torch.from_dlpack(tensor.to_dlpack()).numpy()


def _output(name: str, value: np.ndarray) -> Any:
    return pb_utils.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(torch.from_numpy(np.ascontiguousarray(value))))


def _flag(request: Any, name: str) -> bool:
    value = _input(request, name)
    return bool(value is not None and value.reshape(-1)[0])


def _crop(request: Any, name: str) -> np.ndarray | None:
    value = _input(request, name)
    if value is None:
        return None
    if value.shape != (1, 256, 256, 3) or value.dtype != np.uint8:
        raise LptError(f"{name} must be one 256x256 RGB uint8 crop, shape (1, 256, 256, 3); got {value.dtype} {value.shape}")
    return value[0]


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = AnimationParameters.from_strings(model_parameters(json.loads(args["model_config"])))
        self.idle_seconds = params.idle_seconds
        where = Locations(weights=Path(params.weights), onnx=Path(params.onnx), engines=Path(params.engines))
        self.backend = open_backend(params.backend, params.precision, where)
        options = AnimationOptions(relative=params.relative, stitching=params.stitching, region=params.region,  # type: ignore[arg-type]
                                   driving_multiplier=params.driving_multiplier)
        self.animator = Animator(self.backend, options)
        for graph in options.graphs():  # every graph loaded now: the first stream must not pay for it
            self.backend.session(graph)
        if params.warmup:
            crop = np.full((256, 256, 3), 128, np.uint8)
            source = self.animator.prepare_source(crop)
            frame = Driving(self.animator.motion(crop))
            self.animator.animate(source, frame, frame)
        self.streams: dict[int, Stream] = {}
        pb_utils.Logger.log_info(f"lpt_animate: {self.backend.describe()}, {torch.get_num_threads()} torch threads")

    def _forget_idle(self, now: float) -> None:
        """Streams the batcher has dropped for idling (no END came) stop holding their features here too."""
        for key in [k for k, s in self.streams.items() if now - s.seen > self.idle_seconds]:
            del self.streams[key]

    def _frame(self, request: Any) -> np.ndarray | None:
        """The request's frame (1, 512, 512, 3), or None for an END request without a driving crop."""
        corrid = int(_input(request, "CORRID").reshape(-1)[0])  # type: ignore[union-attr]
        driving = _crop(request, "driving_crop")
        now = time.monotonic()
        if _flag(request, "START"):
            source_crop = _crop(request, "source_crop")
            if source_crop is None:
                raise LptError("a stream's first request must carry source_crop")
            self.streams[corrid] = Stream(self.animator.prepare_source(source_crop), _flag(request, "relative_to_first"))
        stream = self.streams.get(corrid)
        if stream is None:
            raise LptError(f"stream {corrid} is not open here: start it with a request that has sequence_start and "
                           "source_crop (or it idled out)")
        stream.seen = now
        out = None
        if driving is not None:
            frame = Driving(self.animator.motion(driving))
            if stream.first is None:
                stream.first = frame
            first = stream.first if stream.relative_to_first else None
            out = self.animator.animate(stream.source, frame, first)[None]
        if _flag(request, "END"):
            del self.streams[corrid]
        return out

    def execute(self, requests: list[Any]) -> list[Any]:
        self._forget_idle(time.monotonic())
        responses = []
        for request in requests:
            try:
                frame = self._frame(request)
                responses.append(pb_utils.InferenceResponse([] if frame is None else [_output("frame", frame)]))
            except (LptError, ValueError) as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses

    def finalize(self) -> None:
        self.streams.clear()
        self.backend.close()
