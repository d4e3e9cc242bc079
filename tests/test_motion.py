"""Motion math against hand-computed values and the spec's test vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lpt.models import motion

LIP = [6, 12, 14, 17, 19, 20]
EYES = [11, 13, 15, 16, 18]


def deg(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def random_motion(batch: int, seed: int) -> motion.Motion:
    g = torch.Generator().manual_seed(seed)
    angles = (torch.rand(batch, 3, generator=g) * 2 - 1) * 40
    return motion.Motion(
        R=motion.rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2]),
        exp=torch.randn(batch, 21, 3, generator=g) * 0.02,
        scale=1 + 0.5 * torch.rand(batch, 1, generator=g),
        t=torch.randn(batch, 3, generator=g) * 0.1,
        kp=torch.randn(batch, 21, 3, generator=g) * 0.3,
    )


def changed_cells(a: torch.Tensor, b: torch.Tensor) -> set[tuple[int, int]]:
    """(keypoint, axis) cells where two (1, 21, 3) tensors differ."""
    return {(int(k), int(c)) for k, c in torch.nonzero(a[0] != b[0]).tolist()}


def rows(keypoints: list[int]) -> set[tuple[int, int]]:
    return {(k, c) for k in keypoints for c in range(3)}


# --- head pose, kp_info


def test_headpose_zero_logits_is_zero_degrees() -> None:
    assert motion.headpose_to_degrees(torch.zeros(1, 66)).item() == pytest.approx(0.0, abs=1e-5)


def test_headpose_peak_at_bin_40() -> None:
    logits = torch.zeros(2, 66)
    logits[0, 40] = 10.0
    # p40 = e^10 / (e^10 + 65); every other bin 1 / (e^10 + 65); sum of the other indices = 2145 - 40.
    z = math.exp(10) + 65
    expected = 3 * (40 * math.exp(10) / z + 2105 / z) - 97.5
    out = motion.headpose_to_degrees(logits)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(expected, abs=1e-4)
    assert out[0].item() == pytest.approx(22.4328, abs=1e-4)
    assert out[1].item() == pytest.approx(0.0, abs=1e-5)


def test_headpose_rejects_other_bin_counts() -> None:
    with pytest.raises(ValueError):
        motion.headpose_to_degrees(torch.zeros(1, 1))


def test_kp_info_shapes_and_row_major_reshape() -> None:
    b = 2
    raw = {
        "pitch": torch.zeros(b, 66),
        "yaw": torch.zeros(b, 66),
        "roll": torch.zeros(b, 66),
        "t": torch.ones(b, 3),
        "exp": torch.arange(b * 63, dtype=torch.float32).reshape(b, 63),
        "scale": torch.full((b, 1), 1.5),
        "kp": torch.arange(b * 63, dtype=torch.float64).reshape(b, 63),
    }
    info = motion.kp_info(raw)
    for key in ("pitch", "yaw", "roll", "scale"):
        assert info[key].shape == (b, 1)
    assert info["t"].shape == (b, 3)
    assert info["exp"].shape == info["kp"].shape == (b, 21, 3)
    assert info["kp"].dtype == torch.float32
    assert info["kp"][1, 4, 2].item() == 63 + 3 * 4 + 2
    assert info["exp"][0, 20, 0].item() == 60
    assert torch.allclose(info["yaw"], torch.zeros(b, 1), atol=1e-5)


# --- rotation, transform


def test_rotation_matrix_spec_vector() -> None:
    expected = torch.tensor(
        [
            [0.813798, 0.469846, 0.342020],
            [-0.543838, 0.823173, 0.163176],
            [-0.204874, -0.318796, 0.925417],
        ]
    )
    R = motion.rotation_matrix(deg(10.0), deg(-20.0), deg(30.0))
    assert R.shape == (1, 3, 3)
    assert torch.allclose(R[0], expected, atol=1e-5)
    # (B, 1) inputs give the same matrix.
    R2 = motion.rotation_matrix(deg(10.0)[:, None], deg(-20.0)[:, None], deg(30.0)[:, None])
    assert torch.allclose(R, R2)


def test_rotation_matrix_identity_and_single_axes() -> None:
    assert torch.allclose(motion.rotation_matrix(deg(0), deg(0), deg(0))[0], torch.eye(3), atol=1e-7)
    # (Ry(90))^T: a row vector along x goes to -z, z goes to +x.
    yaw = torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])
    assert torch.allclose(motion.rotation_matrix(deg(0), deg(90), deg(0))[0], yaw, atol=1e-6)
    # (Rx(90))^T: y goes to +z.
    pitch = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    assert torch.allclose(motion.rotation_matrix(deg(90), deg(0), deg(0))[0], pitch, atol=1e-6)
    # (Rz(90))^T: x goes to +y.
    roll = torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    assert torch.allclose(motion.rotation_matrix(deg(0), deg(0), deg(90))[0], roll, atol=1e-6)


def test_rotation_matrix_is_orthonormal_batched() -> None:
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(3, 8, generator=g) * 2 - 1) * 90
    R = motion.rotation_matrix(a[0], a[1], a[2])
    assert R.shape == (8, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(8, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(8), atol=1e-6)
    for i in range(8):
        single = motion.rotation_matrix(a[0, i : i + 1], a[1, i : i + 1], a[2, i : i + 1])
        assert torch.allclose(single[0], R[i], atol=1e-7)


def test_transform_keypoints_by_hand() -> None:
    kp = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    R = motion.rotation_matrix(deg(0), deg(90), deg(0))
    exp = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.0, 0.25]]])
    scale = torch.tensor([[2.0]])
    t = torch.tensor([[0.1, 0.2, 0.3]])
    # [1,2,3] @ R = [3, 2, -1]; + exp = [3.5, 2, -1]; * 2 = [7, 4, -2]; + (0.1, 0.2, -) -> t_z ignored.
    expected = torch.tensor([[[7.1, 4.2, -2.0], [0.1, 0.2, 0.5]]])
    out = motion.transform_keypoints(kp, R, exp, scale, t)
    assert torch.allclose(out, expected, atol=1e-6)
    # Flat (B, 3N) keypoints and expressions are accepted too.
    assert torch.allclose(motion.transform_keypoints(kp.reshape(1, 6), R, exp.reshape(1, 6), scale, t), expected, atol=1e-6)


def test_motion_from_kp_info_matches_transform() -> None:
    info = motion.KpInfo(
        pitch=torch.tensor([[0.0]]), yaw=torch.tensor([[90.0]]), roll=torch.tensor([[0.0]]),
        t=torch.tensor([[0.1, 0.2, 0.3]]), exp=torch.zeros(1, 21, 3), scale=torch.tensor([[2.0]]),
        kp=torch.zeros(1, 21, 3),
    )
    info["kp"][0, 0] = torch.tensor([1.0, 2.0, 3.0])
    m = motion.motion_from_kp_info(info)
    assert set(m) == {"scale", "R", "exp", "t", "kp", "x_s"}
    assert torch.allclose(m["x_s"][0, 0], torch.tensor([6.1, 4.2, -2.0]), atol=1e-6)
    assert torch.allclose(m["x_s"][0, 1], torch.tensor([0.1, 0.2, 0.0]), atol=1e-6)


# --- driving


def test_relative_frame_zero_gives_back_source() -> None:
    src = random_motion(1, 0)
    x_s = motion.transform_keypoints(src["kp"], src["R"], src["exp"], src["scale"], src["t"])
    # Identity driving pose: every step is exact.
    drv = random_motion(1, 1)
    drv["R"] = torch.eye(3)[None]
    assert torch.equal(motion.drive_keypoints(src, drv, drv), x_s)
    # General pose: R_d R_d^T is the identity up to rounding.
    drv = random_motion(1, 2)
    assert torch.allclose(motion.drive_keypoints(src, drv, drv), x_s, atol=1e-6)


def test_relative_all_formula() -> None:
    src, d0, di = random_motion(1, 3), random_motion(1, 4), random_motion(1, 5)
    m = motion.drive_motion(src, di, d0)
    assert torch.allclose(m["R"], di["R"] @ d0["R"].transpose(1, 2) @ src["R"], atol=1e-6)
    assert torch.allclose(m["exp"], src["exp"] + di["exp"] - d0["exp"], atol=1e-7)
    assert torch.allclose(m["scale"], src["scale"] * di["scale"] / d0["scale"], atol=1e-6)
    t = src["t"] + di["t"] - d0["t"]
    assert torch.allclose(m["t"][:, :2], t[:, :2], atol=1e-7)
    assert m["t"][0, 2].item() == 0.0
    x_d = motion.drive_keypoints(src, di, d0)
    expected = m["scale"][:, :, None] * (src["kp"] @ m["R"] + m["exp"]) + m["t"][:, None, :]
    assert torch.allclose(x_d, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("region", "exp_cells", "moves_pose", "moves_scale"),
    [
        ("all", rows(list(range(21))), True, True),
        ("pose", set(), True, False),
        ("exp", rows(list(range(21))), False, False),
        ("lip", rows(LIP), False, False),
        ("eyes", rows(EYES), False, False),
    ],
)
def test_relative_regions(region: str, exp_cells: set[tuple[int, int]], moves_pose: bool, moves_scale: bool) -> None:
    src, d0, di = random_motion(1, 6), random_motion(1, 7), random_motion(1, 8)
    m = motion.drive_motion(src, di, d0, region=region)
    assert changed_cells(m["exp"], src["exp"]) == exp_cells
    target = src["exp"] + (di["exp"] - d0["exp"])
    for k, c in exp_cells:
        assert m["exp"][0, k, c] == target[0, k, c]
    assert torch.equal(m["R"], src["R"]) is not moves_pose
    assert torch.equal(m["scale"], src["scale"]) is not moves_scale
    assert torch.equal(m["t"][:, :2], src["t"][:, :2]) is not moves_pose
    assert m["t"][0, 2].item() == 0.0


ABSOLUTE_ALL = rows([1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]) | {(3, 1), (4, 1), (5, 2), (8, 2), (9, 1), (9, 2)}


@pytest.mark.parametrize(
    ("region", "exp_cells", "moves_pose"),
    [
        ("all", ABSOLUTE_ALL, True),
        ("exp", ABSOLUTE_ALL, False),
        ("pose", set(), True),
        ("lip", rows(LIP), False),
        ("eyes", rows(EYES), False),
    ],
)
def test_absolute_regions(region: str, exp_cells: set[tuple[int, int]], moves_pose: bool) -> None:
    src, di = random_motion(1, 9), random_motion(1, 10)
    m = motion.drive_motion(src, di, None, relative=False, region=region)
    assert changed_cells(m["exp"], src["exp"]) == exp_cells
    for k, c in exp_cells:
        assert m["exp"][0, k, c] == di["exp"][0, k, c]
    assert torch.equal(m["R"], di["R"] if moves_pose else src["R"])
    assert torch.equal(m["scale"], src["scale"])
    expected_t = (di if moves_pose else src)["t"].clone()
    expected_t[:, 2] = 0
    assert torch.equal(m["t"], expected_t)


def test_expression_mask_counts() -> None:
    # 13 whole keypoints + 6 single axes.
    assert motion.expression_mask("all", partial=True).sum() == 13 * 3 + 6
    assert motion.expression_mask("exp", partial=False).all()
    assert motion.expression_mask("lip", partial=True).sum() == 18
    assert not motion.expression_mask("pose", partial=True).any()
    with pytest.raises(ValueError):
        motion.expression_mask("mouth", partial=False)  # type: ignore[arg-type]


def test_single_driving_image_uses_neutral_expression() -> None:
    src, d = random_motion(1, 11), random_motion(1, 12)
    neutral = np.full((1, 21, 3), 0.01, dtype=np.float64)
    m = motion.drive_motion(src, d, None, region="all", neutral_exp=neutral)
    assert torch.allclose(m["exp"], src["exp"] + d["exp"] - 0.01, atol=1e-7)
    assert torch.equal(m["R"], src["R"])
    assert torch.equal(m["scale"], src["scale"])
    assert torch.equal(m["t"][:, :2], src["t"][:, :2]) and m["t"][0, 2] == 0
    lip = motion.drive_motion(src, d, None, region="lip", neutral_exp=neutral)
    assert changed_cells(lip["exp"], src["exp"]) == rows(LIP)
    assert torch.allclose(lip["exp"][:, LIP], (src["exp"] + d["exp"] - 0.01)[:, LIP], atol=1e-7)
    # "eyes" subtracts nothing (upstream behaviour) and needs no neutral expression.
    eyes = motion.drive_motion(src, d, None, region="eyes")
    assert torch.allclose(eyes["exp"][:, EYES], (src["exp"] + d["exp"])[:, EYES], atol=1e-7)
    assert changed_cells(eyes["exp"], src["exp"]) == rows(EYES)
    with pytest.raises(ValueError):
        motion.drive_motion(src, d, None, region="exp")


def test_drive_keypoints_batch_matches_per_sample() -> None:
    src, d0, frames = random_motion(1, 13), random_motion(1, 14), random_motion(5, 15)
    for relative in (True, False):
        for region in ("all", "pose", "exp", "lip", "eyes"):
            batched = motion.drive_keypoints(src, frames, d0, relative=relative, region=region)  # type: ignore[arg-type]
            assert batched.shape == (5, 21, 3)
            for b in range(5):
                one = {k: v[b : b + 1] for k, v in frames.items()}
                single = motion.drive_keypoints(src, one, d0, relative=relative, region=region)  # type: ignore[arg-type]
                assert torch.allclose(batched[b : b + 1], single, atol=1e-6)


# --- multipliers


def test_driving_multiplier() -> None:
    x_s = torch.ones(2, 21, 3)
    x_d = torch.full((2, 21, 3), 3.0)
    assert torch.equal(motion.apply_driving_multiplier(x_s, x_d, 0.5), torch.full((2, 21, 3), 2.0))
    assert torch.equal(motion.apply_driving_multiplier(x_s, x_d, 1.0), x_d)
    out = motion.apply_driving_multiplier(x_s, x_d, torch.tensor([0.0, 1.5]))
    assert torch.equal(out[0], x_s[0]) and torch.equal(out[1], torch.full((21, 3), 4.0))


def test_hull_motion_multiplier() -> None:
    # Unit right tetrahedron (volume 1/6) plus 17 points inside it.
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    inner = torch.full((17, 3), 0.05) * torch.arange(1, 18)[:, None] / 17
    x_s = torch.cat([verts, inner])[None]
    mu = motion.hull_motion_multiplier(torch.cat([x_s, x_s]), torch.cat([x_s * 2, x_s]))
    # Doubling every coordinate multiplies the volume by 8: mu = sqrt(1/6) / sqrt(8/6).
    assert mu[0].item() == pytest.approx(1 / math.sqrt(8), rel=1e-6)
    assert mu[1].item() == pytest.approx(1.0, rel=1e-6)
    x_d = x_s + 0.1
    out = motion.apply_hull_multiplier(x_s, x_d, x_s * 2, mu[:1])
    assert torch.allclose(out, x_s + (x_d - 2 * x_s) / math.sqrt(8), atol=1e-6)


# --- stitching and retargeting


def test_stitching_input_layout() -> None:
    x_s = torch.arange(63, dtype=torch.float32).reshape(1, 21, 3)
    x_d = -x_s.expand(3, 21, 3)
    feat = motion.stitching_input(x_s, x_d)
    assert feat.shape == (3, 126)
    assert feat[2, 4].item() == 4  # keypoint 1, y of x_s
    assert feat[1, 63 + 5].item() == -5  # keypoint 1, z of x_d


def test_stitch_offsets_by_hand() -> None:
    x_d = torch.zeros(2, 21, 3)
    x_d[1] = 1.0
    delta = torch.zeros(2, 65)
    delta[:, :63] = (torch.arange(63, dtype=torch.float32) + 1) * 0.01  # offset of (k, c) = 0.01 * (3k + c + 1)
    delta[:, 63] = 1.0
    delta[:, 64] = -2.0
    out = motion.stitch(x_d, x_d, delta)
    k = 7
    assert out[0, k, 0].item() == pytest.approx(0.01 * 22 + 1.0, abs=1e-6)
    assert out[0, k, 1].item() == pytest.approx(0.01 * 23 - 2.0, abs=1e-6)
    assert out[0, k, 2].item() == pytest.approx(0.01 * 24, abs=1e-7)  # z: offset only, no shift
    assert out[1, 20, 1].item() == pytest.approx(1.0 + 0.01 * 62 - 2.0, abs=1e-6)
    assert out[1, 0, 2].item() == pytest.approx(1.0 + 0.01 * 3, abs=1e-6)
    with pytest.raises(ValueError):
        motion.stitch(x_d, x_d, delta[:, :63])


def test_retargeting_inputs_and_offset() -> None:
    x_s = torch.arange(63, dtype=torch.float32).reshape(1, 21, 3)
    eye = motion.eye_retargeting_input(x_s, torch.tensor([[0.1, 0.2, 0.3]]))
    lip = motion.lip_retargeting_input(x_s, torch.tensor([[0.4, 0.5]]))
    assert eye.shape == (1, 66) and lip.shape == (1, 65)
    assert torch.equal(eye[0, :63], torch.arange(63, dtype=torch.float32))
    assert torch.allclose(eye[0, 63:], torch.tensor([0.1, 0.2, 0.3]))
    assert torch.allclose(lip[0, 63:], torch.tensor([0.4, 0.5]))
    off = motion.retargeting_offset(torch.arange(126, dtype=torch.float32).reshape(2, 63))
    assert off.shape == (2, 21, 3) and off[1, 2, 1].item() == 63 + 7
    with pytest.raises(ValueError):
        motion.eye_retargeting_input(x_s, torch.zeros(1, 2))


# --- landmark ratios


def hand_landmarks() -> np.ndarray:
    lmk = np.zeros((1, 203, 2))
    lmk[0, 0], lmk[0, 12] = (0, 0), (4, 0)  # left eye width 4
    lmk[0, 6], lmk[0, 18] = (2, 1), (2, -1)  # left eye height 2
    lmk[0, 24], lmk[0, 36] = (10, 0), (20, 0)  # right eye width 10
    lmk[0, 30], lmk[0, 42] = (15, 0), (15, 3)  # right eye height 3
    lmk[0, 48], lmk[0, 66] = (0, 10), (6, 10)  # mouth width 6
    lmk[0, 90], lmk[0, 102] = (3, 10), (3, 13)  # mouth height 3
    return lmk


def test_ratios_by_hand_numpy_and_torch() -> None:
    lmk = hand_landmarks()
    eyes = motion.eye_close_ratio(lmk)
    lip = motion.lip_close_ratio(lmk)
    assert isinstance(eyes, np.ndarray) and eyes.shape == (1, 2) and lip.shape == (1, 1)
    assert eyes[0, 0] == pytest.approx(2 / (4 + 1e-6), rel=1e-12)
    assert eyes[0, 1] == pytest.approx(3 / (10 + 1e-6), rel=1e-12)
    assert lip[0, 0] == pytest.approx(3 / (6 + 1e-6), rel=1e-12)
    t_eyes = motion.eye_close_ratio(torch.from_numpy(lmk))
    assert isinstance(t_eyes, torch.Tensor)
    assert np.allclose(t_eyes.numpy(), eyes, rtol=0, atol=1e-12)
    # Degenerate landmarks: eps keeps the ratio finite.
    assert motion.lip_close_ratio(np.zeros((1, 203, 2)))[0, 0] == 0.0


def test_ratios_batched() -> None:
    one = hand_landmarks()
    two = np.concatenate([one, one * 3.0])
    two[1, 18] = (6, 0)  # left eye height 3 in the scaled sample; width 12
    eyes = motion.eye_close_ratio(two)
    assert eyes.shape == (2, 2)
    assert eyes[1, 0] == pytest.approx(3 / (12 + 1e-6), rel=1e-12)
    assert eyes[1, 1] == pytest.approx(9 / (30 + 1e-6), rel=1e-12)
    assert np.array_equal(eyes[0], motion.eye_close_ratio(one)[0])


def test_combined_ratios() -> None:
    lmk = hand_landmarks()[0]
    eye = motion.combined_eye_ratio(np.array([[0.3, 0.9]], dtype=np.float32), lmk)
    assert eye.dtype == torch.float32 and eye.shape == (1, 3)
    assert torch.allclose(eye, torch.tensor([[0.5, 0.3, 0.3]]), atol=1e-6)  # only the first driving value
    lip = motion.combined_lip_ratio([0.0], lmk)
    assert torch.allclose(lip, torch.tensor([[0.5, 0.0]]), atol=1e-6)
    # B driving values against one source.
    lips = motion.combined_lip_ratio(torch.tensor([[0.1], [0.2], [0.3]]), lmk)
    assert torch.allclose(lips, torch.tensor([[0.5, 0.1], [0.5, 0.2], [0.5, 0.3]]), atol=1e-6)


# ---- source videos (spec 5.6) ------------------------------------------------------------------------


def test_smoothing_matches_the_official_kalman_smoother_on_a_step() -> None:
    from lpt.models.motion import smooth_sequence

    # pykalman 0.11.2 KalmanFilter(initial_state_mean=y[0], transition_covariance=1e-5, observation_covariance=3e-7).smooth
    expected = [0.02832457, 0.97247706, 0.99919836]
    got = smooth_sequence(np.array([[0.0], [1.0], [1.0]]))
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-5)


def test_smoothing_keeps_a_constant_sequence_and_the_shape() -> None:
    from lpt.models.motion import smooth_sequence

    seq = np.tile(np.arange(9, dtype=np.float32).reshape(1, 3, 3), (5, 1, 1))
    out = smooth_sequence(seq)
    assert out.shape == seq.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, seq, atol=1e-6)


def _motion(exp: float, yaw: float) -> dict:
    from lpt.models.motion import rotation_matrix

    one = torch.ones(1, 1)
    return {"exp": torch.full((1, 21, 3), exp), "R": rotation_matrix(0 * one, yaw * one, 0 * one),
            "kp": torch.zeros(1, 21, 3), "scale": one, "t": torch.tensor([[0.1, 0.2, 0.3]])}


def test_source_video_targets_are_relative_to_the_first_driving_frame() -> None:
    from lpt.models.motion import source_video_targets

    source = [_motion(0.1, 0.0), _motion(0.1, 0.0)]
    driving = [_motion(0.5, 10.0), _motion(0.5, 10.0)]  # no change against frame 0
    exp_t, R_t = source_video_targets(source, driving, observation_variance=3e-7)
    np.testing.assert_allclose(exp_t, 0.1, atol=1e-6)
    np.testing.assert_allclose(R_t, np.tile(np.eye(3), (2, 1, 1)), atol=1e-6)


def test_source_video_keypoints_take_the_partial_expression_and_zero_t_z() -> None:
    from lpt.models.motion import expression_mask, source_video_keypoints

    src = _motion(0.0, 0.0)
    x_d = source_video_keypoints(src, torch.ones(1, 21, 3), torch.eye(3)[None])
    mask = expression_mask("all", partial=True)
    expected = np.where(mask, 1.0, 0.0) + np.array([0.1, 0.2, 0.0])
    np.testing.assert_allclose(x_d[0].numpy(), expected, atol=1e-6)
