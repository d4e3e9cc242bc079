"""Which pictures a calibration set is made of: the input files, and a seeded plan of samples over them.

A sample is one step of the animation pipeline: a source picture driven by one frame of a driving video,
with relative motion against that video's first frame. Driving frames are drawn without replacement from
every frame but the first; sources are the still images (source portraits and driving stills alike), then
spare video frames. The held-out samples share no picture with the calibration samples: their driving
frames are distinct, and their sources are an image kept apart (when there are two or more) and frames
nobody else uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lpt.errors import LptError
from lpt.specs import EYE_RATIO_RANGE, LIP_RATIO_RANGE  # what each sample's ratios are drawn from

IMAGE_GLOB = "*.jpg"  # what export.parity_inputs reads
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
CALIBRATION, HELD_OUT = "calibration", "held_out"
SPLITS = (CALIBRATION, HELD_OUT)


class CalibrationError(LptError):
    """Calibration inputs or a calibration set that cannot be used."""


@dataclass(frozen=True)
class Picture:
    file: str  # the path as found
    frame: int | None = None  # None for a still image

    def label(self) -> str:
        return self.file if self.frame is None else f"{self.file}#{self.frame}"


@dataclass(frozen=True)
class Sample:
    index: int
    split: str
    source: Picture
    driving: Picture
    reference: Picture  # the driving video's first frame
    eye_ratios: tuple[float, ...]
    lip_ratios: tuple[float, ...]


@dataclass(frozen=True)
class InputFiles:
    stills: dict[str, np.ndarray]  # path -> RGB pixels
    videos: dict[str, int]  # path -> frame count
    notes: list[str] = field(default_factory=list)  # files left out, and why

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(self.stills)


def frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()


def find_inputs(images_dir: Path, videos_dir: Path) -> InputFiles:
    """The still images of both folders and the videos of ``videos_dir``; other files (templates) are ignored."""
    # Imported here: it pulls in torch, which the readers of a built set do not need.
    from lpt.export.parity_inputs import read_images

    for folder, what in ((images_dir, "images"), (videos_dir, "videos")):
        if not folder.is_dir():
            raise CalibrationError(f"{what} folder {folder} not found")
    notes: list[str] = []
    stills = {str(path): rgb for folder in dict.fromkeys([images_dir.resolve(), videos_dir.resolve()])
              for path, rgb in read_images(folder, notes)}
    if not any(Path(p).parent == images_dir.resolve() for p in stills):
        raise CalibrationError(f"no readable images ({IMAGE_GLOB}) in {images_dir}")
    paths = sorted(p for p in videos_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        raise CalibrationError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {videos_dir}")
    videos = {}
    for path in paths:
        count = frame_count(path)
        if count < 2:
            raise CalibrationError(f"video {path}: {count} frame(s) readable, need at least 2 (the first is the "
                                   "motion reference)")
        videos[str(path.resolve())] = count
    return InputFiles(stills, videos, notes)


def plan_samples(inputs: InputFiles, samples: int, held_out: int, seed: int) -> list[Sample]:
    """``samples`` calibration samples then ``held_out`` held-out ones; the same arguments give the same plan."""
    if samples < 1 or held_out < 0:
        raise CalibrationError(f"need at least 1 calibration sample and 0 or more held-out ones, got {samples} and {held_out}")
    rng = np.random.default_rng(seed)
    total = samples + held_out
    pool = [Picture(video, i) for video, count in inputs.videos.items() for i in range(1, count)]
    if len(pool) < total:
        raise CalibrationError(f"{total} samples need {total} distinct driving frames; the videos have {len(pool)} "
                               "besides their first frames (lower --samples / --held-out)")
    frames = [pool[i] for i in rng.permutation(len(pool))]
    drivers, spare = frames[:total], frames[total:]
    images = [Picture(inputs.images[i]) for i in rng.permutation(len(inputs.images))]
    kept_apart = images[:1] if held_out and len(images) >= 2 else []
    own_images = {CALIBRATION: images[len(kept_apart):], HELD_OUT: kept_apart}
    counts = {CALIBRATION: samples, HELD_OUT: held_out}
    plan: list[Sample] = []
    for split in SPLITS:
        n = counts[split]
        if n == 0:
            continue
        extra = max(0, n - len(own_images[split]))
        sources = own_images[split] + spare[:extra]
        spare = spare[extra:]
        if not sources:
            raise CalibrationError("no picture left for the held-out sources: give a second image or longer videos")
        for k in range(n):
            driving = drivers[len(plan)]
            plan.append(Sample(
                len(plan), split, sources[k % len(sources)], driving, Picture(driving.file, 0),
                tuple(float(x) for x in rng.uniform(*EYE_RATIO_RANGE, 3)),
                tuple(float(x) for x in rng.uniform(*LIP_RATIO_RANGE, 2)),
            ))
    return plan


def pictures(plan: list[Sample]) -> list[Picture]:
    """Every picture the plan uses, once, in a stable order."""
    return list(dict.fromkeys(p for s in plan for p in (s.source, s.driving, s.reference)))
