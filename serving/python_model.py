"""The per-frame animation as one Triton model (Python backend): a stream's source features are computed on its
first request and kept, by correlation ID, until its last; every driving crop in gives a 512x512 frame out.

With the parameter ``crop_on_server`` (``lpt_animate_full``) the model takes the full source image and full
driving frames instead and does what ``lpt-run`` does around the networks itself: lpt's ``FaceCropper`` (the
weights folder's face models, else OpenCV's cascade; ``crop: false`` is ``--no-crop``), the driving crop by
``Run.driving_frame`` (tracked from the stream's previous frame) and ``PasteBack`` into the source, answering
full-size frames.

Triton's sequence batcher (Oldest strategy) sends all requests of a stream to the same instance, so the state
lives here, in the instance. The math is lpt's own ``Animator`` on a backend opened by ``open_backend``.

Depends on: triton_python_backend_utils (only inside Triton's Python backend), torch (DLPack), lpt.runtime
(animate, backends, faces, pasteback, pipeline, drivers), lpt.triton.config.
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
from lpt.runtime.drivers import DrivingInput, DrivingItem
from lpt.runtime.faces import Crop, FaceCropper
from lpt.runtime.pasteback import PasteBack
from lpt.runtime.pipeline import Run, RunOptions
from lpt.triton.config import FULL_ANIMATION_MODEL, MAX_IMAGE_SIDE, AnimationParameters, CropOptions, model_parameters

from lpt.errors import LptError



@dataclass
class Stream:
    source: Source
    relative_to_first: bool
    first: Driving | None = None
    seen: float = 0.0  # monotonic time of the last request
    # crop_on_server only: lpt-run's pipeline for this stream's crops, its paste-back, the last driving crop
    run: Run | None = None
    paste: PasteBack | None = None
    previous: Crop | None = None
    info: DrivingInput | None = None
    frames: int = 0


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


def _image(request: Any, name: str) -> np.ndarray | None:
    value = _input(request, name)
    if value is None:
        return None
    if value.ndim != 4 or value.shape[0] != 1 or value.shape[3] != 3 or value.dtype != np.uint8 \
            or not 32 <= min(value.shape[1:3]) <= max(value.shape[1:3]) <= MAX_IMAGE_SIDE:
        raise LptError(f"{name} must be one RGB uint8 image of 32 to {MAX_IMAGE_SIDE} pixels a side, shape "
                       f"(1, H, W, 3); got {value.dtype} {value.shape}")
    return np.ascontiguousarray(value[0])


def _option(request: Any, name: str, default: bool) -> bool:
    value = _input(request, name)
    return default if value is None else bool(value.reshape(-1)[0])


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = AnimationParameters.from_strings(model_parameters(json.loads(args["model_config"])))
        self.idle_seconds = params.idle_seconds
        where = Locations(weights=Path(params.weights), onnx=Path(params.onnx), engines=Path(params.engines))
        self.backend = open_backend(params.backend, params.precision, where)
        options = AnimationOptions(relative=params.relative, stitching=params.stitching, region=params.region,  # type: ignore[arg-type]
                                   driving_multiplier=params.driving_multiplier)
        self.animator = Animator(self.backend, options)
        self.options = options
        self.crop_on_server = params.crop_on_server
        self.weights = Path(params.weights) if params.weights else None
        self.croppers: dict[tuple[bool, bool], FaceCropper] = {}  # by (no_crop, hold_missing), each made once
        if self.crop_on_server:
            self._cropper(CropOptions())  # the face models load now, not on the first stream
        for graph in options.graphs():  # every graph loaded now: the first stream must not pay for it
            self.backend.session(graph)
        if params.warmup:
            crop = np.full((256, 256, 3), 128, np.uint8)
            source = self.animator.prepare_source(crop)
            frame = Driving(self.animator.motion(crop))
            self.animator.animate(source, frame, frame)
        self.streams: dict[int, Stream] = {}
        name = FULL_ANIMATION_MODEL if self.crop_on_server else "lpt_animate"
        faces = f", faces: {self._cropper(CropOptions()).describe()}" if self.crop_on_server else ""
        pb_utils.Logger.log_info(f"{name}: {self.backend.describe()}, {torch.get_num_threads()} torch threads{faces}")

    def _cropper(self, crop: CropOptions) -> FaceCropper:
        key = (not crop.crop, crop.hold_missing)
        if key not in self.croppers:
            self.croppers[key] = FaceCropper(self.weights, no_crop=key[0], hold_missing=key[1])
        return self.croppers[key]

    def _open_full(self, request: Any, corrid: int) -> Stream:
        """A crop_on_server stream: lpt-run's source crop, features and paste-back, prepared once."""
        source_rgb = _image(request, "source_image")
        if source_rgb is None:
            raise LptError("a stream's first request must carry source_image")
        crop = CropOptions(**{k: _option(request, k, v) for k, v in CropOptions().flags().items()})
        run = Run(self.backend, self._cropper(crop), RunOptions(self.options, pasteback=crop.pasteback, crop=crop.crop,
                                                                 crop_driving=crop.crop_driving))
        run.animator = self.animator  # one Animator per instance; Run only picks the crops
        source_crop = run.cropper.crop_source(source_rgb, label=f"the source of stream {corrid}")  # type: ignore[attr-defined]
        paste = None
        if crop.pasteback and crop.crop and self.options.stitching:  # as Run.animate
            paste = PasteBack(source_rgb, source_crop.M_c2o)
        return Stream(self.animator.prepare_source(source_crop.image_256, source_crop.landmarks),
                      _flag(request, "relative_to_first"), run=run, paste=paste,
                      info=DrivingInput(Path(f"stream {corrid}"), "video", 25.0, None))

    def _full_frame(self, stream: Stream, driving_rgb: np.ndarray) -> np.ndarray:
        """One full driving frame to one full-size result frame, as Run.animate's per-frame work."""
        assert stream.run is not None and stream.info is not None
        frame, stream.previous = stream.run.driving_frame(DrivingItem(stream.frames, driving_rgb), stream.info,
                                                          stream.previous)  # type: ignore[assignment]
        stream.frames += 1
        if stream.first is None:
            stream.first = frame
        first = stream.first if stream.relative_to_first else None
        result = self.animator.animate(stream.source, frame, first)
        return stream.paste.paste(result) if stream.paste is not None else result

    def _forget_idle(self, now: float) -> None:
        """Streams the batcher has dropped for idling (no END came) stop holding their features here too."""
        for key in [k for k, s in self.streams.items() if now - s.seen > self.idle_seconds]:
            del self.streams[key]

    def _frame(self, request: Any) -> np.ndarray | None:
        """The request's frame (1, 512, 512, 3), full-size (1, H, W, 3) when crop_on_server, or None for an END
        request without a driving crop or image."""
        corrid = int(_input(request, "CORRID").reshape(-1)[0])  # type: ignore[union-attr]
        driving = _image(request, "driving_image") if self.crop_on_server else _crop(request, "driving_crop")
        now = time.monotonic()
        if _flag(request, "START"):
            self.streams.pop(corrid, None)
            if self.crop_on_server:
                self.streams[corrid] = self._open_full(request, corrid)
            else:
                source_crop = _crop(request, "source_crop")
                if source_crop is None:
                    raise LptError("a stream's first request must carry source_crop")
                self.streams[corrid] = Stream(self.animator.prepare_source(source_crop), _flag(request, "relative_to_first"))
        stream = self.streams.get(corrid)
        if stream is None:
            first_input = "source_image" if self.crop_on_server else "source_crop"
            raise LptError(f"stream {corrid} is not open here: start it with a request that has sequence_start and "
                           f"{first_input} (or it idled out)")
        stream.seen = now
        out = None
        if driving is not None and self.crop_on_server:
            out = self._full_frame(stream, driving)[None]
        elif driving is not None:
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
