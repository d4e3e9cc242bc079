"""``lpt triton``: export a model repository, check it, serve it locally, animate through a server, bench it.

Depends on: click, lpt.errors, lpt.triton (its modules, and through them tritonclient), imported per command so
that ``lpt --help`` stays fast.
"""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import click

from lpt.errors import LptError, reports_errors
from lpt.files import cache_dir, write_atomic
from lpt.specs import REGIONS

URL_HELP = "Triton's gRPC address (host:port)."


@click.group()
def triton() -> None:
    """Serving on NVIDIA Triton Inference Server: model repository, client and bench."""


@triton.command("export")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The model repository to write (created; models already there are replaced).")
@click.option("--engines", type=click.Path(path_type=Path), default=None, help="TensorRT engines (`lpt build --out`).")
@click.option("--onnx", "onnx_dir", type=click.Path(path_type=Path), default=None,
              help="ONNX graphs (`lpt export --out`), served by ONNX Runtime where no engine is given.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True,
              help="Engine precision.")
@click.option("--onnx-precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="ONNX graph precision (int8: the ONNX Runtime flavour, <graph>.int8-cpu.onnx).")
@click.option("--onnx-backend", type=click.Choice(["onnxruntime", "openvino"]), default="onnxruntime", show_default=True,
              help="Triton backend of the ONNX graphs: onnxruntime (GPU or CPU nodes) or openvino (CPU nodes; the "
                   "gather-sampling files).")
@click.option("--engine-tag", default=None, metavar="TAG", help="Engines for this machine only, e.g. trt10.8.sm90.")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Instances of each model (per GPU for GPU models).")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Also write the animation model (Python backend), running lpt on these checkpoints.")
@click.option("--animation-backend", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), default="torch",
              show_default=True, help="The lpt backend inside the animation model.")
@click.option("--animation-precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--absolute", is_flag=True, help="Absolute instead of relative driving motion.")
@click.option("--no-stitching", is_flag=True, help="No stitching (clients then write crops, without paste-back).")
@click.option("--region", type=click.Choice(REGIONS), default="all", show_default=True)
@click.option("--driving-multiplier", type=float, default=1.0, show_default=True)
@click.option("--no-warmup", is_flag=True, help="Do not render a frame when the animation model loads.")
@click.option("--crop-on-server", is_flag=True,
              help="Also write lpt_animate_full: full images in, lpt-run's crop and paste-back inside the model (face "
                   "models from --weights, else OpenCV's cascade), full-size frames out.")
@reports_errors
def export(out: Path, engines: Path | None, onnx_dir: Path | None, precision: str, onnx_precision: str,
           onnx_backend: str, engine_tag: str | None, instances: int, weights: Path | None, animation_backend: str,
           animation_precision: str, absolute: bool, no_stitching: bool, region: str, driving_multiplier: float,
           no_warmup: bool, crop_on_server: bool) -> None:
    """A Triton model repository: one model per graph (tensorrt_plan from --engines, else onnxruntime or openvino
    from --onnx),
    each config.pbtxt generated from lpt.specs and checked, and with --weights the per-frame animation model."""
    from lpt.triton.config import AnimationParameters
    from lpt.triton.repository import export_repository

    animation = None
    if weights is not None:
        if not weights.is_dir():
            raise LptError(f"--weights {weights} is not a folder")
        animation = AnimationParameters(
            backend=animation_backend, precision=animation_precision, weights=str(weights.resolve()),
            onnx=str(onnx_dir.resolve()) if onnx_dir else "", engines=str(engines.resolve()) if engines else "",
            relative=not absolute, stitching=not no_stitching, region=region, driving_multiplier=driving_multiplier,
            warmup=not no_warmup)
    click.echo(f"model repository {out}:")
    models = export_repository(out, engines, onnx_dir, precision=precision, onnx_precision=onnx_precision,
                               onnx_backend=onnx_backend, engine_tag=engine_tag, instances=instances,
                               animation=animation, crop_on_server=crop_on_server, progress=click.echo)
    click.echo(f"wrote {len(models)} model(s); every config.pbtxt parses with Triton's model-config schema")


@triton.command("check")
@click.argument("repository", type=click.Path(path_type=Path))
@reports_errors
def check(repository: Path) -> None:
    """Parse every config.pbtxt of REPOSITORY with Triton's schema and match graph models against lpt.specs."""
    from lpt.triton.repository import check_repository

    for line in check_repository(repository):
        click.echo(line)


