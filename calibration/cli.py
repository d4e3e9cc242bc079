"""``lpt calib build|show`` and ``lpt quantize``. Heavy modules are imported inside the commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lpt.errors import reports_errors


def _names(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text is not None else None


@click.group()
def calib() -> None:
    """INT8 calibration data: the inputs every graph really sees, from real images and videos."""


@calib.command("build")
@click.option("--weights", "weights_dir", required=True, type=click.Path(path_type=Path),
              help="Checkpoints in the official layout (real or `lpt weights synth`).")
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of source portraits (*.jpg).")
@click.option("--videos", "videos_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of driving videos (*.mp4, *.mov, ...); its *.jpg stills are used as sources too.")
@click.option("--out", "out_dir", default="build/calib", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the shards and manifest.json.")
@click.option("--samples", type=click.IntRange(min=1), default=8, show_default=True,
              help="Calibration samples (source, driving frame) per graph.")
@click.option("--held-out", type=click.IntRange(min=0), default=3, show_default=True,
              help="More samples, kept apart for measuring accuracy.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Same seed, same samples, same shards.")
@click.option("--graphs", default=None, metavar="A,B", help="Comma-separated graph names (default: all).")
@click.option("--shard-samples", type=click.IntRange(min=1), default=4, show_default=True, help="Samples per shard file.")
@reports_errors
def calib_build(weights_dir: Path, images_dir: Path, videos_dir: Path, out_dir: Path, samples: int, held_out: int,
                seed: int, graphs: str | None, shard_samples: int) -> None:
    """Run the pipeline's stages in PyTorch over the images and video frames and store each graph's inputs.

    Frames are drawn with the seed; the held-out samples share no picture with the calibration ones. An
    unchanged set (same pictures, weights, code, options) is kept as it is.
    """
    from lpt.calibration.build import build_calibration

    build_calibration(weights_dir, images_dir, videos_dir, out_dir, samples=samples, held_out=held_out, seed=seed,
                      graphs=_names(graphs), shard_samples=shard_samples, progress=click.echo)


@calib.command("show")
@click.argument("calib_dir", type=click.Path(path_type=Path))
@reports_errors
def calib_show(calib_dir: Path) -> None:
    """Summarise the calibration set in CALIB_DIR (checking every shard's hash)."""
    from lpt.calibration.dataset import CalibrationSet

    data = CalibrationSet(calib_dir)
    weights = data.weights
    click.echo(f"{calib_dir}: {data.count()} calibration + {data.count('held_out')} held-out samples, "
               f"{len(data.shards())} shards, weights {'SYNTHETIC' if weights.get('synthetic') else 'real'}")
    for s in data.manifest["samples"]:
        click.echo(f"  {s['index']:3d} {s['split']:<11} source {Path(s['source']['file']).name}"
                   f"{'' if s['source']['frame'] is None else '#' + str(s['source']['frame'])}  driving "
                   f"{Path(s['driving']['file']).name}#{s['driving']['frame']}")
    click.echo(f"graphs: {', '.join(data.graphs)}")


@click.command("quantize")
@click.option("--weights", "weights_dir", required=True, type=click.Path(path_type=Path),
              help="The checkpoints the ONNX files and the calibration set were made from.")
@click.option("--onnx", "onnx_dir", default="build/onnx", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the FP32 ONNX files; the INT8 files are written beside them.")
@click.option("--calib", "calib_dir", default="build/calib", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Calibration set (`lpt calib build`).")
@click.option("--graphs", default=None, metavar="A,B", help="Comma-separated graph names (default: all).")
@click.option("--flavours", default="int8,int8-cpu", show_default=True, metavar="A,B",
              help="int8: Q/DQ by ModelOpt for TensorRT; int8-cpu: ONNX Runtime's quantizer for its CPU kernels.")
@click.option("--exclusions", type=click.Choice(["spec", "none"]), default="spec", show_default=True,
              help="Keep each graph's declared layers high precision, or none (to measure what they buy).")
@click.option("--method", type=click.Choice(["max", "entropy"]), default="max", show_default=True,
              help="ModelOpt's activation calibration (with its default 128 bins, entropy picks the max range too).")
@click.option("--high-precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="What ModelOpt leaves the unquantized layers in.")
@click.option("--max-samples", type=click.IntRange(min=1), default=None, help="Use only the first N calibration samples.")
@click.option("--timing-runs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed runs per file (after a warm-up); the median is reported.")
@click.option("--report", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report path [default: ONNX/int8-report.json].")
@click.option("--force", is_flag=True, help="Quantize and measure again even what is up to date.")
@reports_errors
def quantize(weights_dir: Path, onnx_dir: Path, calib_dir: Path, graphs: str | None, flavours: str, exclusions: str,
             method: str, high_precision: str, max_samples: int | None, timing_runs: int, report: Path | None,
             force: bool) -> None:
    """INT8 ONNX graphs from the FP32 ones and a calibration set, measured against FP32 on held-out samples.

    Writes <graph>.int8.onnx (and <graph>.gather.int8.onnx) for TensorRT and <graph>.int8-cpu.onnx for ONNX
    Runtime on CPU. Prints the accuracy and timing tables, writes a JSON report; exit status 1 when a graph
    misses its threshold (lpt/specs.py), 2 on bad input.
    """
    from lpt.export.int8 import Options, quantize_graphs

    options = Options(exclusions, method, high_precision, max_samples, timing_runs)
    result = quantize_graphs(weights_dir, onnx_dir, calib_dir, _names(graphs), _names(flavours) or [], options,
                             report, force, progress=click.echo)
    if not result.ok:
        click.echo(f"lpt: INT8 accuracy FAILED ({len(result.failures)}): {'; '.join(result.failures)}", err=True)
        sys.exit(1)
