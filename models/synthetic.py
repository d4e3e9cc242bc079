"""Seeded synthetic weights in the official checkpoint layout, calibrated to trained-like activations.

THESE WEIGHTS ANIMATE NOTHING. They exist so that every feature (export, engines, FP16/INT8 accuracy,
the runtime) runs end to end without the official checkpoints. Default initialisation is useless for
that: it saturates the generator's final sigmoid, so any precision figure measured on it is meaningless.
Here each network is scaled on real-looking inputs instead (LSUV-style: one forward pass per network,
hooks firing in execution order rescale each layer as its output is produced). Demo portraits go
through F, M, W and G in turn; BatchNorm statistics come from the layer's actual input; the heads land
in the trained model's value ranges (../shared/reference/liveportrait-spec.md section 3.2).

Same seed and torch build: bit-identical tensors, whatever the thread count (the calibration runs on
one thread because some CPU kernels sum in a thread-count-dependent order); another CPU architecture
may pick other kernels and differ in the last bits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lpt.demo import draw_portrait
from lpt.errors import CheckpointError
from lpt.files import cache_dir

from . import motion
from .appearance_feature_extractor import AppearanceFeatureExtractor
from .checkpoint import atomic_write, save_official_layout
from .convnextv2 import ConvNeXtV2Block
from .layers import GlobalResponseNorm, LayerNorm2d, ResBlock3d
from .motion_extractor import MotionExtractor
from .registry import BASE_FILES, NETWORK_NAMES, RETARGETING_FILE, build
from .spade_generator import SPADEGenerator, SPADEResBlock
from .warping_module import WarpingModule

Progress = Callable[[str], None]
Hook = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]
Affine = nn.Conv2d | nn.Conv3d | nn.Linear
AFFINE = (nn.Conv2d, nn.Conv3d, nn.Linear)
BatchNorm = nn.modules.batchnorm._BatchNorm
MARKER = "SYNTHETIC_WEIGHTS.txt"  # written last: its presence means a complete synthetic set
IN_PROGRESS = ".lpt-synth-in-progress"  # while writing: an interrupted run may be overwritten
MLPS = ("stitching", "eye_retargeting", "lip_retargeting")

# (draw_portrait seed, yaw degrees, mouth_open, eye_open): the calibration batch, fixed for every seed.
CALIBRATION_LOOKS: tuple[tuple[int, float, float, float], ...] = (
    (101, 0.0, 0.0, 1.0),
    (102, 16.0, 0.6, 0.9),
    (103, -12.0, 0.25, 0.4),
)
# More for M alone (it is cheap): its heads are centred on the batch's mean feature, and a few images
# place that mean poorly.
MOTION_LOOKS: tuple[tuple[int, float, float, float], ...] = (
    (104, 8.0, 0.1, 0.7),
    (105, -25.0, 0.0, 1.0),
    (106, 4.0, 0.8, 0.6),
    (107, 20.0, 0.4, 0.0),
    (108, -5.0, 0.0, 0.9),
)
PAIRS = ((0, 1), (2, 0))  # (source, driving) image indices for W and G
# G is convolutional and its norms are per image: central crops of W's outputs give nearly the same
# statistics at a fraction of the cost (a full 64x64 pass is most of the synthesis time).
GENERATOR_CROP = 32
RESIDUAL_GAIN = 0.5  # a residual branch's output std relative to its block's input
SPADE_MODULATION_STD = 0.3  # SPADE gamma and beta: modest modulation around (1, 0)
MASK_LOGIT_STD = 2.0  # W's motion-mask logits: a softmax neither one-hot nor uniform
OCCLUSION_LOGIT = (1.0, 0.7)  # (mean, std) before W's occlusion sigmoid: mostly visible; the std
# is modest because this one-channel projection varies more between images than wide layers do
IMAGE_LOGIT_STD = 1.3  # before G's sigmoid: most pixels within (0.05, 0.95)
RETARGETING_STD = 0.01  # retargeting / stitching offsets
NUM_BINS, BIN_CENTRE, BIN_SIGMA = 66, 32.5, 2.5  # bin 32.5 is 0 degrees; the peak's width in bins

# Canonical keypoints: a face-like 3-D layout (x right, y down, z into the image), spread within
# [-0.6, 0.6]. Eye (11, 13, 15, 16, 18) and lip (6, 12, 14, 17, 19, 20) indices sit on the eyes and
# mouth as in motion.py.
KP_TEMPLATE = (
    (-0.50, -0.05, 0.20), (0.50, -0.05, 0.20), (-0.42, 0.28, 0.15), (0.42, 0.28, 0.15), (0.00, 0.55, 0.00),
    (0.00, 0.08, -0.28), (0.00, 0.36, -0.12), (-0.26, -0.36, -0.02), (0.26, -0.36, -0.02), (0.00, -0.52, 0.02),
    (0.00, -0.12, -0.14), (-0.30, -0.17, 0.00), (-0.15, 0.33, -0.08), (-0.17, -0.19, -0.04), (0.15, 0.33, -0.08),
    (0.17, -0.19, -0.04), (0.30, -0.17, 0.00), (0.00, 0.29, -0.13), (0.00, -0.24, -0.06), (0.00, 0.42, -0.10),
    (0.07, 0.37, -0.12),
)
# Angle heads: their std over the calibration batch, in degrees. Unseen faces lie up to about twice as
# far from the batch's mean feature, so five of these stds must still fit within the trained +-15.
ANGLE_HEADS = {"pitch": 2.0, "yaw": 2.5, "roll": 1.5}


def _silent(_: str) -> None:
    pass


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def network_generator(seed: int, name: str) -> torch.Generator:
    """Independent per network, so any subset of networks synthesises to the same tensors."""
    state = np.random.SeedSequence([seed, NETWORK_NAMES.index(name)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def calibration_images(looks: tuple[tuple[int, float, float, float], ...] = CALIBRATION_LOOKS, size: int = 256) -> torch.Tensor:
    """(N, 3, size, size) RGB in [0, 1]: demo portraits in a few poses."""
    imgs = [draw_portrait(s, size, yaw, mouth, eye) for s, yaw, mouth, eye in looks]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0


# --- initialisation and per-layer calibration rules -------------------------------------------------


def _fresh(name: str, g: torch.Generator) -> nn.Module:
    """``name`` in inference form, every parameter drawn from ``g``; the global RNG is left alone."""
    with torch.random.fork_rng(devices=[]):
        net = build(name, spectral_norm=False).eval()
    def randn(shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=g)

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, AFFINE):
                w = m.weight
                # Per-output-channel gains, as trained layers have: per-channel INT8 scales then differ.
                gain = torch.exp(0.25 * randn(w.shape[:1])).view(-1, *[1] * (w.dim() - 1))
                w.copy_(randn(w.shape) * gain / math.sqrt(w[0].numel()))
                if m.bias is not None:
                    m.bias.copy_(0.1 * randn(m.bias.shape))
            elif isinstance(m, (BatchNorm, nn.LayerNorm, LayerNorm2d)):
                weight, bias = cast(torch.Tensor, m.weight), cast(torch.Tensor, m.bias)
                weight.copy_(1.0 + 0.1 * randn(weight.shape))
                bias.copy_(0.05 * randn(bias.shape))
            elif isinstance(m, GlobalResponseNorm):
                m.gamma.copy_(0.1 * randn(m.gamma.shape))
                m.beta.copy_(0.05 * randn(m.beta.shape))
    return net


def _channel_dim(out: torch.Tensor, m: nn.Module) -> int:
    return out.dim() - 1 if isinstance(m, nn.Linear) else 1


def rescale(std: float | Callable[[], float], mean: float | torch.Tensor | None = None) -> Hook:
    """Scale weight and bias so the output has this std (over all its elements); with ``mean``, shift
    the bias so the output mean is that (a scalar, or one value per output channel)."""

    def hook(m: nn.Module, _: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        layer = cast(Affine, m)
        target = std() if callable(std) else std
        # var_mean accumulates in float64 on CPU: the statistics do not depend on the thread count.
        var, overall = torch.var_mean(out.detach(), correction=0)
        scale = target / max(math.sqrt(float(var)), 1e-12)
        layer.weight.mul_(scale)
        if layer.bias is None or mean is None:
            if layer.bias is not None:
                layer.bias.mul_(scale)
            return out * scale
        dim = _channel_dim(out, m)
        if isinstance(mean, torch.Tensor):
            per_channel = torch.var_mean(out.detach(), [d for d in range(out.dim()) if d != dim], correction=0)[1]
            shift = mean.double() - per_channel.double() * scale
        else:
            shift = torch.full(layer.bias.shape, mean - float(overall) * scale, dtype=torch.float64)
        layer.bias.mul_(scale).add_(shift.float())
        shape = [1] * out.dim()
        shape[dim] = -1
        return out * scale + shift.float().view(shape)

    return hook


def _batchnorm_stats(m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    """Running statistics = those of the actual input: the output is unit variance before the affine."""
    x = args[0].detach()
    var, mean = torch.var_mean(x, [0, *range(2, x.dim())], correction=0)
    norm = cast(BatchNorm, m)
    cast(torch.Tensor, norm.running_mean).copy_(mean)
    cast(torch.Tensor, norm.running_var).copy_(var)


class Calibrator:
    """Per-layer rules for one network: every conv / linear defaults to unit output std, every BatchNorm
    takes its input's statistics. Rules run as forward hooks during one pass (``attached``)."""

    def __init__(self, net: nn.Module) -> None:
        self.rules: dict[nn.Module, Hook] = {}
        self.pre: dict[nn.Module, Callable[..., None]] = {}
        self.input_std: dict[nn.Module, float] = {}
        for m in net.modules():
            if isinstance(m, AFFINE):
                self.rules[m] = rescale(1.0)
            elif isinstance(m, BatchNorm):
                self.pre[m] = _batchnorm_stats

    def residual(self, block: nn.Module, last: nn.Module, shortcut_std: float | None = None) -> None:
        """The residual branch ends at ``last``: its std is RESIDUAL_GAIN times the shortcut's (the block
        input's unless given)."""

        def record(m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self.input_std[m] = float(args[0].detach().std(correction=0))

        if shortcut_std is None:
            self.pre[block] = record
        self.rules[last] = rescale(lambda: RESIDUAL_GAIN * (shortcut_std or self.input_std[block]))

    @contextmanager
    def attached(self) -> Iterator[None]:
        handles = [m.register_forward_pre_hook(h) for m, h in self.pre.items()]
        handles += [m.register_forward_hook(h) for m, h in self.rules.items()]
        try:
            with torch.no_grad():
                yield
        finally:
            for h in handles:
                h.remove()


# --- the motion extractor's heads and the keypoint math ----------------------------------------------


def _head(centre: torch.Tensor, spread: torch.Tensor, g: torch.Generator, linear_in_bins: bool = False) -> Hook:
    """A head whose outputs sit at ``centre`` on the calibration batch's mean feature and move with the
    feature by about ``spread`` (std over the batch, on average over outputs). Angle heads
    (``linear_in_bins``) produce peaked bin logits, ``-(i - c)^2 / 2 sigma^2``, whose peak the feature
    shifts: their centre and spread are in degrees."""

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], _: torch.Tensor) -> torch.Tensor:
        fc = cast(nn.Linear, m)
        z = inputs[0].detach().double()
        zbar = z.mean(0)
        # The batch's rms feature deviation, not its projection on each direction: a few images project
        # to nearly nothing on some directions, and dividing by that would blow up unseen inputs.
        ref = float((z - zbar).pow(2).sum(1).mean().sqrt().clamp_min(1e-6))
        direction = torch.randn(1 if linear_in_bins else fc.out_features, z.shape[1], generator=g, dtype=torch.float64)
        if linear_in_bins:
            bins = torch.arange(NUM_BINS, dtype=torch.float64) - BIN_CENTRE
            shift_per_unit = 1.0 / BIN_SIGMA**2  # a logit slope a moves the peak by a * sigma^2 bins
            slope = direction[0] / ref * (spread / 3.0) * shift_per_unit
            noise = 0.02 * torch.randn(NUM_BINS, z.shape[1], generator=g, dtype=torch.float64) / math.sqrt(z.shape[1])
            weight = bins[:, None] * slope[None, :] + noise
            peak = centre / 3.0
            bias = -((bins - peak) ** 2) / (2 * BIN_SIGMA**2) - weight @ zbar
        else:
            weight = direction / ref * spread[:, None]
            bias = centre - weight @ zbar
        fc.weight.copy_(weight.float())
        fc.bias.copy_(bias.float())
        return F.linear(inputs[0], fc.weight, fc.bias)

    return hook


