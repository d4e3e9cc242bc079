"""lpt.metrics against hand-computed values, and their edge cases: identical arrays, an all-zero reference, NaN,
empty arrays, mismatched shapes; the spec's image outputs and input ranges that the callers read."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from lpt.export.parity_inputs import random_feed
from lpt.models.named_io import example_inputs

from lpt.metrics import (
    UINT8_PEAK,
    UNIT_PEAK,
    abs_error,
    gaussian_blur,
    max_abs_error,
    max_rel_error,
    mean_abs_error,
    psnr_db,
    range_peak,
    snr_db,
    ssim,
)
from lpt.specs import IMAGE_RANGE, KEYPOINT_RANGE, SPECS, TensorSpec, ValueRange

REF = np.array([1.0, -2.0, 3.0, 0.0])
OURS = np.array([1.5, -2.0, 2.0, 0.5])  # errors 0.5, 0, 1, 0.5


def test_hand_computed_values() -> None:
    assert max_abs_error(OURS, REF) == 1.0
    assert mean_abs_error(OURS, REF) == pytest.approx(0.5)
    assert max_rel_error(OURS, REF) == pytest.approx(1 / 3)  # against max |ref| = 3
    # signal 1 + 4 + 9 = 14, noise 0.25 + 1 + 0.25 = 1.5
    assert snr_db(OURS, REF) == pytest.approx(10 * math.log10(14 / 1.5))
    # mse 1.5 / 4; peak 2: 10 log10(4 / 0.375)
    assert psnr_db(OURS, REF, 2.0) == pytest.approx(10 * math.log10(4 / 0.375))
    assert range_peak(REF) == 5.0


def test_the_known_decibels() -> None:
    image = np.random.default_rng(0).random((2, 3, 8, 8))
    assert snr_db(image * 1.1, image) == pytest.approx(20.0)  # noise is 1% of the signal's power
    assert psnr_db(image + 0.1, image, UNIT_PEAK) == pytest.approx(20.0)
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    changed = frames.copy()
    changed[1, 2, 3, 0] = 10
    assert max_abs_error(changed, frames) == 10  # uint8 does not wrap around: float64 differences
    assert max_abs_error(frames, changed) == 10
    assert psnr_db(changed, frames, UINT8_PEAK) == pytest.approx(10 * math.log10(255**2 / (100 / frames.size)))


def test_argument_order_is_ours_then_reference() -> None:
    ref, ours = np.array([1.0, 1.0]), np.array([2.0, 2.0])
    assert snr_db(ours, ref) == pytest.approx(0.0) and snr_db(ref, ours) == pytest.approx(10 * math.log10(8 / 2))
    assert max_rel_error(ours, ref) == 1.0 and max_rel_error(ref, ours) == 0.5


def test_identical_arrays() -> None:
    for metric in (max_abs_error, mean_abs_error, max_rel_error):
        assert metric(REF, REF) == 0.0
    assert snr_db(REF, REF) == math.inf and psnr_db(REF, REF, UNIT_PEAK) == math.inf
    zeros = np.zeros(5)
    assert snr_db(zeros, zeros) == math.inf and max_rel_error(zeros, zeros) == 0.0


def test_zero_reference() -> None:
    zeros, ours = np.zeros(4), np.full(4, 0.1)
    assert snr_db(ours, zeros) == -math.inf  # no signal, only noise
    assert max_rel_error(ours, zeros) == math.inf
    assert psnr_db(ours, zeros, UNIT_PEAK) == pytest.approx(20.0)  # PSNR has its own peak: defined
    assert range_peak(zeros) == 1.0  # a constant reference's tensor PSNR uses peak 1


def test_nan_is_the_worst_value_never_nan() -> None:
    ours = REF.copy()
    ours[1] = np.nan
    for a, b in ((ours, REF), (REF, ours)):
        assert max_abs_error(a, b) == math.inf and mean_abs_error(a, b) == math.inf
        assert max_rel_error(a, b) == math.inf
        assert snr_db(a, b) == -math.inf and psnr_db(a, b, UNIT_PEAK) == -math.inf
    assert abs_error(ours, REF).tolist() == [0.0, math.inf, 0.0, 0.0]
    image = np.random.default_rng(1).random((1, 1, 16, 16))
    broken = image.copy()
    broken[0, 0, 3, 3] = np.nan
    assert ssim(broken, image) == -math.inf
    assert range_peak(np.array([0.0, np.nan])) == 1.0
    infinite = np.array([math.inf, 0.0])
    assert max_abs_error(infinite, np.zeros(2)) == math.inf and snr_db(infinite, np.zeros(2)) == -math.inf


def test_empty_arrays_count_as_identical() -> None:
    empty = np.zeros((0, 3))
    assert max_abs_error(empty, empty) == 0.0 and mean_abs_error(empty, empty) == 0.0
    assert psnr_db(empty, empty, UNIT_PEAK) == math.inf and snr_db(empty, empty) == math.inf


def test_refusals() -> None:
    with pytest.raises(ValueError, match="shape"):
        max_abs_error(np.zeros((1, 3)), np.zeros(3))  # never broadcast
    for peak in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="peak"):
            psnr_db(REF, REF, peak)


def test_gaussian_blur_is_opencvs() -> None:
    planes = np.random.default_rng(2).random((3, 37, 53))
    theirs = np.stack([cv2.GaussianBlur(p, (11, 11), 1.5) for p in planes])
    np.testing.assert_allclose(gaussian_blur(planes), theirs, rtol=0, atol=1e-12)


def test_ssim() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((2, 3, 64, 64))
    assert ssim(image, image) == pytest.approx(1.0)
    noisy = [np.clip(image + rng.normal(0, s, image.shape), 0, 1) for s in (0.01, 0.05, 0.2)]
    assert ssim(noisy[0], image) > ssim(noisy[1], image) > ssim(noisy[2], image)
    assert ssim(noisy[1], image) == ssim(image, noisy[1])  # symmetric
    # the mean over planes does not depend on how many go at once
    assert ssim(noisy[1], image, planes_at_once=1) == pytest.approx(ssim(noisy[1], image, planes_at_once=6), abs=1e-15)


def test_the_spec_says_which_outputs_are_images() -> None:
    images = {(g, o) for g, spec in SPECS.items() for o in spec.image_outputs}
    assert images == {("spade_generator", "out"), ("warp_decode", "out")}
    assert SPECS["spade_generator"].is_image("out") and not SPECS["warping_module"].is_image("out")
    assert all(t.value_range == IMAGE_RANGE for g in SPECS.values() for t in g.outputs if t.image)


def test_every_graph_input_has_its_range_or_is_a_feature_map() -> None:
    for spec in SPECS.values():
        for t in spec.inputs:
            if t.value_range is None:
                assert t.name in ("feature_3d", "feature"), t.name
            if t.segments:
                assert sum(s.size for s in t.segments) == t.shape[-1], t.name
    assert SPECS["warping_module"].tensor("kp_source").value_range == KEYPOINT_RANGE
    with pytest.raises(KeyError):
        SPECS["stitching"].tensor("nothing")


def _parts(t: TensorSpec, x: np.ndarray) -> list[tuple[np.ndarray, ValueRange | None]]:
    """The values of an input and the range each must keep to, segment by segment."""
    if not t.segments:
        return [(x, t.value_range)]
    ends = np.cumsum([s.size for s in t.segments])
    return [(x[..., end - s.size : end], s.value_range) for s, end in zip(t.segments, ends)]


def test_random_feeds_keep_to_the_spec_ranges() -> None:
    for graph, spec in SPECS.items():
        for tensors in (random_feed(graph, 2, 0).tensors, {k: v.numpy() for k, v in example_inputs(graph, 1).items()}):
            for t in spec.inputs:
                for values, (low, high) in ((v, r) for v, r in _parts(t, tensors[t.name]) if r is not None):
                    assert low <= values.min() and values.max() <= high, (graph, t.name)
