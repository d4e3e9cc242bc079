"""LivePortrait run the way its original defaults run it, rebuilt from lpt's own parts, for the
original-versus-optimized table.

What makes it the original's way (spec 5): PyTorch eager FP32 under ``no_grad``; every network, the
eye and lip retargeting MLPs too, loaded at each call, with the face models; the driving clip decoded
into a list first and resized as a list; the crops stacked into one array and turned into per-frame
tensors; a motion template of per-frame numpy dicts built by M, pickled to disk (the original writes
``<driving>.pkl``) and turned back into tensors frame by frame; results and paste-backs kept in lists;
and at the end the result and the side-by-side ``_concat`` video written by an ffmpeg subprocess (libx264,
crf 18, yuv420p), each probed for and given the driving audio by two more subprocesses. None of it is
the official code; the networks, the motion math, the crop and the paste-back are lpt's.
"""

from __future__ import annotations

import pickle
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from lpt.models import motion as mm
from lpt.runtime.animate import StageTimes, frame_image

from lpt.errors import LptError
from lpt.files import write_atomic

NETWORKS = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator",
            "stitching", "eye_retargeting", "lip_retargeting")
CRF = 18  # the original writer's quality setting


class FfmpegError(LptError):
    """No ffmpeg executable, or ffmpeg failed on a file."""


def find_ffmpeg() -> str:
    """ffmpeg on PATH, else the binary the ``imageio-ffmpeg`` wheel ships."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        raise FfmpegError("the original-style run writes its videos with an ffmpeg subprocess, as the original "
                          "does: put ffmpeg on PATH or `pip install imageio-ffmpeg`") from None


def _ffmpeg(args: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([find_ffmpeg(), "-hide_banner", *args], capture_output=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()
        raise FfmpegError(f"ffmpeg failed on {what}: {tail[-1] if tail else f'exit status {done.returncode}'}")
    return done


def write_video(frames: list[np.ndarray], path: Path, fps: float) -> None:
    """RGB frames piped to an ffmpeg subprocess, encoded as the original's writer does."""
    height, width = frames[0].shape[:2]
    command = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-", "-an", "-c:v", "libx264",
               "-pix_fmt", "yuv420p", "-crf", str(CRF), "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", str(path)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdin is not None
    try:
        for frame in frames:
            process.stdin.write(np.ascontiguousarray(frame).tobytes())
    except BrokenPipeError:
        pass  # ffmpeg stopped early; its exit status and message say why
    process.stdin.close()
    error = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
    if process.wait() != 0:
        raise FfmpegError(f"ffmpeg could not write {path}: {error.splitlines()[-1] if error else 'no message'}")


def has_audio(path: Path) -> bool:
    """Probed by a subprocess, as the original does (ffprobe there; ``ffmpeg -i`` lists the streams too)."""
    listing = subprocess.run([find_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, check=False)
    return any("Audio:" in line for line in listing.stderr.decode(errors="replace").splitlines())


def add_audio(video: Path, audio_from: Path) -> None:
    """The driving audio muxed in by one more subprocess, video stream copied, then renamed over ``video``."""
    muxed = video.with_name(video.stem + "_with_audio" + video.suffix)
    _ffmpeg(["-loglevel", "error", "-y", "-i", str(video), "-i", str(audio_from), "-map", "0:v", "-map", "1:a",
             "-c:v", "copy", "-shortest", str(muxed)], str(muxed))
    muxed.replace(video)


@dataclass
class OriginalRun:
    """What one call produced: the rendered 512x512 frames (before paste-back) and where time went."""

    frames: np.ndarray  # (N, 512, 512, 3) uint8
    seconds: float  # the whole call: models loaded, every frame, both videos written
    load_seconds: float
    outputs: list[Path]
    times: StageTimes = field(default_factory=StageTimes)


def _as_tensors(item: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value).to(device) for key, value in item.items()}


def _concat(driving_256: np.ndarray, source_256: np.ndarray, result_512: np.ndarray) -> np.ndarray:
    panels = [cv2.resize(img, (512, 512)) if img.shape[0] != 512 else img for img in (driving_256, source_256, result_512)]
    return np.concatenate(panels, axis=1)


