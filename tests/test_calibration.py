"""Calibration sets (lpt.calibration): built from a tiny set of demo portraits and one short clip, with
default-initialised networks; determinism, held-out separation, the readers, and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from lpt.calibration.build import build_calibration
from lpt.calibration.dataset import CalibrationSet, polygraphy_data_loader
from lpt.calibration.polygraphy_loader import load_data
from lpt.calibration.sampling import CALIBRATION, HELD_OUT, CalibrationError, find_inputs, plan_samples
from lpt.models.checkpoint import save_official_layout
from lpt.models.registry import build

from lpt.cli import main
from lpt.demo import draw_portrait
from lpt.specs import SPECS

GRAPHS = ("appearance_feature_extractor", "stitching", "eye_retargeting", "lip_retargeting")
NETWORKS = ("appearance_feature_extractor", "motion_extractor", "stitching", "eye_retargeting", "lip_retargeting")
CLIP_FRAMES = 10


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """images/: two portraits; videos/: a 10-frame clip, a driving still and a template file to ignore."""
    root = tmp_path_factory.mktemp("assets")
    images, videos = root / "images", root / "videos"
    images.mkdir()
    videos.mkdir()
    _write_rgb(images / "a.jpg", draw_portrait(seed=11, size=256))
    _write_rgb(images / "b.jpg", draw_portrait(seed=12, size=256, yaw=-12.0))
    _write_rgb(videos / "still.jpg", draw_portrait(seed=14, size=256, mouth_open=0.4))
    (videos / "template.pkl").write_bytes(b"not a picture")
    writer = cv2.VideoWriter(str(videos / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (256, 256))
    for i in range(CLIP_FRAMES):
        frame = draw_portrait(seed=13, size=256, yaw=-20.0 + 4 * i, mouth_open=i / CLIP_FRAMES, eye_open=1 - i / 20)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return images, videos


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_official_layout(tmp_path_factory.mktemp("calib_weights"), {n: build(n).state_dict() for n in NETWORKS})


@pytest.fixture(scope="session")
def tiny_calib(tiny_assets: tuple[Path, Path], tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 calibration + 2 held-out samples for F and the three MLPs, 3 samples per shard."""
    out = tmp_path_factory.mktemp("calib")
    build_calibration(tiny_weights, *tiny_assets, out, samples=4, held_out=2, seed=0, graphs=GRAPHS, shard_samples=3,
                      progress=lambda _: None)
    return out


def _pictures(sample: dict) -> set[tuple[str, int | None]]:
    return {(sample[k]["file"], sample[k]["frame"]) for k in ("source", "driving")}


def test_plan_is_seeded_and_keeps_held_out_apart(tiny_assets: tuple[Path, Path]) -> None:
    inputs = find_inputs(*tiny_assets)
    assert sorted(Path(p).name for p in inputs.images) == ["a.jpg", "b.jpg", "still.jpg"]
    assert [Path(v).name for v in inputs.videos] == ["clip.mp4"]
    plan = plan_samples(inputs, 4, 2, seed=3)
    assert plan == plan_samples(inputs, 4, 2, seed=3)
    assert [s.driving for s in plan] != [s.driving for s in plan_samples(inputs, 4, 2, seed=4)]
    calibration = {p for s in plan if s.split == CALIBRATION for p in (s.source, s.driving)}
    held = {p for s in plan if s.split == HELD_OUT for p in (s.source, s.driving)}
    assert len([s for s in plan if s.split == HELD_OUT]) == 2 and not calibration & held
    drivers = [s.driving for s in plan]
    assert len(set(drivers)) == len(drivers) and all(d.frame for d in drivers)  # frame 0 is only the reference
    assert all(s.reference.frame == 0 and s.reference.file == s.driving.file for s in plan)
    with pytest.raises(CalibrationError, match="distinct driving frames"):
        plan_samples(inputs, CLIP_FRAMES, 1, seed=0)  # the clip has CLIP_FRAMES - 1 frames besides the first


