"""Every case of the corpus, written into a fresh folder when asked: no binary is stored in the repository.

A case builder writes its hostile or broken file, plus whatever valid inputs the command needs to reach the
code that must refuse it, and returns the command line (run in the case's folder, so messages name files
by short relative paths) with what the one error line must say.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

OUTPUT = "out/result.mp4"  # every lpt-run case writes here unless the output path is the bad input
F_FILE = "weights/liveportrait/base_models/appearance_feature_extractor.pth"  # the first checkpoint lpt-run loads


@dataclass(frozen=True)
class Inputs:
    """Valid inputs the cases share, and the shared sample files that were found."""

    portrait: Path  # a drawn face, 256x256: a valid source image (an aligned crop for --no-crop)
    clip: Path  # a valid two-frame driving video
    assets: dict[str, Path] = field(default_factory=dict)  # by their path under ../shared


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]  # the program first: "lpt-run" or "lpt"; run in the case's folder
    expect: tuple[str, ...]  # fragments of the error line: the file, and what was expected
    watched: Path  # the folder the output would go to: nothing may appear or change in it
    absent: tuple[Path, ...] = ()  # files that must not exist afterwards: the output, a payload's marker


Builder = Callable[[Path, Inputs], Case]  # writes the case's files into the (empty) folder


@dataclass(frozen=True)
class CaseSpec:
    title: str  # for the table
    build: Builder
    needs: str | None = None  # a shared sample file (path under ../shared) the case cannot do without


CASES: dict[str, CaseSpec] = {}


def case(name: str, title: str, needs: str | None = None) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        CASES[name] = CaseSpec(title, build, needs)
        return build

    return register


# ------------------------------------------------------------------------------------------ file makers


class RunsCommand:
    """Pickles as a call of ``os.system(command)``: what a hostile pickle does on a plain ``pickle.load``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return os.system, (self.command,)


def write_video(path: Path, frames: list[np.ndarray], codec: str = "libx264", container: str = "mp4") -> Path:
    """Frames (RGB) as written by FFmpeg's muxer with no post-processing: the index (moov) last, as most
    cameras and encoders leave it, so a cut-off download loses it."""
    import av

    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=25)
        stream.height, stream.width = frames[0].shape[:2] if frames else (64, 64)
        stream.pix_fmt = "yuv420p"
        out.start_encoding()  # writes the header even when no frame follows
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def write_image(path: Path, rgb: np.ndarray) -> Path:
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, path
    path.write_bytes(data.tobytes())
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` over a few bytes of pixels: decoding it would
    allocate width * height * 3 bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def noise(path: Path, size: int, seed: int) -> Path:
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes())
    return path


def make_inputs(folder: Path, assets: dict[str, Path]) -> Inputs:
    from lpt.demo import draw_portrait

    folder.mkdir(parents=True, exist_ok=True)
    portrait = write_image(folder / "portrait.png", draw_portrait(0, 256))
    clip = write_video(folder / "clip.mp4", [draw_portrait(0, 128, yaw=yaw) for yaw in (0.0, 10.0)])
    return Inputs(portrait, clip, assets)


def lpt_run(folder: Path, source: Path | str, driving: Path | str, *extra: str, output: str = OUTPUT) -> tuple[str, ...]:
    """``lpt-run`` with the PyTorch backend on the case's own weights folder (empty unless the case fills it)."""
    (folder / "weights").mkdir(exist_ok=True)
    (folder / "out").mkdir(exist_ok=True)
    return ("lpt-run", "-s", str(source), "-d", str(driving), "-o", output, "--weights", "weights",
            "--backend", "torch", *extra)


def refusal(folder: Path, argv: tuple[str, ...], *expect: str, absent: tuple[Path, ...] = ()) -> Case:
    return Case(argv, expect, folder / "out", (folder / OUTPUT, *absent))


# ---------------------------------------------------------------------------------------- templates


def _template(n_frames: int, payload: object | None = None) -> dict[str, Any]:
    """A human template as the official ``make_motion_template`` writes it; ``payload`` in place of an array."""
    from lpt.runtime.templates import FRAME_SHAPES

    rng = np.random.default_rng(0)
    motion = [{key: rng.normal(size=shape).astype(np.float32) for key, shape in FRAME_SHAPES.items()}
              for _ in range(n_frames)]
    if payload is not None:
        motion[-1]["exp"] = payload
    return {"n_frames": n_frames, "output_fps": 25, "motion": motion,
            "c_eyes_lst": [rng.random((1, 2)).astype(np.float32) for _ in range(n_frames)],
            "c_lip_lst": [rng.random((1, 1)).astype(np.float32) for _ in range(n_frames)]}


@case("pickle-payload", "a .pkl template whose pickle runs a command")
def _pickle_payload(folder: Path, inputs: Inputs) -> Case:
    marker = folder / "template-payload-ran"
    (folder / "evil.pkl").write_bytes(pickle.dumps(_template(2, RunsCommand(f"touch {marker}"))))
    return refusal(folder, lpt_run(folder, inputs.portrait, "evil.pkl"), "evil.pkl", "refused", ".system`",
                    "nothing in it was run", absent=(marker,))


