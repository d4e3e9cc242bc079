"""Bounded fuzzing: mutated templates and videos give our one-line error or a valid result, never anything else.

Examples are derandomized so CI is repeatable; ``LPT_FUZZ_EXAMPLES=5000`` runs a longer campaign locally.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lpt.runtime.media import MediaError
from lpt.runtime.templates import (
    MotionTemplate,
    TemplateError,
    load_template,
    save_template,
)
from lpt.runtime.video import VideoReader

from tests.test_templates import official_template
from tests.test_video import make_video

EXAMPLES = int(os.environ.get("LPT_FUZZ_EXAMPLES", "0"))


def fuzz(default_examples: int) -> settings:
    return settings(max_examples=EXAMPLES or default_examples, deadline=None, database=None,
                    derandomize=EXAMPLES == 0, suppress_health_check=[HealthCheck.function_scoped_fixture])


# A few byte edits anywhere, optionally a cut or an inserted run: what corrupt downloads and hostile files do.
edits = st.tuples(
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6),
    st.one_of(st.none(), st.floats(0, 1)),
    st.one_of(st.none(), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=16))),
)


Edit = tuple[list[tuple[float, int]], float | None, tuple[float, bytes] | None]


def mutate(base: bytes, edit: Edit) -> bytes:
    changes, cut, insert = edit
    data = bytearray(base)
    for where, value in changes:
        data[int(where * len(data))] = value
    if insert is not None:
        at = int(insert[0] * len(data))
        data[at:at] = insert[1]
    if cut is not None:
        del data[max(1, int(cut * len(data))):]
    return bytes(data)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A folder with the valid files that get mutated: base.pkl, base.npz, base.mp4."""
    with tempfile.TemporaryDirectory(prefix="lpt-fuzz-") as folder:
        path = Path(folder)
        (path / "base.pkl").write_bytes(pickle.dumps(official_template(2), protocol=4))
        save_template(path / "base.npz", load_template(path / "base.pkl"))
        make_video(path / "base.mp4", 6, 32, 32)
        yield path


def _load_or_refuse(path: Path) -> None:
    try:
        template = load_template(path)
    except TemplateError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(template, MotionTemplate) and template.n_frames == len(template.frames) >= 1
    assert all(f.exp.shape == (1, 21, 3) and f.exp.dtype == np.float32 for f in template.frames)


def _mutated(workdir: Path, suffix: str, edit: Edit) -> Path:
    """``base.<suffix>`` with ``edit`` applied, written as ``fuzz.<suffix>``."""
    path = workdir / f"fuzz.{suffix}"
    path.write_bytes(mutate((workdir / f"base.{suffix}").read_bytes(), edit))
    return path


@fuzz(400)
@given(edit=edits)
def test_template_pickle_loader(workdir: Path, edit: Edit) -> None:
    path = _mutated(workdir, "pkl", edit)
    _load_or_refuse(path)


@fuzz(200)
@given(edit=edits)
def test_template_npz_loader(workdir: Path, edit: Edit) -> None:
    path = _mutated(workdir, "npz", edit)
    _load_or_refuse(path)


@fuzz(200)
@given(edit=edits)
def test_video_reader(workdir: Path, edit: Edit) -> None:
    path = _mutated(workdir, "mp4", edit)
    try:
        with VideoReader(path, max_frames=50) as reader:
            frames = list(reader)
    except MediaError as exc:
        assert "\n" not in str(exc)
        return
    assert 1 <= len(frames) <= 50
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