def _head_rules(cal: Calibrator, detector: nn.Module, g: torch.Generator) -> None:
    """Trained-like head outputs (spec section 3.2), as (centre, std over the calibration batch); the
    stds are small so that unseen inputs (up to about twice as far from the batch's mean feature) stay
    within the trained ranges at five of them."""
    t64 = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    jitter = lambda n, a: a * (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1)  # noqa: E731
    full = lambda v: torch.full((63,), v, dtype=torch.float64)  # noqa: E731
    kp = torch.tensor(KP_TEMPLATE, dtype=torch.float64).flatten() + jitter(63, 0.03)
    heads = {
        "scale": (t64(1.57) + jitter(1, 0.02), t64(0.02)),
        "t": (t64(-0.05, 0.11, 0.0) + jitter(3, 0.005) * t64(1, 1, 0), t64(0.008, 0.02, 0.0005)),
        "exp": (jitter(63, 0.02), full(0.008)),
        "kp": (kp, full(0.01)),
    }
    for name, (centre, spread) in heads.items():
        cal.rules[getattr(detector, f"fc_{name}")] = _head(centre, spread, g)
    for name, degrees_std in ANGLE_HEADS.items():
        cal.rules[getattr(detector, f"fc_{name}")] = _head(jitter(1, 1.5)[0], torch.tensor(degrees_std), g, True)


