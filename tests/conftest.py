from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lpt.models.checkpoint import save_official_layout
from lpt.models.registry import build

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_file(relative: str) -> Path:
    """A file of ../shared/ beside the checkout; the test skips when that folder is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} not found: the shared reference/assets folder is not beside this checkout")
    return path


@pytest.fixture(scope="session")
def small_networks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Default-initialised appearance extractor and the three MLPs: the cheap files, for loader tests."""
    torch.manual_seed(0)
    names = ("appearance_feature_extractor", "stitching", "eye_retargeting", "lip_retargeting")
    return save_official_layout(tmp_path_factory.mktemp("weights"), {n: build(n).state_dict() for n in names})
