"""Paste-back (runtime/pasteback.py): the feathered mask and the blend into the source frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from lpt.runtime import crop
from lpt.runtime.pasteback import FEATHER, PasteBack, feather_mask

from tests.test_crop import annotated


def test_feather_mask_is_one_inside_zero_at_the_edge_and_ramps_between() -> None:
    mask = feather_mask(512)
    assert mask.dtype == np.float32 and mask.shape == (512, 512)
    assert (mask[FEATHER:512 - FEATHER + 1, FEATHER:512 - FEATHER + 1] == 1).all()
    assert mask[0].max() == 0 and mask[:, 0].max() == 0
    ramp = mask[256, 1:FEATHER + 1]  # column 0 is clipped to 0
    assert (np.diff(ramp) > 0).all()
    np.testing.assert_allclose(np.diff(ramp), np.diff(ramp)[0], rtol=1e-5)  # linear
    np.testing.assert_array_equal(mask, mask.T)
    assert mask[FEATHER // 2, FEATHER // 2] < mask[FEATHER // 2, 256]  # rounded corners fade faster


def official_blend(source: np.ndarray, result: np.ndarray, M_c2o: np.ndarray) -> np.ndarray:
    """The official formula on the whole frame: warp mask and result, then blend (spec 5.7)."""
    size = (source.shape[1], source.shape[0])
    mask = cv2.warpAffine(feather_mask(512), M_c2o[:2], size, flags=cv2.INTER_LINEAR)[..., None]
    warped = cv2.warpAffine(result, M_c2o[:2], size, flags=cv2.INTER_LINEAR)
    return np.clip(mask * warped + (1 - mask) * source, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("image", ["source/s0.jpg", "source/s6.jpg"])
def test_pasting_the_source_crop_back_reproduces_the_source(image: str) -> None:
    source, points = annotated(image)
    M_o2c = crop.crop_from_landmarks(points, crop.SOURCE)
    M_c2o = crop.invert(M_o2c)
    crop_512 = crop.warp(source, M_o2c, 512)
    out = PasteBack(source, M_c2o).paste(crop_512)
    assert out.shape == source.shape and out.dtype == np.uint8

    weight = cv2.warpAffine(feather_mask(512), M_c2o[:2], source.shape[1::-1])
    face = weight > 0.99
    far = weight == 0
    assert face.sum() > 1000 and far.sum() > 1000
    error = np.abs(out.astype(np.int16) - source.astype(np.int16))
    assert error[face].mean() < 2.0  # two bilinear resamplings (down then up, or up then down)
    np.testing.assert_array_equal(out[far], source[far])
    # Only the crop's footprint is computed; the result is the official whole-frame blend.
    assert np.abs(out.astype(np.int16) - official_blend(source, crop_512, M_c2o)).max() <= 1


def test_paste_blends_a_different_face_with_the_feathered_edge() -> None:
    source = np.full((300, 400, 3), 200, np.uint8)
    M_c2o = crop.invert(crop.crop_matrix(crop.FaceRect(np.array([390.0, 150.0]), 160.0, 0.4), 512))  # off the edge
    paste = PasteBack(source, M_c2o)
    out = paste.paste(np.zeros((512, 512, 3), np.uint8))
    centre = crop.transform_points(np.array([[256.0, 256.0]]), M_c2o)[0].round().astype(int)
    assert (out[centre[1], centre[0]] == 0).all()
    assert (out[:, :250] == 200).all()
    # Across the crop's border the output fades from the result to the source, with no hard step.
    row = out[150, 250:400, 0].astype(int)
    assert row.min() == 0 and row.max() == 200 and np.abs(np.diff(row)).max() < 40
    with pytest.raises(ValueError, match="512x512x3"):
        paste.paste(np.zeros((256, 256, 3), np.uint8))


def test_a_crop_outside_the_frame_leaves_it_unchanged() -> None:
    source = np.random.default_rng(0).integers(0, 256, size=(100, 120, 3), dtype=np.uint8)
    M_c2o = crop.invert(crop.crop_matrix(crop.FaceRect(np.array([900.0, 900.0]), 100.0, 0.0), 512))
    np.testing.assert_array_equal(PasteBack(source, M_c2o).paste(np.zeros((512, 512, 3), np.uint8)), source)