def transformed_keypoints(out: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """M's raw outputs -> the transformed keypoints x = s * (kp @ R + exp) + (t_x, t_y, 0)."""
    info = motion.kp_info(dict(out))
    rot = motion.rotation_matrix(info["pitch"], info["yaw"], info["roll"])
    return motion.transform_keypoints(info["kp"], rot, info["exp"], info["scale"], info["t"])


# --- one calibration pass per network ------------------------------------------------------------------


def _calibrate_appearance(g: torch.Generator, images: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    net = cast(AppearanceFeatureExtractor, _fresh("appearance_feature_extractor", g))
    cal = Calibrator(net)
    cal.rules[net.second] = rescale(1.0, mean=0.0)
    for block in net.resblocks_3d:
        cal.residual(block, cast(ResBlock3d, block).conv2)
    with cal.attached():
        return net, cast(torch.Tensor, net(images))


def _calibrate_motion(g: torch.Generator, images: torch.Tensor) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    net = cast(MotionExtractor, _fresh("motion_extractor", g))
    cal = Calibrator(net)
    detector = net.detector
    for layer in list(detector.downsample_layers)[1:]:
        cal.rules[cast(nn.Sequential, layer)[1]] = rescale(1.0, mean=0.0)
    for block in detector.stages.modules():
        if isinstance(block, ConvNeXtV2Block):
            cal.rules[block.pwconv1] = rescale(1.0, mean=0.0)
            cal.residual(block, block.pwconv2)
    _head_rules(cal, detector, g)
    with cal.attached():
        return net, net(images)


def _calibrate_warping(g: torch.Generator, f_s: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    net = cast(WarpingModule, _fresh("warping_module", g))
    cal = Calibrator(net)
    dense = net.dense_motion_network
    cal.rules[dense.mask] = rescale(MASK_LOGIT_STD, mean=0.3 * torch.randn(dense.mask.out_channels, generator=g))
    cal.rules[dense.occlusion] = rescale(OCCLUSION_LOGIT[1], mean=OCCLUSION_LOGIT[0])
    cal.rules[net.fourth] = rescale(1.0, mean=0.0)
    with cal.attached():
        return net, net(f_s, kp_driving=x_d, kp_source=x_s)


def _calibrate_generator(g: torch.Generator, feature: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    net = cast(SPADEGenerator, _fresh("spade_generator", g))
    cal = Calibrator(net)
    cal.rules[net.fc] = rescale(1.0, mean=0.0)
    for name, m in net.named_modules():
        if name.endswith("mlp_shared.0"):
            cal.rules[m] = rescale(1.0, mean=0.0)
        elif name.endswith(("mlp_gamma", "mlp_beta")):
            cal.rules[m] = rescale(SPADE_MODULATION_STD, mean=0.0)
        elif isinstance(m, SPADEResBlock):
            cal.residual(m, m.conv_1, shortcut_std=1.0 if m.learned_shortcut else None)
    # Output channel c*4 + k is colour c after PixelShuffle(2): a seeded tint per colour.
    tint = (0.15 * torch.randn(3, generator=g)).repeat_interleave(4) + 0.02 * torch.randn(12, generator=g)
    cal.rules[cast(nn.Sequential, net.conv_img)[0]] = rescale(IMAGE_LOGIT_STD, mean=tint)
    with cal.attached():
        return net, cast(torch.Tensor, net(feature))


def retargeting_features(x: torch.Tensor, name: str, g: torch.Generator, n: int = 96) -> torch.Tensor:
    """Plausible MLP inputs around the keypoints ``x`` (B, 21, 3): jittered keypoints plus eye / lip
    ratios in their usual ranges."""
    pick = torch.randint(0, x.shape[0], (n, 2), generator=g)
    jitter = lambda: 0.02 * torch.randn(n, 63, generator=g)  # noqa: E731
    x_s = x.reshape(-1, 63)[pick[:, 0]] + jitter()
    if name == "stitching":
        return torch.cat([x_s, x.reshape(-1, 63)[pick[:, 1]] + jitter()], 1)
    if name == "lip_retargeting":
        return torch.cat([x_s, 0.5 * torch.rand(n, 2, generator=g)], 1)
    eyes = 0.15 + 0.25 * torch.rand(n, 2, generator=g)
    return torch.cat([x_s, eyes, 0.45 * torch.rand(n, 1, generator=g)], 1)


def _calibrate_mlp(name: str, g: torch.Generator, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    net = _fresh(name, g)
    cal = Calibrator(net)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    for m in linears[:-1]:
        cal.rules[m] = rescale(1.0, mean=0.0)
    cal.rules[linears[-1]] = rescale(RETARGETING_STD, mean=0.0)
    features = retargeting_features(x, name, g)
    with cal.attached():
        return net, cast(torch.Tensor, net(features))


# --- official layout -----------------------------------------------------------------------------------


def spectral_layout(folded: Mapping[str, torch.Tensor], g: torch.Generator) -> dict[str, torch.Tensor]:
    """The generator's folded state -> the official spectral-norm layout whose eval-mode weight
    ``weight_orig / (u . (weight_orig_mat v))`` is the folded weight E: v a seeded unit vector,
    u = E v / |E v|^2, weight_orig = E k with k a power of two near E's top singular value (so that
    scaling by k is exact)."""
    template = build("spade_generator", spectral_norm=True).state_dict()
    out: dict[str, torch.Tensor] = {}
    for key in template:
        if key.endswith(("weight_u", "weight_v")):
            continue
        if not key.endswith("weight_orig"):
            out[key] = folded[key].clone()
            continue
        conv = key[: -len(".weight_orig")]
        e = folded[conv + ".weight"]
        mat = e.reshape(e.shape[0], -1).double()
        v = F.normalize(torch.randn(mat.shape[1], generator=g, dtype=torch.float64), dim=0)
        ev = mat @ v
        k = 2.0 ** round(math.log2(_top_singular_value(mat, v)))
        weight_orig, v32 = (e * k).contiguous(), v.float()
        u = (ev / ev.dot(ev)).float()
        for _ in range(3):  # float32 rounding of sigma: nudge u until sigma is k (or within an ulp)
            sigma = torch.dot(u, torch.mv(weight_orig.reshape(e.shape[0], -1), v32))
            if float(sigma) == k:
                break
            u = u * (k / sigma)
        out[key], out[conv + ".weight_u"], out[conv + ".weight_v"] = weight_orig, u, v32
    return {k: out[k] for k in template}


def _top_singular_value(mat: torch.Tensor, start: torch.Tensor, steps: int = 12) -> float:
    """Power iteration (an SVD of these matrices takes seconds each); only its power of two is used."""
    v = start
    for _ in range(steps):
        v = F.normalize(mat.T @ (mat @ v), dim=0)
    return float((mat @ v).norm())


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def synthesize(seed: int, names: tuple[str, ...] = NETWORK_NAMES, progress: Progress = _silent) -> dict[str, dict[str, torch.Tensor]]:
    """Network name -> state dict in the official layout (that of ``build(name, spectral_norm=True)``)
    for ``names``, calibrating whatever they are calibrated on too (W needs F and M; G needs W; the
    MLPs need M). ``seed`` >= 0."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    unknown = set(names) - set(NETWORK_NAMES)
    if unknown:
        raise KeyError(f"unknown networks {sorted(unknown)}; known: {', '.join(NETWORK_NAMES)}")
    need = set(names)
    if "spade_generator" in need:
        need.add("warping_module")
    if "warping_module" in need:
        need |= {"appearance_feature_extractor", "motion_extractor"}
    if need & set(MLPS):
        need.add("motion_extractor")

    with _one_thread():
        return _synthesize(seed, names, need, progress)


def _synthesize(seed: int, names: tuple[str, ...], need: set[str], progress: Progress) -> dict[str, dict[str, torch.Tensor]]:
    states: dict[str, dict[str, torch.Tensor]] = {}
    images = calibration_images()
    src, drv = (list(ix) for ix in zip(*PAIRS))
    f_s = x = warped = torch.empty(0)

    def done(name: str, net: nn.Module, start: float, summary: str) -> None:
        states[name] = _state(net)
        progress(f"{name:<30} calibrated in {time.perf_counter() - start:5.1f} s  {summary}")

    if "appearance_feature_extractor" in need:
        start = time.perf_counter()
        net, f_s = _calibrate_appearance(network_generator(seed, "appearance_feature_extractor"), images)
        done("appearance_feature_extractor", net, start, f"feature_3d std {float(f_s.std()):.2f}")
    if "motion_extractor" in need:
        start = time.perf_counter()
        net, kp_info = _calibrate_motion(network_generator(seed, "motion_extractor"), torch.cat([images, calibration_images(MOTION_LOOKS)]))
        x = transformed_keypoints(kp_info)  # the first rows are those of ``images``
        angles = torch.stack([motion.headpose_to_degrees(kp_info[k]) for k in ("pitch", "yaw", "roll")])
        scale = kp_info["scale"]
        done("motion_extractor", net, start,
             f"scale {float(scale.min()):.2f}..{float(scale.max()):.2f}, angles within +-{float(angles.abs().max()):.1f} deg")
    if "warping_module" in need:
        start = time.perf_counter()
        net, w_out = _calibrate_warping(network_generator(seed, "warping_module"), f_s[src], x[src], x[drv])
        warped = w_out["out"]
        done("warping_module", net, start, f"occlusion mean {float(w_out['occlusion_map'].mean()):.2f}, out std {float(warped.std()):.2f}")
    if "spade_generator" in need:
        start = time.perf_counter()
        lo = (warped.shape[-1] - GENERATOR_CROP) // 2
        g = network_generator(seed, "spade_generator")
        net, image = _calibrate_generator(g, warped[..., lo : lo + GENERATOR_CROP, lo : lo + GENERATOR_CROP])
        inside = float(((image > 0.05) & (image < 0.95)).float().mean())
        done("spade_generator", net, start, f"image mean {float(image.mean()):.2f}, {inside:.1%} within (0.05, 0.95)")
        states["spade_generator"] = spectral_layout(states["spade_generator"], g)
    for name in MLPS:
        if name in need:
            start = time.perf_counter()
            net, delta = _calibrate_mlp(name, network_generator(seed, name), x)
            done(name, net, start, f"offset std {float(delta.std()):.3f}")
    return {name: states[name] for name in NETWORK_NAMES if name in names}


# --- files ---------------------------------------------------------------------------------------------


def _official_paths(out_dir: Path) -> list[Path]:
    root = out_dir / "liveportrait"
    return [root / f for f in BASE_FILES.values()] + [root / RETARGETING_FILE]


def marker_text(seed: int) -> str:
    return (
        f"SYNTHETIC WEIGHTS (seed {seed}), written by `lpt weights synth`.\n"
        "They are NOT the LivePortrait weights and they ANIMATE NOTHING: seeded random networks in the\n"
        "official checkpoint layout, scaled so activations stay in trained-like ranges on demo portraits.\n"
        "Use them to run and measure the pipeline (export, engines, FP16/INT8 error), never to judge output.\n"
    )


def synthetic_marker(weights_dir: str | Path) -> str | None:
    """The marker's first line when ``weights_dir`` (or the folder above its ``liveportrait/``) holds
    synthetic weights, else None: whatever runs on them must say so."""
    root = Path(weights_dir)
    for folder in (root, root.parent) if root.name == "liveportrait" else (root,):
        if (folder / MARKER).is_file():
            return (folder / MARKER).read_text().splitlines()[0]
    return None


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out} exists and is not a folder")
    ours = (out / MARKER).is_file() or (out / IN_PROGRESS).is_file()
    if not ours and any(p.exists() for p in _official_paths(out)):
        raise CheckpointError(f"{out} already holds checkpoints not written by `lpt weights synth`; refusing to overwrite them")


def save_weights(out_dir: str | Path, seed: int, states: Mapping[str, Mapping[str, torch.Tensor]]) -> Path:
    """Write ``states`` (all seven networks) as the official files under ``out_dir``, plus the marker."""
    out = Path(out_dir)
    _check_target(out)
    for p in _official_paths(out):
        p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out / IN_PROGRESS, f"seed {seed}\n")
    (out / MARKER).unlink(missing_ok=True)  # an older set's marker would vouch for a mixed folder
    save_official_layout(out, states)
    atomic_write(out / MARKER, marker_text(seed))
    (out / IN_PROGRESS).unlink()
    return out


def write_weights(out_dir: str | Path, seed: int, progress: Progress = _silent) -> Path:
    """Synthesise all seven networks for ``seed`` and write them in the official layout."""
    _check_target(Path(out_dir))  # before the synthesis, not after it
    return save_weights(out_dir, seed, synthesize(seed, progress=progress))


def cached_weights(progress: Progress = _silent, seed: int = 0) -> Path:
    """The seeded synthetic set in the user's cache, written once (about half a minute): what every verb
    runs on when no weights are given."""
    folder = cache_dir() / f"synthetic-weights-seed{seed}"
    if not (folder / MARKER).is_file():
        progress(f"no --weights given: writing synthetic weights (seed {seed}) to {folder} once")
        write_weights(folder, seed, progress=lambda line: progress(f"  {line}"))
    return folder
