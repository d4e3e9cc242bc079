"""``lpt-run``: animate a source portrait with a driving video, image or motion template."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lpt.errors import LptError, reports_errors
from lpt.files import cache_dir
from lpt.specs import REGIONS

if TYPE_CHECKING:
    from lpt.runtime.pipeline import RunOptions

SYNTHETIC_BANNER = ("*** SYNTHETIC WEIGHTS: not LivePortrait's. The result is NOT a real animation; it shows the "
                    "pipeline runs. Pass --weights with the official pretrained_weights for real output. ***")


class Progress:
    """Frames done, on one line of stderr when it is a terminal, every tenth of the work otherwise."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last_tenth = -1

    def __call__(self, done: int, total: int | None) -> None:
        rate = done / max(1e-9, time.perf_counter() - self.start)
        text = f"frame {done}/{total if total else '?'}  {rate:.2f} frames/s"
        if self.tty:
            click.echo(f"\r{text}", nl=False, err=True)
            if total and done == total:
                click.echo("", err=True)
            return
        tenth = 10 * done // total if total else done // 25
        if tenth != self.last_tenth:
            self.last_tenth = tenth
            click.echo(text, err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-s", "--source", type=click.Path(path_type=Path), help="Source portrait (image). Default: the demo face.")
@click.option("-d", "--driving", type=click.Path(path_type=Path),
              help="Driving video, image, or motion template (.pkl, .npz, .json). Default: the demo clip.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Output .mp4 (or .jpg/.png for a source and a driving image). Default: "
                   "animations/<source>--<driving>.mp4, the folder created.")
@click.option("-y", "--overwrite", is_flag=True, help="Replace an existing output file (never an input).")
@click.option("--weights", type=click.Path(path_type=Path),
              help="pretrained_weights folder (official layout). Without it: synthetic weights, loudly.")
@click.option("--onnx", "onnx_dir", default="build/onnx", show_default=True, type=click.Path(path_type=Path),
              help="ONNX graphs for the onnxruntime backend (`make onnx`, `make int8-onnx`).")
@click.option("--engines", "engines_dir", default="build/engines", show_default=True, type=click.Path(path_type=Path),
              help="TensorRT engines (`make engines`).")
@click.option("--backend", type=click.Choice(["tensorrt", "onnxruntime", "openvino", "torch"]), default=None,
              help="Default: the fastest usable here (TensorRT with engines; on a CPU OpenVINO, else ONNX Runtime, "
                   "with graphs from `lpt export`; else PyTorch).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Default: fp16 on a GPU backend, fp32 on CPU.")
@click.option("--no-stitching", is_flag=True, help="Skip the stitching MLP (also turns paste-back off, as upstream).")
@click.option("--eye-retargeting", is_flag=True, help="Drive the eyes by the driving eye ratio (needs landmarks).")
@click.option("--lip-retargeting", is_flag=True, help="Drive the lips by the driving lip ratio (needs landmarks).")
@click.option("--no-pasteback", is_flag=True, help="Write the 512x512 crop instead of pasting it into the source.")
@click.option("--no-crop", is_flag=True, help="Inputs are already aligned face crops: no detection, no paste-back.")
@click.option("--crop-driving", is_flag=True, help="Auto-crop the driving frames (always on for non-square videos).")
@click.option("--absolute", is_flag=True, help="Absolute instead of relative driving motion.")
@click.option("--region", type=click.Choice(REGIONS), default="all", show_default=True, help="What the driving moves.")
@click.option("--driving-multiplier", type=float, default=1.0, show_default=True, help="Scales the motion.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N driving frames.")
@click.option("--concat", is_flag=True, help="Driving, source and result side by side.")
@click.option("--audio", type=click.Choice(["driving", "source", "none"]), default="driving", show_default=True,
              help="Whose sound the video carries: the driving video's (as upstream, also for a source video), "
                   "the source video's, or none.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True, max=1000), default=None,
              help="Write at this constant frame rate. Default: the driving video's own frame times (kept exactly, "
                   "variable rates too); 25 for templates without a rate.")
@click.option("--on-missing-face", type=click.Choice(["fail", "hold"]), default="fail", show_default=True,
              help="A driving frame without a face: stop, or hold the last frame that had one.")
@click.option("--demo-frames", type=click.IntRange(min=2), default=12, show_default=True,
              help="Length of the generated demo clip (no -s/-d).")
@reports_errors
def run_main(source: Path | None, driving: Path | None, output: Path | None, overwrite: bool, weights: Path | None,
             onnx_dir: Path, engines_dir: Path, backend: str | None, precision: str | None, no_stitching: bool,
             eye_retargeting: bool, lip_retargeting: bool, no_pasteback: bool, no_crop: bool, crop_driving: bool,
             absolute: bool, region: str, driving_multiplier: float, max_frames: int | None, concat: bool,
             audio: str, fps: float | None, on_missing_face: str, demo_frames: int) -> None:
    """Animate SOURCE with DRIVING and write the result, as LivePortrait's inference.py does."""
    from lpt.runtime.media import is_transparent, media_kind
    from lpt.runtime.outputs import OutputClaim, driving_kind, plan_output

    say = lambda text: click.echo(text, err=True)
    if (source is None) != (driving is None):
        raise LptError("give both -s/--source and -d/--driving, or neither for the demo")
    if source is None or driving is None:
        from lpt.runtime.demo_inputs import write_demo_inputs

        source, driving = write_demo_inputs(cache_dir() / "demo", frames=demo_frames)
        no_crop = True  # the drawn face fills the frame as an aligned crop does; no detector is needed
        say(f"no inputs given: demo source {source} and driving clip {driving} (drawn by lpt, used uncropped)")
    source_kind, drive_kind = media_kind(source, "source"), driving_kind(driving)
    if audio == "source" and source_kind != "video":
        raise LptError(f"--audio source: the source {source} is an image, which has no sound; use --audio driving or none")
    output = plan_output(output, source, driving, source_kind, drive_kind, overwrite=overwrite)
    if is_transparent(source):
        say(f"source {source} has transparent parts: composited over white, as an image viewer shows it")
    from lpt.runtime.animate import AnimationOptions  # torch: only once the inputs and the output are good
    from lpt.runtime.pipeline import RunOptions

    animation = AnimationOptions(relative=not absolute, stitching=not no_stitching, eye_retargeting=eye_retargeting,
                                 lip_retargeting=lip_retargeting, region=region,  # type: ignore[arg-type]
                                 driving_multiplier=driving_multiplier)
    options = RunOptions(animation, pasteback=not no_pasteback, crop=not no_crop, crop_driving=crop_driving,
                         max_frames=max_frames, concat=concat, audio=audio,  # type: ignore[arg-type]
                         fps=Fraction(fps).limit_denominator(1001) if fps else None)
    with OutputClaim(output):
        _animate(source, driving, output, source_kind, weights, onnx_dir, engines_dir, backend, precision, options,
                 hold_missing_face=on_missing_face == "hold")


def _animate(source: Path, driving: Path, output: Path, source_kind: str, weights: Path | None, onnx_dir: Path,
             engines_dir: Path, backend: str | None, precision: str | None, options: RunOptions,
             hold_missing_face: bool) -> None:
    """The run itself, once the inputs and the output are known to be good."""
    from lpt.models.synthetic import cached_weights, synthetic_marker
    from lpt.runtime.backends import Locations, choose, default_precision, open_backend
    from lpt.runtime.faces import FaceCropper
    from lpt.runtime.pipeline import Run

    say = lambda text: click.echo(text, err=True)
    weights = weights if weights is not None else cached_weights(say)
    synthetic = synthetic_marker(weights) is not None
    if synthetic:
        say(SYNTHETIC_BANNER)

    where = Locations(weights=weights, onnx=onnx_dir, engines=engines_dir)
    name, why = choose(backend, precision, where, options.animation.graphs())
    precision = precision or default_precision(name)
    runner_backend = open_backend(name, precision, where)
    fused = getattr(runner_backend, "fused", False)  # W and G as one graph where the backend runs it faster
    options = replace(options, animation=replace(options.animation, fused=fused))
    cropper = FaceCropper(weights, no_crop=not options.crop, hold_missing=hold_missing_face)

    def announce() -> None:
        say(f"backend: {runner_backend.describe()} ({why})")
        say(f"faces: {cropper.describe()}")
    if source_kind == "video":
        from lpt.runtime.video_source import VideoSourceRun

        run: Run = VideoSourceRun(runner_backend, cropper, options, progress=Progress(), announce=announce)
    else:
        run = Run(runner_backend, cropper, options, progress=Progress(), announce=announce)
    try:
        report = run.animate(source, driving, output)
    finally:
        runner_backend.close()
    say(report.table())
    click.echo(f"wrote {report.output}")
    if synthetic:
        say(SYNTHETIC_BANNER)
