"""``lpt calib build``: run the pipeline's stages in PyTorch over real pictures and keep what each graph sees.

For every sample of the plan (calibration.sampling) the official chain runs once: F(source crop) is the
feature volume; M on the source, the driving frame and the video's first frame gives x_s and, by relative
motion, x_d; the stitching MLP sees [x_s, x_d] and its output moves x_d into kp_driving, as the pipeline
does before warping; W(feature volume, kp_driving, x_s)["out"] is the generator's input. The eye and lip
MLPs see x_s with seeded opening ratios (no landmark detector yet). Every graph input of lpt.specs is stored
once under its name (graphs that share an input, W and warp_decode, share it), in .npz shards per split;
manifest.json, written last, records what went in. Shards are written byte-for-byte reproducibly.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import lpt.models
import numpy as np
import torch
from lpt.export.manifest import sha256_bytes, sha256_file
from lpt.export.parity_inputs import read_frames
from lpt.models import checkpoint, motion
from lpt.models.registry import NETWORK_NAMES
from lpt.models.synthetic import synthetic_marker
from torch import nn

from lpt.files import write_atomic
from lpt.specs import SPECS

from .crops import CROP_METHOD, face_crop
from .dataset import FORMAT, MANIFEST
from .sampling import SPLITS, CalibrationError, InputFiles, Picture, Sample, find_inputs, pictures, plan_samples

Progress = Callable[[str], None]
SHARD_GLOB = ("calibration-*.npz", "held_out-*.npz")
# The networks that compute each stored tensor (crops need none).
TENSOR_NEEDS: dict[str, tuple[str, ...]] = {
    "source_image": (),
    "image": (),
    "feature_3d": ("appearance_feature_extractor",),
    "kp_source": ("motion_extractor",),
    "kp_driving": ("motion_extractor", "stitching"),
    "feature": ("appearance_feature_extractor", "motion_extractor", "stitching", "warping_module"),
    "feat_stitching": ("motion_extractor",),
    "feat_eye": ("motion_extractor",),
    "feat_lip": ("motion_extractor",),
}


def tensors_for(graphs: Iterable[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n for g in graphs for n in SPECS[g].input_names))
    unknown = [n for n in names if n not in TENSOR_NEEDS]
    if unknown:
        raise CalibrationError(f"no calibration recipe for graph input(s) {', '.join(unknown)}")
    return names


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An .npz (np.load reads it) without the wall-clock timestamps np.savez puts in: same arrays, same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[name]), allow_pickle=False)
    return buffer.getvalue()


def read_crops(inputs: InputFiles, wanted: list[Picture]) -> dict[Picture, torch.Tensor]:
    """Crops of every wanted picture; each video is decoded once, up to its last wanted frame."""
    crops = {p: face_crop(inputs.stills[p.file]) for p in wanted if p.frame is None}
    by_video: dict[str, list[int]] = {}
    for p in wanted:
        if p.frame is not None:
            by_video.setdefault(p.file, []).append(p.frame)
    for video, indices in by_video.items():
        count = inputs.videos[video]
        frames = dict(read_frames(Path(video), [(i + 0.5) / count for i in indices]))
        for i in indices:
            if i not in frames:
                raise CalibrationError(f"video {video}: frame {i} of {count} could not be decoded")
            crops[Picture(video, i)] = face_crop(frames[i])
    return crops


def _split_motion(m: motion.Motion, parts: int) -> list[motion.Motion]:
    rows = {k: cast(torch.Tensor, v) for k, v in m.items()}
    size = next(iter(rows.values())).shape[0] // parts
    return [cast(motion.Motion, {k: v[i * size : (i + 1) * size] for k, v in rows.items()}) for i in range(parts)]


@torch.inference_mode()
def compute(chunk: list[Sample], crops: Mapping[Picture, torch.Tensor], nets: Mapping[str, nn.Module],
            tensors: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The stored tensors of a few samples, batch-first, float32."""
    source = torch.cat([crops[s.source] for s in chunk])
    driving = torch.cat([crops[s.driving] for s in chunk])
    out: dict[str, torch.Tensor] = {"source_image": source, "image": driving}
    need = {n for t in tensors for n in TENSOR_NEEDS[t]}
    if "appearance_feature_extractor" in need:
        out["feature_3d"] = nets["appearance_feature_extractor"](source)
    if "motion_extractor" in need:
        reference = torch.cat([crops[s.reference] for s in chunk])
        raw = nets["motion_extractor"](torch.cat([source, driving, reference]))
        m_s, m_d, m_0 = _split_motion(motion.motion_from_kp_info(motion.kp_info(raw)), 3)
        x_s = m_s["x_s"]
        x_d = motion.drive_keypoints(m_s, m_d, m_0, relative=True)
        out["kp_source"] = x_s
        out["feat_stitching"] = motion.stitching_input(x_s, x_d)
        out["feat_eye"] = motion.eye_retargeting_input(x_s, torch.tensor([s.eye_ratios for s in chunk]))
        out["feat_lip"] = motion.lip_retargeting_input(x_s, torch.tensor([s.lip_ratios for s in chunk]))
        if "stitching" in need:
            out["kp_driving"] = motion.stitch(x_s, x_d, nets["stitching"](out["feat_stitching"]))
    if "warping_module" in need:
        out["feature"] = nets["warping_module"](out["feature_3d"], out["kp_driving"], out["kp_source"])["out"]
    return {name: out[name].float().contiguous().numpy() for name in tensors}


