"""The official layout, the loading rules, spectral-norm folding, and every bad-checkpoint message."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from lpt.models import NETWORK_NAMES, build, load
from lpt.models.checkpoint import fold_spectral_norm, save_official_layout
from lpt.models.layers import SpectralNormConv2d
from lpt.models.registry import LAYOUT_NAMES, RETARGETING_FILE
from torch import nn

from lpt.cli import main
from lpt.errors import CheckpointError
from lpt.specs import NETWORK_GRAPHS, SPECS

from .conftest import shared_file


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_state_dict_is_the_official_layout(name: str) -> None:
    layout = json.loads(shared_file("reference/checkpoint_layout.json").read_text())[LAYOUT_NAMES[name]]
    ours = [(k, list(v.shape)) for k, v in build(name).state_dict().items()]
    assert ours == [(k, v["shape"]) for k, v in layout.items()]


def test_specs_are_the_official_io_signatures() -> None:
    signatures = json.loads(shared_file("reference/io_signatures.json").read_text())
    for name in NETWORK_GRAPHS:
        spec, official = SPECS[name], signatures[LAYOUT_NAMES[name]]
        for ours, theirs in ((spec.inputs, official["inputs"]), (spec.official_outputs, official["outputs"])):
            assert [(t.name, list(t.shape), t.dtype) for t in ours] == [(t["name"], t["shape"], t["dtype"]) for t in theirs]


def test_spectral_norm_fold_equals_torch_eval_hook() -> None:
    torch.manual_seed(1)
    ours = SpectralNormConv2d(8, 6, 3)
    # u and v far from converged: folding must use them as stored, with no power iteration.
    ours.weight_u.copy_(torch.randn(6))
    ours.weight_v.copy_(torch.randn(8 * 9))
    reference = nn.utils.spectral_norm(nn.Conv2d(8, 6, 3, padding=1))
    reference.load_state_dict(ours.state_dict())
    reference.eval()
    folded = nn.Conv2d(8, 6, 3, padding=1)
    folded.load_state_dict(fold_spectral_norm(ours.state_dict()))
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        expected = reference(x)
        assert torch.allclose(ours(x), expected, rtol=1e-5, atol=1e-6)
        assert torch.allclose(folded(x), expected, rtol=1e-5, atol=1e-6)


def test_load_returns_folded_eval_networks(small_networks_dir: Path) -> None:
    names = ("appearance_feature_extractor", "stitching", "eye_retargeting", "lip_retargeting")
    networks = load(small_networks_dir, names)
    assert set(networks) == set(names)
    for net in networks.values():
        assert not net.training
        assert not any(p.requires_grad for p in net.parameters())
    reference = build("stitching")
    saved = torch.load(small_networks_dir / "liveportrait" / RETARGETING_FILE, weights_only=True)["retarget_shoulder"]
    reference.load_state_dict({k.removeprefix("module."): v for k, v in saved.items()})
    x = torch.randn(3, 126)
    assert torch.equal(networks["stitching"](x), reference(x))


def test_load_folds_the_generator_spectral_norm(tmp_path: Path) -> None:
    torch.manual_seed(2)
    official = build("spade_generator")
    save_official_layout(tmp_path, {"spade_generator": official.state_dict()})
    generator = load(tmp_path, ("spade_generator",))["spade_generator"]
    keys = generator.state_dict().keys()
    assert not any(k.endswith(("weight_orig", "weight_u", "weight_v")) for k in keys)
    assert "G_middle_0.conv_0.weight" in keys
    assert torch.allclose(generator.G_middle_0.conv_0.weight, official.G_middle_0.conv_0.effective_weight())


def test_liveportrait_folder_itself_is_accepted(small_networks_dir: Path) -> None:
    assert set(load(small_networks_dir / "liveportrait", ("lip_retargeting",))) == {"lip_retargeting"}


def copy_weights(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def f_path(root: Path) -> Path:
    return root / "liveportrait" / "base_models" / "appearance_feature_extractor.pth"


def error_of(weights: Path, names: tuple[str, ...] = ("appearance_feature_extractor",)) -> str:
    with pytest.raises(CheckpointError) as info:
        load(weights, names)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nowhere")
    assert "nowhere" in message and "does not exist" in message and "base_models" in message


def test_missing_file_names_it_and_the_layout(tmp_path: Path, small_networks_dir: Path) -> None:
    message = error_of(small_networks_dir, ("warping_module",))
    assert "missing checkpoint" in message and "warping_module.pth" in message and "retargeting_models" in message


def test_wrong_keys_and_shapes_are_listed_with_counts(tmp_path: Path, small_networks_dir: Path) -> None:
    root = copy_weights(small_networks_dir, tmp_path / "w")
    state = torch.load(f_path(root), weights_only=True)
    for key in ("first.conv.bias", "second.bias", "second.weight", "resblocks_3d.3dr0.conv1.bias"):
        del state[key]
    state["extra.weight"] = torch.zeros(1)
    state["first.norm.weight"] = torch.zeros(3)
    torch.save(state, f_path(root))
    message = error_of(root)
    assert "missing 4:" in message and ", ..." in message
    assert "unexpected 1: extra.weight" in message
    assert "wrong shape 1: first.norm.weight (3,) (expected (64,))" in message


def test_missing_num_batches_tracked_is_tolerated(tmp_path: Path, small_networks_dir: Path) -> None:
    root = copy_weights(small_networks_dir, tmp_path / "w")
    state = torch.load(f_path(root), weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, f_path(root))
    assert "appearance_feature_extractor" in load(root, ("appearance_feature_extractor",))


@pytest.mark.parametrize(
    "content, expected",
    [
        (os.urandom(4096), "not a readable PyTorch checkpoint"),
        (b"", "not a readable PyTorch checkpoint"),
        ("truncate", "not a readable PyTorch checkpoint"),
        (pickle.dumps([1, 2, 3]), "not a readable PyTorch checkpoint"),
    ],
    ids=["random-bytes", "empty", "truncated", "plain-pickle"],
)
def test_corrupt_files(tmp_path: Path, small_networks_dir: Path, content: bytes | str, expected: str) -> None:
    root = copy_weights(small_networks_dir, tmp_path / "w")
    data = f_path(root).read_bytes()
    f_path(root).write_bytes(data[: len(data) // 2] if content == "truncate" else content)  # type: ignore[arg-type]
    assert expected in error_of(root)


def test_a_list_is_not_a_state_dict(tmp_path: Path, small_networks_dir: Path) -> None:
    root = copy_weights(small_networks_dir, tmp_path / "w")
    torch.save([torch.zeros(1)], f_path(root))
    assert "expected a state dict" in error_of(root)


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {os.environ['LPT_TEST_MARKER']}",))


def test_code_in_a_checkpoint_never_runs(tmp_path: Path, small_networks_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "payload-ran"
    monkeypatch.setenv("LPT_TEST_MARKER", str(marker))
    root = copy_weights(small_networks_dir, tmp_path / "w")
    torch.save({"first.conv.weight": Payload()}, f_path(root))
    message = error_of(root)
    assert "refused" in message and "system" in message
    assert not marker.exists()


def test_stitching_file_without_an_entry(tmp_path: Path, small_networks_dir: Path) -> None:
    root = copy_weights(small_networks_dir, tmp_path / "w")
    path = root / "liveportrait" / RETARGETING_FILE
    entries = torch.load(path, weights_only=True)
    del entries["retarget_eye"]
    torch.save(entries, path)
    message = error_of(root, ("eye_retargeting",))
    assert "missing entry 'retarget_eye'" in message and "retarget_mouth" in message


def test_cli_reports_one_line_and_exit_2(tmp_path: Path, small_networks_dir: Path) -> None:
    root = copy_weights(small_networks_dir, tmp_path / "w")
    f_path(root).write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(main, ["weights", "check", str(root)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("lpt: error: ")
    assert "appearance_feature_extractor.pth" in result.output and "Traceback" not in result.output
