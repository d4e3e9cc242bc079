"""``lpt template``: inspect motion templates and convert official pickles to lpt's safe formats."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import click

from lpt.errors import reports_errors


@click.group("template")
def template() -> None:
    """Motion templates: official .pkl (loaded without running code), lpt's .npz and .json (recommended)."""


@template.command("export")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@reports_errors
def export(source: Path, target: Path) -> None:
    """Convert SOURCE (.pkl, .npz or .json) to TARGET (.npz or .json), checking every frame on the way.

    Animal-style templates (no eye/lip ratios) convert too; the human pipeline still refuses them.
    """
    from lpt.runtime.templates import (
        SAFE_SUFFIXES,
        TemplateError,
        load_template,
        save_template,
    )

    if target.suffix.lower() not in SAFE_SUFFIXES:
        raise TemplateError(f"template output {target}: the name must end in .npz or .json")
    loaded = load_template(source, require_ratios=False)
    save_template(target, loaded)
    click.echo(f"wrote {target}: {loaded.n_frames} frames at {_fps_text(loaded.fps)} fps")


@template.command("info")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@reports_errors
def info(path: Path) -> None:
    """Check the template at PATH and describe it: frames, fps, per-frame arrays, kind."""
    from lpt.runtime.templates import load_template

    loaded = load_template(path, require_ratios=False)
    human = loaded.eye_ratios is not None
    keys = ", ".join(f"{k} {tuple(v.shape)}" for k, v in loaded.frames[0].arrays().items())
    rows = [
        ("file", str(path)),
        ("kind", "human (with eye and lip ratios)" if human else "animal-style (no eye/lip ratios: human pipeline refuses it)"),
        ("frames", str(loaded.n_frames)),
        ("fps", _fps_text(loaded.fps)),
        ("duration", f"{float(loaded.n_frames / loaded.fps):.2f} s"),
        ("per frame", keys),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")


def _fps_text(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{fps} ({float(fps):.3f})"
