"""Graphs and engines are used only with the weights they were made from (export/provenance.py,
engines/provenance.py): the tiny retargeting graphs exported from one seeded checkpoint set, checked against
it and against a differently seeded one, tampered, unrecorded, quantized, and behind hand-written engine
sidecars."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lpt.bench.graphs import Budget, Candidate, GraphBench
from lpt.engines.plan import EngineError
from lpt.engines.provenance import check_engine_provenance, engine_untraced
from lpt.engines.sidecar import EngineRecord
from lpt.export import provenance
from lpt.export.int8 import check_weights
from lpt.export.manifest import INT8_MANIFEST, MANIFEST
from lpt.export.onnx_export import export_onnx
from lpt.models.checkpoint import save_official_layout
from lpt.models.registry import build
from lpt.runtime.backends import Locations, choose, open_backend

from lpt.errors import LptError
from lpt.files import sha256_file

GRAPHS = ("stitching", "eye_retargeting", "lip_retargeting")
RETARGETING = "liveportrait/retargeting_models/stitching_retargeting_module.pth"


def _weights(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_official_layout(folder, {n: build(n).state_dict() for n in GRAPHS})


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _weights(tmp_path_factory.mktemp("weights"), 0)


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _weights(tmp_path_factory.mktemp("other_weights"), 1)


@pytest.fixture(scope="module")
def onnx_dir(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(weights, out, GRAPHS, fused=False, progress=lambda _: None)
    return out


@pytest.fixture(autouse=True)
def own_digest_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(provenance, "_digests", {})


def _copy(onnx_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(onnx_dir, tmp_path / "onnx"))


def _where(weights: Path, onnx: Path, tmp_path: Path) -> Locations:
    return Locations(weights, onnx, tmp_path / "no-engines")


def _refusal(where: Locations) -> str:
    with pytest.raises(LptError) as info:
        open_backend("onnxruntime", "fp32", where)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_same_weights_pass(weights: Path, onnx_dir: Path, tmp_path: Path) -> None:
    backend = open_backend("onnxruntime", "fp32", _where(weights, onnx_dir, tmp_path))
    outputs = backend.session("stitching").run({"feat_stitching": torch.zeros(1, 126).numpy()})
    assert set(outputs) == {"delta"}
    assert provenance.untraced(onnx_dir, [f"{g}.onnx" for g in GRAPHS], weights) is None


def test_other_weights_are_refused_naming_the_file_and_the_command(other_weights: Path, onnx_dir: Path,
                                                                   tmp_path: Path) -> None:
    message = _refusal(_where(other_weights, onnx_dir, tmp_path))
    assert any(f"{onnx_dir}/{g}.onnx was exported from another {RETARGETING} than {other_weights}'s" in message
               for g in GRAPHS), message
    assert f"`lpt export --weights {other_weights} --out {onnx_dir} --grid-sample both`" in message


def test_the_automatic_choice_falls_back_and_says_why(weights: Path, other_weights: Path, onnx_dir: Path,
                                                      tmp_path: Path) -> None:
    graphs = ("stitching", "lip_retargeting")
    assert choose(None, "fp32", _where(weights, onnx_dir, tmp_path), graphs)[0] == "openvino"  # the CPU's fastest
    name, why = choose(None, "fp32", _where(other_weights, onnx_dir, tmp_path), graphs)
    assert name == "torch"
    assert "not OpenVINO: " in why and "not ONNX Runtime: " in why and f"another {RETARGETING}" in why
    assert "lpt export --weights" in why
    with pytest.raises(LptError, match="INT8 needs quantized graphs"):
        choose(None, "int8", _where(other_weights, onnx_dir, tmp_path), graphs)


def test_a_changed_file_is_refused(weights: Path, onnx_dir: Path, tmp_path: Path) -> None:
    copy = _copy(onnx_dir, tmp_path)
    with (copy / "lip_retargeting.onnx").open("ab") as f:
        f.write(b"\0")
    message = _refusal(_where(weights, copy, tmp_path))
    assert f"{copy}/lip_retargeting.onnx does not match its entry in {copy}/{MANIFEST}" in message
    assert "lpt export --weights" in message


def test_a_file_the_manifest_lacks_is_refused(weights: Path, onnx_dir: Path, tmp_path: Path) -> None:
    copy = _copy(onnx_dir, tmp_path)
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["files"]["stitching.onnx"]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    message = _refusal(_where(weights, copy, tmp_path))
    assert f"{copy}/stitching.onnx is not recorded in {copy}/{MANIFEST}" in message
    assert f"nothing traces it to the weights in {weights}" in message
    (copy / MANIFEST).unlink()  # an older lpt wrote none at all
    assert "is not recorded in" in _refusal(_where(weights, copy, tmp_path))


def _int8_copy(onnx_dir: Path, tmp_path: Path) -> Path:
    """lip_retargeting.int8-cpu.onnx recorded as `lpt quantize` records it (the FP32 bytes stand in)."""
    copy = _copy(onnx_dir, tmp_path)
    int8 = copy / "lip_retargeting.int8-cpu.onnx"
    shutil.copy(copy / "lip_retargeting.onnx", int8)
    source = {"file": "lip_retargeting.onnx", "sha256": sha256_file(copy / "lip_retargeting.onnx")}
    entry = {"inputs": {"graph": "lip_retargeting", "source": source}, "onnx": {"sha256": sha256_file(int8)}}
    (copy / INT8_MANIFEST).write_text(json.dumps({"format": 1, "files": {int8.name: entry}}))
    return copy


def test_int8_files_are_traced_through_the_file_they_were_quantized_from(weights: Path, other_weights: Path,
                                                                          onnx_dir: Path, tmp_path: Path) -> None:
    copy = _int8_copy(onnx_dir, tmp_path)
    assert provenance.untraced(copy, ["lip_retargeting.int8-cpu.onnx"], weights) is None
    problem = provenance.untraced(copy, ["lip_retargeting.int8-cpu.onnx"], other_weights)
    assert problem is not None and problem.kind == provenance.OTHER_WEIGHTS
    assert f"was quantized from lip_retargeting.onnx, which was exported from another {RETARGETING}" in problem.line()
    assert f"`lpt quantize --weights {other_weights} --onnx {copy}" in problem.line()
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"]["lip_retargeting.onnx"]["onnx"]["sha256"] = "0" * 64  # exported again since
    (copy / MANIFEST).write_text(json.dumps(manifest))
    problem = provenance.untraced(copy, ["lip_retargeting.int8-cpu.onnx"], weights)
    assert problem is not None and "quantized from an earlier lip_retargeting.onnx" in problem.line()


def test_quantize_refuses_fp32_files_of_other_weights(weights: Path, other_weights: Path, onnx_dir: Path) -> None:
    calib = SimpleNamespace(weights={}, root=onnx_dir)  # a calibration set that names no checkpoints
    targets = [SimpleNamespace(src=onnx_dir / "lip_retargeting.onnx")]
    check_weights(weights, calib, targets, onnx_dir)  # type: ignore[arg-type]
    with pytest.raises(LptError, match=f"exported from another {RETARGETING}.*lpt export --weights"):
        check_weights(other_weights, calib, targets, onnx_dir)  # type: ignore[arg-type]


def test_parity_refuses_other_weights_in_one_line(other_weights: Path, onnx_dir: Path) -> None:
    pytest.importorskip("polygraphy")
    from click.testing import CliRunner

    from lpt.cli import main

    args = ["parity", "--weights", str(other_weights), "--onnx", str(onnx_dir), "--graphs", "stitching", "--quick"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and f"another {RETARGETING}" in result.output


def test_bench_skips_a_backend_whose_graphs_are_stale(other_weights: Path, onnx_dir: Path, tmp_path: Path) -> None:
    ort = Candidate("onnxruntime", "fp32")
    bench = GraphBench(_where(other_weights, onnx_dir, tmp_path), ("stitching",),
                       Budget(runs=3, min_runs=1, warmup=1, seconds=0.2), progress=lambda _: None)
    rows = [r for r in bench.run((ort,)) if r.candidate == ort]
    assert rows and all(r.status == "skipped" and f"another {RETARGETING}" in r.reason for r in rows)


def _engine(tmp_path: Path, onnx_sha256: str) -> Path:
    engine = tmp_path / "engines" / "stitching.fp16.trt10.8.sm90.engine"
    engine.parent.mkdir(parents=True, exist_ok=True)
    engine.write_bytes(b"not a real engine")
    EngineRecord(graph="stitching", precision="fp16", grid_sample="", onnx_file="stitching.onnx",
                 onnx_sha256=onnx_sha256, engine_file=engine.name, engine_sha256=sha256_file(engine),
                 engine_bytes=engine.stat().st_size, tensorrt="10.8.0.43", gpu="H100", compute_capability="9.0",
                 cuda_driver="", cuda_runtime="", options={}).write(engine.with_suffix(".json"))
    return engine


def test_engines_are_traced_through_their_onnx_file_to_the_weights(weights: Path, other_weights: Path,
                                                                   onnx_dir: Path, tmp_path: Path) -> None:
    engine = _engine(tmp_path, sha256_file(onnx_dir / "stitching.onnx"))
    check_engine_provenance(engine, onnx_dir, weights)
    why = engine_untraced(engine, onnx_dir, other_weights)
    assert why is not None and f"{engine} was built from stitching.onnx, which was exported from another" in why
    assert why.endswith(f"then `lpt build --onnx {onnx_dir} --out {engine.parent}`")
    engine = _engine(tmp_path, "0" * 64)  # built from other bytes than the manifest records
    with pytest.raises(EngineError) as info:
        check_engine_provenance(engine, onnx_dir, weights)
    assert str(info.value) == (f"{engine} was built from another stitching.onnx than the one {onnx_dir}/{MANIFEST} "
                               f"records (sha256 differs); rebuild it with `lpt build --onnx {onnx_dir} --out {engine.parent}`")
    engine.with_suffix(".json").unlink()
    assert "has no readable sidecar" in (engine_untraced(engine, onnx_dir, weights) or "")


def test_an_unchanged_checkpoint_is_hashed_once(weights: Path, onnx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[Path] = []

    def counting(path: Path) -> str:
        hashed.append(path)
        return sha256_file(path)

    monkeypatch.setattr(provenance, "sha256_file", counting)
    checkpoint = weights / RETARGETING
    names = [f"{g}.onnx" for g in GRAPHS]
    for _ in range(2):
        assert provenance.untraced(onnx_dir, names, weights) is None
    assert hashed.count(checkpoint.resolve()) == 1
    monkeypatch.setattr(provenance, "_digests", {})  # a new process: the digest comes from the user cache
    assert provenance.untraced(onnx_dir, names, weights) is None
    assert hashed.count(checkpoint.resolve()) == 1
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: hashed again
    assert provenance.untraced(onnx_dir, names, weights) is None
    assert hashed.count(checkpoint.resolve()) == 2
