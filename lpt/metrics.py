"""Numpy only (no torch, cv2 or lpt imports): the one definition of each error metric lpt reports.

Every metric takes ``(ours, ref)``: the array measured and its reference, of the same shape (a mismatch is a
ValueError, never a broadcast), computed in float64. Empty arrays count as identical.

NaN anywhere, on either side, is reported as the worst value, never as NaN (NaN compares False, so it would
pass every threshold): error magnitudes are +inf; SNR, PSNR and SSIM are -inf.
"""

from __future__ import annotations

import math

import numpy as np

UNIT_PEAK = 1.0  # PSNR peak of images in [0, 1]
UINT8_PEAK = 255.0  # PSNR peak of 8-bit frames
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004


def _pair(ours: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape {a.shape} measured against a reference of shape {b.shape}")
    return a, b


def _nan_worst(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def abs_error(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``|ours - ref|`` elementwise, float64; NaN becomes +inf."""
    a, b = _pair(ours, ref)
    d = np.abs(a - b)
    d[np.isnan(d)] = math.inf
    return d


def max_abs_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(abs_error(ours, ref), initial=0.0))


def mean_abs_error(ours: np.ndarray, ref: np.ndarray) -> float:
    d = abs_error(ours, ref)
    return float(d.mean()) if d.size else 0.0


def max_rel_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """``max |ours - ref| / max |ref|``: the largest error against the reference's largest magnitude (one
    scale for the whole tensor, so small reference elements do not blow it up). An all-zero reference gives
    0 if ``ours`` is all zero too, else +inf."""
    err = max_abs_error(ours, ref)
    if err == 0:
        return 0.0
    peak = float(np.max(np.abs(_pair(ours, ref)[1]), initial=0.0))
    return err / peak if math.isfinite(err) and peak > 0 else math.inf


def snr_db(ours: np.ndarray, ref: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (ours - ref)^2)``, scale-free. +inf when identical (all-zero arrays too);
    -inf for an all-zero reference that ``ours`` differs from (no signal, only noise)."""
    a, b = _pair(ours, ref)
    noise = float(np.sum(np.square(a - b)))
    signal = float(np.sum(np.square(b)))
    if noise == 0:
        return math.inf
    if math.isnan(noise) or math.isinf(noise) or signal == 0:
        return -math.inf
    return _nan_worst(10 * math.log10(signal / noise))


def psnr_db(ours: np.ndarray, ref: np.ndarray, peak: float) -> float:
    """``10 log10(peak^2 / mean (ours - ref)^2)``; +inf when identical. ``peak`` is the signal's full scale
    (``UNIT_PEAK``, ``UINT8_PEAK``, or ``range_peak(ref)`` for a tensor of no fixed range)."""
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError(f"PSNR needs a positive finite peak, got {peak}")
    a, b = _pair(ours, ref)
    if a.size == 0:
        return math.inf
    mse = float(np.mean(np.square(a - b)))
    if mse == 0:
        return math.inf
    return -math.inf if math.isnan(mse) or math.isinf(mse) else 10 * math.log10(peak * peak / mse)


def range_peak(ref: np.ndarray) -> float:
    """The reference's range (max - min), a tensor's PSNR peak; 1.0 where that is 0, empty or not finite."""
    r = np.asarray(ref, dtype=np.float64)
    span = float(r.max() - r.min()) if r.size else 0.0
    return span if math.isfinite(span) and span > 0 else 1.0


def _gaussian_kernel(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def gaussian_blur(planes: np.ndarray, size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Separable Gaussian blur over the last two axes, borders mirrored without repeating the edge (numpy's
    "reflect", OpenCV's default BORDER_REFLECT_101): ``cv2.GaussianBlur(x, (size, size), sigma)`` per plane."""
    k, r = _gaussian_kernel(size, sigma), size // 2
    pad = [(0, 0)] * (planes.ndim - 2) + [(r, r), (r, r)]
    p = np.pad(planes, pad, mode="reflect")
    h, w = planes.shape[-2:]
    rows = sum(k[i] * p[..., i : i + h, :] for i in range(size))
    return sum(k[j] * rows[..., :, j : j + w] for j in range(size))


def _ssim_planes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of each (H, W) plane of two (N, H, W) stacks."""
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = gaussian_blur(a), gaussian_blur(b)
    var_a, var_b = gaussian_blur(a * a) - mu_a**2, gaussian_blur(b * b) - mu_b**2
    cov = gaussian_blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    return np.mean(num / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)), axis=(-2, -1))


def ssim(ours: np.ndarray, ref: np.ndarray, planes_at_once: int = 4) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, Wang et al. 2004) over every H x W plane of arrays in [0, 1]
    (``(B, C, H, W)`` or any leading axes); symmetric in its arguments. Planes go a few at a time so that
    memory stays flat over any number of frames."""
    a, b = _pair(ours, ref)
    a, b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    n = planes_at_once
    values = [_ssim_planes(a[i : i + n], b[i : i + n]) for i in range(0, len(a), n)]
    return _nan_worst(float(np.mean(np.concatenate(values)))) if values else 1.0