def test_build_is_deterministic(tiny_assets: tuple[Path, Path], tiny_weights: Path, tiny_calib: Path,
                                tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_calibration(tiny_weights, *tiny_assets, again, samples=4, held_out=2, seed=0, graphs=GRAPHS,
                      shard_samples=3, progress=lambda _: None)
    first, second = (json.loads((d / "manifest.json").read_text()) for d in (tiny_calib, again))
    assert [s["sha256"] for s in first["shards"]] == [s["sha256"] for s in second["shards"]]
    assert len(first["shards"]) == 2 + 1  # 4 calibration samples in shards of 3, 2 held out in one
    for shard in first["shards"]:
        assert (tiny_calib / shard["file"]).read_bytes() == (again / shard["file"]).read_bytes()
    assert first["recipe"]["weights"]["synthetic"] is None
    assert set(first["recipe"]["files"]) == {s[k]["file"] for s in first["samples"] for k in ("source", "driving")}
    held = [s for s in first["samples"] if s["split"] == HELD_OUT]
    calibration = [s for s in first["samples"] if s["split"] == CALIBRATION]
    assert not set().union(*map(_pictures, held)) & set().union(*map(_pictures, calibration))


def test_up_to_date_set_is_kept(tiny_assets: tuple[Path, Path], tiny_weights: Path, tiny_calib: Path) -> None:
    stamps = {p.name: p.stat().st_mtime_ns for p in tiny_calib.iterdir()}
    lines: list[str] = []
    build_calibration(tiny_weights, *tiny_assets, tiny_calib, samples=4, held_out=2, seed=0, graphs=GRAPHS,
                      shard_samples=3, progress=lines.append)
    assert any("up to date" in line for line in lines)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in tiny_calib.iterdir()}


def test_reader_feeds_every_graph(tiny_calib: Path) -> None:
    data = CalibrationSet(tiny_calib)
    assert data.graphs == GRAPHS and data.count() == 4 and data.count(HELD_OUT) == 2
    for graph in GRAPHS:
        spec = SPECS[graph]
        arrays = data.arrays(graph)
        assert list(arrays) == list(spec.input_names)
        for t in spec.inputs:
            assert arrays[t.name].shape == (4, *t.shape[1:]) and arrays[t.name].dtype == np.float32
            assert np.isfinite(arrays[t.name]).all()
        feeds = list(data.feeds(graph, HELD_OUT, batch=1))
        assert len(feeds) == 2 and all(f[spec.input_names[0]].shape[0] == 1 for f in feeds)
    crops = data.arrays("appearance_feature_extractor")["source_image"]
    assert crops.min() >= 0 and crops.max() <= 1 and len({c.tobytes() for c in crops}) == 4
    # the eye MLP sees the source keypoints and the sample's three seeded ratios
    ratios = data.arrays("eye_retargeting")["feat_eye"][:, -3:]
    expected = [s["eye_ratios"] for s in data.samples()]
    np.testing.assert_allclose(ratios, expected, rtol=1e-6)
    with pytest.raises(CalibrationError, match="no data for graph 'spade_generator'"):
        data.arrays("spade_generator")


def test_polygraphy_loaders(tiny_calib: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feeds = list(polygraphy_data_loader(tiny_calib, "stitching"))
    assert len(feeds) == 2 and feeds[0]["feat_stitching"].shape == (1, 126)
    monkeypatch.setenv("LPT_CALIB", str(tiny_calib))
    monkeypatch.setenv("LPT_CALIB_GRAPH", "lip_retargeting")
    monkeypatch.setenv("LPT_CALIB_SPLIT", CALIBRATION)
    monkeypatch.setenv("LPT_CALIB_BATCH", "3")
    assert [f["feat_lip"].shape for f in load_data()] == [(3, 65), (1, 65)]


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_bad_input_is_one_line(tiny_assets: tuple[Path, Path], tiny_weights: Path, tiny_calib: Path,
                               tmp_path: Path) -> None:
    images, videos = tiny_assets
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["calib", "build", "--weights", str(tiny_weights), "--out", str(tmp_path / "out"), "--graphs", "stitching"]
    cases = {
        "images folder": [*base, "--images", str(tmp_path / "nowhere"), "--videos", str(videos)],
        "no readable images": [*base, "--images", str(empty), "--videos", str(videos)],
        "no videos": [*base, "--images", str(images), "--videos", str(empty)],
        "unknown graph": [*base[:-1], "nope", "--images", str(images), "--videos", str(videos)],
    }
    for expected, args in cases.items():
        code, output = _cli(*args)
        lines = output.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("lpt: error:") and expected in lines[0], output
    assert not (tmp_path / "out" / "manifest.json").exists()

    broken = tmp_path / "broken"
    broken.mkdir()
    for shard in json.loads((tiny_calib / "manifest.json").read_text())["shards"]:
        os.link(tiny_calib / shard["file"], broken / shard["file"])
    (broken / "manifest.json").write_text("{ not json")
    code, output = _cli("calib", "show", str(broken))
    assert code == 2 and "not readable JSON" in output and len(output.strip().splitlines()) == 1

    tampered = json.loads((tiny_calib / "manifest.json").read_text())
    tampered["shards"][0]["sha256"] = "0" * 64
    (broken / "manifest.json").write_text(json.dumps(tampered))
    code, output = _cli("calib", "show", str(broken))
    assert code == 2 and "does not match its sha256" in output

    code, output = _cli("calib", "show", str(tiny_calib))
    assert code == 0 and "4 calibration + 2 held-out samples" in output
