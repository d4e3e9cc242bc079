"""`lpt parity`: a clean export passes, a perturbed one fails naming the output, bad input exits 2.

Synthetic weights for the cheap networks (and the warping module, for its gather variant) are made once
per session and exported with `lpt.export.onnx_export`; every parity run uses ``--quick``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from lpt.export import parity_inputs
from lpt.export.parity_inputs import FEED_BATCHES, demo_images, load_real_images
from lpt.models.checkpoint import save_official_layout
from lpt.models.synthetic import synthesize

from lpt.cli import main
from lpt.specs import SPECS

pytest.importorskip("polygraphy")

CHEAP = ("stitching", "eye_retargeting", "lip_retargeting", "motion_extractor", "appearance_feature_extractor")
NETWORKS = ("appearance_feature_extractor", "motion_extractor", "warping_module", "stitching", "eye_retargeting", "lip_retargeting")
ROW_FIELDS = {"graph", "variant", "file", "precision", "runner", "output", "atol", "rtol", "passed", "feeds",
              "max_abs", "max_rel", "mean_abs", "psnr_db", "failed_feeds", "error"}


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(weights dir, ONNX dir): seeded synthetic weights, the cheap graphs and warping_module.gather.onnx."""
    from lpt.export.onnx_export import export_onnx

    weights = save_official_layout(tmp_path_factory.mktemp("weights"), synthesize(0, names=NETWORKS))
    onnx_dir = tmp_path_factory.mktemp("onnx")
    export_onnx(weights, onnx_dir, [*CHEAP, "warping_module"], grid_sample="gather", trt="10", fused=False, progress=lambda _: None)
    return weights, onnx_dir


def lpt(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="session")
def clean_run(exported: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, dict]:
    weights, onnx_dir = exported
    report = tmp_path_factory.mktemp("report") / "parity.json"
    result = lpt("parity", "--weights", weights, "--onnx", onnx_dir, "--graphs", ",".join([*CHEAP, "warping_module"]),
                 "--quick", "--report", report)
    return result, json.loads(report.read_text())


def test_clean_export_passes_and_lists_every_output(clean_run: tuple[Result, dict]) -> None:
    result, report = clean_run
    assert result.exit_code == 0, result.output
    expected = {(g, o) for g in CHEAP for o in SPECS[g].output_names} | {("warping_module", o) for o in SPECS["warping_module"].output_names}
    assert {(r["graph"], r["output"]) for r in report["results"]} == expected
    lines = result.output.splitlines()
    for graph, output in expected:
        assert any(line.split()[:4] == [graph, "gather" if graph == "warping_module" else "native", "onnxrt-cpu", output]
                   and line.rstrip().endswith("pass") for line in lines), (graph, output)
    assert lines[-1] == f"{len(expected)}/{len(expected)} passed"
    assert "tensorrt: not installed, skipped" in result.output or "tensorrt: tensorrt" in result.output


def test_report_fields(clean_run: tuple[Result, dict]) -> None:
    _, report = clean_run
    assert report["ok"] is True and report["passed"] == report["total"] == len(report["results"])
    assert {"runners", "inputs", "weights", "onnx_dir", "seconds", "notes"} <= set(report)
    assert report["inputs"]["origin"] in ("assets", "demo")
    for row in report["results"]:
        assert ROW_FIELDS <= set(row), row
        assert row["passed"] and row["error"] is None and row["failed_feeds"] == []
        assert 0 <= row["max_abs"] <= row["atol"] + row["rtol"] * 100 and row["max_rel"] >= 0 and row["mean_abs"] <= row["max_abs"]
        tol = SPECS[row["graph"]].tolerance(row["output"], "fp32")
        assert (row["atol"], row["rtol"], row["precision"]) == (tol.atol, tol.rtol, "fp32")
    for graph, feeds in report["inputs"]["feeds"].items():
        assert {f["kind"] for f in feeds} == ({"real", "random"} if graph in CHEAP else {"real"})
        assert {1, 2} <= {f["batch"] for f in feeds} or graph not in CHEAP


def _perturb(src: Path, dst: Path, op_type: str, delta: float) -> str:
    """Add ``delta`` to the bias of the last ``op_type`` node (after every normalisation); its name."""
    model = onnx.load(src)
    node = [n for n in model.graph.node if n.op_type == op_type][-1]
    init = next(i for i in model.graph.initializer if i.name == node.input[2])
    init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) + np.float32(delta), init.name))
    onnx.save(model, dst)
    return node.name


