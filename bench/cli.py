"""``lpt bench``: per-graph and end-to-end speed, memory and fidelity, and the original-versus-optimized table."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lpt.errors import LptError, reports_errors

SAMPLE_SOURCE = "source/s0.jpg"
SAMPLE_DRIVING = "driving/d18.mp4"


def sample_assets() -> Path:
    """The shared sample assets beside the checkout (../shared/assets)."""
    import lpt

    return Path(lpt.__file__).resolve().parents[2] / "shared" / "assets"


def _names(text: str | None, known: tuple[str, ...], option: str) -> tuple[str, ...]:
    if text is None:
        return known
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise LptError(f"{option}: {unknown[0] if unknown else 'nothing'} is not one of {', '.join(known)}")
    return names


@click.command("bench")
@click.option("--weights", "weights_dir", default=None, type=click.Path(path_type=Path),
              help="Checkpoints in the official layout. Default: synthetic weights in the user cache (written once, "
                   "and said so), as lpt-run does.")
@click.option("--onnx", "onnx_dir", default="build/onnx", show_default=True, type=click.Path(path_type=Path),
              help="ONNX graphs (`make onnx`, `make int8-onnx`).")
@click.option("--engines", "engines_dir", default="build/engines", show_default=True, type=click.Path(path_type=Path),
              help="TensorRT engines (`make engines`).")
@click.option("-s", "--source", type=click.Path(path_type=Path),
              help=f"Source portrait for the end-to-end runs [default: ../shared/assets/{SAMPLE_SOURCE}].")
@click.option("-d", "--driving", type=click.Path(path_type=Path),
              help=f"Driving video [default: ../shared/assets/{SAMPLE_DRIVING}].")
@click.option("--frames", type=click.IntRange(min=1), default=3, show_default=True,
              help="Driving frames per end-to-end run (a full-size frame costs seconds on a CPU).")
@click.option("--graphs", default=None, metavar="A,B", help="Graphs to time (default: all).")
@click.option("--backends", default=None, metavar="A,B", help="Of torch, onnxruntime, openvino, tensorrt (default: all).")
@click.option("--precisions", default=None, metavar="A,B", help="Of fp32, fp16, int8 (default: all).")
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True, help="Timed runs per measurement, at most.")
@click.option("--min-runs", type=click.IntRange(min=1), default=3, show_default=True, help="Timed runs, at least.")
@click.option("--warmup", type=click.IntRange(min=1), default=3, show_default=True,
              help="Warm-up runs, at most (fewer once they took half of --cell-seconds).")
@click.option("--cell-seconds", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Time per measurement: timed runs stop after it (once --min-runs are done), and a largest-batch "
                   "run longer than it is skipped, with that reason.")
@click.option("--no-graphs", is_flag=True, help="Skip the per-graph part.")
@click.option("--no-e2e", is_flag=True, help="Skip the end-to-end part (and with it the original-versus-optimized table).")
@click.option("--no-original", is_flag=True, help="Skip the original-style run.")
@click.option("--no-cold", is_flag=True, help="Skip the cold `lpt-run` process.")
@click.option("--out", "out_dir", default="build/bench", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="bench.json, bench.md, bench.png, and the videos under work/.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the per-graph inputs.")
@reports_errors
def bench(weights_dir: Path | None, onnx_dir: Path, engines_dir: Path, source: Path | None, driving: Path | None, frames: int,
          graphs: str | None, backends: str | None, precisions: str | None, runs: int, min_runs: int, warmup: int,
          cell_seconds: float, no_graphs: bool, no_e2e: bool, no_original: bool, no_cold: bool, out_dir: Path,
          seed: int) -> None:
    """Time every graph on every backend and precision this machine has, run the pipeline end to end (warm,
    cold, and the original-style run beside lpt's default), and print the tables.

    Writes OUT/bench.json (every number and the machine), OUT/bench.md and OUT/bench.png. Exit status 1 when
    a measurement failed, 2 on bad input.
    """
    from lpt.bench.graphs import CANDIDATES, Budget
    from lpt.bench.report import markdown
    from lpt.bench.suite import BenchOptions, run_bench
    from lpt.runtime.backends import Locations

    from lpt.specs import SPECS

    chosen_backends = _names(backends, ("torch", "onnxruntime", "openvino", "tensorrt"), "--backends")
    chosen_precisions = _names(precisions, ("fp32", "fp16", "int8"), "--precisions")
    candidates = tuple(c for c in CANDIDATES if c.backend in chosen_backends and c.precision in chosen_precisions)
    if not no_e2e and (source is None) != (driving is None):
        raise LptError("give both -s/--source and -d/--driving, or neither for the sample pair")
    if not no_e2e and source is None:
        source, driving = sample_assets() / SAMPLE_SOURCE, sample_assets() / SAMPLE_DRIVING
    say = lambda text: click.echo(text, err=True)
    if weights_dir is None:
        from lpt.models.synthetic import cached_weights

        weights_dir = cached_weights(say)
        say(f"weights: synthetic, {weights_dir} (give --weights for real ones)")
    options = BenchOptions(
        where=Locations(weights_dir, onnx_dir, engines_dir), out=out_dir,
        graphs=_names(graphs, tuple(SPECS), "--graphs"), candidates=candidates,
        budget=Budget(runs=runs, min_runs=min(min_runs, runs), warmup=warmup, seconds=cell_seconds),
        source=None if no_e2e else source, driving=None if no_e2e else driving, frames=frames,
        original=not no_original, cold=not no_cold, per_graph=not no_graphs, seed=seed)
    report = run_bench(options, progress=say)
    click.echo(markdown(report))
    say(f"wrote {report['outputs']['json']}, {report['outputs']['markdown']} and {report['outputs']['chart']}")
    rows = (report["graphs"] or []) + (report["end_to_end"] or [])
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        say(f"lpt: {len(failed)} measurement(s) FAILED; their reasons are in the tables above")
        sys.exit(1)
