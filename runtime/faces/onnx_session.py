"""Opening the face models with ONNX Runtime: the best installed provider, one clear line on a bad file."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from lpt.errors import OnnxError

_PREFERRED = ("CUDAExecutionProvider", "CPUExecutionProvider")


def providers() -> list[str]:
    available = set(ort.get_available_providers())
    return [p for p in _PREFERRED if p in available] or ["CPUExecutionProvider"]


def open_session(path: Path) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), providers=providers())
    except Exception as exc:  # ORT raises its own exception types, with multi-line messages
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxError(f"{path}: not a readable ONNX model ({first_line})") from exc


def fixed_size(session: ort.InferenceSession) -> tuple[int, int] | None:
    """(width, height) of the first input when both are fixed numbers, else None."""
    shape = session.get_inputs()[0].shape
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        return shape[3], shape[2]
    return None