@case("animal-template", "the animal template wink.pkl given to the human pipeline", needs="assets/driving/wink.pkl")
def _animal_template(folder: Path, inputs: Inputs) -> Case:
    (folder / "wink.pkl").write_bytes(inputs.assets["assets/driving/wink.pkl"].read_bytes())
    return refusal(folder, lpt_run(folder, inputs.portrait, "wink.pkl"), "wink.pkl", "animal", "eye and lip ratio")


# --------------------------------------------------------------------------------------- checkpoints
# --no-crop: the drawn portrait passes as an aligned crop, so the run reaches the network loading.


def _f_state() -> dict[str, Any]:
    import torch
    from lpt.models.registry import build

    torch.manual_seed(0)
    return build("appearance_feature_extractor").state_dict()


def _saved(state: object) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _checkpoint_case(folder: Path, inputs: Inputs, data: bytes, *expect: str, absent: tuple[Path, ...] = ()) -> Case:
    path = folder / F_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    argv = lpt_run(folder, inputs.portrait, inputs.clip, "--no-crop")
    return refusal(folder, argv, "appearance_feature_extractor.pth", *expect, absent=absent)


@case("checkpoint-payload", "a checkpoint whose pickle runs a command")
def _checkpoint_payload(folder: Path, inputs: Inputs) -> Case:
    marker = folder / "checkpoint-payload-ran"
    data = _saved({"weight": RunsCommand(f"touch {marker}")})
    return _checkpoint_case(folder, inputs, data, "refused", "system", absent=(marker,))


