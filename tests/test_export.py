"""ONNX export: the gather sampler, every graph through onnxruntime, the manifest and the CLI.

One module-scoped export of every graph in both grid-sample variants (full-size, default-initialised
networks) is shared by the checks; the manifest tests use the three small MLPs only.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from lpt.export.graphs import onnx_path
from lpt.export.lint import lint
from lpt.export.manifest import sha256_file
from lpt.export.onnx_build import ExportError, example_inputs
from lpt.export.onnx_export import _lint, export_onnx, plan
from lpt.models import load
from lpt.models.checkpoint import save_official_layout
from lpt.models.registry import build
from lpt.models.sampling import GridSample3d, TrilinearGather, use_gather_sampler

from lpt.cli import main
from lpt.specs import SPECS

MLPS = ("stitching", "eye_retargeting", "lip_retargeting")


def grid_sample(volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---- the gather sampler --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 3, 4, 5, 6, 3, 4, 5), (2, 1, 1, 1, 1, 2, 2, 2), (3, 5, 7, 9, 11, 2, 3, 4),
                                   (2, 4, 16, 64, 64, 4, 16, 16)])
def test_gather_matches_grid_sample_on_random_grids(shape: tuple[int, ...]) -> None:
    n, c, d, h, w, do, ho, wo = shape
    gen = torch.Generator().manual_seed(sum(shape))
    volume = torch.randn(n, c, d, h, w, generator=gen)
    grid = torch.rand(n, do, ho, wo, 3, generator=gen) * 2.6 - 1.3  # a share of points outside the volume
    out = TrilinearGather()(volume, grid)
    assert out.shape == (n, c, do, ho, wo) and out.is_contiguous()
    assert (out - grid_sample(volume, grid)).abs().max().item() <= 1e-6


def test_gather_matches_grid_sample_on_edges() -> None:
    """Exactly +-1, the outermost voxel centres, half a voxel and a hair outside, far outside; N=2."""
    volume = torch.randn(2, 3, 5, 6, 7, generator=torch.Generator().manual_seed(1))
    values = [-1.0, 1.0, -1 - 1e-6, 1 + 1e-6, -1 + 1 / 7, 1 - 1 / 7, -1 - 1 / 7, 1 + 1 / 7, -1 - 2 / 7, 0.0, 3.0, -3.0]
    points = torch.tensor(list(itertools.product(values, repeat=3)))
    grid = torch.stack([points, points.flip(0)]).view(2, 1, 1, -1, 3)  # a different order per batch entry
    assert (TrilinearGather()(volume, grid) - grid_sample(volume, grid)).abs().max().item() <= 1e-6


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_gather_sampler_exports_at_opset_17_with_a_dynamic_batch(tmp_path: Path) -> None:
    volume, grid = torch.randn(2, 3, 4, 5, 6), torch.rand(2, 3, 4, 5, 3) * 2.4 - 1.2
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(TrilinearGather(), (volume, grid), input_names=["volume", "grid"], output_names=["out"],
                                opset_version=17, dynamo=True, dynamic_shapes=({0: batch}, {0: batch}), verbose=False)
    assert program is not None
    model = program.model_proto
    assert "GridSample" not in {n.op_type for n in model.graph.node}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        v, g = torch.randn(n, 3, 4, 5, 6), torch.rand(n, 3, 4, 5, 3) * 2.4 - 1.2
        (out,) = session.run(None, {"volume": v.numpy(), "grid": g.numpy()})
        assert np.abs(out - grid_sample(v, g).numpy()).max() <= 1e-6


def test_use_gather_sampler_returns_a_copy_sharing_the_weights() -> None:
    warping = build("warping_module").eval()
    swapped = use_gather_sampler(warping)
    assert isinstance(warping.sampler, GridSample3d)
    assert isinstance(warping.dense_motion_network.sampler, GridSample3d)
    assert not any(isinstance(m, GridSample3d) for m in swapped.modules())
    assert sum(isinstance(m, TrilinearGather) for m in swapped.modules()) == 2
    assert all(a is b for a, b in zip(warping.parameters(), swapped.parameters()))
    mlp = build("stitching")
    assert use_gather_sampler(mlp) is mlp


# ---- planning (no export) ------------------------------------------------------------------------------


def test_plan_picks_the_variant_by_tensorrt_version(tmp_path: Path) -> None:
    names = lambda jobs: [j.path.name for j in jobs if j.graph == "warping_module"]
    assert names(plan(tmp_path, trt="10")) == ["warping_module.gather.onnx"]
    assert names(plan(tmp_path, trt="11.1")) == ["warping_module.gather.onnx"]
    assert names(plan(tmp_path, trt="11")) == ["warping_module.onnx"]
    assert names(plan(tmp_path, grid_sample="both")) == ["warping_module.onnx", "warping_module.gather.onnx"]
    assert [j.graph for j in plan(tmp_path, fused=False)] == [g for g in SPECS if g != "warp_decode"]
    with pytest.raises(ExportError, match="11.2"):
        plan(tmp_path, grid_sample="native", trt="10")
    with pytest.raises(ExportError, match="unknown graph"):
        plan(tmp_path, graphs=["warping"])


# ---- every graph, exported once ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_dir(full_weights_dir: Path) -> Path:
    return full_weights_dir


@pytest.fixture(scope="module")
def exported(full_onnx_dir: tuple[Path, list[str], list[str]]) -> Path:
    out, statuses, lines = full_onnx_dir
    assert statuses == ["exported"] * len(statuses)
    assert len(lines) == len(statuses) + 1 and lines[-1].startswith(f"{len(statuses)} exported")
    return out


FILES = [(g, v) for g in SPECS for v in (("", "gather") if "warping_module" in SPECS[g].networks else ("",))]


@pytest.fixture(scope="module")
def references(weights_dir: Path) -> dict[str, tuple[tuple[torch.Tensor, ...], list[np.ndarray]]]:
    """PyTorch inputs and outputs at batch 2 per graph (batch 1 is compared with row 0: eval-mode networks
    treat batch entries independently). The generator is fed the warping module's output, so the fused
    graph's reference is the generator's and the 10 s generator forward runs once."""
    from lpt.export.graphs import graph_module

    networks = load(weights_dir)
    refs = {}
    with torch.no_grad():
        for graph, spec in SPECS.items():
            if graph == "spade_generator":
                inputs = (torch.from_numpy(refs["warping_module"][1][2]),)
            elif graph == "warp_decode":
                refs[graph] = (refs["warping_module"][0], refs["spade_generator"][1])
                continue
            else:
                inputs = example_inputs(spec, 2, seed=5)
            refs[graph] = (inputs, [t.numpy() for t in graph_module(graph, networks)(*inputs)])
    return refs


def _model(out: Path, graph: str, variant: str) -> onnx.ModelProto:
    return onnx.load(str(onnx_path(out, graph, variant)), load_external_data=False)


@pytest.mark.parametrize(("graph", "variant"), FILES)
def test_graph_interface_matches_the_spec(exported: Path, graph: str, variant: str) -> None:
    model = _model(exported, graph, variant)
    spec = SPECS[graph]
    assert [i.name for i in model.graph.input] == list(spec.input_names)
    assert [o.name for o in model.graph.output] == list(spec.output_names)
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {spec.opset}
    for value, declared in zip([*model.graph.input, *model.graph.output], [*spec.inputs, *spec.outputs]):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param and not dims[0].HasField("dim_value"), f"{value.name}: batch axis is not dynamic"
        assert tuple(d.dim_value for d in dims[1:]) == declared.shape[1:]
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


# (graph, variant, batches). The fused graph costs W + G (15 s a batch entry on 2 cores): by default only its
# gather variant runs, at batch 2; its parts run at batch 1 and 2 in both variants. LPT_SLOW_TESTS=1 runs all.
SLOW = os.environ.get("LPT_SLOW_TESTS") == "1"
RUNS = [(g, v, (1, 2) if g != "warp_decode" or SLOW else (2,)) for g, v in FILES if g != "warp_decode" or v or SLOW]


@pytest.mark.parametrize(("graph", "variant", "batches"), RUNS,
                         ids=[f"{g}{'.' + v if v else ''}-batch{'+'.join(map(str, b))}" for g, v, b in RUNS])
def test_onnxruntime_matches_pytorch(exported: Path, references: dict, graph: str, variant: str,
                                     batches: tuple[int, ...]) -> None:
    spec = SPECS[graph]
    inputs, expected = references[graph]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(onnx_path(exported, graph, variant)), options, providers=["CPUExecutionProvider"])
    for batch in batches:
        outputs = session.run(None, {n: x[:batch].numpy() for n, x in zip(spec.input_names, inputs)})
        for name, got, want in zip(spec.output_names, outputs, expected):
            tol = spec.tolerance(name, "fp32")
            assert got.shape == want[:batch].shape
            bad = np.abs(got - want[:batch]) > tol.atol + tol.rtol * np.abs(want[:batch])
            assert not bad.any(), f"{graph}.{variant} batch {batch} {name}: max abs {np.abs(got - want[:batch]).max():.2e}"


@pytest.mark.parametrize("graph", ["warping_module", "warp_decode"])
def test_grid_sample_variants(exported: Path, graph: str) -> None:
    gather = _model(exported, graph, "gather")
    assert "GridSample" not in {n.op_type for n in gather.graph.node}
    native = onnx.shape_inference.infer_shapes(_model(exported, graph, ""))
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*native.graph.value_info, *native.graph.input, *native.graph.output]}
    samplers = [n for n in native.graph.node if n.op_type == "GridSample"]
    assert len(samplers) == 2
    assert all(ranks[n.input[0]] == 5 and ranks[n.input[1]] == 5 for n in samplers)


@pytest.mark.parametrize(("graph", "variant"), FILES)
def test_lint_passes_for_the_target(exported: Path, graph: str, variant: str) -> None:
    model = _model(exported, graph, variant)
    native_sampler = variant == "" and "warping_module" in SPECS[graph].networks
    for trt in ("11.2",) if native_sampler else ("10", "11.2"):
        assert lint(model, trt) == [], trt


def test_native_sampler_fails_the_tensorrt_10_lint_with_its_nodes(exported: Path) -> None:
    job = next(j for j in plan(exported, ["warping_module"], "native", "11.2"))
    with pytest.raises(ExportError, match=r"fails the TensorRT 10\.\d+ lint, 4 finding\(s\): .*GridSample"):
        _lint(_model(exported, "warping_module", ""), job, ["10"])


def test_manifest_records_every_file(exported: Path, weights_dir: Path) -> None:
    files = json.loads((exported / "manifest.json").read_text())["files"]
    assert sorted(files) == sorted(onnx_path(exported, g, v).name for g, v in FILES)
    entry = files["warping_module.gather.onnx"]
    assert entry["graph"] == "warping_module" and entry["variant"] == "gather" and entry["grid_sample"] == "gather"
    assert entry["onnx"]["sha256"] == sha256_file(exported / "warping_module.gather.onnx")
    pth = weights_dir / "liveportrait/base_models/warping_module.pth"
    assert entry["checkpoints"] == {"base_models/warping_module.pth": sha256_file(pth)}
    assert set(entry["tools"]) >= {"torch", "onnx", "onnxslim"} and entry["options"]["opset"] == 20
    assert entry["options"]["batch_profile"] == {"min": 1, "opt": 1, "max": 4} and entry["seconds"] > 0
    assert entry["lint"] == ["10"] and files["warping_module.onnx"]["lint"] == ["11.2"]


# ---- the manifest: re-export only what changed ---------------------------------------------------------


def _mlp_weights(root: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_official_layout(root, {n: build(n).state_dict() for n in MLPS})


def test_second_export_is_a_no_op_and_a_changed_checkpoint_re_exports(tmp_path: Path) -> None:
    weights, out = _mlp_weights(tmp_path / "w", 0), tmp_path / "onnx"
    first = export_onnx(weights, out, MLPS, progress=lambda _: None)
    assert [r.status for r in first] == ["exported"] * 3
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.onnx")}
    lines: list[str] = []
    second = export_onnx(weights, out, MLPS, progress=lines.append)
    assert [r.status for r in second] == ["up to date"] * 3
    assert all("up to date" in line for line in lines[:3]) and lines[-1].startswith("0 exported, 3 up to date")
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.onnx")} == stamps
    assert not list(out.glob(".*.tmp"))
    # A new lint target for the same files lints them again and exports nothing.
    assert [r.status for r in export_onnx(weights, out, MLPS, trt="11", progress=lambda _: None)] == ["up to date"] * 3
    assert json.loads((out / "manifest.json").read_text())["files"]["stitching.onnx"]["lint"] == ["10", "11"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.onnx")} == stamps

    (out / "eye_retargeting.onnx").write_bytes(b"tampered")  # a file that no longer has its recorded hash
    assert [r.status for r in export_onnx(weights, out, MLPS, progress=lambda _: None)] == ["up to date", "exported", "up to date"]

    old = json.loads((out / "manifest.json").read_text())["files"]["stitching.onnx"]
    _mlp_weights(tmp_path / "w", 1)  # the one stitching file holds all three MLPs
    third = export_onnx(weights, out, MLPS, progress=lambda _: None)
    assert [r.status for r in third] == ["exported"] * 3
    new = json.loads((out / "manifest.json").read_text())["files"]["stitching.onnx"]
    assert new["checkpoints"] != old["checkpoints"] and new["onnx"]["sha256"] != old["onnx"]["sha256"]


# ---- CLI -----------------------------------------------------------------------------------------------


def test_cli_reports_a_missing_weights_folder_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "--weights", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lpt: error: ") and "nope" in lines[0]
    assert not (tmp_path / "o").exists()


def test_cli_rejects_native_grid_sample_for_tensorrt_10(tmp_path: Path) -> None:
    weights = _mlp_weights(tmp_path / "w", 0)
    args = ["export", "--weights", str(weights), "--out", str(tmp_path / "o"), "--grid-sample", "native", "--trt", "10"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "11.2" in result.stderr


def test_cli_exports_the_named_graphs(tmp_path: Path) -> None:
    weights = _mlp_weights(tmp_path / "w", 0)
    args = ["export", "--weights", str(weights), "--out", str(tmp_path / "o"), "--graphs", "stitching,lip_retargeting"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    names = ["lip_retargeting.fp16.onnx", "lip_retargeting.onnx", "stitching.fp16.onnx", "stitching.onnx"]
    assert sorted(p.name for p in (tmp_path / "o").glob("*.onnx")) == names
    assert "4 exported, 0 up to date" in result.stdout


def test_fp16_variants_are_written_linted_and_recorded(tmp_path: Path) -> None:
    weights, out = _mlp_weights(tmp_path / "w", 0), tmp_path / "o"
    first = export_onnx(weights, out, ["lip_retargeting"], fp16=True, progress=lambda _: None)
    assert [r.path.name for r in first] == ["lip_retargeting.onnx", "lip_retargeting.fp16.onnx"]
    model = onnx.load(str(out / "lip_retargeting.fp16.onnx"))
    assert {i.type.tensor_type.elem_type for i in (*model.graph.input, *model.graph.output)} == {onnx.TensorProto.FLOAT}
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    entry = json.loads((out / "manifest.json").read_text())["files"]["lip_retargeting.fp16.onnx"]
    assert entry["variant"] == "fp16" and "AutoCast" in entry["options"]["converter"]
    again = export_onnx(weights, out, ["lip_retargeting"], fp16=True, progress=lambda _: None)
    assert [r.status for r in again] == ["up to date", "up to date"]
