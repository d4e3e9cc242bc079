"""One declaration per exported graph: tensors, batch profile, opset and accuracy tolerances.

Names and shapes of the official networks are those of the official code
(../shared/reference/io_signatures.json); derived outputs that lpt adds (head-pose degrees) have names
of their own, after the official ones. Export, parity, calibration, engines and the runtime all read
these declarations; nothing else spells a tensor name or a tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# What the driving motion moves (``lpt-run --region``; the official ``animation_region``).
REGIONS: tuple[str, ...] = ("all", "pose", "exp", "lip", "eyes")

ValueRange = tuple[float, float]  # (low, high), both included

# The natural value ranges of the graph inputs, what seeded random feeds draw from (section numbers are those of
# ../shared/reference/liveportrait-spec.md). Images: RGB uint8 / 255 (§2.1). Keypoints: the transformed x_s, x_d
# live in the normalised cube [-1, 1] (§2.2) and gather on the face, which the official crop (scale 2.3, vy
# -0.125) keeps within about +-0.45 of the centre; the measured motion adds to that (t up to 0.23, s * |exp| up
# to 0.14, §3.2). No keypoint was measured (the shipped templates hold none): +-0.8 holds the face and its
# motion and stays inside the grid. Ratios: §6.4 saw eye ratios up to 0.57 and lip ratios up to 0.67; these are
# the ranges the calibration set is drawn from (widening the eye range changes that set and its INT8 figures).
IMAGE_RANGE: ValueRange = (0.0, 1.0)
KEYPOINT_RANGE: ValueRange = (-0.8, 0.8)
EYE_RATIO_RANGE: ValueRange = (0.0, 0.5)  # source left eye, source right eye, target eye
LIP_RATIO_RANGE: ValueRange = (0.0, 0.8)  # source lip, target lip


@dataclass(frozen=True)
class Segment:
    """A run of ``size`` elements along the last axis of a concatenated input, with its own value range;
    named after the tensor it carries where there is one (``kp_source``, ``kp_driving``)."""

    name: str
    size: int
    value_range: ValueRange


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # at batch 1; axis 0 is the batch axis
    dtype: str = "float32"
    official: bool = True  # False for outputs lpt derives (the official forward does not return them)
    image: bool = False  # an RGB image in [0, 1], (B, 3, H, W): judged by PSNR, decoded as a frame
    # The natural range of every element; None where there is none (feature maps: unbounded, drawn N(0, 1)).
    value_range: ValueRange | None = None
    segments: tuple[Segment, ...] = ()  # concatenated inputs: the parts along the last axis, in order


@dataclass(frozen=True)
class Tolerance:
    """Elementwise ``|ours - reference| <= atol + rtol * |reference|``, as Polygraphy's compare."""

    atol: float
    rtol: float


@dataclass(frozen=True)
class Int8Exclusions:
    """What the INT8 quantizers leave in high precision: op types; node-name regexes (re.match); nodes whose
    weights' names match a regex (re.search; they are the PyTorch parameter paths); op types whose nodes and
    everything downstream of them stay; and op types whose producers stay (the heads feeding a softmax or
    sigmoid). All but node names survive renamed exporter nodes."""

    op_types: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    from_op_types: tuple[str, ...] = ()
    into_op_types: tuple[str, ...] = ()
    why: str = ""


