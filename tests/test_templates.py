"""Motion templates: the official pickle read safely, animal templates refused, lpt's formats round-trip."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from lpt.runtime.templates import (
    FRAME_SHAPES,
    MotionTemplate,
    TemplateError,
    load_template,
    save_template,
)

from lpt.cli import main
from tests.conftest import shared_file


def official_template(n_frames: int = 3, *, old_keys: bool = False, seed: int = 0) -> dict[str, Any]:
    """A template dict as the official ``make_motion_template`` writes it (or the older d*.pkl spelling)."""
    rng = np.random.default_rng(seed)
    motion = []
    for _ in range(n_frames):
        frame = {k: rng.normal(size=shape).astype(np.float32) for k, shape in FRAME_SHAPES.items()}
        if old_keys:
            frame["R_d"] = frame.pop("R")
            del frame["kp"], frame["x_s"]
        motion.append(frame)
    eyes, lips = ("c_d_eyes_lst", "c_d_lip_lst") if old_keys else ("c_eyes_lst", "c_lip_lst")
    return {"n_frames": n_frames, "output_fps": 25, "motion": motion,
            eyes: [rng.random((1, 2)).astype(np.float32) for _ in range(n_frames)],
            lips: [rng.random((1, 1)).astype(np.float32) for _ in range(n_frames)]}


def write_pickle(path: Path, content: Any, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    return path


def assert_same(a: MotionTemplate, b: MotionTemplate) -> None:
    assert a.fps == b.fps and a.n_frames == b.n_frames
    for fa, fb in zip(a.frames, b.frames, strict=True):
        assert fa.arrays().keys() == fb.arrays().keys()
        for key, value in fa.arrays().items():
            np.testing.assert_array_equal(value, fb.arrays()[key])
    for ra, rb in ((a.eye_ratios, b.eye_ratios), (a.lip_ratios, b.lip_ratios)):
        assert (ra is None) == (rb is None)
        if ra is not None and rb is not None:
            np.testing.assert_array_equal(np.stack(ra), np.stack(rb))


def test_shipped_human_template_loads_with_its_old_key_names() -> None:
    path = shared_file("assets/driving/d1.pkl")
    with open(path, "rb") as f:
        raw = pickle.load(f)  # the trusted sample, as the official code reads it
    template = load_template(path)
    assert template.n_frames == raw["n_frames"] == 16 and template.fps == raw["output_fps"]
    first = template.frames[0]
    assert first.R.dtype == np.float32 and first.R.shape == (1, 3, 3) and first.kp is None
    np.testing.assert_array_equal(first.R, raw["motion"][0]["R_d"])
    np.testing.assert_array_equal(template.frames[-1].exp, raw["motion"][-1]["exp"])
    np.testing.assert_array_equal(template.eye_ratios[5], raw["c_d_eyes_lst"][5])
    np.testing.assert_array_equal(template.lip_ratios[5], raw["c_d_lip_lst"][5])


def test_animal_template_is_refused_by_the_human_pipeline() -> None:
    path = shared_file("assets/driving/wink.pkl")
    with pytest.raises(TemplateError) as error:
        load_template(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "animal" in message and "eye and lip ratio" in message and "human pipeline" in message
    assert load_template(path, require_ratios=False).eye_ratios is None


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_pickles_of_every_protocol_load(tmp_path: Path, protocol: int) -> None:
    content = official_template()
    template = load_template(write_pickle(tmp_path / "t.pkl", content, protocol))
    np.testing.assert_array_equal(template.frames[2].x_s, content["motion"][2]["x_s"])
    assert template.fps == 25


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return os.system, (self.command,)


@pytest.mark.skipif(sys.platform == "win32", reason="the payload is a POSIX shell command")
def test_pickle_that_would_run_a_command_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    content = official_template()
    content["motion"][1]["exp"] = _RunsCommand(f"touch {marker}")
    path = write_pickle(tmp_path / "evil.pkl", content)
    with pytest.raises(TemplateError) as error:
        load_template(path)
    message = str(error.value)
    assert f"`{os.system.__module__}.system`" in message and "nothing in it was run" in message and "\n" not in message
    assert not marker.exists()
    # The payload is live: plain pickle, in a separate process, does run it.
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(path)!r}, 'rb'))"], check=True)
    assert marker.exists()


@pytest.mark.parametrize(("module", "name"), [("builtins", "eval"), ("numpy", "load"), ("subprocess", "Popen"),
                                              ("numpy.testing", "assert_equal"), ("_codecs", "decode")])
def test_every_global_outside_the_allow_list_is_named_and_refused(tmp_path: Path, module: str, name: str) -> None:
    payload = b"\x80\x04" + f"c{module}\n{name}\n".encode() + b"(S'1'\ntR."
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(TemplateError, match=f"`{module}.{name}`"):
        load_template(path)


def test_latin1_is_the_only_codec_protocol_2_may_ask_for(tmp_path: Path) -> None:
    path = tmp_path / "codec.pkl"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf_7\x86R.")
    with pytest.raises(TemplateError, match="only to turn latin1 text into bytes"):
        load_template(path)


def _mutated(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    content = official_template()
    change(content)
    return content


@pytest.mark.parametrize(("content", "expected"), [
    (_mutated(lambda c: c["motion"][1].pop("t")), "motion[1]: lacks t"),
    (_mutated(lambda c: c["motion"][2].update(exp=np.zeros((1, 20, 3), np.float32))),
     "motion[2] exp: must have shape (1, 21, 3), found (1, 20, 3)"),
    (_mutated(lambda c: c["motion"][0].update(scale=np.array([[np.nan]], np.float32))), "NaN"),
    (_mutated(lambda c: c["motion"][0].update(R="not an array")), "motion[0] R: must be an array of numbers"),
    (_mutated(lambda c: c.update(n_frames=5)), "n_frames is 5 but motion has 3 frames"),
    (_mutated(lambda c: c["c_lip_lst"].pop()), "lip ratios: has 2 entries for 3 frames"),
    (_mutated(lambda c: c.pop("c_lip_lst")), "has eye ratios but no lip ratios"),
    (_mutated(lambda c: c.update(output_fps=-3)), "output_fps must be above 0"),
    (_mutated(lambda c: c.update(motion={"a": 1})), "motion must be a list"),
    ([1, 2, 3], "must hold a dict, found list"),
])
def test_malformed_templates_name_what_is_wrong(tmp_path: Path, content: Any, expected: str) -> None:
    path = write_pickle(tmp_path / "bad.pkl", content)
    with pytest.raises(TemplateError) as error:
        load_template(path)
    assert expected in str(error.value) and str(path) in str(error.value)


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "t.pkl").write_bytes(pickle.dumps(official_template())[:200])
    (tmp_path / "t.npz").write_bytes(b"PK\x03\x04 not a zip")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    (tmp_path / "t.json").write_text('{"format": "something else"}')
    (tmp_path / "t.yaml").write_text("n_frames: 1")
    cases = {"t.pkl": "not a readable pickle", "t.npz": "not a readable .npz", "other.npz": "not an lpt motion template",
             "t.json": "not an lpt motion template", "t.yaml": "unknown format", "none.pkl": "does not exist"}
    for name, expected in cases.items():
        with pytest.raises(TemplateError, match=expected):
            load_template(tmp_path / name)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_safe_formats_round_trip_exactly(tmp_path: Path, suffix: str) -> None:
    original = load_template(write_pickle(tmp_path / "t.pkl", official_template(4, seed=3)))
    assert_same(original, load_template(save_template(tmp_path / f"t{suffix}", original)))
    built = MotionTemplate.from_motion([f.arrays() for f in original.frames], Fraction(30000, 1001))
    reloaded = load_template(save_template(tmp_path / f"animal{suffix}", built), require_ratios=False)
    assert_same(built, reloaded)
    assert reloaded.fps == Fraction(30000, 1001) and reloaded.eye_ratios is None
    with pytest.raises(TemplateError, match="animal-style"):
        load_template(tmp_path / f"animal{suffix}")


def test_cli_exports_and_refuses(tmp_path: Path) -> None:
    runner = CliRunner()
    source = shared_file("assets/driving/d1.pkl")
    for suffix in (".npz", ".json"):
        out = tmp_path / f"d1{suffix}"
        result = runner.invoke(main, ["template", "export", str(source), str(out)])
        assert result.exit_code == 0, result.output
        assert_same(load_template(source), load_template(out))
    info = runner.invoke(main, ["template", "info", str(tmp_path / "d1.json")])
    assert info.exit_code == 0 and "16" in info.output and "human" in info.output
    evil = official_template()
    evil["motion"][0]["t"] = _RunsCommand("true")
    write_pickle(tmp_path / "evil.pkl", evil)
    result = runner.invoke(main, ["template", "export", str(tmp_path / "evil.pkl"), str(tmp_path / "evil.npz")])
    assert result.exit_code == 2 and not (tmp_path / "evil.npz").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lpt: error: template") and ".system`" in lines[0]


@pytest.mark.parametrize(("fps", "expected"), [([10**400, 1], "at most 1000"), ([30, 0], "must be a number"),
                                               ("30", "must be a number"), ([-30000, 1001], "above 0")])
def test_json_fps_is_checked(tmp_path: Path, fps: Any, expected: str) -> None:
    template = MotionTemplate.from_motion([f.arrays() for f in load_template(
        write_pickle(tmp_path / "t.pkl", official_template(1))).frames], 25)
    path = save_template(tmp_path / "t.json", template)
    document = path.read_text().replace('"fps":[25,1]', f'"fps":{json.dumps(fps)}')
    path.write_text(document)
    with pytest.raises(TemplateError, match=expected):
        load_template(path, require_ratios=False)
