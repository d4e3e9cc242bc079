"""Whether ONNX files were made from the weights about to be used with them, by what the manifests record.

``manifest.json`` (``lpt export``) records per file the sha256 of each checkpoint it was exported from and
of the file itself; ``int8-manifest.json`` (``lpt quantize``) records per INT8 file the FP32 file (name and
sha256) it was quantized from. A file is traced when its bytes match its entry and, through the entries, its
checkpoints match the weights folder's files. Anything else (other checkpoints, changed bytes, no entry) is
an ``Untraced``: what differs and the command that rebuilds the file.

Checkpoints (~500 MB for the official set) and ONNX files are hashed once per (path, size, mtime): the
digests are kept in memory and in ``<user cache>/file-sha256.json``, so a second run hashes nothing.

Depends on: lpt.errors, lpt.files, lpt.specs, lpt.models.checkpoint, and .manifest (no runtime/ or engines/).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpt.models.checkpoint import checkpoint_path, liveportrait_dir

from lpt.errors import LptError
from lpt.files import cache_dir, sha256_file, write_atomic
from lpt.specs import SPECS

from .manifest import FORMAT, INT8_MANIFEST, MANIFEST

DIGEST_CACHE = "file-sha256.json"
_digests: dict[tuple[str, int, int], str] = {}  # (resolved path, bytes, mtime_ns) -> sha256


class ProvenanceError(LptError):
    """Graphs or engines that cannot be traced to the weights given."""


OTHER_WEIGHTS = "other weights"  # the manifests say so: it cannot compute what the weights do
CHANGED = "changed"  # its bytes, or those it was quantized from, are not what the manifest recorded
UNRECORDED = "unrecorded"  # no manifest entry (made by hand, by an older lpt): nothing says what it came from
MISSING = "missing"


@dataclass(frozen=True)
class Untraced:
    file: Path  # the ONNX file
    kind: str  # OTHER_WEIGHTS, CHANGED, UNRECORDED or MISSING
    what: str  # what differs, as it reads after the file name
    rebuild: str  # the command(s) that remake the file from the weights

    def line(self) -> str:
        return f"{self.file} {self.what}; rebuild it with {self.rebuild}"


# --- digests ---------------------------------------------------------------------------------------------


def _cache_file() -> Path:
    return cache_dir() / DIGEST_CACHE


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_file().read_text())
        return data["files"] if data.get("format") == FORMAT and isinstance(data.get("files"), dict) else {}
    except (OSError, ValueError, KeyError, AttributeError):
        return {}


def _write_cache(path: str, size: int, mtime_ns: int, digest: str) -> None:
    files = {p: e for p, e in _read_cache().items() if Path(p).is_file()}  # forget files that are gone
    files[path] = {"bytes": size, "mtime_ns": mtime_ns, "sha256": digest}
    try:
        write_atomic(_cache_file(), json.dumps({"format": FORMAT, "files": files}, indent=1) + "\n")
    except OSError:
        pass  # a read-only home: the digest is only recomputed next time


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, hashed only when its resolved path, size or mtime is new to the cache."""
    resolved, stat = path.resolve(), path.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        entry = _read_cache().get(key[0])
        if isinstance(entry, dict) and (entry.get("bytes"), entry.get("mtime_ns")) == key[1:]:
            _digests[key] = str(entry.get("sha256"))
        else:
            _digests[key] = sha256_file(resolved)
            _write_cache(*key, _digests[key])
    return _digests[key]


# --- tracing ---------------------------------------------------------------------------------------------