def test_perturbed_graph_fails(exported: tuple[Path, Path], tmp_path: Path) -> None:
    weights, onnx_dir = exported
    _perturb(onnx_dir / "stitching.onnx", tmp_path / "stitching.onnx", "Gemm", 0.01)
    _perturb(onnx_dir / "appearance_feature_extractor.onnx", tmp_path / "appearance_feature_extractor.onnx", "Conv", 0.05)
    shutil.copy(onnx_dir / "lip_retargeting.onnx", tmp_path)  # untouched: still passes
    result = lpt("parity", "--weights", weights, "--onnx", tmp_path, "--graphs",
                 "stitching,appearance_feature_extractor,lip_retargeting", "--quick")
    assert result.exit_code == 1, result.output
    assert "stitching native onnxrt-cpu delta" in result.output
    assert "appearance_feature_extractor native onnxrt-cpu feature_3d" in result.output
    assert result.output.splitlines()[-2] == "1/3 passed"  # the FAILED line (stderr) comes last
    rows = {r["graph"]: r for r in json.loads((tmp_path / "parity.json").read_text())["results"]}
    assert not rows["stitching"]["passed"] and rows["stitching"]["failed_feeds"]
    assert rows["stitching"]["max_abs"] > 0.005
    assert not rows["appearance_feature_extractor"]["passed"] and rows["lip_retargeting"]["passed"]


def test_fp16_file_uses_fp16_tolerances(exported: tuple[Path, Path], tmp_path: Path) -> None:
    float16 = pytest.importorskip("onnxconverter_common.float16")
    weights, onnx_dir = exported
    model = float16.convert_float_to_float16(onnx.load(onnx_dir / "stitching.onnx"), keep_io_types=True)
    onnx.save(model, tmp_path / "stitching.fp16.onnx")
    result = lpt("parity", "--weights", weights, "--onnx", tmp_path, "--graphs", "stitching", "--variants", "fp16", "--quick")
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "parity.json").read_text())["results"]
    tol = SPECS["stitching"].tolerance("delta", "fp16")
    assert (row["variant"], row["precision"], row["atol"], row["rtol"]) == ("fp16", "fp16", tol.atol, tol.rtol)
    assert 0 < row["max_abs"] < tol.atol


@pytest.mark.parametrize("args, message", [
    (("--graphs", "stitching", "--variants", "fp16"), "stitching.fp16.onnx"),
    (("--graphs", "warping_module", "--variants", "native"), "--grid-sample native --trt 11.2"),
    (("--graphs", "nope"), "unknown graph"),
    (("--variants", "int4"), "unknown variant"),
    (("--graphs", "stitching", "--assets", "/nonexistent/assets"), "assets folder"),
])
def test_bad_input_exits_2_with_one_line(exported: tuple[Path, Path], args: tuple[str, ...], message: str) -> None:
    weights, onnx_dir = exported
    result = lpt("parity", "--weights", weights, "--onnx", onnx_dir, *args)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("lpt: error: ") and message in result.output


def test_missing_onnx_folder_names_the_export_command(tmp_path: Path) -> None:
    result = lpt("parity", "--weights", tmp_path / "w", "--onnx", tmp_path / "none")
    assert result.exit_code == 2 and "lpt export --weights" in result.output and result.output.count("\n") == 1


def test_feeds_cover_batch_1_and_2() -> None:
    for (quick, heavy), (real, rand) in FEED_BATCHES.items():
        assert 2 in real, (quick, heavy)
        assert quick or {1, 2} <= set(real + rand)


def test_demo_portraits_stand_in_without_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parity_inputs, "default_assets_dir", lambda: tmp_path / "absent")
    images = load_real_images()
    assert images.origin == "demo" and "no assets folder" in images.description
    assert images.sources and images.drivers and all(c.image.shape == (1, 3, 256, 256) for c in images.crops)
    assert demo_images("x").description.startswith("demo portraits")


def test_a_runner_that_cannot_run_gives_error_rows(exported: tuple[Path, Path]) -> None:
    from lpt.export.parity import RunnerChoice, Target, _ort_runner, compare
    from lpt.export.parity_inputs import Reference, random_feed
    from lpt.models import load

    def broken(_path: Path, _spec: object) -> object:
        raise RuntimeError("no such device")

    weights, onnx_dir = exported
    feeds = [random_feed("stitching", 1, 0), random_feed("stitching", 2, 1)]
    reference = Reference(load(weights, ("stitching",)))
    rows, _ = compare(Target("stitching", "native", onnx_dir / "stitching.onnx"), feeds,
                      [reference.outputs("stitching", f) for f in feeds],
                      [RunnerChoice("onnxrt-cpu", _ort_runner("CPUExecutionProvider", "onnxrt-cpu")), RunnerChoice("broken", broken)])
    by_runner = {r.runner: r for r in rows}
    assert by_runner["onnxrt-cpu"].passed and by_runner["onnxrt-cpu"].feeds == 2
    assert not by_runner["broken"].passed and by_runner["broken"].error == "RuntimeError: no such device"
