"""The client side of the animation model: one stream per source (a Triton sequence with its correlation ID),
and ``lpt-run``'s own pipeline with the networks swapped for that stream, so faces, crops, paste-back, video and
sound are exactly ``lpt-run``'s. Or, against ``lpt_animate_full``, full images both ways: the model crops and
pastes back itself (``FullFrameStream``, ``TritonFullRun``), and the client only reads, sends and encodes.

Depends on: tritonclient (gRPC), numpy, lpt.runtime (pipeline, animate), lpt.triton.config.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from lpt.runtime.animate import AnimationOptions, Driving, StageTimes
from lpt.runtime.pipeline import Run, RunOptions, RunReport
from lpt.triton import config as cfg

from lpt.errors import LptError

DEFAULT_URL = "127.0.0.1:8001"
_ids = itertools.count(1)
_ids_lock = threading.Lock()


class ClientError(LptError):
    """The server cannot be reached or refused a request."""


def grpc() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise ClientError("tritonclient is not installed: `pip install -e .[triton]`") from None
    return grpcclient


def new_sequence_id() -> int:
    """Unique among this process's streams and, by the pid and clock in its high bits, among its neighbours'."""
    with _ids_lock:
        serial = next(_ids)
    return ((os.getpid() & 0xFFFF) << 40) | ((int(time.time()) & 0xFFFF) << 24) | (serial & 0xFFFFFF)


def connect(url: str) -> Any:
    client = grpc().InferenceServerClient(url)
    try:
        live = client.is_server_live()
    except Exception as exc:  # noqa: BLE001 - tritonclient raises its own exception types for every transport error
        raise ClientError(f"cannot reach Triton at {url}: {str(exc).splitlines()[0]}") from None
    if not live:
        raise ClientError(f"Triton at {url} is not live")
    return client


def server_parameters(client: Any, model: str) -> cfg.AnimationParameters:
    """What the animation model runs with, from its configuration on the server."""
    try:
        config = client.get_model_config(model, as_json=True)["config"]
    except Exception as exc:  # noqa: BLE001
        raise ClientError(f"model {model}: {str(exc).splitlines()[0]}") from None
    return cfg.AnimationParameters.from_strings(cfg.model_parameters(config))


def animation_options(params: cfg.AnimationParameters) -> AnimationOptions:
    return AnimationOptions(relative=params.relative, stitching=params.stitching, region=params.region,  # type: ignore[arg-type]
                            driving_multiplier=params.driving_multiplier)


def _tensor(name: str, value: np.ndarray, dtype: str) -> Any:
    tensor = grpc().InferInput(name, list(value.shape), dtype)
    tensor.set_data_from_numpy(value)
    return tensor


@dataclass
class AnimationStream:
    """One source on the server: ``frame`` sends driving crops (the first also the source), ``end`` closes it."""

    client: Any
    model: str = cfg.ANIMATION_MODEL
    sequence_id: int = field(default_factory=new_sequence_id)
    started: bool = False
    latencies: list[float] = field(default_factory=list)  # seconds per request, in order

    def _infer(self, inputs: list[Any], start: bool, end: bool) -> Any:
        begin = time.perf_counter()
        outputs = [grpc().InferRequestedOutput("frame")] if inputs else None
        try:
            result = self.client.infer(self.model, inputs, outputs=outputs, sequence_id=self.sequence_id,
                                       sequence_start=start, sequence_end=end)
        except Exception as exc:  # noqa: BLE001
            raise ClientError(f"{self.model} refused stream {self.sequence_id}: {str(exc).splitlines()[0]}") from None
        self.latencies.append(time.perf_counter() - begin)
        return result

    DRIVING: ClassVar[str] = "driving_crop"  # the model's image inputs: crops here, full images on the full model
    SOURCE: ClassVar[str] = "source_crop"

    def _first_inputs(self) -> list[Any]:
        """What a stream's first request carries beside the source and the motion mode."""
        return []

    def frame(self, driving: np.ndarray, source: np.ndarray | None = None, relative_to_first: bool = True) -> np.ndarray:
        """The result frame (uint8 RGB) for one driving image (a 256x256 crop here); the first call must give the
        source (its crop here)."""
        inputs = [_tensor(self.DRIVING, np.ascontiguousarray(driving, np.uint8)[None], "UINT8")]
        start = not self.started
        if start:
            if source is None:
                raise ValueError(f"a stream's first frame needs its {self.SOURCE}")
            inputs += [_tensor(self.SOURCE, np.ascontiguousarray(source, np.uint8)[None], "UINT8"),
                       _tensor("relative_to_first", np.array([[relative_to_first]]), "BOOL"), *self._first_inputs()]
        out = self._infer(inputs, start, False).as_numpy("frame")
        self.started = True
        return out[0]

    def end(self) -> None:
        """Close the stream on the server (its features are dropped there)."""
        if self.started:
            self.started = False
            self._infer([], False, True)


@dataclass
class FullFrameStream(AnimationStream):
    """One source on ``lpt_animate_full``: full images in, full-size frames out; ``crop`` (lpt-run's crop
    settings) goes with the first request."""

    model: str = cfg.FULL_ANIMATION_MODEL
    crop: cfg.CropOptions = field(default_factory=cfg.CropOptions)

    DRIVING: ClassVar[str] = "driving_image"
    SOURCE: ClassVar[str] = "source_image"  # as lpt-run loads it: ``lpt.runtime.media.load_image``

    def _first_inputs(self) -> list[Any]:
        return [_tensor(name, np.array([[value]]), "BOOL") for name, value in self.crop.flags().items()]


