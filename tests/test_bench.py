"""lpt bench on the small graphs (the MLPs, exported here): measurement, fidelity, skips, report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from lpt.bench.graphs import Budget, Candidate, GraphBench, measure
from lpt.bench.measure import CpuClock, Latency, frame_fidelity, tensor_fidelity
from lpt.runtime.backends import Locations

from lpt.cli import main

from .conftest import shared_file

GRAPHS = ("stitching", "lip_retargeting")
TORCH, ORT, ORT_FP16 = Candidate("torch", "fp32"), Candidate("onnxruntime", "fp32"), Candidate("onnxruntime", "fp16")
ORT_INT8, TRT = Candidate("onnxruntime", "int8"), Candidate("tensorrt", "fp32")
OPENVINO = Candidate("openvino", "fp32")
QUICK = Budget(runs=6, min_runs=3, warmup=1, seconds=0.5)


@pytest.fixture(scope="module")
def where(small_networks_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Locations:
    from lpt.export.onnx_export import export_onnx

    onnx = tmp_path_factory.mktemp("onnx")
    export_onnx(small_networks_dir, onnx, GRAPHS, fused=False, fp16=True, progress=lambda _: None)
    return Locations(small_networks_dir, onnx, tmp_path_factory.mktemp("no-engines"))


@pytest.fixture(scope="module")
def rows(where: Locations) -> list:
    lines: list[str] = []
    bench = GraphBench(where, GRAPHS, QUICK, progress=lines.append)
    return bench.run((ORT, ORT_FP16, ORT_INT8, OPENVINO, TRT))  # the PyTorch FP32 reference is added first


def test_every_cell_is_measured_or_skipped_with_a_reason(rows: list) -> None:
    assert [r.candidate for r in rows[:4]] == [TORCH] * 4, "the reference runs first, though not asked for"
    cells = {(r.graph, r.candidate, r.batch) for r in rows}
    assert cells == {(g, c, b) for g in GRAPHS for c in (TORCH, ORT, ORT_FP16, ORT_INT8, OPENVINO, TRT) for b in (1, 8)}
    for row in rows:
        if row.candidate in (TORCH, ORT, ORT_FP16, OPENVINO):
            assert row.status == "measured", row.reason
            lat = row.latency
            assert lat is not None and 0 < lat.min_s <= lat.median_s <= lat.p90_s
            assert QUICK.min_runs <= lat.runs <= QUICK.runs
            assert row.throughput == pytest.approx(row.batch / lat.median_s)
            assert row.device == "cpu" and row.clock == "perf_counter" and row.load_s is not None
        else:
            assert row.status == "skipped" and row.latency is None
    int8 = next(r for r in rows if r.candidate == ORT_INT8)
    assert "int8-cpu.onnx not found" in int8.reason
    assert "TensorRT" in next(r for r in rows if r.candidate == TRT).reason


def test_fidelity_is_against_pytorch_fp32(rows: list) -> None:
    for row in rows:
        if row.status != "measured":
            continue
        fid = row.fidelity
        if row.candidate == TORCH:
            assert fid.max_abs == 0 and math.isinf(fid.psnr_db)
        elif row.candidate in (ORT, OPENVINO):
            assert fid.max_abs < 1e-5 and fid.psnr_db > 100
        else:  # FP16 inside the graph: visibly less exact than FP32, still close
            assert 0 < fid.max_abs < 5e-2 and 40 < fid.psnr_db < 130
        assert row.worst_output == "delta"


def test_largest_batch_over_the_budget_is_skipped_with_the_reason(where: Locations) -> None:
    rows = GraphBench(where, ("stitching",), Budget(runs=3, min_runs=3, warmup=1, seconds=0.0),
                      progress=lambda _: None).run((TORCH,))
    first, largest = rows
    assert first.status == "measured" and first.latency.runs == 3
    assert largest.status == "skipped" and "--cell-seconds" in largest.reason and "batch-8" in largest.reason


def test_measure_stops_at_the_budget() -> None:
    calls: list[int] = []

    class Session:
        def run(self, feeds: dict) -> dict:
            calls.append(1)
            return {"x": feeds["x"] * 2}

    feeds = {"x": np.ones(3)}
    latency, outputs = measure(Session(), feeds, CpuClock(), Budget(runs=50, min_runs=4, warmup=3, seconds=0))
    assert latency.runs == 4 and len(calls) == 1 + 4, "no time left: one warm-up run, the minimum of timed runs"
    assert np.array_equal(outputs["x"], np.full(3, 2.0))
    calls.clear()
    latency, _ = measure(Session(), feeds, CpuClock(), Budget(runs=5, min_runs=2, warmup=3, seconds=60))
    assert latency.runs == 5 and len(calls) == 3 + 5, "time to spare: every warm-up run, the maximum of timed runs"


def test_latency_and_fidelity_arithmetic() -> None:
    lat = Latency.of([0.3, 0.1, 0.2, 0.4, 1.0])
    assert lat.median_s == pytest.approx(0.3) and lat.min_s == pytest.approx(0.1) and lat.median_s <= lat.p90_s <= 1.0
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    assert math.isinf(frame_fidelity(frames, frames).psnr_db)
    changed = frames.copy()
    changed[1, 2, 3, 0] = 10
    fid = frame_fidelity(changed, frames)
    assert fid.max_abs == 10 and fid.psnr_db == pytest.approx(10 * math.log10(255**2 / (100 / frames.size)))
    reference = {"a": np.linspace(0, 1, 10), "b": np.linspace(0, 100, 10)}
    ours = {"a": reference["a"] + 0.01, "b": reference["b"] + 0.02}
    fid, worst = tensor_fidelity(ours, reference)
    assert worst == "a" and fid.max_abs == pytest.approx(0.02)  # a: 1% of its range off; b: 0.02%


def test_openvino_computes_what_pytorch_does(rows: list) -> None:
    for row in (r for r in rows if r.candidate == OPENVINO):
        assert row.fidelity is not None and row.fidelity.max_abs < 1e-5, (row.graph, row.fidelity)


def test_headline_puts_every_lpt_path_against_the_original_per_frame() -> None:
    from lpt.bench.report import headline_table
    from lpt.bench.suite import _headline

    def row(name: str, kind: str, call_s: float, default: bool = False) -> dict:
        return {"name": name, "kind": kind, "status": "measured", "call_s": call_s, "load_s": 2.0, "call_frames": 4,
                "default": default, "fidelity": {"psnr_db": 70.0, "max_abs": 1.0}}

    rows = [row("original-style", "original", 42.0), row("openvino fp32", "lpt", 22.0, default=True),
            row("onnxruntime fp32", "lpt", 30.0), {**row("tensorrt fp16", "lpt", 1.0), "status": "skipped"}]
    lines = _headline(rows)
    assert [(line["name"], line["frame_ms"], round(line["speedup"], 3)) for line in lines] == [
        ("original-style", 10_000.0, 1.0), ("openvino fp32", 5_000.0, 2.0), ("onnxruntime fp32", 7_000.0, 1.429)]
    table = headline_table(lines)
    assert "| openvino fp32 (lpt default) | 5,000 | 2.00x | 70.0 |" in table and "tensorrt" not in table


def test_cli_writes_json_markdown_and_chart(where: Locations, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, [
        "bench", "--no-e2e", "--graphs", "stitching", "--backends", "torch,onnxruntime,tensorrt", "--precisions",
        "fp32", "--weights", str(where.weights), "--onnx", str(where.onnx), "--engines", str(where.engines),
        "--runs", "4", "--min-runs", "2", "--warmup", "1", "--cell-seconds", "0.2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert report["schema"] == 1 and report["end_to_end"] is None and report["weights"]["synthetic"] is None
    machine = report["machine"]
    assert machine["cpu"] and machine["cpu_cores_logical"] >= 1 and "torch" in machine["libraries"]
    rows = report["graphs"]
    assert {(r["backend"], r["status"]) for r in rows} == {("torch", "measured"), ("onnxruntime", "measured"),
                                                          ("tensorrt", "skipped")}
    for row in rows:
        if row["status"] == "measured":
            assert 0 < row["median_ms"] <= row["p90_ms"] and row["runs"] >= 2 and row["fidelity"]["max_abs"] < 1e-5
    markdown = (out / "bench.md").read_text()
    assert "| stitching | onnxruntime fp32 | cpu | 1 |" in markdown and "skipped: **tensorrt fp32** (every graph)" in markdown
    assert markdown.strip() in result.output
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--graphs", "nope"], "--graphs: nope is not one of"),
    (["--backends", "cuda"], "--backends: cuda is not one of"),
    (["--weights", "/nonexistent/weights"], "--weights /nonexistent/weights: no such folder"),
    (["--source", "/nonexistent.jpg", "--driving", "/nonexistent.mp4", "--no-graphs"], "source /nonexistent.jpg not found"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    weights = [] if "--weights" in args else ["--weights", str(tmp_path)]  # a fresh clone has no build/weights
    result = CliRunner().invoke(main, ["bench", "--out", str(tmp_path), *weights, *args])
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1


def test_original_style_writer_is_an_ffmpeg_subprocess(tmp_path: Path) -> None:
    from lpt.bench.original import FfmpegError, add_audio, has_audio, write_video
    from lpt.runtime.video import VideoReader

    try:
        frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(3)]
        path = tmp_path / "clip.mp4"
        write_video(frames, path, 30.0)
    except FfmpegError as exc:
        pytest.skip(str(exc))
    with VideoReader(path) as reader:
        decoded = list(reader)
    assert len(decoded) == 3 and decoded[0].shape == (48, 64, 3)
    assert np.abs(decoded[2].astype(int) - 80).max() <= 3  # crf 18 on a flat frame
    assert not has_audio(path)
    driving = shared_file("assets/driving/d18.mp4")
    add_audio(path, driving)
    assert has_audio(path) and not path.with_name("clip_with_audio.mp4").exists()


def test_peak_memory_of_a_child_is_its_own_not_its_parents() -> None:
    """ru_maxrss of a child started by fork and exec starts at the parent's peak; VmHWM does not."""
    import subprocess
    import sys

    from lpt.bench.measure import ProcessPeakRss
    from lpt.runtime.memory import peak_rss_mib

    parent = peak_rss_mib()
    assert parent is not None and parent > 50  # this process holds torch
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(b'1') * (120 * 2**20); time.sleep(0.5)"])
    watch = ProcessPeakRss(child.pid, period_s=0.01)
    child.wait()
    seen = watch.stop()
    assert seen is not None and 120 <= seen < 120 + 60, f"{seen} MiB for 120 MiB of data in a bare interpreter"
