"""The JSON beside every engine: what it was built from, with what, for which GPU. Pure Python.

``lpt build`` reads it to skip engines that are up to date; the runtime reads it to refuse, in one line,
an engine made for another GPU, TensorRT or precision before TensorRT is asked to load it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lpt.files import sha256_file, write_atomic

from .plan import EngineError, Platform, engine_name, sidecar_path

FORMAT = 1
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float)}  # else a dict
REBUILD = "rebuild it with `lpt build --onnx <onnx folder> --out {folder}`"


@dataclass
class EngineRecord:
    graph: str
    precision: str
    grid_sample: str
    onnx_file: str
    onnx_sha256: str
    engine_file: str
    engine_sha256: str
    engine_bytes: int
    tensorrt: str
    gpu: str
    compute_capability: str  # "9.0"
    cuda_driver: str
    cuda_runtime: str
    options: dict[str, Any]  # everything else that decides the engine: profiles, optimisation level, typing
    build_seconds: float = 0.0
    built_at: str = ""
    lpt: str = ""
    format: int = FORMAT
    io: dict[str, Any] = field(default_factory=dict)  # tensor name -> {"mode", "dtype"} as the engine declares them

    def write(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> EngineRecord | None:
        """The record, or None when the file is missing, unreadable, of another format or of wrong field types."""
        try:
            data = json.loads(path.read_text())
            record = cls(**data) if isinstance(data, dict) and data.get("format") == FORMAT else None
        except (OSError, ValueError, TypeError):
            return None
        typed = record is not None and all(isinstance(getattr(record, f.name), _FIELD_TYPES.get(str(f.type), dict))
                                           for f in fields(cls))
        return record if typed else None


def cc_text(platform: Platform) -> str:
    return ".".join(map(str, platform.compute_capability))


def stale_reason(engine: Path, onnx_sha256: str, platform: Platform, options: dict[str, Any]) -> str | None:
    """Why the engine must be (re)built, or None when it is up to date."""
    if not engine.is_file():
        return "not built yet"
    record = EngineRecord.read(sidecar_path(engine))
    if record is None:
        return f"no readable sidecar {sidecar_path(engine).name}"
    checks = (
        (record.onnx_sha256 == onnx_sha256, "its ONNX file changed"),
        (record.tensorrt == platform.tensorrt, f"built with TensorRT {record.tensorrt}"),
        (record.compute_capability == cc_text(platform), f"built for compute capability {record.compute_capability}"),
        (record.options == options, "build options changed"),
        (record.engine_bytes == engine.stat().st_size and record.engine_sha256 == sha256_file(engine),
         "the engine file does not match its sidecar"),
    )
    return next((why for ok, why in checks if not ok), None)


def verify_engine(engine: Path, platform: Platform, precision: str, data: bytes | None = None) -> EngineRecord:
    """The sidecar of ``engine`` when the file is intact and was built for this TensorRT, GPU architecture
    and ``precision``; otherwise EngineError, one line. ``data``: the engine's bytes, when already read."""
    folder = engine.parent
    if not engine.is_file():
        raise EngineError(f"{engine} not found; {REBUILD.format(folder=folder)}")
    record = EngineRecord.read(sidecar_path(engine))
    if record is None:
        raise EngineError(f"{engine.name} has no readable sidecar {sidecar_path(engine).name}, so nothing says what "
                          f"it was built for; {REBUILD.format(folder=folder)}")
    digest = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(engine)
    if digest != record.engine_sha256:
        raise EngineError(f"{engine.name} does not match its sidecar (sha256 differs: changed or truncated); "
                          f"{REBUILD.format(folder=folder)}")
    here = f"this machine has TensorRT {platform.tensorrt} on {platform.gpu} ({platform.sm})"
    if record.tensorrt != platform.tensorrt:
        raise EngineError(f"{engine.name} was built with TensorRT {record.tensorrt}, {here}: engines run only on "
                          f"the TensorRT they were built with; {REBUILD.format(folder=folder)}")
    if record.compute_capability != cc_text(platform):
        raise EngineError(f"{engine.name} was built for compute capability {record.compute_capability} "
                          f"({record.gpu}), {here}: {REBUILD.format(folder=folder)}")
    if record.precision != precision:
        raise EngineError(f"{engine.name} is a {record.precision} engine, {precision} was asked for")
    return record


def find_engine(folder: Path, graph: str, precision: str, platform: Platform) -> Path:
    """The engine of ``graph`` and ``precision`` for this platform in ``folder``; when there is none, the
    error names the engines that are there and what they were built for."""
    path = folder / engine_name(graph, precision, platform)
    if path.is_file():
        return path
    others = sorted(folder.glob(f"{graph}.{precision}.trt*.engine")) if folder.is_dir() else []
    found = "; found " + ", ".join(p.name for p in others) if others else ""
    raise EngineError(f"no {graph} {precision} engine for {platform.tag} in {folder} (expected {path.name}){found}; "
                      f"build it here with `lpt build --onnx <onnx folder> --out {folder}`")


def same_tensorrt(built_with: str, target: str) -> bool:
    """A full target version ("10.8.0.43") must match exactly, a shorter one ("10.8") by its leading parts."""
    wanted = target.split(".")
    return built_with.split(".")[: len(wanted)] == wanted


def engine_mismatch(engine: Path, tensorrt: str | None, compute_capability: str | None) -> tuple[EngineRecord | None, str | None]:
    """(the sidecar of ``engine``, why the engine cannot run on that TensorRT and GPU or None when it can), read
    without TensorRT: nothing of the engine is loaded. A target left None is not checked; the hash always is."""
    record = EngineRecord.read(sidecar_path(engine))
    if record is None:
        return None, f"has no readable sidecar {sidecar_path(engine).name}, so nothing says what it was built for"
    if record.engine_bytes != engine.stat().st_size or record.engine_sha256 != sha256_file(engine):
        return record, "does not match its sidecar (sha256 differs: changed or truncated)"
    if tensorrt is not None and not same_tensorrt(record.tensorrt, tensorrt):
        return record, f"was built with TensorRT {record.tensorrt}, not {tensorrt}"
    if compute_capability is not None and record.compute_capability != compute_capability:
        return record, f"was built for compute capability {record.compute_capability} ({record.gpu}), not {compute_capability}"
    return record, None


def engine_unusable(folder: Path, graph: str, precision: str, platform: Platform) -> tuple[Path, str | None]:
    """The engine of ``graph`` and ``precision`` that ``find_engine`` names for ``platform``, and why it cannot
    run there (missing, its sidecar names another TensorRT, GPU or precision, or its bytes differ) or None."""
    path = folder / engine_name(graph, precision, platform)
    if not path.is_file():
        return path, f"no {path.name} in {folder}"
    record, why = engine_mismatch(path, platform.tensorrt, cc_text(platform))
    if why is None and record is not None and record.precision != precision:
        why = f"is a {record.precision} engine"
    return path, None if why is None else f"{path.name} {why}"