@dataclass(frozen=True)
class Int8Threshold:
    """What an INT8 graph must reach against its FP32 graph on held-out calibration samples (ONNX Runtime CPU).

    ``min_snr_db`` holds for every output: 10 log10(sum ref^2 / sum (int8 - ref)^2), scale-free (lpt.metrics).
    Image outputs (``TensorSpec.image``) must also reach ``min_psnr_db``; ``max_abs`` bounds named outputs whose
    units matter (head-pose degrees)."""

    min_snr_db: float = 20.0
    min_psnr_db: float | None = None
    min_ssim: float | None = None
    max_abs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphSpec:
    name: str
    networks: tuple[str, ...]  # the lpt.models networks the graph is made of, in call order
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch: tuple[int, int, int] = (1, 1, 4)  # min / opt / max of the dynamic batch axis
    opset: int = 20  # 5-D GridSample needs 20
    # Per output; "" is the default for outputs not named. FP32 graphs against PyTorch FP32.
    fp32_tolerance: dict[str, Tolerance] = field(default_factory=lambda: {"": Tolerance(1e-4, 1e-3)})
    # FP16 graphs (I/O kept FP32) against PyTorch FP32.
    fp16_tolerance: dict[str, Tolerance] = field(default_factory=lambda: {"": Tolerance(5e-2, 5e-2)})
    # INT8 (`lpt quantize`): kept high precision (measured, see the README), and the accuracy to reach.
    int8_exclude: Int8Exclusions = field(default_factory=Int8Exclusions)
    int8_threshold: Int8Threshold = field(default_factory=Int8Threshold)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    @property
    def samples(self) -> bool:
        """Whether the graph holds the warping module's 5-D grid sampling (native and gather files)."""
        return "warping_module" in self.networks

    @property
    def official_outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(t for t in self.outputs if t.official)

    @property
    def image_outputs(self) -> tuple[str, ...]:
        """The outputs that are RGB frames in [0, 1] (PSNR is reported for them)."""
        return tuple(t.name for t in self.outputs if t.image)

    def is_image(self, output: str) -> bool:
        return output in self.image_outputs

    def tensor(self, name: str) -> TensorSpec:
        """The input or output called ``name``."""
        for t in (*self.inputs, *self.outputs):
            if t.name == name:
                return t
        raise KeyError(f"{self.name} has no tensor {name!r}")

    def shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        return {t.name: (batch, *t.shape[1:]) for t in (*self.inputs, *self.outputs)}

    def tolerance(self, output: str, precision: str) -> Tolerance:
        table = self.fp16_tolerance if precision == "fp16" else self.fp32_tolerance
        return table.get(output, table[""])


def _t(name: str, *shape: int, official: bool = True, value_range: ValueRange | None = None) -> TensorSpec:
    return TensorSpec(name, (1, *shape), official=official, value_range=value_range)


def _image(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, (1, *shape), image=True, value_range=IMAGE_RANGE)


def _concat(name: str, *segments: Segment) -> TensorSpec:
    """A flat input made of ``segments``; its value range is the span of theirs."""
    low, high = min(s.value_range[0] for s in segments), max(s.value_range[1] for s in segments)
    return TensorSpec(name, (1, sum(s.size for s in segments)), value_range=(low, high), segments=segments)


KP = (21, 3)
KP_SOURCE, KP_DRIVING = (Segment(n, 63, KEYPOINT_RANGE) for n in ("kp_source", "kp_driving"))
# The MLP inputs as the official wrapper concatenates them (flattened keypoints first).
FEAT_STITCHING = _concat("feat_stitching", KP_SOURCE, KP_DRIVING)
FEAT_EYE = _concat("feat_eye", KP_SOURCE, Segment("eye_ratios", 3, EYE_RATIO_RANGE))
FEAT_LIP = _concat("feat_lip", KP_SOURCE, Segment("lip_ratios", 2, LIP_RATIO_RANGE))
MOTION_OUTPUTS = (_t("pitch", 66), _t("yaw", 66), _t("roll", 66), _t("t", 3), _t("exp", 63), _t("scale", 1), _t("kp", 63))
HEAD_POSE_DEGREES = tuple(_t(f"{angle}_deg", 1, official=False) for angle in ("pitch", "yaw", "roll"))
WARP_INPUTS = (_t("feature_3d", 32, 16, 64, 64), _t("kp_driving", *KP, value_range=KEYPOINT_RANGE),
               _t("kp_source", *KP, value_range=KEYPOINT_RANGE))

# INT8 exclusions, measured with `lpt quantize` (synthetic weights seed 0, held-out samples, ORT CPU; the
# README lists the numbers). Neither quantizer touches the grid arithmetic, the samplers or the head-pose softmax
# (ModelOpt quantizes Conv and the Add/Mul/norm inputs of its fusible patterns, skips GEMV-shaped Gemm; ORT's
# flavour quantizes Conv/MatMul/Gemm): excluding them changed nothing, so they are not listed.
WARP_INT8_EXCLUDE = Int8Exclusions(into_op_types=("Softmax", "Sigmoid"), why=(
    "the convolution heads of the motion-mask softmax and the occlusion sigmoid: out SNR +0.2 dB, occlusion_map "
    "+0.3-0.5 dB in both flavours"))
GENERATOR_INT8_EXCLUDE = Int8Exclusions(
    op_types=("InstanceNormalization", "Mul", "Add"), into_op_types=("InstanceNormalization", "DepthToSpace"), why=(
        "the convolutions feeding an instance norm (their per-tensor quantization noise is renormalised, i.e. "
        "amplified): ORT frame PSNR 25.2 -> 28.1 dB and 2.1x faster than FP32; ModelOpt's Q/DQ on the norms' "
        "inputs, the SPADE modulation Mul/Add: 22.2 -> 25.3 dB; the output convolution: +0.2 dB"))

