"""Whether an engine was built from the ONNX file the ONNX folder's manifest records and, through that
file's entry, from the weights given. Read from the sidecar, without TensorRT: the runtime and ``choose``
call it before an engine is loaded.

Depends on: lpt.export.provenance (the manifests and checkpoint digests), .sidecar, .plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lpt.export.provenance import INT8_MANIFEST, MANIFEST, Records, recorded_sha, trace

from .plan import EngineError, sidecar_path
from .sidecar import EngineRecord


def build_command(onnx_dir: Path, engines_dir: Path) -> str:
    return f"`lpt build --onnx {onnx_dir} --out {engines_dir}`"


def engine_untraced(engine: Path, onnx_dir: Path, weights_dir: Path, records: Records | None = None) -> str | None:
    """One line saying why ``engine`` cannot be traced to ``weights_dir`` through ``onnx_dir``, or None."""
    onnx_dir, weights_dir = Path(onnx_dir), Path(weights_dir)
    rebuild = build_command(onnx_dir, engine.parent)
    record = EngineRecord.read(sidecar_path(engine))
    if record is None:
        return (f"{engine} has no readable sidecar {sidecar_path(engine).name}, so nothing says which ONNX file it "
                f"was built from; rebuild it with {rebuild}")
    records = records or Records.read(onnx_dir)
    name = record.onnx_file
    entry = records.exported.get(name) or records.quantized.get(name)
    manifest = MANIFEST if name in records.exported else INT8_MANIFEST
    if entry is not None and recorded_sha(entry) != record.onnx_sha256:
        return (f"{engine} was built from another {name} than the one {onnx_dir / manifest} records (sha256 "
                f"differs); rebuild it with {rebuild}")
    problem = trace(records, name, weights_dir, record.onnx_sha256)
    if problem is not None:
        return f"{engine} was built from {name}, which {problem.what}; rebuild it with {problem.rebuild}, then {rebuild}"
    return None


def engines_untraced(engines: Iterable[Path], onnx_dir: Path, weights_dir: Path) -> str | None:
    """The line of the first of ``engines`` that cannot be traced, or None."""
    records = Records.read(Path(onnx_dir))
    return next((why for e in engines if (why := engine_untraced(e, onnx_dir, weights_dir, records))), None)


def check_engine_provenance(engine: Path, onnx_dir: Path, weights_dir: Path) -> None:
    """EngineError, one line, when ``engine`` was not built from ``onnx_dir``'s graphs of ``weights_dir``."""
    why = engine_untraced(engine, onnx_dir, weights_dir)
    if why is not None:
        raise EngineError(why)

