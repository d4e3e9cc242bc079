"""``lpt parity-engines``: the engines run by Polygraphy and by lpt's TensorRT backend, against PyTorch. Only
click is imported here: TensorRT, Polygraphy and torch load inside the command, so ``lpt --help`` stays fast.

Depends on: click, lpt.errors; lpt.engines.environment and lpt.runtime.engine_parity when it runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lpt.errors import reports_errors


@click.command("parity-engines")
@click.option("--weights", "weights_dir", required=True, type=click.Path(path_type=Path),
              help="The checkpoints the engines' ONNX graphs were exported from.")
@click.option("--engines", "engines_dir", default="build/engines", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Engines of `lpt build`.")
@click.option("--graphs", default=None, metavar="A,B", help="Comma-separated graph names (default: every engine here).")
@click.option("--precisions", default=None, metavar="A,B", help="Of fp32, fp16, int8 (default: every engine here).")
@click.option("--runners", default="polygraphy,lpt", show_default=True, metavar="A,B",
              help="polygraphy: Polygraphy's TrtRunner; lpt: lpt's TensorRT backend (what lpt-run uses).")
@click.option("--cuda-graphs/--no-cuda-graphs", default=True, show_default=True,
              help="Run lpt's backend with CUDA-graph capture.")
@click.option("--report", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report path [default: ENGINES/parity-engines.json].")
@click.option("--assets", default=None, type=click.Path(path_type=Path),
              help="Folder with source/*.jpg and driving/*.mp4|*.jpg [default: ../shared/assets beside the checkout].")
@click.option("--quick", is_flag=True, help="Fewer feeds.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the random feeds.")
@click.option("--device", type=click.IntRange(min=0), default=0, show_default=True, help="CUDA device.")
@reports_errors
def parity_engines(weights_dir: Path, engines_dir: Path, graphs: str | None, precisions: str | None, runners: str,
                   cuda_graphs: bool, report: Path | None, assets: Path | None, quick: bool, seed: int,
                   device: int) -> None:
    """Compare every TensorRT engine of ENGINES with PyTorch, with `lpt parity`'s feeds and tolerances.

    Prints a table, writes a JSON report; exit status 1 when any output fails its tolerance, 2 on bad input.
    """
    from lpt.engines.environment import probe

    probe(device)  # before torch and the weights load: no TensorRT or GPU is one line at once
    from lpt.runtime.engine_parity import failed_outputs, parse_names, run_engine_parity

    result = run_engine_parity(weights_dir, engines_dir, parse_names(graphs), parse_names(precisions),
                               runners=parse_names(runners) or [], report=report, assets=assets, quick=quick,
                               seed=seed, cuda_graphs=cuda_graphs, device=device, progress=click.echo)
    if not result.ok:
        failed = failed_outputs(result)
        click.echo(f"lpt: engine parity FAILED for {len(failed)} output(s): {', '.join(failed)}", err=True)
        sys.exit(1)
