"""The per-frame LivePortrait math around the networks (spec 5.4 and 5.5), on any backend.

The source is prepared once (F and M); each driving frame gives a motion (from M, or from a motion
template), the driven keypoints follow the official rules, and W then G render the 512x512 frame.
The keypoint math is a few hundred floats and runs in torch on the host; the feature volume and the
warped features stay in the backend's memory.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from lpt.models import motion as mm
from lpt.runtime.backend import Backend, Value

from lpt.errors import LptError

# LivePortrait drives a single image relative to a closed-mouth reference expression that it ships as a
# data file (lip_array.pkl); lpt does not ship it and uses zeros (its entries are at most 0.015).
NEUTRAL_EXPRESSION = np.zeros((1, mm.NUM_KP, 3), dtype=np.float32)


# Per part: the graph, its input name, how its input is made, and the template list that carries the ratios.
RETARGETING = {
    "eye": ("eye_retargeting", "feat_eye", mm.eye_retargeting_input, "c_eyes_lst"),
    "lip": ("lip_retargeting", "feat_lip", mm.lip_retargeting_input, "c_lip_lst"),
}


@dataclass(frozen=True)
class AnimationOptions:
    relative: bool = True
    stitching: bool = True
    eye_retargeting: bool = False
    lip_retargeting: bool = False
    region: mm.Region = "all"
    driving_multiplier: float = 1.0
    fused: bool = False  # W and G as the one warp_decode graph (the warped feature never leaves it)

    @property
    def retargeting(self) -> bool:
        return self.eye_retargeting or self.lip_retargeting

    def graphs(self) -> tuple[str, ...]:
        """The graphs a run loads, each once: no optional module unless asked."""
        render = ["warp_decode"] if self.fused else ["warping_module", "spade_generator"]
        names = ["appearance_feature_extractor", "motion_extractor", *render]
        names += ["stitching"] if self.stitching else []
        names += ["eye_retargeting"] if self.eye_retargeting else []
        names += ["lip_retargeting"] if self.lip_retargeting else []
        return tuple(names)


@dataclass
class Source:
    feature_3d: Value  # in the backend's memory
    motion: mm.Motion  # R, exp, scale, t, kp, x_s (batch 1, float32)
    eye_ratio: np.ndarray | None = None  # (1, 2) from the source landmarks, for eye retargeting
    lip_ratio: np.ndarray | None = None  # (1, 1)

    @property
    def x_s(self) -> torch.Tensor:
        return self.motion["x_s"]


@dataclass
class Driving:
    motion: mm.Motion  # R, exp, scale, t
    eye_ratio: np.ndarray | None = None  # (1, 2): [left, right]
    lip_ratio: np.ndarray | None = None  # (1, 1)


class StageTimes:
    """Milliseconds per named stage, summed over frames."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start
            self.counts[stage] += 1


