"""The ``lpt`` command group. Every verb reports user errors as one line and a non-zero exit."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lpt.errors import reports_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lpt")
def main() -> None:
    """LivePortrait, compiled: PyTorch networks, ONNX export, TensorRT engines, one command to run.

    To animate a portrait: lpt-run -s face.jpg -d driving.mp4 -o out.mp4 (see lpt-run --help). The verbs
    below follow the stages: weights, export and parity, calib and quantize, build, engines and
    parity-engines, bench, triton.
    """


@main.group()
def weights() -> None:
    """Checkpoints: check the official weights, or write synthetic ones."""


@weights.command("check")
@click.argument("weights_dir", type=click.Path(path_type=Path))
@reports_errors
def weights_check(weights_dir: Path) -> None:
    """Load every network from WEIGHTS_DIR and run it once on inputs of the official shapes."""
    from lpt.models.smoke import smoke_test

    for row in smoke_test(weights_dir):
        click.echo(row)


@weights.command("synth")
@click.argument("weights_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Same seed, same tensors.")
@reports_errors
def weights_synth(weights_dir: Path, seed: int) -> None:
    """Write seeded SYNTHETIC weights to WEIGHTS_DIR in the official layout.

    They let every feature run end to end without the official checkpoints, with activations scaled
    to trained-like ranges so precision measurements mean something. They animate nothing.
    """
    from lpt.models.synthetic import MARKER, write_weights

    click.echo(f"synthesising seeded weights (seed {seed}), calibrating each network on demo portraits:")
    out = write_weights(weights_dir, seed, progress=lambda line: click.echo(f"  {line}"))
    click.echo(f"wrote {out / 'liveportrait'} and {out / MARKER}")
    click.echo(f"*** SYNTHETIC WEIGHTS (seed {seed}): NOT LivePortrait's, they ANIMATE NOTHING. "
               "Use them to run and measure the pipeline, never to judge its output. ***")


def _trt_version(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from lpt.export.trt_support import parse_version

    try:
        parse_version(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@main.command("lint-onnx")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--trt", "trt", required=True, callback=_trt_version, metavar="VERSION",
              help="TensorRT version: 10 or 11 (the newest minor known), or a minor such as 11.0 or 11.2.")
@click.option("--plugin", "plugins", multiple=True, metavar="OP",
              help="An op type that a loaded TensorRT plugin implements; its nodes are not checked. Repeatable.")
@reports_errors
def lint_onnx(files: tuple[Path, ...], trt: str, plugins: tuple[str, ...]) -> None:
    """Check every node of each ONNX FILE against the TensorRT ONNX parser's support table.

    Exit status 1 when any file has findings, 2 when a file cannot be read as ONNX.
    """
    from lpt.export.lint import format_findings, graph_stats, lint, load_model
    from lpt.export.trt_support import support_for

    table = support_for(trt)
    failed = False
    for path in files:
        model = load_model(path)
        findings = lint(model, trt, plugins)
        if findings:
            failed = True
            click.echo(f"{path}: {len(findings)} finding(s) against {table.title}")
            click.echo(format_findings(findings))
            click.echo(f"(table: {table.source})")
        else:
            nodes, op_types = graph_stats(model)
            click.echo(f"{path}: OK: {nodes} nodes, {op_types} op types, passes {table.title}")
    if failed:
        sys.exit(1)


@main.command("export")
@click.option("--weights", "weights_dir", required=True, type=click.Path(path_type=Path),
              help="Checkpoints in the official layout (real or `lpt weights synth`).")
@click.option("--out", "out_dir", default="build/onnx", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the ONNX files and manifest.json.")
@click.option("--graphs", default=None, metavar="A,B",
              help="Comma-separated graph names (default: all, the fused warp_decode included).")
@click.option("--grid-sample", "grid_sample", type=click.Choice(["native", "gather", "both"]), default=None,
              help="5-D sampling in the warping graphs: native GridSample (TensorRT >= 11.2), gather-based "
                   "(any TensorRT, files <graph>.gather.onnx) or both. Default: native for --trt >= 11.2, else gather.")
@click.option("--trt", "trt", default="10", show_default=True, callback=_trt_version, metavar="VERSION",
              help="Target TensorRT (10, 11 or a minor such as 11.2): picks the default grid sampling and the lint.")
@click.option("--no-fused", is_flag=True, help="Leave out the fused warp_decode graph.")
@click.option("--fp16/--no-fp16", default=True, show_default=True,
              help="Also write each graph's FP16 variant (<graph>[.gather].fp16.onnx; I/O stay FP32).")
@reports_errors
def export(weights_dir: Path, out_dir: Path, graphs: str | None, grid_sample: str | None, trt: str, no_fused: bool,
           fp16: bool) -> None:
    """Export every network (and the fused warp+decode graph) to FP32 ONNX with a dynamic batch axis, and
    to FP16 ONNX (precision in the graph, as TensorRT 11 needs it).

    Each file is simplified, checked, linted against the target TensorRT and recorded in OUT/manifest.json;
    a file whose checkpoints, tools and options are unchanged is not exported again.
    """
    from lpt.export.onnx_export import export_onnx

    names = [g.strip() for g in graphs.split(",") if g.strip()] if graphs is not None else None
    export_onnx(weights_dir, out_dir, names, grid_sample, trt, fused=not no_fused, fp16=fp16, progress=click.echo)


@main.command("parity")
@click.option("--weights", "weights_dir", required=True, type=click.Path(path_type=Path),
              help="The checkpoints the ONNX files were exported from (official layout).")
@click.option("--onnx", "onnx_dir", default="build/onnx", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the ONNX files (`lpt export --out`).")
@click.option("--graphs", default=None, metavar="A,B", help="Comma-separated graph names (default: all).")
@click.option("--variants", default=None, metavar="A,B",
              help="Of native, gather, fp16, gather.fp16; each named one must exist. "
                   "Default: every one whose file exists.")
@click.option("--report", "report", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report path [default: ONNX/parity.json].")
@click.option("--assets", default=None, type=click.Path(path_type=Path),
              help="Folder with source/*.jpg and driving/*.mp4|*.jpg [default: ../shared/assets beside the "
                   "checkout; demo portraits when absent].")
@click.option("--quick", is_flag=True, help="Fewer feeds: one real batch-2 feed per graph, random ones only for the cheap graphs.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the random feeds.")
@reports_errors
def parity(weights_dir: Path, onnx_dir: Path, graphs: str | None, variants: str | None, report: Path | None,
           assets: Path | None, quick: bool, seed: int) -> None:
    """Compare every ONNX graph (and variant) with its PyTorch reference through Polygraphy's Comparator.

    Feeds are crops of real images, the intermediates they produce and seeded random tensors, at batch
    1 and 2. Runners: ONNX Runtime (CPU, CUDA where usable), TensorRT where installed. Prints a table,
    writes a JSON report; exit status 1 when any output fails its tolerance, 2 on bad input.
    """
    from lpt.export.parity import run_parity

    split = lambda text: [x.strip() for x in text.split(",") if x.strip()] if text is not None else None
    result = run_parity(weights_dir, onnx_dir, split(graphs), split(variants), report=report, assets=assets,
                        quick=quick, seed=seed, progress=click.echo)
    if not result.ok:
        failed = sorted({f"{r.graph} {r.variant} {r.runner} {r.output}" for r in result.rows if not r.passed})
        click.echo(f"lpt: parity FAILED for {len(failed)} output(s): {', '.join(failed)}", err=True)
        sys.exit(1)


# Commands of the other stages, each defined beside its code (one line each).
from lpt.runtime.template_cli import template

main.add_command(template)
from lpt.engines.cli import build  # noqa: E402
from lpt.runtime.engine_parity_cli import parity_engines  # noqa: E402

main.add_command(build)
main.add_command(parity_engines)
from lpt.bench.cli import bench

main.add_command(bench)
from lpt.calibration.cli import calib, quantize  # noqa: E402

main.add_command(calib)
main.add_command(quantize)
from lpt.engines.cli import engines  # noqa: E402

main.add_command(engines)
from lpt.triton.cli import triton  # noqa: E402

main.add_command(triton)
