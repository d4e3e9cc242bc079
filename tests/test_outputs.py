"""What every pair of inputs can make (issue 14, item 3): the whole matrix of source kind, driving kind and
output kind, decided before any work, with one line saying what is possible instead."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from lpt.runtime.outputs import check_kinds, default_output, plan_output

from lpt.errors import LptError

SOURCES = ("image", "video")
DRIVINGS = ("image", "video", "template")
OUTPUTS = {"image": ("out.png", "out.jpg", "out.jpeg"), "video": ("out.mp4", "out.m4v", "out.mov")}


@pytest.mark.usage("3", "the whole matrix of source, driving and output kinds (36 cases), checked before any work")
def test_every_combination_is_allowed_or_refused_in_one_line() -> None:
    for source, driving in itertools.product(SOURCES, DRIVINGS):
        for kind, names in OUTPUTS.items():
            for output in names:
                if kind == "video" or (source == "image" and driving == "image"):
                    check_kinds(source, driving, Path(output))  # type: ignore[arg-type]
                    continue
                with pytest.raises(LptError) as refused:
                    check_kinds(source, driving, Path(output))  # type: ignore[arg-type]
                line = str(refused.value)
                article = "an" if driving == "image" else "a"
                assert "\n" not in line and output in line and f"driven by {article} {driving}" in line, line
                assert "out.mp4" in line, line  # what to ask for instead


def test_the_default_output_is_a_video_in_a_folder_made_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source, driving = tmp_path / "face.jpg", tmp_path / "smile.jpg"
    source.write_bytes(b"x")
    driving.write_bytes(b"y")
    assert default_output(source, driving) == Path("animations/face--smile.mp4")
    assert plan_output(None, source, driving, "image", "image", overwrite=False) == Path("animations/face--smile.mp4")
    assert (tmp_path / "animations").is_dir()
    with pytest.raises(LptError, match="does not exist"):  # a folder the user names is never made
        plan_output(tmp_path / "named" / "out.mp4", source, driving, "image", "image", overwrite=False)