def image_tensor(crop_256: np.ndarray) -> np.ndarray:
    """(256, 256, 3) uint8 RGB -> (1, 3, 256, 256) float32 in [0, 1], as the official prepare_source."""
    if crop_256.shape != (256, 256, 3):
        raise ValueError(f"a network input crop must be 256x256x3, got {crop_256.shape}")
    return np.ascontiguousarray(crop_256.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def frame_image(out: np.ndarray) -> np.ndarray:
    """Generator output (1, 3, 512, 512) in [0, 1] -> (512, 512, 3) uint8, truncating as the official parse_output."""
    hwc = np.clip(out[0].transpose(1, 2, 0), 0.0, 1.0)
    return np.clip(hwc * 255.0, 0, 255).astype(np.uint8)


class Animator:
    """Runs the LivePortrait networks of one backend with the official per-frame math."""

    def __init__(self, backend: Backend, options: AnimationOptions, times: StageTimes | None = None) -> None:
        self.backend = backend
        self.options = options
        self.times = times or StageTimes()

    def _host(self, outputs: dict[str, Value], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        return {n: torch.from_numpy(self.backend.to_host(outputs[n])) for n in names}

    def motion(self, crop_256: np.ndarray) -> mm.Motion:
        """M on a 256 crop -> the frame's motion (R, exp, scale, t, kp, x_s)."""
        with self.times("motion"):
            raw = self.backend.session("motion_extractor").run({"image": image_tensor(crop_256)})
            host = self._host(raw, ("pitch", "yaw", "roll", "t", "exp", "scale", "kp"))
            return mm.motion_from_kp_info(mm.kp_info(host))

    def prepare_source(self, crop_256: np.ndarray, landmarks: np.ndarray | None = None) -> Source:
        """F and M once per source crop; eye/lip ratios from its 203 landmarks when given."""
        motion = self.motion(crop_256)
        with self.times("features"):
            feature = self.backend.session("appearance_feature_extractor").run({"source_image": image_tensor(crop_256)})
        source = Source(feature["feature_3d"], motion)
        if landmarks is not None:
            lmk = np.asarray(landmarks, dtype=np.float32)[None]
            source.eye_ratio, source.lip_ratio = mm.eye_close_ratio(lmk), mm.lip_close_ratio(lmk)
        return source

    def _mlp(self, graph: str, name: str, feature: torch.Tensor) -> torch.Tensor:
        out = self.backend.session(graph).run({name: feature.numpy()})
        return torch.from_numpy(self.backend.to_host(out["delta"]))

    def _retargeting_delta(self, source: Source, frame: Driving) -> torch.Tensor:
        """Sum of the asked eye/lip MLP offsets; each MLP sees the source ratios and the driving frame's
        first ratio (the left eye for the eyes), as upstream."""
        delta = torch.zeros_like(source.x_s)
        for part, asked in (("eye", self.options.eye_retargeting), ("lip", self.options.lip_retargeting)):
            if not asked:
                continue
            graph, input_name, make_input, template_key = RETARGETING[part]
            source_ratio, driving_ratio = getattr(source, f"{part}_ratio"), getattr(frame, f"{part}_ratio")
            if source_ratio is None or driving_ratio is None:
                raise LptError(f"{part} retargeting needs {part} ratios of the source and every driving frame "
                               f"(the landmark model, liveportrait/landmark.onnx, or a template with {template_key})")
            ratios = torch.from_numpy(np.concatenate([source_ratio, driving_ratio[:, :1]], axis=1).astype(np.float32))
            delta = delta + mm.retargeting_offset(self._mlp(graph, input_name, make_input(source.x_s, ratios)))
        return delta

    def driven_keypoints(self, source: Source, frame: Driving, first: Driving | None) -> torch.Tensor:
        """x_d for one driving frame (spec 5.4, 5.5). ``first`` is the driving video's frame 0 (relative
        motion); None drives from a single image against the neutral expression."""
        opts = self.options
        with self.times("motion"):
            x_d = mm.drive_keypoints(source.motion, frame.motion, None if first is None else first.motion,
                                     relative=opts.relative, region=opts.region, neutral_exp=NEUTRAL_EXPRESSION)
            if opts.retargeting:
                delta = self._retargeting_delta(source, frame)
                x_d = source.x_s + delta if opts.relative else x_d + delta
            if opts.stitching:
                feat = mm.stitching_input(source.x_s, x_d)
                x_d = mm.stitch(source.x_s, x_d, self._mlp("stitching", "feat_stitching", feat))
            return mm.apply_driving_multiplier(source.x_s, x_d, opts.driving_multiplier)

    def render(self, source: Source, x_d: torch.Tensor) -> np.ndarray:
        """W then G (or the fused graph): the 512x512 uint8 RGB frame for driven keypoints ``x_d``."""
        feeds = {"feature_3d": source.feature_3d, "kp_driving": x_d.numpy(), "kp_source": source.x_s.numpy()}
        if self.options.fused:
            with self.times("warp+generator"):
                return frame_image(self.backend.to_host(self.backend.session("warp_decode").run(feeds)["out"]))
        with self.times("warp"):
            warped = self.backend.session("warping_module").run(feeds)
        with self.times("generator"):
            out = self.backend.session("spade_generator").run({"feature": warped["out"]})
            return frame_image(self.backend.to_host(out["out"]))

    def animate(self, source: Source, frame: Driving, first: Driving | None) -> np.ndarray:
        return self.render(source, self.driven_keypoints(source, frame, first))