@triton.command("serve")
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@reports_errors
def serve(repository: Path, grpc_port: int) -> None:
    """Run tritonserver on 127.0.0.1 over REPOSITORY until stopped (Ctrl-C), with this Python for its Python backend."""
    from lpt.triton.server import LocalServer

    with LocalServer(repository, grpc_port=grpc_port) as server:
        click.echo(f"tritonserver ready at {server.url} (log {server.log}); Ctrl-C stops it", err=True)
        while server.process is not None and server.process.poll() is None:
            time.sleep(1)
        raise LptError(f"tritonserver exited with status {server.process.returncode if server.process else '?'}")


@triton.command("run")
@click.option("-s", "--source", required=True, type=click.Path(path_type=Path), help="Source portrait (image).")
@click.option("-d", "--driving", required=True, type=click.Path(path_type=Path), help="Driving video or image.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Output .mp4 (or .jpg/.png for two images). Default: animations/<source>--<driving>.mp4.")
@click.option("-y", "--overwrite", is_flag=True, help="Replace an existing output file (never an input).")
@click.option("--url", default="127.0.0.1:8001", show_default=True, help=URL_HELP)
@click.option("--model", default=None, help="The animation model's name [default: lpt_animate, or lpt_animate_full "
              "with --crop-on-server].")
@click.option("--crop-on-server", is_flag=True,
              help="Send the full source image and driving frames to lpt_animate_full, which crops and pastes back "
                   "itself (face models from the server's weights folder) and answers full-size frames.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Folder with the official face models for the crop (else OpenCV's cascade, as lpt-run).")
@click.option("--no-pasteback", is_flag=True, help="Write the 512x512 crop instead of pasting it into the source.")
@click.option("--no-crop", is_flag=True, help="Inputs are already aligned face crops: no detection, no paste-back.")
@click.option("--crop-driving", is_flag=True, help="Auto-crop the driving frames (always on for non-square videos).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N driving frames.")
@click.option("--concat", is_flag=True, help="Driving, source and result side by side.")
@click.option("--audio", type=click.Choice(["driving", "none"]), default="driving", show_default=True)
@click.option("--fps", type=click.FloatRange(min=0, min_open=True, max=1000), default=None,
              help="A constant output rate (default: the driving frames' own times).")
@click.option("--on-missing-face", type=click.Choice(["fail", "hold"]), default="fail", show_default=True)
@reports_errors
def run(source: Path, driving: Path, output: Path | None, overwrite: bool, url: str, model: str | None,
        crop_on_server: bool, weights: Path | None, no_pasteback: bool, no_crop: bool, crop_driving: bool,
        max_frames: int | None, concat: bool, audio: str, fps: float | None, on_missing_face: str) -> None:
    """Animate SOURCE with DRIVING through a Triton server: lpt-run's pipeline and outputs, the networks remote."""
    from lpt.runtime.cli import Progress
    from lpt.runtime.faces import FaceCropper
    from lpt.runtime.media import media_kind
    from lpt.runtime.outputs import OutputClaim, driving_kind, plan_output
    from lpt.triton import config as cfg
    from lpt.triton.client import TritonFullRun, TritonRun, connect, run_options_for, server_parameters

    say = lambda text: click.echo(text, err=True)
    model = model or (cfg.FULL_ANIMATION_MODEL if crop_on_server else cfg.ANIMATION_MODEL)
    if crop_on_server and concat:
        raise LptError("--concat needs the crops, which stay on the server with --crop-on-server")
    if crop_on_server and weights is not None:
        raise LptError("--weights picks the client's face models; with --crop-on-server the server finds faces "
                       "(with the face models in its own weights folder)")
    source_kind, drive_kind = media_kind(source, "source"), driving_kind(driving)
    if source_kind != "image":
        raise LptError(f"source {source}: the Triton client animates a source image; use lpt-run for video-to-video")
    if drive_kind == "template":
        raise LptError(f"driving {driving}: the Triton animation model is driven by frames, not motion templates")
    output = plan_output(output, source, driving, source_kind, drive_kind, overwrite=overwrite)
    client = connect(url)
    params = server_parameters(client, model)
    options = run_options_for(params, pasteback=not no_pasteback, crop=not no_crop, crop_driving=crop_driving,
                              max_frames=max_frames, concat=concat, audio=audio,  # type: ignore[arg-type]
                              fps=Fraction(fps).limit_denominator(1001) if fps else None)
    if crop_on_server:
        crop = cfg.CropOptions(crop=not no_crop, crop_driving=crop_driving, pasteback=not no_pasteback,
                               hold_missing=on_missing_face == "hold")
        faces = "on the server (" + ", ".join(f"{k} {str(v).lower()}" for k, v in crop.flags().items()) + ")"
        with OutputClaim(output):
            full = TritonFullRun(client, url, model, crop, options, faces, progress=Progress(),
                                 announce=lambda: (say(f"backend: {full.backend.describe()}"), say(f"faces: {faces}")))
            report = full.animate(source, driving, output)
        client.close()
        say(report.table())
        say(f"server round trip (ms/frame)  {full.times.seconds['server'] * 1000 / max(1, report.frames):>10.1f}")
        click.echo(f"wrote {report.output}")
        return
    cropper = FaceCropper(weights, no_crop=no_crop, hold_missing=on_missing_face == "hold")
    with OutputClaim(output):
        job = TritonRun(client, url, model, cropper, options, progress=Progress(),
                        announce=lambda: (say(f"backend: {job.backend.describe()}"), say(f"faces: {cropper.describe()}")))
        report = job.animate(source, driving, output)
    client.close()
    say(report.table())
    server_ms = job.times.seconds["server"] * 1000 / max(1, report.frames)
    say(f"server round trip (ms/frame)  {server_ms:>10.1f}")
    click.echo(f"wrote {report.output}")


