"""Reading the official checkpoints, checking them against our modules, and loading the networks.

Loading rules (as the official ``load_model``): F, M, W and G are flat state dicts loaded strictly; the
stitching file holds three sub-dicts whose keys lose every ``module.`` substring. Checkpoints are read
with ``torch.load(weights_only=True)`` so a file can never execute code.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lpt.errors import CheckpointError
from lpt.files import write_atomic

from .registry import (
    BASE_FILES,
    NETWORK_NAMES,
    RETARGETING_FILE,
    RETARGETING_KEYS,
    build,
)

LAYOUT_HINT = (
    "expected the official layout: <weights>/liveportrait/base_models/"
    "{appearance_feature_extractor,motion_extractor,warping_module,spade_generator}.pth and "
    "<weights>/liveportrait/retargeting_models/stitching_retargeting_module.pth"
)
SHOWN = 3  # keys listed per category in an error message


def liveportrait_dir(weights_dir: str | Path) -> Path:
    """The folder holding ``base_models/`` and ``retargeting_models/``: ``<weights>/liveportrait``, or the
    given folder itself when it already is that one."""
    root = Path(weights_dir)
    if not root.is_dir():
        raise CheckpointError(f"weights folder {root} does not exist; {LAYOUT_HINT}")
    return root if (root / "base_models").is_dir() and not (root / "liveportrait").is_dir() else root / "liveportrait"


def checkpoint_path(weights_dir: str | Path, name: str) -> Path:
    folder = liveportrait_dir(weights_dir)
    return folder / (BASE_FILES[name] if name in BASE_FILES else RETARGETING_FILE)


def read_checkpoint(path: Path) -> Mapping[str, object]:
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint {path}; {LAYOUT_HINT}")
    check_archive(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; the error below says enough
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean the same to the user
        raise CheckpointError(f"{path}: {describe_load_failure(exc)}") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors), found {type(obj).__name__}")
    return obj


def check_archive(path: Path) -> None:
    """``torch.load`` does not verify the CRC-32 of a checkpoint's entries, so damaged tensor bytes would load
    as garbage weights; zipfile does, reading every entry once (about as fast as loading)."""
    if not zipfile.is_zipfile(path):
        return  # the legacy format, or no checkpoint at all: torch.load says which
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as exc:  # noqa: BLE001 - zipfile raises many types on a broken archive; all mean the same
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt zip archive: {exc})") from None
    if damaged is not None:
        raise CheckpointError(f"{path}: corrupt, the stored bytes of {damaged} fail their CRC-32 check "
                              "(a damaged download or copy); fetch the file again")


def describe_load_failure(exc: Exception) -> str:
    text = str(exc)
    forbidden = re.search(r"GLOBAL (\S+)", text)
    if forbidden:
        return f"refused, it holds a Python object ({forbidden.group(1)}) that loading would execute; a checkpoint holds tensors only"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "WeightsUnpickler error:" in text:
        lines = lines[next(i for i, line in enumerate(lines) if "WeightsUnpickler error:" in line) + 1 :]
    detail = lines[0].split(". ")[0][:200] if lines else type(exc).__name__  # torch appends advice sentences
    return f"not a readable PyTorch checkpoint (corrupt, truncated or another format): {detail}"


def check_state_dict(state: Mapping[str, object], module: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """Validate ``state`` against ``module``'s state dict; return it as plain tensors.

    Missing ``num_batches_tracked`` counters are filled (torch does the same for old files; eval never
    reads them). Everything else must match key for key and shape for shape.
    """
    expected = module.state_dict()
    out: dict[str, torch.Tensor] = {}
    unexpected, wrong_shape = [], []
    for key, value in state.items():
        if key not in expected:
            unexpected.append(key)
        elif not isinstance(value, torch.Tensor) or value.shape != expected[key].shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            wrong_shape.append(f"{key} {got} (expected {tuple(expected[key].shape)})")
        else:
            out[key] = value
    for key, value in expected.items():
        if key not in state and key.endswith("num_batches_tracked"):
            out[key] = value
    missing = [k for k in expected if k not in state and k not in out]
    problems = [
        f"{label} {len(keys)}: {', '.join(keys[:SHOWN])}{', ...' if len(keys) > SHOWN else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{source}: not a {type(module).__name__} checkpoint; " + "; ".join(problems))
    return out


def fold_spectral_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every ``<conv>.weight_orig/_u/_v`` triple by the eval-mode ``<conv>.weight``.

    ``W = weight_orig / (u . (W_mat v))``, exactly what torch's spectral-norm hook computes in eval mode.
    """
    out = {k: v for k, v in state.items() if not k.endswith(("weight_orig", "weight_u", "weight_v"))}
    for key in state:
        if key.endswith("weight_orig"):
            conv = key[: -len("_orig")]
            w, u, v = state[key], state[conv + "_u"], state[conv + "_v"]
            out[conv] = w / torch.dot(u, torch.mv(w.reshape(w.shape[0], -1), v))
    return out


def strip_module_prefix(state: Mapping[str, object]) -> dict[str, object]:
    return {k.replace("module.", ""): v for k, v in state.items()}


def load_state_dicts(weights_dir: str | Path, names: tuple[str, ...] = NETWORK_NAMES) -> dict[str, dict[str, torch.Tensor]]:
    """Read and validate the official files; state dicts in the official layout (spectral norm unfolded)."""
    states: dict[str, dict[str, torch.Tensor]] = {}
    retargeting: Mapping[str, object] | None = None
    for name in names:
        path = checkpoint_path(weights_dir, name)
        if name in BASE_FILES:
            states[name] = check_state_dict(read_checkpoint(path), build(name), str(path))
            continue
        retargeting = retargeting if retargeting is not None else read_checkpoint(path)
        file_key = RETARGETING_KEYS[name]
        sub = retargeting.get(file_key)
        if not isinstance(sub, Mapping):
            raise CheckpointError(f"{path}: missing entry '{file_key}' (the {name} MLP); found {sorted(map(str, retargeting))[:6]}")
        states[name] = check_state_dict(strip_module_prefix(sub), build(name), f"{path} ['{file_key}']")
    return states


def atomic_write(path: Path, obj: object) -> None:
    """Text as is, anything else as ``torch.save`` writes it, through ``lpt.files.write_atomic``."""
    if isinstance(obj, str):
        write_atomic(path, obj)
        return
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


def save_official_layout(weights_dir: str | Path, states: Mapping[str, Mapping[str, torch.Tensor]]) -> Path:
    """Write state dicts (official layout, by our network names) as the official release lays them out.
    The stitching file's sub-dicts get the ``module.`` prefix the released file carries."""
    folder = Path(weights_dir) / "liveportrait"
    for name, rel in BASE_FILES.items():
        if name in states:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / rel, dict(states[name]))
    retargeting = {
        file_key: {f"module.{k}": v for k, v in states[name].items()}
        for name, file_key in RETARGETING_KEYS.items()
        if name in states
    }
    if retargeting:
        (folder / RETARGETING_FILE).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / RETARGETING_FILE, retargeting)
    return Path(weights_dir)


def load(weights_dir: str | Path, names: tuple[str, ...] = NETWORK_NAMES) -> dict[str, nn.Module]:
    """The networks by their official names, in eval mode, spectral norm folded into plain convolutions."""
    networks: dict[str, nn.Module] = {}
    for name, state in load_state_dicts(weights_dir, names).items():
        module = build(name, spectral_norm=False)
        module.load_state_dict(fold_spectral_norm(state))
        networks[name] = module.eval().requires_grad_(False)
    return networks