def code_digest() -> str:
    """sha256 over the code that decides the stored values: the networks, the motion math, crops and sampling."""
    from lpt.export import parity_inputs

    from . import crops, sampling

    files = sorted(Path(lpt.models.__file__).parent.glob("*.py"))
    files += [Path(__file__), *(Path(m.__file__ or "") for m in (crops, sampling, parity_inputs))]
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.parent.name}/{path.name}".encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def weights_entry(weights_dir: Path, networks: Iterable[str]) -> dict[str, Any]:
    root = checkpoint.liveportrait_dir(weights_dir)
    paths = dict.fromkeys(checkpoint.checkpoint_path(weights_dir, n) for n in networks)
    for path in paths:
        if not path.is_file():
            raise CalibrationError(f"missing checkpoint {path}; {checkpoint.LAYOUT_HINT}")
    return {"dir": str(weights_dir), "synthetic": synthetic_marker(weights_dir),
            "checkpoints": {p.relative_to(root).as_posix(): sha256_file(p) for p in paths}}


def _shards_intact(out_dir: Path, manifest: Mapping[str, Any]) -> bool:
    return all((out_dir / sh["file"]).is_file() and sha256_file(out_dir / sh["file"]) == sh["sha256"]
               for sh in manifest.get("shards", []))


def build_calibration(weights_dir: Path, images_dir: Path, videos_dir: Path, out_dir: Path, *, samples: int = 8,
                      held_out: int = 3, seed: int = 0, graphs: Iterable[str] | None = None, shard_samples: int = 4,
                      progress: Progress = print) -> dict[str, Any]:
    """Write the calibration set into ``out_dir`` (shards, then manifest.json); returns the manifest.
    A set already built from the same pictures, weights, code and options is kept as it is."""
    start = time.perf_counter()
    names = list(graphs) if graphs is not None else list(SPECS)
    unknown = [g for g in names if g not in SPECS]
    if unknown or not names:
        raise CalibrationError(f"unknown graph(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(SPECS)}")
    if shard_samples < 1:
        raise CalibrationError(f"--shard-samples must be at least 1, got {shard_samples}")
    tensors = tensors_for(names)
    networks = tuple(n for n in NETWORK_NAMES if any(n in TENSOR_NEEDS[t] for t in tensors))
    inputs = find_inputs(Path(images_dir), Path(videos_dir))
    for note in inputs.notes:
        progress(f"  note: {note}")
    plan = plan_samples(inputs, samples, held_out, seed)
    options = {"samples": samples, "held_out": held_out, "seed": seed, "graphs": names, "shard_samples": shard_samples}
    used = sorted({p.file for p in pictures(plan)})
    recipe = {"format": FORMAT, "options": options, "crop": CROP_METHOD, "code": code_digest(),
              "torch": torch.__version__, "files": {f: sha256_file(Path(f)) for f in used},
              "weights": weights_entry(Path(weights_dir), networks)}
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("recipe") == recipe and _shards_intact(out_dir, old):
            progress(f"calibration set {out_dir} is up to date ({samples} + {held_out} held-out samples)")
            return cast(dict[str, Any], old)
    manifest_path.unlink(missing_ok=True)  # from here until the end the folder holds no valid set
    for pattern in SHARD_GLOB:
        for stale in out_dir.glob(pattern):
            stale.unlink()

    progress(f"calibration set: {samples} samples + {held_out} held out (seed {seed}), graphs {', '.join(names)}")
    progress(f"  loading {', '.join(networks) or 'no network'} from {weights_dir}"
             f"{' (SYNTHETIC weights)' if recipe['weights']['synthetic'] else ''}")
    nets = checkpoint.load(weights_dir, networks) if networks else {}
    wanted = pictures(plan)
    progress(f"  cropping {len(wanted)} pictures from {len(used)} files")
    crops = read_crops(inputs, wanted)
    shards = []
    for split in SPLITS:
        rows = [s for s in plan if s.split == split]
        chunks = [rows[i : i + shard_samples] for i in range(0, len(rows), shard_samples)]
        for k, chunk in enumerate(chunks):
            t0 = time.perf_counter()
            data = npz_bytes(compute(chunk, crops, nets, tensors))
            name = f"{split}-{k:03d}.npz"
            write_atomic(out_dir / name, data)
            shards.append({"file": name, "split": split, "samples": [s.index for s in chunk],
                           "sha256": sha256_bytes(data), "bytes": len(data)})
            progress(f"  {name}: samples {chunk[0].index}-{chunk[-1].index}, {len(data) / 1e6:.1f} MB, "
                     f"{time.perf_counter() - t0:.1f} s")
    manifest = {
        "format": FORMAT, "recipe": recipe, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "graphs": {g: list(SPECS[g].input_names) for g in names},
        "tensors": {t: list(SPECS[next(g for g in names if t in SPECS[g].input_names)].shapes(1)[t][1:])
                    for t in tensors},
        "samples": [asdict(s) for s in plan], "shards": shards, "notes": inputs.notes,
    }
    write_atomic(manifest_path, json.dumps(manifest, indent=1) + "\n")
    progress(f"wrote {len(shards)} shards and {manifest_path} in {time.perf_counter() - start:.1f} s")
    return manifest
