"""How close an INT8 graph stays to its FP32 graph, and how fast each runs, on ONNX Runtime's CPU provider.

Errors are measured on the calibration set's held-out samples, each run at batch 1: per output the max and
mean absolute error, the signal-to-noise ratio (10 log10 of sum ref^2 over sum err^2, in dB; scale-free, so
one threshold serves feature volumes and MLP offsets alike) and, for RGB image outputs, PSNR. The final
512x512 frame of the F -> W -> G chain run with INT8 graphs is also compared with the FP32 chain's frame
(PSNR and SSIM).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from lpt.specs import SPECS

Feed = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]


def is_image(shape: Sequence[int]) -> bool:
    """RGB images in [0, 1], batch first: the generator's frame."""
    return len(shape) == 4 and shape[1] == 3


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((got.astype(np.float64) - ref) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)


def psnr_db(ref: np.ndarray, got: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((got.astype(np.float64) - ref) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def ssim(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, Wang et al. 2004) over the images and channels of (B, C, H, W)
    arrays in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)
    values = []
    for a, b in zip(ref.reshape(-1, *ref.shape[-2:]).astype(np.float64), got.reshape(-1, *got.shape[-2:]).astype(np.float64)):
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        values.append(float(np.mean(num / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))))
    return float(np.mean(values))


@dataclass(frozen=True)
class OutputError:
    output: str
    max_abs: float
    mean_abs: float
    ref_max_abs: float  # the reference's largest magnitude, to read max_abs against
    snr_db: float
    psnr_db: float | None  # image outputs only


def output_errors(graph: str, ref: Sequence[Outputs], got: Sequence[Outputs]) -> list[OutputError]:
    rows = []
    for t in SPECS[graph].outputs:
        r = np.concatenate([o[t.name] for o in ref])
        g = np.concatenate([o[t.name] for o in got])
        diff = np.abs(g.astype(np.float64) - r)
        rows.append(OutputError(t.name, float(diff.max()), float(diff.mean()), float(np.abs(r).max()), snr_db(r, g),
                                psnr_db(r, g) if is_image(t.shape) else None))
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
