"""Parity feeds per graph: crops of real images, the intermediates they produce, seeded random tensors.

Real images come from the assets folder (``<repo>/../shared/assets`` unless given): the source portraits,
frames of each driving video at fixed positions (read with OpenCV) and the driving still. ``centre_crop``
takes the centred square, resized to 256x256, RGB float in [0, 1]. That is a stand-in: the official face
crop (landmark-aligned) arrives with the pipeline. Without the folder the project's demo portraits
(``lpt.demo.draw_portrait``) take their place, and the report says so.

Intermediates come from the PyTorch networks in the official chain: F(source crop) is the feature volume;
M(crop) -> kp info -> transformed keypoints is kp_source, and the driven keypoints (relative motion
against the video's first frame, absolute motion for a still) are kp_driving; W(...)["out"] is the
generator's feature; the stitching / eye / lip inputs are built from real keypoints and fixed plausible
eye and lip ratios (the landmark detector that measures them arrives with the pipeline too).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import torch
from lpt.models import motion
from torch import nn

from lpt.demo import draw_portrait
from lpt.errors import LptError
from lpt.specs import KEYPOINT_RANGE, SPECS, TensorSpec, ValueRange

from .graphs import graph_module

CROP = 256
FRAME_POSITIONS = (0.0, 0.5)  # fractions of each driving video; frame 0 is the relative-motion reference
MIN_PAIRS = 4  # (source, driver) pairs: enough for the real feeds of every graph
# [source left eye, source right eye, target eye] and [source lip, target lip] opening ratios.
EYE_RATIOS = ((0.32, 0.30, 0.0), (0.28, 0.31, 0.18), (0.35, 0.33, 0.38), (0.25, 0.27, 0.45))
LIP_RATIOS = ((0.05, 0.0), (0.02, 0.3), (0.12, 0.55), (0.30, 0.8))
DRIVING_SPREAD = 0.05  # random driving keypoints: the source's plus this much unit-normal noise
# The warping module and what it feeds cost seconds per image on CPU: fewer, smaller feeds.
HEAVY = frozenset({"warping_module", "spade_generator", "warp_decode"})
# (quick, heavy) -> (batch of each real feed, batch of each random feed).
FEED_BATCHES: dict[tuple[bool, bool], tuple[tuple[int, ...], tuple[int, ...]]] = {
    (False, False): ((1, 1, 2), (1, 2)),
    (False, True): ((1, 2), (1,)),
    (True, False): ((2,), (1,)),
    (True, True): ((2,), ()),
}
# Which graph's feeds a graph reuses: the fused graph takes the warping module's real ones, so both share
# one PyTorch reference run.
FEED_FAMILY = {"warp_decode": "warping_module"}
NEEDS: dict[str, tuple[str, ...]] = {  # the networks that make a graph's feeds
    "appearance_feature_extractor": (),
    "motion_extractor": (),
    "warping_module": ("appearance_feature_extractor", "motion_extractor"),
    "spade_generator": ("appearance_feature_extractor", "motion_extractor", "warping_module"),
    "warp_decode": ("appearance_feature_extractor", "motion_extractor"),
    "stitching": ("motion_extractor",),
    "eye_retargeting": ("motion_extractor",),
    "lip_retargeting": ("motion_extractor",),
}

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Feed:
    label: str  # unique per graph family: the reference cache is keyed by it
    kind: str  # "real" or "random"
    tensors: dict[str, np.ndarray]  # by input name, spec order, float32, batch first

    @property
    def batch(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0])


@dataclass(frozen=True)
class Crop:
    label: str
    image: torch.Tensor  # (1, 3, 256, 256) RGB in [0, 1]


@dataclass(frozen=True)
class Driver:
    crop: Crop
    first: Crop | None  # the video's first frame (relative motion); None for a still (absolute motion)


@dataclass
class RealImages:
    origin: str  # "assets" or "demo"
    description: str
    sources: list[Crop]
    drivers: list[Driver]
    notes: list[str] = field(default_factory=list)

    @property
    def crops(self) -> list[Crop]:
        seen: dict[str, Crop] = {}
        for crop in [*self.sources, *(d.crop for d in self.drivers), *(d.first for d in self.drivers if d.first)]:
            seen.setdefault(crop.label, crop)
        return list(seen.values())


def networks_needed(graphs: Iterable[str]) -> tuple[str, ...]:
    """The networks for the references and the feeds of ``graphs``."""
    names = {n for g in graphs for n in (*SPECS[g].networks, *NEEDS[g])}
    return tuple(sorted(names))


def default_assets_dir() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "assets"


def centre_crop(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 RGB -> (1, 3, 256, 256) float in [0, 1]: the centred square, area-resized."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    square = cv2.resize(rgb[y0 : y0 + side, x0 : x0 + side], (CROP, CROP), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(square.transpose(2, 0, 1))).float().div_(255).unsqueeze(0)


def read_images(folder: Path, notes: list[str]) -> list[tuple[Path, np.ndarray]]:
    """The folder's *.jpg as RGB, in name order; an unreadable file is noted and left out."""
    out = []
    for path in sorted(folder.glob("*.jpg")):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            notes.append(f"unreadable image {path}, left out")
        else:
            out.append((path, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return out


def read_frames(path: Path, positions: Iterable[float] = FRAME_POSITIONS) -> list[tuple[int, np.ndarray]]:
    """(index, RGB frame) at fractions of the video's length, decoded sequentially (seeking is not
    frame-exact for every codec)."""
    cap = cv2.VideoCapture(str(path))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        wanted = sorted({min(int(p * count), count - 1) for p in positions}) if count > 0 else []
        frames, index = [], 0
        while wanted and index <= wanted[-1]:
            ok, bgr = cap.read()
            if not ok:
                break
            if index in wanted:
                frames.append((index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            index += 1
        return frames
    finally:
        cap.release()


def demo_images(reason: str) -> RealImages:
    """Demo portraits standing in for the assets: two sources, a two-frame "video" and a still."""
    crop = lambda label, **pose: Crop(label, centre_crop(draw_portrait(size=512, **pose)))
    first = crop("demo13#0", seed=13)
    return RealImages(
        "demo", f"demo portraits (lpt.demo.draw_portrait): {reason}",
        [crop("demo11", seed=11), crop("demo12", seed=12, yaw=-10.0)],
        [Driver(crop("demo13#1", seed=13, yaw=15.0, mouth_open=0.5, eye_open=0.3), first),
         Driver(crop("demo14", seed=14, yaw=-20.0, mouth_open=0.2), None)],
    )


def load_real_images(assets: Path | None = None) -> RealImages:
    """Crops of the assets' sources, driving-video frames and driving stills; demo portraits when the
    default folder is absent. A folder named explicitly must exist."""
    folder = Path(assets) if assets is not None else default_assets_dir()
    if not folder.is_dir():
        if assets is not None:
            raise LptError(f"assets folder {folder} not found (expected source/*.jpg and driving/*.mp4|*.jpg)")
        return demo_images(f"no assets folder at {folder}")
    notes: list[str] = []
    sources = [Crop(p.name, centre_crop(rgb)) for p, rgb in read_images(folder / "source", notes)]
    drivers = []
    for path in sorted((folder / "driving").glob("*.mp4")):
        frames = read_frames(path)
        if len(frames) < 2:
            notes.append(f"skipped {path}: fewer than 2 frames decoded")
            continue
        first = Crop(f"{path.name}#{frames[0][0]}", centre_crop(frames[0][1]))
        drivers += [Driver(Crop(f"{path.name}#{i}", centre_crop(f)), first) for i, f in frames[1:]]
    drivers += [Driver(Crop(p.name, centre_crop(rgb)), None) for p, rgb in read_images(folder / "driving", notes)]
    if not sources or not drivers:
        return demo_images(f"{folder} has no readable source/*.jpg or driving/*.mp4|*.jpg")
    names = ", ".join(c.label for c in [*sources, *(d.crop for d in drivers)])
    return RealImages("assets", f"{folder}: centre crops of {names}", sources, drivers, notes)


class Reference:
    """PyTorch outputs of each graph on a feed, memoised by (graph, feed label): every variant and runner
    is compared with one reference run, and the chain reuses the warping module's outputs."""

    def __init__(self, networks: Mapping[str, nn.Module]) -> None:
        self.networks = networks
        self._cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def outputs(self, graph: str, feed: Feed) -> dict[str, np.ndarray]:
        key = (graph, feed.label)
        if key not in self._cache:
            if graph == "warp_decode":  # W then G, exactly the fused graph, through the cache
                self._cache[key] = self.outputs("spade_generator", self.warped_feature(feed))
            else:
                spec = SPECS[graph]
                with torch.inference_mode():
                    outs = graph_module(graph, self.networks)(*(torch.from_numpy(feed.tensors[n]) for n in spec.input_names))
                self._cache[key] = {n: o.numpy() for n, o in zip(spec.output_names, outs)}
        return self._cache[key]

    def warped_feature(self, feed: Feed) -> Feed:
        return Feed(f"W({feed.label})", feed.kind, {"feature": self.outputs("warping_module", feed)["out"]})


class Chain:
    """The official chain on the real images, each step computed once and only when a graph needs it."""

    def __init__(self, networks: Mapping[str, nn.Module], images: RealImages) -> None:
        self.networks, self.images = networks, images

    @cached_property
    def features(self) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return {c.label: self.networks["appearance_feature_extractor"](c.image) for c in self.images.sources}

    @cached_property
    def motions(self) -> dict[str, motion.Motion]:
        crops = self.images.crops
        with torch.inference_mode():
            m = motion.motion_from_kp_info(motion.kp_info(self.networks["motion_extractor"](torch.cat([c.image for c in crops]))))
        rows = {k: cast(torch.Tensor, v) for k, v in m.items()}
        return {c.label: cast(motion.Motion, {k: v[i : i + 1] for k, v in rows.items()}) for i, c in enumerate(crops)}

    @cached_property
    def pairs(self) -> list[tuple[str, Crop, torch.Tensor, torch.Tensor]]:
        """(label, source crop, x_s, x_d) for sources and drivers taken in turn."""
        src, drv, out = self.images.sources, self.images.drivers, []
        for i in range(max(MIN_PAIRS, len(src), len(drv))):
            s, d = src[i % len(src)], drv[i % len(drv)]
            ms, md = self.motions[s.label], self.motions[d.crop.label]
            first = self.motions[d.first.label] if d.first else None
            with torch.inference_mode():
                x_d = motion.drive_keypoints(ms, md, first, relative=first is not None)
            out.append((f"{s.label}>{d.crop.label}", s, ms["x_s"], x_d))
        return out

    def items(self, family: str) -> list[tuple[str, Tensors]]:
        """Batch-1 real inputs of a graph family, by label."""
        crops = [*self.images.sources, *(d.crop for d in self.images.drivers)]
        if family == "appearance_feature_extractor":
            return [(c.label, {"source_image": c.image}) for c in crops]
        if family == "motion_extractor":
            return [(c.label, {"image": c.image}) for c in crops]
        if family == "warping_module":
            return [(label, {"feature_3d": self.features[s.label], "kp_driving": x_d, "kp_source": x_s})
                    for label, s, x_s, x_d in self.pairs]
        if family == "stitching":
            return [(label, {"feat_stitching": motion.stitching_input(x_s, x_d)}) for label, _, x_s, x_d in self.pairs]
        if family == "eye_retargeting":
            return [(f"{label} eyes {r}", {"feat_eye": motion.eye_retargeting_input(x_s, torch.tensor([r]))})
                    for (label, _, x_s, _), r in zip(self.pairs, _cycle(EYE_RATIOS, len(self.pairs)))]
        if family == "lip_retargeting":
            return [(f"{label} lip {r}", {"feat_lip": motion.lip_retargeting_input(x_s, torch.tensor([r]))})
                    for (label, _, x_s, _), r in zip(self.pairs, _cycle(LIP_RATIOS, len(self.pairs)))]
        raise KeyError(family)


def _cycle(values: tuple[tuple[float, ...], ...], n: int) -> list[tuple[float, ...]]:
    return [values[i % len(values)] for i in range(n)]


def group(items: list[tuple[str, Tensors]], batches: Iterable[int]) -> list[Feed]:
    """Consecutive items stacked into feeds of the given batch sizes (items reused when they run out)."""
    feeds, i = [], 0
    for batch in batches:
        chosen = [items[(i + k) % len(items)] for k in range(batch)]
        i += batch
        tensors = {name: torch.cat([t[name] for _, t in chosen]).float().numpy() for name in chosen[0][1]}
        feeds.append(Feed(" + ".join(label for label, _ in chosen), "real", tensors))
    return feeds


def _draw(rng: np.random.Generator, value_range: ValueRange | None, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform over ``value_range``; unit normal where the spec gives none (feature maps)."""
    return rng.standard_normal(shape) if value_range is None else rng.uniform(*value_range, shape)


def _random_input(t: TensorSpec, batch: int, rng: np.random.Generator, keypoints: dict[str, np.ndarray]) -> np.ndarray:
    """One input: keypoint tensors and segments take the feed's shared keypoints, the rest their spec range."""
    if t.name in keypoints:
        return keypoints[t.name].reshape(batch, *t.shape[1:])
    if not t.segments:
        return _draw(rng, t.value_range, (batch, *t.shape[1:]))
    return np.concatenate([keypoints[s.name] if s.name in keypoints else _draw(rng, s.value_range, (batch, s.size))
                           for s in t.segments], 1)


def random_feed(family: str, batch: int, index: int, seed: int = 0) -> Feed:
    """Seeded inputs over their spec value ranges (``lpt.specs``: images in [0, 1], keypoints in
    ``KEYPOINT_RANGE`` with the driving keypoints near the source's, the MLPs' ratios in theirs), feature
    maps ~ N(0, 1)."""
    rng = np.random.default_rng([seed, index, zlib.crc32(family.encode())])
    x_s = rng.uniform(*KEYPOINT_RANGE, (batch, 63))
    x_d = np.clip(x_s + DRIVING_SPREAD * rng.standard_normal(x_s.shape), *KEYPOINT_RANGE)
    keypoints = {"kp_source": x_s, "kp_driving": x_d}
    tensors = {t.name: _random_input(t, batch, rng, keypoints) for t in SPECS[family].inputs}
    return Feed(f"random#{index} (seed {seed})", "random", {k: v.astype(np.float32) for k, v in tensors.items()})


def build_feeds(graphs: Iterable[str], reference: Reference, images: RealImages, *, quick: bool = False,
                seed: int = 0) -> dict[str, list[Feed]]:
    """Feeds per graph: real ones first, then random ones; batch 1 and 2 in each graph's list."""
    chain = Chain(reference.networks, images)
    by_family: dict[str, list[Feed]] = {}

    def family_feeds(family: str) -> list[Feed]:
        if family not in by_family:
            real, rand = FEED_BATCHES[(quick, family in HEAVY)]
            if family == "spade_generator":  # the warped features of the warping module's real feeds
                feeds = [reference.warped_feature(f) for f in family_feeds("warping_module") if f.kind == "real"]
            else:
                feeds = group(chain.items(family), real)
            by_family[family] = feeds + [random_feed(family, b, i, seed) for i, b in enumerate(rand)]
        return by_family[family]

    out = {}
    for graph in graphs:
        if graph not in SPECS:
            raise LptError(f"unknown graph {graph!r}; known: {', '.join(SPECS)}")
        feeds = family_feeds(FEED_FAMILY.get(graph, graph))
        # The fused graph is W then G, both already checked on random inputs: real feeds only, the costliest.
        out[graph] = [f for f in feeds if f.kind == "real"] if graph == "warp_decode" else feeds
    return out
