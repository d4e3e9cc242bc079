"""Parity results: one row per graph, variant, runner and output; error statistics, the table, the JSON file."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpt.files import write_atomic
from lpt.metrics import UNIT_PEAK, abs_error, max_rel_error, psnr_db
from lpt.specs import IMAGE_RANGE, SPECS

FORMAT = 1
# (graph, output) of the decoded frames, from the spec; runtime/engine_parity.py imports it too.
IMAGE_OUTPUTS = frozenset((g, o) for g, spec in SPECS.items() for o in spec.image_outputs)


@dataclass
class Row:
    graph: str
    variant: str  # "native", "gather", "fp16", "gather.fp16"
    file: str
    precision: str  # the spec tolerance table used: "fp32" or "fp16"
    runner: str
    output: str
    atol: float
    rtol: float
    passed: bool
    feeds: int = 0
    max_abs: float | None = None  # over every feed
    max_rel: float | None = None  # max |ours - ref| / max |ref|, the largest over the feeds
    mean_abs: float | None = None
    image: bool = False  # a decoded frame: PSNR is reported
    psnr_db: float | None = None  # images: the worst feed's PSNR of the clipped frame (peak 1); null when max_abs is 0
    worst_feed: str | None = None  # the feed with the largest abs error
    failed_feeds: list[str] = field(default_factory=list)
    error: str | None = None  # the runner could not run the file at all
    seconds: float | None = None  # the runner's time on the file, all feeds (session creation included)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def frame_psnr(ours: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of the frame as the pipeline decodes it (clipped to [0, 1], peak 1); inf if identical."""
    return psnr_db(np.clip(ours, *IMAGE_RANGE), np.clip(ref, *IMAGE_RANGE), UNIT_PEAK)


def fill_stats(row: Row, pairs: Sequence[tuple[np.ndarray, np.ndarray]], labels: Sequence[str], image: bool) -> None:
    """Error statistics of ``(ours, reference)`` per feed into ``row``. NaN anywhere counts as an infinite error
    (lpt.metrics); statistics that are not finite are stored as None."""
    max_abs, max_rel, abs_sum, count, worst, psnrs = 0.0, 0.0, 0.0, 0, None, []
    for (ours, ref), label in zip(pairs, labels):
        d = abs_error(ours, ref)
        feed_max = float(np.max(d, initial=0.0))
        max_rel = max(max_rel, max_rel_error(ours, ref))
        if feed_max >= max_abs:
            max_abs, worst = feed_max, label
        abs_sum, count = abs_sum + float(np.sum(d)), count + d.size
        if image:
            psnrs.append(frame_psnr(ours, ref))
    row.feeds, row.worst_feed = len(pairs), worst
    row.max_abs, row.max_rel = _finite(max_abs), _finite(max_rel)
    row.mean_abs = _finite(abs_sum / count) if count else None
    row.psnr_db = _finite(min(psnrs)) if psnrs else None


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2e}"


def table(rows: Sequence[Row]) -> str:
    head = ("graph", "variant", "runner", "output", "max abs", "max rel", "tolerance", "PSNR dB", "result")
    body = []
    for r in rows:
        psnr_text = "" if not r.image else "inf" if r.max_abs == 0 else "-" if r.psnr_db is None else f"{r.psnr_db:.1f}"
        result = "pass" if r.passed else ("ERROR" if r.error else f"FAIL ({len(r.failed_feeds)}/{r.feeds} feeds)")
        body.append((r.graph, r.variant, r.runner, r.output, "-" if r.error else _num(r.max_abs),
                     "-" if r.error else _num(r.max_rel), f"atol {r.atol:g} rtol {r.rtol:g} ({r.precision})",
                     psnr_text, result))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(head), line(["-" * w for w in widths]), *map(line, body)]
    errors = [f"{r.graph} {r.variant} {r.runner}: {r.error}" for r in rows if r.error]
    return "\n".join(out + sorted(set(errors)))


def summary(rows: Sequence[Row]) -> str:
    return f"{sum(r.passed for r in rows)}/{len(rows)} passed"


def write_report(path: Path, rows: Sequence[Row], meta: dict[str, Any]) -> None:
    """The JSON report, written atomically. Non-finite numbers are written as null."""
    data = {"format": FORMAT, **meta, "passed": sum(r.passed for r in rows), "total": len(rows),
            "ok": bool(rows) and all(r.passed for r in rows), "results": [asdict(r) for r in rows]}
    write_atomic(path, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode())
