"""Video-to-video (spec 5.6): a source video animated by a driving video, image or template.

Each source frame has its own crop, features and keypoints. The expression and rotation targets of all
frames are smoothed together (Kalman RTS, as upstream), so a first pass collects every frame's motion
(a few hundred floats each) and the crop matrices; the second pass re-reads the source, re-crops it with
the stored matrices, and renders. Memory stays flat: no frame is kept between the passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch
from lpt.models import motion as mm
from lpt.runtime.animate import Driving, Source, image_tensor
from lpt.runtime.drivers import DrivingInput, DrivingItem, open_driving
from lpt.runtime.media import SOURCE_DIVISION, SOURCE_MAX_DIM, resize_to_limit
from lpt.runtime.outputs import check_kinds
from lpt.runtime.pipeline import Run, RunReport, audio_file, side_by_side
from lpt.runtime.sequences import open_frames

from lpt.errors import LptError


class VideoSourceRun(Run):
    """``Run`` for a source video; the same options, stages and report."""

    def _source_frames(self, path: Path, limit: int | None) -> Iterator[tuple[np.ndarray, Fraction]]:
        """Each source frame prepared as upstream prepares source pictures (longer side at most 1280, sides
        even), with its time."""
        with open_frames(path, max_frames=limit) as reader:
            for rgb, at in reader.timed():
                yield resize_to_limit(rgb, SOURCE_MAX_DIM, SOURCE_DIVISION), at

    def _first_pass(self, source_path: Path, info: DrivingInput, items: Iterator[DrivingItem], limit: int | None,
                    driving_times: bool) -> tuple[list[mm.Motion], list[np.ndarray], list[Driving], list[Fraction | None]]:
        motions: list[mm.Motion] = []
        matrices: list[np.ndarray] = []
        driving: list[Driving] = []
        times: list[Fraction | None] = []  # each output frame's time
        previous, driving_crop = None, None
        single_image = info.single_image
        driving_item = next(items, None) if single_image else None
        for index, (rgb, source_at) in enumerate(self._source_frames(source_path, limit)):
            item = driving_item if single_image else next(items, None)
            if item is None:
                break  # the shorter input ends the animation
            times.append(item.at if driving_times else source_at)
            with self.times("crop"):
                previous = self.cropper.crop_source_frame(rgb, previous, label=f"source frame {index} of {source_path.name}")  # type: ignore[attr-defined]
            motions.append(self.animator.motion(previous.image_256))
            matrices.append(previous.M_c2o)
            if not single_image or not driving:
                frame, driving_crop = self.driving_frame(item, info, driving_crop)
                driving.append(frame)
            self.progress(index + 1, None)
        if not motions:
            raise LptError(f"{source_path}: no source frame was read")
        return motions, matrices, driving, times

    def animate(self, source_path: Path, driving_path: Path, output: Path) -> RunReport:
        from lpt.runtime.crop import warp
        from lpt.runtime.pasteback import PasteBack
        opts = self.options
        if opts.animation.retargeting:
            raise LptError("eye/lip retargeting is not supported with a source video (upstream's source-video "
                           "eye retargeting is a separate, default-off option)")
        info, items = open_driving(driving_path, opts.max_frames)
        check_kinds("video", info.kind, output)
        # Timed by the video whose sound is heard: the driving video's frames (by default, so its audio stays in
        # sync; upstream keeps the source's rate and lets the driving audio drift), else the source video's.
        driving_times = info.kind == "video" and opts.audio != "source"
        with open_frames(source_path, max_frames=1) as probe:
            fps = info.fps if driving_times else probe.fps
            audio = audio_file(opts.audio, source_path, probe.has_audio, info)
        load_seconds = self.load()
        start = time.perf_counter()
        motions, matrices, driving, times = self._first_pass(source_path, info, iter(items), opts.max_frames,
                                                             driving_times)
        n = len(motions)
        exp_t, R_t = mm.source_video_targets(motions, [d.motion for d in driving], relative=opts.animation.relative,
                                             driving_image=info.single_image)
        region = opts.animation.region
        paste = opts.pasteback and opts.crop and opts.animation.stitching

        def work(pair: tuple[int, np.ndarray]) -> np.ndarray:
            index, rgb = pair
            with self.times("crop"):
                crop_512 = warp(rgb, np.linalg.inv(matrices[index]), 512)
                crop_256 = cv2.resize(crop_512, (256, 256), interpolation=cv2.INTER_AREA)
            with self.times("features"):
                feature = self.backend.session("appearance_feature_extractor").run({"source_image": image_tensor(crop_256)})
            motion = motions[index]
            x_s = motion["x_s"]
            with self.times("motion"):
                x_d = mm.source_video_keypoints(motion, torch.from_numpy(exp_t[index]), torch.from_numpy(R_t[index]), region)
                if opts.animation.stitching:
                    feat = mm.stitching_input(x_s, x_d)
                    x_d = mm.stitch(x_s, x_d, self.animator._mlp("stitching", "feat_stitching", feat))
                x_d = mm.apply_driving_multiplier(x_s, x_d, opts.animation.driving_multiplier)
            result = self.animator.render(Source(feature["feature_3d"], motion), x_d)
            with self.times("paste-back"):
                out = PasteBack(rgb, matrices[index]).paste(result) if paste else result
            if opts.concat:
                out = side_by_side(None, crop_256, out)
            return out

        def frames() -> Iterator[tuple[int, np.ndarray]]:
            source = self._source_frames(source_path, n)
            for index in range(n):
                with self.times("decode"):
                    frame = next(source, None)
                if frame is None:
                    return
                yield index, frame[0]

        done = self.encode(frames(), work, output, opts.fps or fps, audio, n,
                           at=None if opts.fps else (lambda pair: times[pair[0]]))
        return self.report(output, done, start, load_seconds)
