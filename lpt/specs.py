"""One declaration per exported graph: tensors, batch profile, opset and accuracy tolerances.

Names and shapes of the official networks are those of the official code
(../shared/reference/io_signatures.json); derived outputs that lpt adds (head-pose degrees) have names
of their own, after the official ones. Export, parity, calibration, engines and the runtime all read
these declarations; nothing else spells a tensor name or a tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # at batch 1; axis 0 is the batch axis
    dtype: str = "float32"
    official: bool = True  # False for outputs lpt derives (the official forward does not return them)


@dataclass(frozen=True)
class Tolerance:
    """Elementwise ``|ours - reference| <= atol + rtol * |reference|``, as Polygraphy's compare."""

    atol: float
    rtol: float


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

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    @property
    def official_outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(t for t in self.outputs if t.official)

    def shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        return {t.name: (batch, *t.shape[1:]) for t in (*self.inputs, *self.outputs)}

    def tolerance(self, output: str, precision: str) -> Tolerance:
        table = self.fp16_tolerance if precision == "fp16" else self.fp32_tolerance
        return table.get(output, table[""])


def _t(name: str, *shape: int, official: bool = True) -> TensorSpec:
    return TensorSpec(name, (1, *shape), official=official)


KP = (21, 3)
MOTION_OUTPUTS = (_t("pitch", 66), _t("yaw", 66), _t("roll", 66), _t("t", 3), _t("exp", 63), _t("scale", 1), _t("kp", 63))
HEAD_POSE_DEGREES = tuple(_t(f"{angle}_deg", 1, official=False) for angle in ("pitch", "yaw", "roll"))
WARP_INPUTS = (_t("feature_3d", 32, 16, 64, 64), _t("kp_driving", *KP), _t("kp_source", *KP))

SPECS: dict[str, GraphSpec] = {
    s.name: s
    for s in (
        GraphSpec(
            "appearance_feature_extractor",
            ("appearance_feature_extractor",),
            (_t("source_image", 3, 256, 256),),
            (_t("feature_3d", 32, 16, 64, 64),),
            batch=(1, 1, 2),
        ),
        GraphSpec(
            "motion_extractor",
            ("motion_extractor",),
            (_t("image", 3, 256, 256),),
            MOTION_OUTPUTS + HEAD_POSE_DEGREES,
            batch=(1, 1, 8),
        ),
        GraphSpec(
            "warping_module",
            ("warping_module",),
            WARP_INPUTS,
            (_t("occlusion_map", 1, 64, 64), _t("deformation", 16, 64, 64, 3), _t("out", 256, 64, 64)),
        ),
        GraphSpec("spade_generator", ("spade_generator",), (_t("feature", 256, 64, 64),), (_t("out", 3, 512, 512),)),
        GraphSpec("stitching", ("stitching",), (_t("feat_stitching", 126),), (_t("delta", 65),), batch=(1, 1, 8)),
        GraphSpec("eye_retargeting", ("eye_retargeting",), (_t("feat_eye", 66),), (_t("delta", 63),), batch=(1, 1, 8)),
        GraphSpec("lip_retargeting", ("lip_retargeting",), (_t("feat_lip", 65),), (_t("delta", 63),), batch=(1, 1, 8)),
        # Optional: W and G in one graph, so the warped feature never leaves the engine.
        GraphSpec("warp_decode", ("warping_module", "spade_generator"), WARP_INPUTS, (_t("out", 3, 512, 512),)),
    )
}
NETWORK_GRAPHS = tuple(name for name in SPECS if name != "warp_decode")  # one graph per network
