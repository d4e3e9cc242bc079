"""How close an INT8 graph stays to its FP32 graph, and how fast each runs, on ONNX Runtime's CPU provider.

Errors are measured on the calibration set's held-out samples, each run at batch 1: per output the max and
mean absolute error, the signal-to-noise ratio (10 log10 of sum ref^2 over sum err^2, in dB; scale-free, so
one threshold serves feature volumes and MLP offsets alike) and, for the outputs the spec marks as images, PSNR
(peak 1). The final 512x512 frame of the F -> W -> G chain run with INT8 graphs is also compared with the FP32
chain's frame (PSNR and SSIM). Every metric is lpt.metrics'.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lpt.metrics import UNIT_PEAK, abs_error, psnr_db, snr_db
from lpt.specs import SPECS

Feed = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class OutputError:
    output: str
    max_abs: float
    mean_abs: float
    ref_max_abs: float  # the reference's largest magnitude, to read max_abs against
    snr_db: float
    psnr_db: float | None  # image outputs only (peak 1, unclipped)


def output_errors(graph: str, ref: Sequence[Outputs], got: Sequence[Outputs]) -> list[OutputError]:
    rows = []
    for t in SPECS[graph].outputs:
        r = np.concatenate([o[t.name] for o in ref])
        g = np.concatenate([o[t.name] for o in got])
        diff = abs_error(g, r)
        rows.append(OutputError(t.name, float(diff.max()), float(diff.mean()), float(np.abs(r).max()), snr_db(g, r),
                                psnr_db(g, r, UNIT_PEAK) if t.image else None))
    return rows


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_all(sess: ort.InferenceSession, feeds: Sequence[Feed]) -> list[Outputs]:
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(names, feed))) for feed in feeds]


def median_seconds(sess: ort.InferenceSession, feed: Feed, runs: int) -> float:
    """Median wall time of ``runs`` runs after one warm-up run."""
    sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ms(seconds: float) -> str:
    """Milliseconds, three significant digits for the sub-millisecond MLPs."""
    value = seconds * 1e3
    return f"{value:.3f}" if value < 1 else f"{value:.1f}"


def rows(arrays: Mapping[str, np.ndarray]) -> list[Feed]:
    """Batch-1 feeds, one per sample."""
    count = len(next(iter(arrays.values())))
    return [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(count)]


def chain_frames(f: ort.InferenceSession, w: ort.InferenceSession, g: ort.InferenceSession | None,
                 held_out: Sequence[Feed]) -> np.ndarray:
    """F(source) -> W(feature volume, kp_driving, kp_source) -> G(warped): the frames, (N, 3, 512, 512).
    With ``g`` None, ``w`` is the fused warp_decode graph."""
    frames = []
    for feed in held_out:
        (volume,) = f.run(["feature_3d"], {"source_image": feed["source_image"]})
        warp_in = {"feature_3d": volume, "kp_driving": feed["kp_driving"], "kp_source": feed["kp_source"]}
        (out,) = w.run(["out"], warp_in)
        frames.append(out if g is None else g.run(["out"], {"feature": out})[0])
    return np.concatenate(frames)