def _entries(onnx_dir: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads((onnx_dir / name).read_text())
        files = data.get("files") if data.get("format") == FORMAT else None
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


@dataclass(frozen=True)
class Records:
    """Both manifests of an ONNX folder, read once."""

    onnx_dir: Path
    exported: dict[str, Any]
    quantized: dict[str, Any]

    @classmethod
    def read(cls, onnx_dir: Path) -> Records:
        return cls(onnx_dir, _entries(onnx_dir, MANIFEST), _entries(onnx_dir, INT8_MANIFEST))


def export_command(onnx_dir: Path, weights_dir: Path) -> str:
    # --grid-sample both: the default writes only the gather variants, and the native ones would stay stale
    return (f"`lpt export --weights {weights_dir} --out {onnx_dir} --grid-sample both` "
            f"(or `make onnx WEIGHTS={weights_dir} ONNX={onnx_dir}`)")


def quantize_command(onnx_dir: Path, weights_dir: Path) -> str:
    return (f"`lpt quantize --weights {weights_dir} --onnx {onnx_dir} --calib <a calibration set built from "
            f"{weights_dir}>` (or `make int8-onnx WEIGHTS={weights_dir} ONNX={onnx_dir}`)")


def _checkpoint_difference(entry: dict[str, Any], weights_dir: Path) -> tuple[str, str] | None:
    """(kind, how) the checkpoints ``entry`` records differ from ``weights_dir``'s, or None when the same."""
    graph, recorded = entry.get("graph"), entry.get("checkpoints")
    if graph not in SPECS or not isinstance(recorded, dict) or not recorded:
        return UNRECORDED, f"records no checkpoints, so nothing traces it to the weights in {weights_dir}"
    root = liveportrait_dir(weights_dir)
    for network in SPECS[graph].networks:
        path = checkpoint_path(weights_dir, network)
        key, shown = path.relative_to(root).as_posix(), path.relative_to(weights_dir).as_posix()
        if key not in recorded:
            return UNRECORDED, f"records no {shown}, so nothing traces it to the weights in {weights_dir}"
        if not path.is_file():
            return OTHER_WEIGHTS, f"was exported from a {shown}, which {weights_dir} lacks"
        if file_sha256(path) != recorded[key]:
            return OTHER_WEIGHTS, f"was exported from another {shown} than {weights_dir}'s"
    return None


def recorded_sha(entry: dict[str, Any]) -> str | None:
    """The sha256 a manifest entry records for its ONNX file."""
    onnx = entry.get("onnx")
    return onnx.get("sha256") if isinstance(onnx, dict) else None


def _trace_exported(records: Records, name: str, sha256: str, weights_dir: Path) -> Untraced | None:
    path, entry = records.onnx_dir / name, records.exported[name]
    rebuild = export_command(records.onnx_dir, weights_dir)
    if recorded_sha(entry) != sha256:
        return Untraced(path, CHANGED, f"does not match its entry in {records.onnx_dir / MANIFEST} (sha256 "
                                       "differs: changed since it was exported)", rebuild)
    difference = _checkpoint_difference(entry, weights_dir)
    return Untraced(path, *difference, rebuild) if difference else None


def _trace_quantized(records: Records, name: str, sha256: str, weights_dir: Path) -> Untraced | None:
    path, entry, onnx_dir = records.onnx_dir / name, records.quantized[name], records.onnx_dir
    requantize = quantize_command(onnx_dir, weights_dir)
    both = f"{export_command(onnx_dir, weights_dir)}, then {requantize}"
    if recorded_sha(entry) != sha256:
        return Untraced(path, CHANGED, f"does not match its entry in {onnx_dir / INT8_MANIFEST} (sha256 "
                                       "differs: changed since it was quantized)", requantize)
    inputs = entry.get("inputs")
    source = inputs.get("source") if isinstance(inputs, dict) else None
    if not isinstance(source, dict) or source.get("file") not in records.exported:
        return Untraced(path, UNRECORDED, f"was quantized from a file {onnx_dir / MANIFEST} does not record, so "
                        f"nothing traces it to the weights in {weights_dir}", both)
    if recorded_sha(records.exported[source["file"]]) != source.get("sha256"):
        return Untraced(path, CHANGED, f"was quantized from an earlier {source['file']} (exported again since)",
                        requantize)
    difference = _checkpoint_difference(records.exported[source["file"]], weights_dir)
    if difference:
        return Untraced(path, difference[0], f"was quantized from {source['file']}, which {difference[1]}", both)
    return None


def trace(records: Records, name: str, weights_dir: Path, sha256: str | None = None) -> Untraced | None:
    """Why the ONNX file ``name`` of ``records.onnx_dir`` cannot be traced to ``weights_dir``, or None.
    ``sha256``: the digest of the bytes in question (an engine's sidecar records it); None: the file's own."""
    path = records.onnx_dir / name
    if sha256 is None:
        if not path.is_file():
            return Untraced(path, MISSING, "not found", export_command(records.onnx_dir, weights_dir))
        sha256 = file_sha256(path)
    if name in records.exported:
        return _trace_exported(records, name, sha256, weights_dir)
    if name in records.quantized:
        return _trace_quantized(records, name, sha256, weights_dir)
    int8 = ".int8" in name
    manifest = records.onnx_dir / (INT8_MANIFEST if int8 else MANIFEST)
    rebuild = quantize_command(records.onnx_dir, weights_dir) if int8 else export_command(records.onnx_dir, weights_dir)
    return Untraced(path, UNRECORDED, f"is not recorded in {manifest} (made by hand or by an older lpt), so nothing "
                                      f"traces it to the weights in {weights_dir}", rebuild)


def untraced_all(onnx_dir: Path, names: Iterable[str], weights_dir: Path) -> list[Untraced]:
    """Every one of the ONNX files ``names`` (in ``onnx_dir``) that cannot be traced to ``weights_dir``."""
    records = Records.read(Path(onnx_dir))
    problems = (trace(records, name, Path(weights_dir)) for name in dict.fromkeys(names))
    return [p for p in problems if p is not None]


def untraced(onnx_dir: Path, names: Iterable[str], weights_dir: Path) -> Untraced | None:
    """The first of the ONNX files ``names`` (in ``onnx_dir``) that cannot be traced to ``weights_dir``'s
    checkpoints, or None when every one can."""
    records = Records.read(Path(onnx_dir))
    return next((p for name in dict.fromkeys(names) if (p := trace(records, name, Path(weights_dir)))), None)


def check_provenance(onnx_dir: Path, names: Iterable[str], weights_dir: Path) -> None:
    """Refuse, in one line, ONNX files not made from ``weights_dir``: ProvenanceError naming the file, what
    differs, and the command that rebuilds it."""
    problem = untraced(onnx_dir, names, weights_dir)
    if problem is not None:
        raise ProvenanceError(problem.line())