# INT8 thresholds sit 1.5-2 dB under what was measured (synthetic weights seed 0, README): regression guards that
# catch a broken graph or calibration; they say nothing about the real weights, which need measuring anew.
MLP_INT8_THRESHOLD = Int8Threshold(min_snr_db=27.0)

SPECS: dict[str, GraphSpec] = {
    s.name: s
    for s in (
        GraphSpec(
            "appearance_feature_extractor",
            ("appearance_feature_extractor",),
            (_image("source_image", 3, 256, 256),),
            (_t("feature_3d", 32, 16, 64, 64),),
            batch=(1, 1, 2),
            int8_exclude=Int8Exclusions(op_types=("Add", "BatchNormalization"), params=(r"\.(first|second)\.",), why=(
                "the residual stream's Adds and BatchNorms (ModelOpt feature_3d SNR 16.1 -> 19.0 dB; ORT quantizes "
                "neither) and the convolutions in and out of the 2-D stem, first (the image) and second (it starts "
                "the 3-D residual stream): ModelOpt 19.4 -> 21.5 dB, ORT 18.7 -> 22.4 dB, where F is the chain's "
                "weakest link (INT8 F alone: frame PSNR 22.6 dB)")),
            int8_threshold=Int8Threshold(min_snr_db=19.5),
        ),
        GraphSpec(
            "motion_extractor",
            ("motion_extractor",),
            (_image("image", 3, 256, 256),),
            MOTION_OUTPUTS + HEAD_POSE_DEGREES,
            batch=(1, 1, 8),
            # exp, the small expression offsets, is the noisiest output; the degrees are judged in degrees
            int8_threshold=Int8Threshold(min_snr_db=12.0, max_abs={f"{a}_deg": 2.5 for a in ("pitch", "yaw", "roll")}),
        ),
        GraphSpec(
            "warping_module",
            ("warping_module",),
            WARP_INPUTS,
            (_t("occlusion_map", 1, 64, 64), _t("deformation", 16, 64, 64, 3), _t("out", 256, 64, 64)),
            int8_exclude=WARP_INT8_EXCLUDE,
            int8_threshold=Int8Threshold(min_snr_db=20.5),
        ),
        GraphSpec("spade_generator", ("spade_generator",), (_t("feature", 256, 64, 64),), (_image("out", 3, 512, 512),),
                  int8_exclude=GENERATOR_INT8_EXCLUDE, int8_threshold=Int8Threshold(min_snr_db=19.5, min_psnr_db=25.0)),
        GraphSpec("stitching", ("stitching",), (FEAT_STITCHING,), (_t("delta", 65),), batch=(1, 1, 8),
                  int8_threshold=MLP_INT8_THRESHOLD),
        GraphSpec("eye_retargeting", ("eye_retargeting",), (FEAT_EYE,), (_t("delta", 63),), batch=(1, 1, 8),
                  int8_threshold=MLP_INT8_THRESHOLD),
        GraphSpec("lip_retargeting", ("lip_retargeting",), (FEAT_LIP,), (_t("delta", 63),), batch=(1, 1, 8),
                  int8_threshold=MLP_INT8_THRESHOLD),
        # Optional: W and G in one graph, so the warped feature never leaves the engine.
        GraphSpec("warp_decode", ("warping_module", "spade_generator"), WARP_INPUTS, (_image("out", 3, 512, 512),),
                  int8_exclude=Int8Exclusions(
                      op_types=GENERATOR_INT8_EXCLUDE.op_types,
                      into_op_types=(*WARP_INT8_EXCLUDE.into_op_types, *GENERATOR_INT8_EXCLUDE.into_op_types),
                      why="those of warping_module and spade_generator, inside the fused graph"),
                  int8_threshold=Int8Threshold(min_snr_db=17.5, min_psnr_db=23.0)),
    )
}
# The final 512x512 frame of F -> W -> G run with INT8 graphs, against the FP32 chain (lpt quantize).
INT8_FRAME_THRESHOLD = Int8Threshold(min_psnr_db=20.5, min_ssim=0.85)
NETWORK_GRAPHS = tuple(name for name in SPECS if name != "warp_decode")  # one graph per network
