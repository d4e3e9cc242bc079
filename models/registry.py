"""The seven networks by their official names, where their checkpoints live, and how to build them."""

from __future__ import annotations

from torch import nn

from .appearance_feature_extractor import AppearanceFeatureExtractor
from .motion_extractor import MotionExtractor
from .retargeting import eye_retargeting_mlp, lip_retargeting_mlp, stitching_mlp
from .spade_generator import SPADEGenerator
from .warping_module import WarpingModule

BASE_FILES = {
    "appearance_feature_extractor": "base_models/appearance_feature_extractor.pth",
    "motion_extractor": "base_models/motion_extractor.pth",
    "warping_module": "base_models/warping_module.pth",
    "spade_generator": "base_models/spade_generator.pth",
}
RETARGETING_FILE = "retargeting_models/stitching_retargeting_module.pth"
# Our name -> the sub-dict key inside the stitching file.
RETARGETING_KEYS = {"stitching": "retarget_shoulder", "lip_retargeting": "retarget_mouth", "eye_retargeting": "retarget_eye"}
# Our name -> the name in ../shared/reference/checkpoint_layout.json.
LAYOUT_NAMES = {
    **{name: name for name in BASE_FILES},
    "stitching": "stitching_retargeting_module.stitching",
    "lip_retargeting": "stitching_retargeting_module.lip",
    "eye_retargeting": "stitching_retargeting_module.eye",
}
NETWORK_NAMES: tuple[str, ...] = (*BASE_FILES, "stitching", "eye_retargeting", "lip_retargeting")


def build(name: str, spectral_norm: bool = True) -> nn.Module:
    """A freshly initialised network. ``spectral_norm`` only matters for the generator: True gives the
    official checkpoint layout, False the folded inference form."""
    if name == "appearance_feature_extractor":
        return AppearanceFeatureExtractor()
    if name == "motion_extractor":
        return MotionExtractor()
    if name == "warping_module":
        return WarpingModule()
    if name == "spade_generator":
        return SPADEGenerator(spectral_norm=spectral_norm)
    if name == "stitching":
        return stitching_mlp()
    if name == "eye_retargeting":
        return eye_retargeting_mlp()
    if name == "lip_retargeting":
        return lip_retargeting_mlp()
    raise KeyError(f"unknown network {name!r}; known: {', '.join(NETWORK_NAMES)}")