@case("checkpoint-truncated", "a checkpoint cut in half")
def _checkpoint_truncated(folder: Path, inputs: Inputs) -> Case:
    data = _saved(_f_state())
    return _checkpoint_case(folder, inputs, data[: len(data) // 2], "not a readable PyTorch checkpoint")


@case("checkpoint-corrupt", "a checkpoint with 64 bytes of its tensor data overwritten")
def _checkpoint_corrupt(folder: Path, inputs: Inputs) -> Case:
    data = bytearray(_saved(_f_state()))
    middle = len(data) // 2  # inside the tensors' bytes, which torch.load itself never checks
    data[middle:middle + 64] = np.random.default_rng(1).integers(0, 256, 64, np.uint8).tobytes()
    return _checkpoint_case(folder, inputs, bytes(data), "corrupt", "CRC-32")


@case("checkpoint-wrong-keys", "a checkpoint whose keys are another model's")
def _checkpoint_wrong_keys(folder: Path, inputs: Inputs) -> Case:
    state = {f"model.{key}": value for key, value in _f_state().items()}
    return _checkpoint_case(folder, inputs, _saved(state), "missing", "unexpected")


@case("checkpoint-wrong-shapes", "a checkpoint with one tensor of the wrong shape")
def _checkpoint_wrong_shapes(folder: Path, inputs: Inputs) -> Case:
    state = _f_state()
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = state[key][:, :-1].clone()  # one input channel short
    return _checkpoint_case(folder, inputs, _saved(state), "wrong shape", key)


# ----------------------------------------------------------------------------------- images and videos


@case("random-bytes-mp4", "random bytes named .mp4 as the driving video")
def _random_mp4(folder: Path, inputs: Inputs) -> Case:
    noise(folder / "noise.mp4", 64 * 1024, seed=2)
    return refusal(folder, lpt_run(folder, inputs.portrait, "noise.mp4"), "noise.mp4", "neither an image nor a video")


@case("random-bytes-jpg", "random bytes named .jpg as the source")
def _random_jpg(folder: Path, inputs: Inputs) -> Case:
    noise(folder / "noise.jpg", 64 * 1024, seed=3)
    return refusal(folder, lpt_run(folder, "noise.jpg", inputs.clip), "noise.jpg", "neither an image nor a video")


@case("zero-frame-video", "a video with a video stream and no frame (AVI)")
def _zero_frame_avi(folder: Path, inputs: Inputs) -> Case:
    write_video(folder / "empty.avi", [], codec="mpeg4", container="avi")
    return refusal(folder, lpt_run(folder, inputs.portrait, "empty.avi"), "empty.avi", "no video frames")


@case("zero-frame-source-video", "a source video with a video stream and no frame")
def _zero_frame_source(folder: Path, inputs: Inputs) -> Case:
    write_video(folder / "empty.avi", [], codec="mpeg4", container="avi")
    return refusal(folder, lpt_run(folder, "empty.avi", inputs.clip), "empty.avi", "no video frames")


@case("zero-frame-mp4", "an MP4 with no frame (the muxer drops the empty track)")
def _zero_frame_mp4(folder: Path, inputs: Inputs) -> Case:
    write_video(folder / "empty.mp4", [])
    return refusal(folder, lpt_run(folder, inputs.portrait, "empty.mp4"), "empty.mp4", "no video frames")


@case("truncated-video", "the first half of an MP4 (its index is at the end)")
def _truncated_video(folder: Path, inputs: Inputs) -> Case:
    data = inputs.clip.read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    return refusal(folder, lpt_run(folder, inputs.portrait, "cut.mp4"), "cut.mp4", "neither an image nor a video")


@case("tiny-image", "a 1x1 source image")
def _tiny_image(folder: Path, inputs: Inputs) -> Case:
    write_image(folder / "tiny.png", np.full((1, 1, 3), 200, np.uint8))
    return refusal(folder, lpt_run(folder, "tiny.png", inputs.clip), "tiny.png", "1x1", "at least")


@case("huge-image", "a PNG declaring 100000x100000 pixels (nothing allocated)")
def _huge_image(folder: Path, inputs: Inputs) -> Case:
    png_header_only(folder / "huge.png", 100_000, 100_000)
    return refusal(folder, lpt_run(folder, "huge.png", inputs.clip), "huge.png", "pixels", "allowed")


@case("no-face", "a source image with no face in it")
def _no_face(folder: Path, inputs: Inputs) -> Case:
    sky = np.linspace(90, 220, 320, dtype=np.float32)[:, None, None] * np.array([0.6, 0.8, 1.0], np.float32)
    write_image(folder / "sky.png", np.broadcast_to(sky, (320, 320, 3)).astype(np.uint8))
    return refusal(folder, lpt_run(folder, "sky.png", inputs.clip), "sky.png", "no face")


# ------------------------------------------------------------------------------------------ outputs


@case("unwritable-output", "an output folder nobody may write to")
def _unwritable_output(folder: Path, inputs: Inputs) -> Case:
    if os.geteuid() == 0:  # root ignores permission bits; sysfs takes no new file from anyone
        output = Path("/sys/lpt-bad-input-result.mp4")
    else:
        (folder / "readonly").mkdir()
        (folder / "readonly").chmod(0o555)
        output = folder / "readonly" / "result.mp4"
    argv = lpt_run(folder, inputs.portrait, inputs.clip, output=str(output))
    return refusal(folder, argv, str(output.parent), "not writable", absent=(output,))


@case("missing-output-folder", "an output path inside a folder that does not exist")
def _missing_output_folder(folder: Path, inputs: Inputs) -> Case:
    argv = lpt_run(folder, inputs.portrait, inputs.clip, output="out/missing/result.mp4")
    return refusal(folder, argv, "out/missing", "does not exist", absent=(folder / "out" / "missing",))


# ------------------------------------------------------------------------------------------ engines
# TensorRT is not needed: `lpt engines check` judges engines by their sidecars and never loads them.


def engine_folder(folder: Path, tensorrt: str, tamper: bool) -> Path:
    from dataclasses import asdict

    from lpt.engines.sidecar import EngineRecord, sha256_file

    engines = folder / "engines"
    engines.mkdir()
    major_minor = ".".join(tensorrt.split(".")[:2])
    engine = noise(engines / f"warping_module.fp16.trt{major_minor}.sm90.engine", 4096, seed=4)
    record = EngineRecord("warping_module", "fp16", "gather", "warping_module.gather.fp16.onnx", "0" * 64,
                          engine.name, sha256_file(engine), engine.stat().st_size, tensorrt, "NVIDIA H100 80GB HBM3",
                          "9.0", "12.8", "12.9", {"opt_level": 3})
    engine.with_suffix(".json").write_text(json.dumps(asdict(record), indent=2))
    if tamper:
        engine.write_bytes(engine.read_bytes()[:-1] + b"\0")  # same size, other bytes
    return engines


@case("engine-other-tensorrt", "an engine built for another TensorRT version")
def _engine_other_tensorrt(folder: Path, inputs: Inputs) -> Case:
    engines = engine_folder(folder, "10.8.0.43", tamper=False)
    argv = ("lpt", "engines", "check", "engines", "--trt-version", "11.4", "--gpu", "sm90")
    return Case(argv, ("warping_module.fp16.trt10.8.sm90.engine", "TensorRT 10.8.0.43", "11.4"), engines)


@case("engine-tampered", "an engine that does not match its sidecar's sha256")
def _engine_tampered(folder: Path, inputs: Inputs) -> Case:
    engines = engine_folder(folder, "11.4.0.106", tamper=True)
    argv = ("lpt", "engines", "check", "engines", "--trt-version", "11.4", "--gpu", "sm90")
    return Case(argv, ("warping_module.fp16.trt11.4.sm90.engine", "does not match its sidecar"), engines)


# ---------------------------------------------------------------------- outputs that would lose a file



@case("output-is-driving", "issue 14.1: -o names the driving video itself (another spelling of its path)")
def _output_is_driving(folder: Path, inputs: Inputs) -> Case:
    (folder / "out").mkdir()
    driving = folder / "out" / "clip.mp4"
    driving.write_bytes(inputs.clip.read_bytes())
    argv = lpt_run(folder, inputs.portrait, "out/clip.mp4", output="out/../out/./clip.mp4")
    return Case(argv, ("out/../out/clip.mp4", "is the driving", "destroy"), folder / "out")


@case("output-is-linked-source", "issue 14.1: -o is a symbolic link to the source image")
def _output_is_linked_source(folder: Path, inputs: Inputs) -> Case:
    (folder / "out").mkdir()
    source = folder / "out" / "face.png"
    source.write_bytes(inputs.portrait.read_bytes())
    (folder / "out" / "link.png").symlink_to("face.png")
    argv = lpt_run(folder, "out/face.png", inputs.portrait, output="out/link.png")
    return Case(argv, ("out/link.png", "is the source", "destroy"), folder / "out")


@case("output-exists", "issue 14.1: -o names an existing file, without --overwrite")
def _output_exists(folder: Path, inputs: Inputs) -> Case:
    (folder / "out").mkdir()
    (folder / OUTPUT).write_bytes(b"an earlier result")
    argv = lpt_run(folder, inputs.portrait, inputs.clip)
    return Case(argv, (OUTPUT, "exists", "--overwrite"), folder / "out")


@case("video-source-image-output", "issue 14.3: a source video with an image output (.png)")
def _video_source_image_output(folder: Path, inputs: Inputs) -> Case:
    argv = lpt_run(folder, inputs.clip, inputs.portrait, output="out/result.png")
    return refusal(folder, argv, "out/result.png", "video source", "result.mp4", absent=(folder / "out/result.png",))


@case("video-driving-image-output", "issue 14.3: a driving video with an image output (.jpg)")
def _video_driving_image_output(folder: Path, inputs: Inputs) -> Case:
    argv = lpt_run(folder, inputs.portrait, inputs.clip, output="out/result.jpg")
    return refusal(folder, argv, "out/result.jpg", "an image source driven by a video", "result.mp4", absent=(folder / "out/result.jpg",))


@case("template-image-output", "issue 14.3: a motion template with an image output (.png)")
def _template_image_output(folder: Path, inputs: Inputs) -> Case:
    (folder / "motion.pkl").write_bytes(pickle.dumps(_template(2)))
    argv = lpt_run(folder, inputs.portrait, "motion.pkl", output="out/result.png")
    return refusal(folder, argv, "out/result.png", "driven by a template", absent=(folder / "out/result.png",))


@case("audio-from-image-source", "issue 14.5: --audio source with a source image")
def _audio_from_image(folder: Path, inputs: Inputs) -> Case:
    argv = lpt_run(folder, inputs.portrait, inputs.clip, "--audio", "source")
    return refusal(folder, argv, "--audio source", "image", "no sound")


def _mlp_weights(folder: Path, seed: int) -> Path:
    """The retargeting checkpoint alone (stitching, eye and lip MLPs), seeded: all a stitching graph is made from."""
    import torch
    from lpt.models.checkpoint import save_official_layout
    from lpt.models.registry import build

    torch.manual_seed(seed)
    return save_official_layout(folder, {n: build(n).state_dict() for n in ("stitching", "eye_retargeting", "lip_retargeting")})


@case("graphs-of-other-weights", "issue 14.10: ONNX graphs exported from other weights than --weights")
def _graphs_of_other_weights(folder: Path, inputs: Inputs) -> Case:
    from lpt.export.onnx_export import export_onnx

    export_onnx(_mlp_weights(folder / "weights-a", 1), folder / "onnx", ("stitching",), fused=False, progress=lambda _: None)
    _mlp_weights(folder / "weights", 2)
    argv = lpt_run(folder, inputs.portrait, inputs.clip, "--no-crop", "--onnx", "onnx")
    argv = (*argv[: argv.index("--backend") + 1], "onnxruntime", *argv[argv.index("--backend") + 2:])
    return refusal(folder, argv, "onnx/stitching.onnx", "exported from another", "stitching_retargeting_module.pth",
                   "lpt export")
