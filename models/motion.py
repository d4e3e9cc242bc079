"""LivePortrait motion math: head pose, keypoint transform, driving rules, stitching and retargeting inputs.

Pure, batch-first functions shared by the runtime, the exporters and the template builder.
Keypoints are (B, 21, 3) row vectors; rotations are (B, 3, 3) matrices applied as ``x @ R``.
Where a function takes several batched tensors, a batch size of 1 broadcasts against B
(one source against B driving frames).
"""

from __future__ import annotations

import math
from typing import Literal, TypedDict, TypeVar

import numpy as np
import torch

from lpt.specs import REGIONS

NUM_KP = 21
NUM_BINS = 66
RATIO_EPS = 1e-6

Region = Literal["all", "pose", "exp", "lip", "eyes"]

LIP_KEYPOINTS: tuple[int, ...] = (6, 12, 14, 17, 19, 20)
EYE_KEYPOINTS: tuple[int, ...] = (11, 13, 15, 16, 18)
# Expression entries copied from the driving frame by absolute motion (and by source-video
# driving): whole keypoints, plus single axes of keypoints 3, 4, 5, 8 and 9 (0=x, 1=y, 2=z).
PARTIAL_EXP_KEYPOINTS: tuple[int, ...] = (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
PARTIAL_EXP_AXES: tuple[tuple[int, int], ...] = ((3, 1), (4, 1), (5, 2), (8, 2), (9, 1), (9, 2))

Array = TypeVar("Array", np.ndarray, torch.Tensor)


class KpInfo(TypedDict):
    """Processed motion-extractor output (official ``get_kp_info``)."""

    pitch: torch.Tensor  # (B, 1) degrees
    yaw: torch.Tensor  # (B, 1) degrees
    roll: torch.Tensor  # (B, 1) degrees
    t: torch.Tensor  # (B, 3)
    exp: torch.Tensor  # (B, 21, 3)
    scale: torch.Tensor  # (B, 1)
    kp: torch.Tensor  # (B, 21, 3) canonical keypoints


class Motion(TypedDict, total=False):
    """One frame's motion, keyed like the official motion template entries."""

    R: torch.Tensor  # (B, 3, 3) row-vector rotation
    exp: torch.Tensor  # (B, 21, 3)
    scale: torch.Tensor  # (B, 1)
    t: torch.Tensor  # (B, 3)
    kp: torch.Tensor  # (B, 21, 3) canonical keypoints
    x_s: torch.Tensor  # (B, 21, 3) transformed keypoints


# ---------------------------------------------------------------------------------------------
# Head pose, keypoint info, rotation, transform


def headpose_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """(B, 66) bin logits -> (B,) degrees: soft-argmax over 3-degree bins centred on -97.5."""
    if logits.ndim != 2 or logits.shape[1] != NUM_BINS:
        raise ValueError(f"head-pose logits must be (B, {NUM_BINS}), got {tuple(logits.shape)}")
    idx = torch.arange(NUM_BINS, dtype=logits.dtype, device=logits.device)
    p = torch.softmax(logits, dim=1)
    return torch.sum(p * idx, dim=1) * 3 - 97.5


def kp_info(raw: dict[str, torch.Tensor]) -> KpInfo:
    """Raw motion-extractor dict -> degrees and (B, 21, 3) reshapes, all float32.

    The cast matches the official wrapper, which floats fp16 outputs before this step.
    """
    b = raw["kp"].shape[0]
    return KpInfo(
        pitch=headpose_to_degrees(raw["pitch"].float())[:, None],
        yaw=headpose_to_degrees(raw["yaw"].float())[:, None],
        roll=headpose_to_degrees(raw["roll"].float())[:, None],
        t=raw["t"].float(),
        exp=raw["exp"].float().reshape(b, -1, 3),
        scale=raw["scale"].float(),
        kp=raw["kp"].float().reshape(b, -1, 3),
    )


def _angle_vector(a: torch.Tensor) -> torch.Tensor:
    if a.ndim == 2 and a.shape[1] == 1:
        return a[:, 0]
    if a.ndim == 1:
        return a
    raise ValueError(f"angles must be (B,) or (B, 1), got {tuple(a.shape)}")


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Degrees (B,) or (B, 1) -> (B, 3, 3) = (Rz(roll) Ry(yaw) Rx(pitch))^T, for row vectors ``x @ R``."""
    x = _angle_vector(pitch) / 180 * math.pi
    y = _angle_vector(yaw) / 180 * math.pi
    z = _angle_vector(roll) / 180 * math.pi
    x, y, z = torch.broadcast_tensors(x, y, z)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()
    shape = (x.shape[0], 3, 3)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], dim=1).reshape(shape)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], dim=1).reshape(shape)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], dim=1).reshape(shape)
    return (rz @ ry @ rx).transpose(1, 2)


def transform_keypoints(
    kp: torch.Tensor, R: torch.Tensor, exp: torch.Tensor, scale: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Paper Eq. 2: ``s * (kp @ R + exp)`` plus (t_x, t_y) on every keypoint; t_z is ignored.

    kp and exp are (B, N, 3) or flat (B, 3N); scale (B, 1); t (B, 3). Returns (B, N, 3).
    """
    kp = kp.reshape(kp.shape[0], -1, 3)
    exp = exp.reshape(exp.shape[0], -1, 3)
    x = (kp @ R + exp) * scale.reshape(-1, 1, 1)
    t = t.reshape(-1, 3)
    shift = torch.cat([t[:, :2], torch.zeros_like(t[:, 2:])], dim=1)
    return x + shift[:, None, :]


def motion_from_kp_info(info: KpInfo) -> Motion:
    """A motion-template entry (scale, R, exp, t, kp, x_s) from processed keypoint info."""
    R = rotation_matrix(info["pitch"], info["yaw"], info["roll"])
    return Motion(
        scale=info["scale"],
        R=R,
        exp=info["exp"],
        t=info["t"],
        kp=info["kp"],
        x_s=transform_keypoints(info["kp"], R, info["exp"], info["scale"], info["t"]),
    )


# ---------------------------------------------------------------------------------------------
# Driving (spec 5.4 / 5.6)


def _check_region(region: str) -> None:
    if region not in REGIONS:
        raise ValueError(f"animation region must be one of {REGIONS}, got {region!r}")


def _keypoint_mask(rows: tuple[int, ...] = (), cells: tuple[tuple[int, int], ...] = ()) -> np.ndarray:
    mask = np.zeros((NUM_KP, 3), dtype=bool)
    mask[list(rows), :] = True
    for k, axis in cells:
        mask[k, axis] = True
    return mask


_EXP_MASKS: dict[tuple[str, bool], np.ndarray] = {
    ("all", False): np.ones((NUM_KP, 3), dtype=bool),
    ("all", True): _keypoint_mask(PARTIAL_EXP_KEYPOINTS, PARTIAL_EXP_AXES),
    ("pose", False): np.zeros((NUM_KP, 3), dtype=bool),
    ("lip", False): _keypoint_mask(LIP_KEYPOINTS),
    ("eyes", False): _keypoint_mask(EYE_KEYPOINTS),
}


def expression_mask(region: Region, *, partial: bool) -> np.ndarray:
    """(21, 3) bool: the expression entries that a region takes from the driving target.

    ``partial`` selects the subset used by absolute motion and by source-video driving for
    "all"/"exp"; relative motion with an image source takes every entry. It has no effect on
    "pose" (nothing), "lip" and "eyes" (their keypoints, all axes).
    """
    _check_region(region)
    key = "all" if region == "exp" else region
    return _EXP_MASKS[(key, partial and key == "all")].copy()


def select_expression(
    exp_source: torch.Tensor, exp_target: torch.Tensor, region: Region, *, partial: bool
) -> torch.Tensor:
    """Source expression with the region's entries (``expression_mask``) taken from the target."""
    mask = torch.as_tensor(expression_mask(region, partial=partial), device=exp_source.device)
    return torch.where(mask, exp_target.to(exp_source.dtype), exp_source)


def drive_motion(
    source: Motion,
    driving: Motion,
    driving_first: Motion | None = None,
    *,
    relative: bool = True,
    region: Region = "all",
    neutral_exp: torch.Tensor | np.ndarray | None = None,
) -> Motion:
    """New (R, exp, scale, t) for one driving frame of an image source (spec 5.4); t_z is zeroed.

    ``source``/``driving``/``driving_first`` need keys R, exp, scale, t. Relative motion with
    a driving video uses frame 0 as ``driving_first``. ``driving_first=None`` with relative
    motion is the single-driving-image case: pose, scale and translation stay the source's, and
    the expression reference is ``neutral_exp`` (1, 21, 3), the closed-mouth expression the
    official code ships as a data file (required for "all", "exp", "lip"; "eyes" subtracts
    nothing, as upstream does). Absolute motion ignores ``driving_first``.
    """
    _check_region(region)
    R_s, exp_s, s_s, t_s = source["R"], source["exp"], source["scale"], source["t"]
    R_d, exp_d, s_d, t_d = driving["R"], driving["exp"], driving["scale"], driving["t"]
    moves_pose = region in ("all", "pose")

    if not relative:
        R_new = R_d if moves_pose else R_s
        exp_new = select_expression(exp_s, exp_d, region, partial=True)
        s_new = s_s
        t_new = t_d if moves_pose else t_s
    else:
        if driving_first is None:
            if region in ("eyes", "pose"):  # "pose" takes no expression entries at all
                exp_all = exp_s + exp_d
            elif neutral_exp is None:
                raise ValueError(f"relative motion from a single driving image needs neutral_exp for region {region!r}")
            else:
                exp_all = exp_s + (exp_d - torch.as_tensor(neutral_exp, dtype=exp_d.dtype, device=exp_d.device))
            R_new, s_new, t_new = R_s, s_s, t_s
        else:
            R_0, exp_0, s_0, t_0 = driving_first["R"], driving_first["exp"], driving_first["scale"], driving_first["t"]
            exp_all = exp_s + (exp_d - exp_0)
            R_new = (R_d @ R_0.transpose(1, 2)) @ R_s if moves_pose else R_s
            s_new = s_s * (s_d / s_0) if region == "all" else s_s
            t_new = t_s + (t_d - t_0) if moves_pose else t_s
        exp_new = select_expression(exp_s, exp_all, region, partial=False)

    t_new = t_new.reshape(-1, 3)
    t_new = torch.cat([t_new[:, :2], torch.zeros_like(t_new[:, 2:])], dim=1)
    return Motion(R=R_new, exp=exp_new, scale=s_new, t=t_new)


def drive_keypoints(
    source: Motion,
    driving: Motion,
    driving_first: Motion | None = None,
    *,
    relative: bool = True,
    region: Region = "all",
    neutral_exp: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """x_d (B, 21, 3) = ``s_new * (kp_s @ R_new + exp_new) + t_new``; ``source`` also needs "kp".

    Arguments as for ``drive_motion``.
    """
    m = drive_motion(source, driving, driving_first, relative=relative, region=region, neutral_exp=neutral_exp)
    return transform_keypoints(source["kp"], m["R"], m["exp"], m["scale"], m["t"])


def hull_motion_multiplier(x_s: torch.Tensor, x_d_0: torch.Tensor) -> torch.Tensor:
    """(B,) mu = sqrt(V(x_s)) / sqrt(V(x_d_0)), V the 3-D convex-hull volume of the keypoints.

    Used by driving_option "expression-friendly" (relative motion, image source, driving video)
    with x_d_0 the driven keypoints of frame 0. With relative motion x_d_0 equals x_s, so mu is 1
    and the option is a no-op (spec 5.4 finding); it is kept for fidelity. Runs scipy on CPU.
    """
    from scipy.spatial import ConvexHull

    a = x_s.detach().cpu().double().numpy()
    b = x_d_0.detach().cpu().double().numpy()
    a, b = np.broadcast_arrays(a, b)
    mu = [math.sqrt(ConvexHull(p).volume) / math.sqrt(ConvexHull(q).volume) for p, q in zip(a, b)]
    return torch.tensor(mu, dtype=x_s.dtype, device=x_s.device)


def apply_hull_multiplier(
    x_s: torch.Tensor, x_d: torch.Tensor, x_d_0: torch.Tensor, mu: torch.Tensor
) -> torch.Tensor:
    """Expression-friendly rescaling: ``x_s + (x_d - x_d_0) * mu`` with mu (B,) from ``hull_motion_multiplier``."""
    return (x_d - x_d_0) * mu.reshape(-1, 1, 1) + x_s


def apply_driving_multiplier(x_s: torch.Tensor, x_d: torch.Tensor, multiplier: float | torch.Tensor) -> torch.Tensor:
    """``x_s + (x_d - x_s) * multiplier`` (multiplier a scalar or (B,))."""
    if isinstance(multiplier, torch.Tensor) and multiplier.ndim > 0:
        multiplier = multiplier.reshape(-1, 1, 1)
    return x_s + (x_d - x_s) * multiplier


# ---------------------------------------------------------------------------------------------
# Stitching and retargeting MLP inputs / outputs (spec 3.5, 4.4)


def _flatten_pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    batch = max(a.shape[0], b.shape[0])
    a = a.reshape(a.shape[0], -1).expand(batch, -1)
    b = b.reshape(b.shape[0], -1).expand(batch, -1)
    return torch.cat([a, b], dim=1)


def stitching_input(x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """(B, 126) = [x_s flattened, x_d flattened], row-major over (keypoint, xyz)."""
    return _flatten_pair(x_s, x_d)


def stitch(x_s: torch.Tensor, x_d: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Apply the stitching MLP output delta (B, 65): 63 keypoint offsets, then one (dx, dy) shift.

    x_s is only checked for shape; the MLP already saw it through ``stitching_input``.
    """
    b, n = delta.shape[0], x_d.shape[1]
    if delta.shape[1] != 3 * n + 2 or x_s.shape[1:] != x_d.shape[1:]:
        raise ValueError(f"stitch: x_s {tuple(x_s.shape)}, x_d {tuple(x_d.shape)}, delta {tuple(delta.shape)}")
    offsets = delta[:, : 3 * n].reshape(b, n, 3)
    shift = torch.cat([delta[:, 3 * n : 3 * n + 2], torch.zeros_like(delta[:, :1])], dim=1)
    return x_d + offsets + shift[:, None, :]


def eye_retargeting_input(x_s: torch.Tensor, eye_ratios: torch.Tensor) -> torch.Tensor:
    """(B, 66) = [x_s flattened (63), c_s left eye, c_s right eye, target eye ratio]."""
    if eye_ratios.shape[-1] != 3:
        raise ValueError(f"eye ratios must be (B, 3), got {tuple(eye_ratios.shape)}")
    return _flatten_pair(x_s, eye_ratios)


def lip_retargeting_input(x_s: torch.Tensor, lip_ratios: torch.Tensor) -> torch.Tensor:
    """(B, 65) = [x_s flattened (63), c_s lip, target lip ratio]."""
    if lip_ratios.shape[-1] != 2:
        raise ValueError(f"lip ratios must be (B, 2), got {tuple(lip_ratios.shape)}")
    return _flatten_pair(x_s, lip_ratios)


def retargeting_offset(out: torch.Tensor) -> torch.Tensor:
    """Eye/lip MLP output (B, 63) -> (B, 21, 3) keypoint offset to add to x_d."""
    return out.reshape(out.shape[0], -1, 3)


# ---------------------------------------------------------------------------------------------
# Eye / lip ratios from 203-point landmarks (spec 6.4, 4.4)


def _distance_ratio(lmk: Array, i1: int, i2: int, i3: int, i4: int) -> Array:
    if isinstance(lmk, torch.Tensor):
        num = torch.linalg.vector_norm(lmk[..., i1, :] - lmk[..., i2, :], dim=-1, keepdim=True)
        den = torch.linalg.vector_norm(lmk[..., i3, :] - lmk[..., i4, :], dim=-1, keepdim=True)
    else:
        num = np.linalg.norm(lmk[..., i1, :] - lmk[..., i2, :], axis=-1, keepdims=True)
        den = np.linalg.norm(lmk[..., i3, :] - lmk[..., i4, :], axis=-1, keepdims=True)
    return num / (den + RATIO_EPS)


def eye_close_ratio(lmk: Array) -> Array:
    """(B, 203, 2) landmarks -> (B, 2) [left, right] eye opening ratios (numpy or torch in, same out)."""
    left = _distance_ratio(lmk, 6, 18, 0, 12)
    right = _distance_ratio(lmk, 30, 42, 24, 36)
    if isinstance(left, torch.Tensor):
        return torch.cat([left, right], dim=-1)
    return np.concatenate([left, right], axis=-1)


def lip_close_ratio(lmk: Array) -> Array:
    """(B, 203, 2) landmarks -> (B, 1) lip opening ratio (numpy or torch in, same out)."""
    return _distance_ratio(lmk, 90, 102, 48, 66)


def _combine(source_ratio: torch.Tensor | np.ndarray, c_d: torch.Tensor | np.ndarray | list[float]) -> torch.Tensor:
    """[source ratios (Bs, k), first driving value (Bd, 1)] -> (B, k + 1) float32, batch 1 broadcasting."""
    device = c_d.device if isinstance(c_d, torch.Tensor) else None
    d = torch.as_tensor(c_d, dtype=torch.float32, device=device)
    d = d.reshape(1) if d.ndim == 0 else d
    d = (d if d.ndim == 1 else d[:, 0])[:, None]
    s = torch.as_tensor(source_ratio).to(device=d.device, dtype=torch.float32)
    batch = max(s.shape[0], d.shape[0])
    return torch.cat([s.expand(batch, -1), d.expand(batch, -1)], dim=1)


def combined_eye_ratio(
    c_d_eyes: torch.Tensor | np.ndarray | list[float], source_lmk: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """(B, 3) float32 eye-MLP ratios: [source left, source right, c_d_eyes[:, 0]].

    Only the first driving value is used (the driving *left* eye), as upstream. c_d_eyes is
    (B, k) or (B,) (one value per item); source_lmk (B or 1, 203, 2) or (203, 2).
    """
    lmk = source_lmk if source_lmk.ndim == 3 else source_lmk[None]
    return _combine(eye_close_ratio(lmk), c_d_eyes)


def combined_lip_ratio(
    c_d_lip: torch.Tensor | np.ndarray | list[float], source_lmk: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """(B, 2) float32 lip-MLP ratios: [source lip, c_d_lip[:, 0]]; shapes as ``combined_eye_ratio``."""
    lmk = source_lmk if source_lmk.ndim == 3 else source_lmk[None]
    return _combine(lip_close_ratio(lmk), c_d_lip)


# ---------------------------------------------------------------------------------------------
# Source videos (spec 5.6)


def smooth_sequence(observations: np.ndarray, observation_variance: float = 3e-7,
                    transition_variance: float = 1e-5) -> np.ndarray:
    """Kalman RTS smoothing of a (T, ...) sequence, as the official ``pykalman`` call: identity
    transition and observation, initial mean = first observation, initial covariance I.

    Every covariance stays a multiple of I, so the filter is one scalar recursion shared by all entries.
    """
    y = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)
    n = len(y)
    mean, var = np.empty_like(y), np.empty(n)
    pred_mean, pred_var = np.empty_like(y), np.empty(n)
    m, p = y[0], 1.0
    for i in range(n):
        if i > 0:
            p = p + transition_variance
        pred_mean[i], pred_var[i] = m, p
        gain = p / (p + observation_variance)
        m = m + gain * (y[i] - m)
        p = (1 - gain) * p
        mean[i], var[i] = m, p
    smoothed = mean.copy()
    for i in range(n - 2, -1, -1):
        j = var[i] / pred_var[i + 1]
        smoothed[i] = mean[i] + j * (smoothed[i + 1] - pred_mean[i + 1])
    return smoothed.reshape(np.shape(observations)).astype(np.float32)


def source_video_targets(source: list[Motion], driving: list[Motion], *, relative: bool = True,
                         driving_image: bool = False, neutral_exp: np.ndarray | None = None,
                         observation_variance: float = 3e-7) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (expression target (T, 21, 3), rotation target (T, 3, 3)) for a source video, smoothed
    (spec 5.6). ``driving`` has one entry per source frame, or one for a driving image."""
    exp_s = np.stack([m["exp"][0].numpy() for m in source])
    R_s = np.stack([m["R"][0].numpy() for m in source])
    if driving_image:
        neutral = np.zeros((NUM_KP, 3), np.float32) if neutral_exp is None else np.asarray(neutral_exp).reshape(NUM_KP, 3)
        exp_d = driving[0]["exp"][0].numpy()
        return (exp_s + (exp_d - neutral)).astype(np.float32), R_s.astype(np.float32)
    exp_d = np.stack([m["exp"][0].numpy() for m in driving])
    R_d = np.stack([m["R"][0].numpy() for m in driving])
    if relative:
        exp_t = exp_s + (exp_d - exp_d[:1])
        R_t = R_d @ np.swapaxes(R_d[:1], 1, 2) @ R_s
    else:
        exp_t, R_t = exp_d, R_d
    return (smooth_sequence(exp_t, observation_variance), smooth_sequence(R_t, observation_variance))


def source_video_keypoints(source: Motion, exp_target: torch.Tensor, R_target: torch.Tensor,
                           region: Region = "all") -> torch.Tensor:
    """x_d of one source-video frame: the source frame's expression with the region's partial subset
    taken from the (smoothed) target, the target rotation for "all"/"pose", the source scale and
    translation (t_z zeroed)."""
    _check_region(region)
    exp_new = select_expression(source["exp"], exp_target.reshape(1, NUM_KP, 3), region, partial=True)
    R_new = R_target.reshape(1, 3, 3) if region in ("all", "pose") else source["R"]
    t = source["t"].reshape(-1, 3)
    t_new = torch.cat([t[:, :2], torch.zeros_like(t[:, 2:])], dim=1)
    return transform_keypoints(source["kp"], R_new, exp_new, source["scale"], t_new)