@triton.command("bench")
@click.option("--url", default="127.0.0.1:8001", show_default=True, help=URL_HELP)
@click.option("--model", default=None, help="[default: lpt_animate, or lpt_animate_full with --crop-on-server]")
@click.option("--crop-on-server", is_flag=True,
              help="Full images to lpt_animate_full (crop and paste-back on the server) instead of 256 crops.")
@click.option("--streams", type=click.IntRange(min=1), default=4, show_default=True, help="Concurrent streams.")
@click.option("--frames", type=click.IntRange(min=1), default=8, show_default=True, help="Frames per stream.")
@click.option("-s", "--source", type=click.Path(path_type=Path), default=None, help="Source image (default: the demo face).")
@click.option("-d", "--driving", type=click.Path(path_type=Path), default=None, help="Driving video (default: the demo clip).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Face models for the crops.")
@click.option("--no-crop", is_flag=True, help="Inputs are aligned face crops.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures as JSON.")
@reports_errors
def bench(url: str, model: str | None, crop_on_server: bool, streams: int, frames: int, source: Path | None,
          driving: Path | None, weights: Path | None, no_crop: bool, json_out: Path | None) -> None:
    """Drive STREAMS concurrent streams of FRAMES frames each; frames/s, latency percentiles, CPU use, as a table.
    The same inputs either way: cropped here for lpt_animate, or sent whole with --crop-on-server."""
    from lpt.triton import config as cfg
    from lpt.triton.bench import run_bench
    from lpt.triton.inputs import full_stream_inputs, stream_inputs

    model = model or (cfg.FULL_ANIMATION_MODEL if crop_on_server else cfg.ANIMATION_MODEL)
    if crop_on_server and weights is not None:
        raise LptError("with --crop-on-server the server finds faces with its own weights folder: leave out --weights")

    if (source is None) != (driving is None):
        raise LptError("give both -s/--source and -d/--driving, or neither for the demo pair")
    if source is None or driving is None:
        from lpt.runtime.demo_inputs import write_demo_inputs

        source, driving = write_demo_inputs(cache_dir() / "demo", frames=max(2, frames))
        no_crop = True  # the drawn face is an aligned crop
    data = full_stream_inputs(source, driving, frames, no_crop) if crop_on_server else \
        stream_inputs(source, driving, frames, weights, no_crop)
    report = run_bench(url, model, [data] * streams)
    failed = [r.error for r in report.results if r.error]
    if failed:
        raise LptError(f"{len(failed)} of {streams} stream(s) failed: {failed[0]}")
    click.echo(f"lpt triton bench: {streams} stream(s) x {len(data.driving)} frame(s), {model} at {url}")
    click.echo(report.table())
    if json_out is not None:
        write_atomic(json_out, json.dumps(report.as_dict(), indent=2) + "\n")
        click.echo(f"wrote {json_out}")
