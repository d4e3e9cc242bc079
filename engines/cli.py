"""``lpt build`` and ``lpt engines check`` (``lpt parity-engines`` runs engines: it lives in the runtime). Only click is imported here: TensorRT,
Polygraphy and torch load inside the commands, so ``lpt --help`` stays fast and a missing TensorRT is reported at once."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from lpt.errors import reports_errors


@click.command("build")
@click.option("--onnx", "onnx_dir", default="build/onnx", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="ONNX graphs of `lpt export` (and `lpt quantize`).")
@click.option("--out", "out_dir", default="build/engines", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder for the engines, sidecars and timing cache.")
@click.option("--graphs", default=None, metavar="A,B", help="Comma-separated graph names (default: all).")
@click.option("--precisions", default=None, metavar="A,B",
              help="Of fp32, fp16, int8; each named one must have its ONNX file. Default: fp32 and fp16, and int8 "
                   "where <graph>.int8.onnx exists.")
@click.option("--opt-level", type=click.IntRange(0, 5), default=3, show_default=True,
              help="TensorRT's builder optimisation level: higher builds longer and may run faster.")
@click.option("--grid-sample", type=click.Choice(["auto", "native", "gather"]), default="auto", show_default=True,
              help="5-D sampling graphs to build from; auto: native GridSample on TensorRT >= 11.2, gather before.")
@click.option("--timing-cache", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Timing cache to reuse and extend [default: OUT/timing-cache.trt<version>.sm<cc>.bin].")
@click.option("--force", is_flag=True, help="Rebuild engines that are up to date.")
@click.option("--device", type=click.IntRange(min=0), default=0, show_default=True, help="CUDA device to build for.")
@reports_errors
def build(onnx_dir: Path, out_dir: Path, graphs: str | None, precisions: str | None, opt_level: int, grid_sample: str,
          timing_cache: Path | None, force: bool, device: int) -> None:
    """Build a TensorRT engine for every graph and precision from its ONNX file, for this GPU and TensorRT.

    Strongly typed networks (precision comes from the graph), optimisation profiles from lpt.specs, a reused
    timing cache. Engines are named <graph>.<precision>.trt<major>.<minor>.sm<cc>.engine, each with a JSON
    sidecar; an engine whose ONNX file, TensorRT, GPU and options are unchanged is not rebuilt.
    """
    from lpt.engines.build import BuildOptions, build_all

    build_all(onnx_dir, out_dir, graphs=graphs, precisions=precisions, grid_sample=grid_sample,
              options=BuildOptions(opt_level=opt_level, force=force), timing_cache=timing_cache, device=device,
              progress=click.echo)


def _trt_version(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"\d+(\.\d+){0,3}", value):
        raise click.BadParameter(f"expected a TensorRT version such as 10.8 or 10.8.0.43, got {value!r}")
    return value


def _compute_capability(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """sm90, sm_90, 90 or 9.0 -> "9.0", as sidecars write it."""
    if value is None:
        return None
    text = value.lower().removeprefix("sm").lstrip("_")
    dotted = re.fullmatch(r"(\d+)\.(\d)", text)
    plain = re.fullmatch(r"(\d+)(\d)", text)
    match = dotted or plain
    if match is None:
        raise click.BadParameter(f"expected a GPU architecture such as sm90, sm89 or 9.0, got {value!r}")
    return f"{int(match.group(1))}.{match.group(2)}"


@click.group("engines")
def engines() -> None:
    """TensorRT engines: check what they were built for, without loading them."""


@engines.command("check")
@click.argument("engines_dir", type=click.Path(path_type=Path))
@click.option("--trt-version", callback=_trt_version, metavar="VERSION",
              help="TensorRT the engines must run on: 10.8 (any 10.8.x) or a full 10.8.0.43. Default: the installed one.")
@click.option("--gpu", callback=_compute_capability, metavar="smNN",
              help="GPU architecture they must run on: sm90, sm89 or 9.0. Default: that of CUDA device 0.")
@reports_errors
def engines_check(engines_dir: Path, trt_version: str | None, gpu: str | None) -> None:
    """Check every *.engine in ENGINES_DIR against its JSON sidecar (sha256) and the target TensorRT and GPU.

    Needs no TensorRT when --trt-version and --gpu are given: engines are judged by their sidecars, never
    loaded. Prints a table; exit status 1 when an engine cannot run there, 2 on bad input.
    """
    from lpt.engines.plan import EngineError
    from lpt.engines.sidecar import engine_mismatch

    if not engines_dir.is_dir():
        raise EngineError(f"engines folder {engines_dir} does not exist")
    files = sorted(engines_dir.glob("*.engine"))
    if not files:
        raise EngineError(f"no *.engine files in {engines_dir}; build them with `lpt build --out {engines_dir}`")
    if trt_version is None or gpu is None:
        trt_version, gpu = _installed_targets(trt_version, gpu)
    rows, failures = [], []
    for path in files:
        record, why = engine_mismatch(path, trt_version, gpu)
        built = f"TensorRT {record.tensorrt}, sm{record.compute_capability.replace('.', '')}" if record else "?"
        rows.append((path.name, built, "ok" if why is None else "FAIL"))
        if why is not None:
            failures.append(f"{path.name} {why}")
    rows.insert(0, ("engine", "built with", "status"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    click.echo("\n".join(f"{name:<{widths[0]}}  {built:<{widths[1]}}  {status}" for name, built, status in rows))
    targets = [text for value, text in ((trt_version, f"TensorRT {trt_version}"), (gpu, f"compute capability {gpu}"))
               if value]
    target = f" for {' and '.join(targets)}" if targets else ""
    if failures:
        shown = "; ".join(failures[:3]) + ("; ..." if len(failures) > 3 else "")
        click.echo(f"lpt: error: {len(failures)} of {len(files)} engine(s) in {engines_dir} fail the check{target}: "
                   f"{shown}; rebuild them with `lpt build` where they will run", err=True)
        sys.exit(1)
    unchecked = "" if len(targets) == 2 else " (what is not named here was not checked)"
    click.echo(f"all {len(files)} engine(s) match their sidecars{target and ' and were built' + target}{unchecked}")


def _installed_targets(trt_version: str | None, gpu: str | None) -> tuple[str | None, str | None]:
    """The installed TensorRT and GPU 0 for the targets not given; None (not checked) where there is none."""
    from lpt.engines.environment import probe
    from lpt.engines.plan import EngineError
    from lpt.engines.sidecar import cc_text

    try:
        platform = probe(0)
    except EngineError as exc:
        click.echo(f"note: {exc}; give --trt-version and --gpu to check against the machine the engines are for",
                   err=True)
        return trt_version, gpu
    return trt_version or platform.tensorrt, gpu or cc_text(platform)