def run_original(weights: Path, source: Path, driving: Path, out_dir: Path, frames: int, device: str = "auto",
                 progress: Callable[[str], None] = lambda _: None) -> OriginalRun:
    """One call of the original-style pipeline on the first ``frames`` driving frames; videos in ``out_dir``."""
    from lpt.models.checkpoint import load
    from lpt.runtime.faces import FaceCropper
    from lpt.runtime.media import load_image
    from lpt.runtime.pasteback import PasteBack
    from lpt.runtime.video import VideoReader

    start = time.perf_counter()
    times = StageTimes()
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device)
    with times("load"):
        nets = {name: net.to(dev) for name, net in load(weights, NETWORKS).items()}
        cropper = FaceCropper(weights)
    load_seconds = time.perf_counter() - start

    with torch.no_grad():
        source_rgb = load_image(source)
        with times("crop"):
            crop = cropper.crop_source(source_rgb, label=f"source {source.name}")
        with times("decode"):
            reader = VideoReader(driving, max_frames=frames)
            fps = float(reader.fps)
            driving_rgb = list(reader)
        with times("crop"):
            square = driving_rgb[0].shape[0] == driving_rgb[0].shape[1]
            crops, previous = [], None
            for i, rgb in enumerate(driving_rgb):
                label = f"driving frame {i} of {driving.name}"
                previous = cropper.resize_only(rgb, previous, label) if square else cropper.crop_driving(rgb, previous, label)
                crops.append(previous)
        eyes = [mm.eye_close_ratio(c.landmarks[None]) if c.landmarks is not None else np.zeros((1, 2), np.float32) for c in crops]
        lips = [mm.lip_close_ratio(c.landmarks[None]) if c.landmarks is not None else np.zeros((1, 1), np.float32) for c in crops]

        with times("motion"):
            stacked = np.stack([c.image_256 for c in crops])[..., np.newaxis].astype(np.float32) / 255.0
            batch = torch.from_numpy(np.clip(stacked, 0, 1)).permute(0, 4, 3, 1, 2).to(dev)  # T x 1 x 3 x H x W
            template: dict[str, object] = {"n_frames": len(crops), "output_fps": fps, "motion": [],
                                           "c_eyes_lst": [e.astype(np.float32) for e in eyes],
                                           "c_lip_lst": [c.astype(np.float32) for c in lips]}
            for image in batch:
                m = mm.motion_from_kp_info(mm.kp_info(nets["motion_extractor"](image)))
                template["motion"].append({k: m[k].cpu().numpy().astype(np.float32)  # type: ignore[union-attr]
                                           for k in ("scale", "R", "exp", "t", "kp", "x_s")})
            write_atomic(out_dir / f"{driving.stem}.pkl", pickle.dumps(template))

        with times("features"):
            image_s = torch.from_numpy(crop.image_256.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(dev)
            source_motion = mm.motion_from_kp_info(mm.kp_info(nets["motion_extractor"](image_s)))
            f_s = nets["appearance_feature_extractor"](image_s)
            x_s = source_motion["x_s"]
            paste = PasteBack(source_rgb, crop.M_c2o)

        results, pasted, first = [], [], None
        for item in template["motion"]:  # type: ignore[attr-defined]
            with times("motion"):
                frame_motion = _as_tensors(item, dev)
                if first is None:
                    first = frame_motion
                x_d = mm.drive_keypoints(source_motion, frame_motion, first, relative=True, region="all")  # type: ignore[arg-type]
                x_d = mm.stitch(x_s, x_d, nets["stitching"](mm.stitching_input(x_s, x_d)))
                x_d = mm.apply_driving_multiplier(x_s, x_d, 1.0)
            with times("warp"):
                warped = nets["warping_module"](f_s, x_d, x_s)["out"]
            with times("generator"):
                results.append(frame_image(nets["spade_generator"](warped).float().cpu().numpy()))
            with times("paste-back"):
                pasted.append(paste.paste(results[-1]))
            progress(f"original-style: frame {len(results)}/{len(crops)}")

    with times("encode"):
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{source.stem}--{driving.stem}"
        concat_path, result_path = out_dir / f"{stem}_concat.mp4", out_dir / f"{stem}.mp4"
        write_video([_concat(c.image_256, crop.image_256, r) for c, r in zip(crops, results)], concat_path, fps)
        audio = has_audio(driving)
        if audio:
            add_audio(concat_path, driving)
        write_video(pasted, result_path, fps)
        if audio:
            add_audio(result_path, driving)
    return OriginalRun(np.stack(results), time.perf_counter() - start, load_seconds, [result_path, concat_path], times)
