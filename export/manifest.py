"""``<out>/manifest.json``: what each ONNX file was exported from, so an unchanged one is not exported again.

One entry per file name. A file is up to date when its entry records the same inputs (checkpoint hashes,
tool versions, lpt source digest, export options) and the file on disk still has the recorded sha256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lpt.files import sha256_file, write_atomic

MANIFEST = "manifest.json"
INT8_MANIFEST = "int8-manifest.json"  # written by `lpt quantize` (export/int8.py)
FORMAT = 1


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_digest() -> str:
    """sha256 over the sources that decide what a graph computes or how it is traced (every lpt.models
    module, the specs, the graph modules, the tracing and FP16 code): editing any of them re-exports."""
    import lpt.models

    import lpt.specs

    from . import fp16, graphs, onnx_build

    files = sorted(Path(lpt.models.__file__).parent.glob("*.py"))
    files += [Path(m.__file__ or "") for m in (lpt.specs, graphs, onnx_build, fp16)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.parent.name}/{path.name}".encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class Manifest:
    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / MANIFEST
        self.files: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("format") == FORMAT and isinstance(data.get("files"), dict):
                    self.files = data["files"]
            except (OSError, ValueError):
                pass  # unreadable: every file is exported again and the manifest rewritten

    def up_to_date(self, file: Path, inputs: dict[str, Any]) -> bool:
        """Whether ``file`` exists with the recorded hash and was made from exactly ``inputs``."""
        entry = self.files.get(file.name)
        if entry is None or not file.is_file():
            return False
        if any(entry.get(key) != value for key, value in inputs.items()):
            return False
        return entry.get("onnx", {}).get("bytes") == file.stat().st_size and entry["onnx"].get("sha256") == sha256_file(file)

    def record(self, file: Path, entry: dict[str, Any]) -> None:
        self.files[file.name] = entry
        self.save()

    def save(self) -> None:
        text = json.dumps({"format": FORMAT, "files": dict(sorted(self.files.items()))}, indent=2)
        write_atomic(self.path, (text + "\n").encode())
