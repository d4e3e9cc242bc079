"""``lpt quantize`` on the cheap graphs (F and the lip MLP, default-initialised): both flavours, the report,
thresholds that pass and fail, exclusions reaching the quantizers, up-to-date files, and bad input."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner, Result
from lpt.export.int8 import int8_path
from lpt.export.onnx_export import export_onnx
from lpt.models.checkpoint import save_official_layout
from lpt.models.registry import build

from lpt.cli import main
from lpt.metrics import UNIT_PEAK, psnr_db, snr_db, ssim
from lpt.specs import SPECS, Int8Exclusions, Int8Threshold
from tests.test_calibration import tiny_assets, tiny_calib, tiny_weights  # noqa: F401  (fixtures)

GRAPHS = ("appearance_feature_extractor",)  # the quantize runs; lip_retargeting serves the exclusion test
EXPORTED = (*GRAPHS, "lip_retargeting")
LENIENT = Int8Threshold(min_snr_db=0.0)


@pytest.fixture(scope="module")
def onnx_dir(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("int8_onnx")
    export_onnx(tiny_weights, out, EXPORTED, fp16=False, progress=lambda _: None)
    return out


def _quantize(weights: Path, onnx_dir: Path, calib: Path, *extra: str) -> Result:
    args = ["quantize", "--weights", str(weights), "--onnx", str(onnx_dir), "--calib", str(calib),
            "--graphs", ",".join(GRAPHS), "--timing-runs", "1", "--max-samples", "2", *extra]
    return CliRunner().invoke(main, args)


def _thresholds(monkeypatch: pytest.MonkeyPatch, threshold: Int8Threshold) -> None:
    for graph in EXPORTED:
        monkeypatch.setitem(SPECS, graph, dataclasses.replace(SPECS[graph], int8_threshold=threshold))


def _op_types(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


@pytest.fixture(scope="module")
def quantized(tiny_weights: Path, onnx_dir: Path, tiny_calib: Path) -> Result:  # noqa: F811
    with pytest.MonkeyPatch.context() as mp:
        _thresholds(mp, LENIENT)
        return _quantize(tiny_weights, onnx_dir, tiny_calib)


def test_names() -> None:
    assert int8_path("d", "warping_module", "int8", "gather") == Path("d/warping_module.gather.int8.onnx")
    assert int8_path("d", "spade_generator", "int8-cpu") == Path("d/spade_generator.int8-cpu.onnx")
    with pytest.raises(ValueError, match="flavour"):
        int8_path("d", "stitching", "int4")


def test_both_flavours_and_report(quantized: Result, onnx_dir: Path, tmp_path: Path) -> None:
    assert quantized.exit_code == 0, quantized.output
    f_trt = int8_path(onnx_dir, "appearance_feature_extractor", "int8")
    f_cpu = int8_path(onnx_dir, "appearance_feature_extractor", "int8-cpu")
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= _op_types(f_trt)
    # ONNX Runtime fuses the CPU flavour's QDQ pattern into integer kernels
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(f_cpu), options, providers=["CPUExecutionProvider"])
    assert "QLinearConv" in _op_types(tmp_path / "optimized.onnx")

    report = json.loads((onnx_dir / "int8-report.json").read_text())
    assert report["passed"] and report["weights"]["synthetic"] is False
    assert set(report["versions"]) == {"onnx", "onnxruntime", "nvidia-modelopt"}
    assert sorted(f["file"] for f in report["files"]) == sorted(
        int8_path(onnx_dir, g, f).name for g in GRAPHS for f in ("int8", "int8-cpu"))
    f_row = next(f for f in report["files"] if f["file"] == f_trt.name)
    (error,) = f_row["errors"]
    assert error["output"] == "feature_3d" and 0 < error["mean_abs"] <= error["max_abs"] and f_row["samples"] == 2
    assert f_row["seconds"] > 0 and f_row["fp32_seconds"] > 0
    assert "feature_3d" in quantized.output and "FP32 ms" in quantized.output


def test_threshold_fails_and_up_to_date(quantized: Result, tiny_weights: Path, onnx_dir: Path, tiny_calib: Path,  # noqa: F811
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert quantized.exit_code == 0, quantized.output
    stamps = {p.name: p.stat().st_mtime_ns for p in onnx_dir.glob("*.int8*.onnx")}
    _thresholds(monkeypatch, Int8Threshold(min_snr_db=200.0))
    result = _quantize(tiny_weights, onnx_dir, tiny_calib)
    assert result.exit_code == 1
    assert "appearance_feature_extractor.int8.onnx feature_3d: SNR" in result.output and "< 200 dB" in result.output
    assert result.output.count("up to date") == 2
    assert stamps == {p.name: p.stat().st_mtime_ns for p in onnx_dir.glob("*.int8*.onnx")}
    assert json.loads((onnx_dir / "int8-report.json").read_text())["passed"] is False


def test_exclusions_reach_the_quantizer(tiny_weights: Path, onnx_dir: Path, tiny_calib: Path,  # noqa: F811
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _thresholds(monkeypatch, LENIENT)
    spec = SPECS["lip_retargeting"]
    monkeypatch.setitem(SPECS, "lip_retargeting", dataclasses.replace(spec, int8_exclude=Int8Exclusions(op_types=("Gemm",))))
    out = onnx_dir.parent / "excluded"
    out.mkdir(exist_ok=True)
    for name in ("lip_retargeting.onnx", "manifest.json"):
        (out / name).write_bytes((onnx_dir / name).read_bytes())
    args = ["quantize", "--weights", str(tiny_weights), "--onnx", str(out), "--calib", str(tiny_calib), "--graphs",
            "lip_retargeting", "--flavours", "int8-cpu", "--timing-runs", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    cpu = int8_path(out, "lip_retargeting", "int8-cpu")
    assert "QuantizeLinear" not in _op_types(cpu)  # every Gemm kept FP32: nothing left to quantize
    (row,) = json.loads((out / "int8-report.json").read_text())["files"]
    gemms = [n.name for n in onnx.load(str(out / "lip_retargeting.onnx")).graph.node if n.op_type == "Gemm"]
    assert row["kept_high_precision"] == gemms and len(gemms) >= 2
    monkeypatch.setitem(SPECS, "lip_retargeting", spec)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "up to date" not in result.output  # other exclusions: quantized anew
    assert {"QuantizeLinear", "DequantizeLinear"} <= _op_types(cpu)


def test_metrics() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((2, 3, 64, 64))
    assert ssim(image, image) == pytest.approx(1.0) and psnr_db(image, image, UNIT_PEAK) == float("inf")
    noisy = [np.clip(image + rng.normal(0, s, image.shape), 0, 1) for s in (0.01, 0.05, 0.2)]
    assert ssim(noisy[0], image) > ssim(noisy[1], image) > ssim(noisy[2], image)
    assert psnr_db(image + 0.1, image, UNIT_PEAK) == pytest.approx(20.0)
    assert snr_db(image * 1.1, image) == pytest.approx(20.0)


def test_bad_input(tiny_weights: Path, onnx_dir: Path, tiny_calib: Path, tmp_path: Path) -> None:  # noqa: F811
    base = ["quantize", "--weights", str(tiny_weights), "--onnx", str(onnx_dir), "--calib", str(tiny_calib)]
    cases = {
        "calibration folder": ["quantize", "--weights", str(tiny_weights), "--onnx", str(onnx_dir), "--calib",
                               str(tmp_path / "none")],
        "no data for motion_extractor": [*base, "--graphs", "motion_extractor"],
        "unknown graph": [*base, "--graphs", "nope"],
        "unknown flavour": [*base, "--flavours", "int4"],
        "no FP32 ONNX file of stitching": [*base[:4], str(tmp_path), *base[5:], "--graphs", "stitching"],
    }
    other = tmp_path / "other_weights"  # the same files but for other retargeting MLPs
    for path in tiny_weights.rglob("*.pth"):
        (other / path.relative_to(tiny_weights)).parent.mkdir(parents=True, exist_ok=True)
        os.link(path, other / path.relative_to(tiny_weights))
    retargeting = next(other.rglob("stitching_retargeting_module.pth"))
    retargeting.unlink()
    torch.manual_seed(1)
    save_official_layout(other, {n: build(n).state_dict() for n in ("stitching", "eye_retargeting", "lip_retargeting")})
    cases["lip_retargeting.onnx was exported from another"] = ["quantize", "--weights", str(other), *base[3:], "--graphs", "lip_retargeting"]
    for expected, args in cases.items():
        result = CliRunner().invoke(main, args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], (expected, result.output)