@dataclass(frozen=True)
class _RemoteCrop:
    """What a driving frame's motion is on the client: the crop the server computes it from."""

    image_256: np.ndarray


class RemoteAnimator:
    """``Animator``'s interface for ``Run``, with the networks behind one ``AnimationStream``."""

    def __init__(self, stream: AnimationStream, times: StageTimes) -> None:
        self.stream = stream
        self.times = times
        self.source_crop: np.ndarray | None = None

    def motion(self, crop_256: np.ndarray) -> Any:
        return _RemoteCrop(crop_256)

    def prepare_source(self, crop_256: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        self.source_crop = crop_256
        return crop_256

    def animate(self, source: np.ndarray, frame: Driving, first: Driving | None) -> np.ndarray:
        if not isinstance(frame.motion, _RemoteCrop):
            raise LptError("the Triton animation model is driven by frames; motion templates are not served")
        with self.times("server"):
            return self.stream.frame(frame.motion.image_256, source if not self.stream.started else None,
                                     relative_to_first=first is not None)


class RemoteBackend:
    """What ``Run`` asks of a backend, for a run whose networks are on the server."""

    name = "triton"

    def __init__(self, url: str, model: str, params: cfg.AnimationParameters) -> None:
        self.url, self.model, self.params = url, model, params
        self.precision = params.precision

    def session(self, graph: str) -> None:
        return None  # loaded on the server when the model was

    def describe(self) -> str:
        return f"Triton {self.model} at {self.url} (lpt {self.params.backend} {self.params.precision} inside)"

    def close(self) -> None:
        return None


class TritonRun(Run):
    """``lpt-run``'s pipeline (crops, paste-back, video and sound), the animation on a Triton server."""

    def __init__(self, client: Any, url: str, model: str, cropper: object, options: RunOptions,
                 progress: Callable[[int, int | None], None] | None = None,
                 announce: Callable[[], None] | None = None) -> None:
        params = server_parameters(client, model)
        super().__init__(RemoteBackend(url, model, params), cropper, options, progress, announce)  # type: ignore[arg-type]
        self.stream = AnimationStream(client, model)
        self.animator = RemoteAnimator(self.stream, self.times)  # type: ignore[assignment]

    def animate(self, source_path: Path, driving_path: Path, output: Path) -> RunReport:
        try:
            report = super().animate(source_path, driving_path, output)
        except BaseException:
            with contextlib.suppress(ClientError):  # the error that stopped the run is the one to report
                self.stream.end()
            raise
        self.stream.end()
        return report


class TritonFullRun(Run):
    """``lpt triton run --crop-on-server``: lpt-run's reading, timing, video and sound on the client; crop,
    networks and paste-back in ``lpt_animate_full``."""

    def __init__(self, client: Any, url: str, model: str, crop: cfg.CropOptions, options: RunOptions,
                 faces: str, progress: Callable[[int, int | None], None] | None = None,
                 announce: Callable[[], None] | None = None) -> None:
        params = server_parameters(client, model)
        if not params.crop_on_server:
            raise ClientError(f"model {model} takes 256x256 crops (the client crops): leave out --crop-on-server, "
                              f"or export the full model with `lpt triton export --crop-on-server`")
        super().__init__(RemoteBackend(url, model, params), _ServerFaces(faces), options, progress, announce)  # type: ignore[arg-type]
        self.stream = FullFrameStream(client, model, crop=crop)

    def animate(self, source_path: Path, driving_path: Path, output: Path) -> RunReport:
        try:
            report = self._animate(source_path, driving_path, output)
        except BaseException:
            with contextlib.suppress(ClientError):
                self.stream.end()
            raise
        self.stream.end()
        return report

    def _animate(self, source_path: Path, driving_path: Path, output: Path) -> RunReport:
        from lpt.runtime.drivers import open_driving
        from lpt.runtime.media import load_image
        from lpt.runtime.outputs import check_kinds

        opts = self.options
        source_rgb = load_image(source_path)  # as Run.animate: the server gets what lpt-run would crop from
        info, items = open_driving(driving_path, opts.max_frames)
        check_kinds("image", info.kind, output)
        load_seconds = self.load()
        relative = not info.single_image and opts.animation.relative

        def work(item: Any) -> np.ndarray:
            with self.times("server"):
                return self.stream.frame(item.rgb, None if self.stream.started else source_rgb, relative)

        start = time.perf_counter()
        done = self.write(items, work, info, source_path, output)
        return self.report(output, done, start, load_seconds)


@dataclass(frozen=True)
class _ServerFaces:
    """What ``Run`` reports as its faces when the server crops."""

    text: str

    def describe(self) -> str:
        return self.text


def run_options_for(params: cfg.AnimationParameters, **kwargs: Any) -> RunOptions:
    """``RunOptions`` whose motion options are the server's (paste-back depends on stitching, as in lpt-run)."""
    return RunOptions(animation_options(params), **kwargs)
