"""Motion templates: the official ``.pkl`` loaded without running code, and lpt's own ``.npz`` / ``.json``.

A template is the driving motion of a video, frame by frame: ``scale`` (1, 1), ``R`` (1, 3, 3), ``exp``
(1, 21, 3), ``t`` (1, 3), optionally ``kp`` and ``x_s`` (1, 21, 3), plus per-frame eye ratios (1, 2) and
lip ratios (1, 1) that the human pipeline needs. Pickles are read by an unpickler that can build only
dicts, lists, tuples, numbers, strings and numpy arrays; anything else is refused by name, never run.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from lpt.errors import LptError
from lpt.files import write_atomic

FRAME_SHAPES: dict[str, tuple[int, ...]] = {
    "scale": (1, 1), "R": (1, 3, 3), "exp": (1, 21, 3), "t": (1, 3), "kp": (1, 21, 3), "x_s": (1, 21, 3),
}
REQUIRED_KEYS = ("scale", "R", "exp", "t")
EYE_RATIO_SHAPE = (1, 2)
LIP_RATIO_SHAPE = (1, 1)
DEFAULT_FPS = Fraction(25)  # the official output_fps for templates that do not carry one
MAX_TEMPLATE_BYTES = 256 * 1024 * 1024
# A pickle can list one frame dict many times at 2 bytes each: a frame cap keeps memory proportionate.
MAX_TEMPLATE_FRAMES = 100_000
MAX_FPS = 1000
PICKLE_SUFFIXES = (".pkl", ".pickle")
SAFE_SUFFIXES = (".npz", ".json")
TEMPLATE_SUFFIXES = PICKLE_SUFFIXES + SAFE_SUFFIXES
FORMAT_NAME = "lpt-motion-template"
FORMAT_VERSION = 1

# Key spellings of the official writers: current first, then the older one of the shipped d*.pkl.
_ROTATION_KEYS = ("R", "R_d")
_EYE_KEYS = ("c_eyes_lst", "c_d_eyes_lst")
_LIP_KEYS = ("c_lip_lst", "c_d_lip_lst")


class TemplateError(LptError):
    """A motion template is unreadable, unsafe, malformed, or of the wrong kind."""


@dataclass(frozen=True)
class MotionFrame:
    """The motion of one driving frame as float32 arrays of the official shapes (``FRAME_SHAPES``)."""

    scale: np.ndarray
    R: np.ndarray  # the official key name
    exp: np.ndarray
    t: np.ndarray
    kp: np.ndarray | None = None
    x_s: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays present, by official key name."""
        return {k: v for k in FRAME_SHAPES if (v := getattr(self, k)) is not None}


@dataclass(frozen=True)
class MotionTemplate:
    """A validated template. ``eye_ratios`` / ``lip_ratios`` are None only for an animal-style template."""

    fps: Fraction
    frames: list[MotionFrame]
    eye_ratios: list[np.ndarray] | None = None  # (1, 2) float32 per frame: left, right eye
    lip_ratios: list[np.ndarray] | None = None  # (1, 1) float32 per frame

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @classmethod
    def from_motion(cls, frames: Iterable[Mapping[str, Any] | MotionFrame], fps: Fraction | float,
                    eye_ratios: Sequence[Any] | None = None, lip_ratios: Sequence[Any] | None = None,
                    *, where: str = "motion template") -> MotionTemplate:
        """Build and validate from per-frame dicts (official keys; numpy arrays or CPU tensors) and ratios."""
        motion = [f.arrays() if isinstance(f, MotionFrame) else f for f in frames]
        return _validated(where, len(motion), fps, motion, eye_ratios, lip_ratios, require_ratios=False)


def _fail(where: str, problem: str) -> TemplateError:
    return TemplateError(f"{where}: {problem}")


def _array(value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    """``value`` as a finite float32 array of exactly ``shape``."""
    if isinstance(value, (list, tuple)) or hasattr(value, "__array__"):
        try:
            value = np.asarray(value)
        except (ValueError, TypeError, OverflowError, RuntimeError):
            raise _fail(where, "is not a numeric array") from None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise _fail(where, f"must be an array of numbers of shape {shape}, found {_describe(value)}")
    if value.shape != shape:
        raise _fail(where, f"must have shape {shape}, found {value.shape}")
    out = value.astype(np.float32)
    if not np.isfinite(out).all():
        raise _fail(where, "holds NaN or infinite values")
    return out


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _fps(value: Any, where: str) -> Fraction:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(type(v) is int for v in value) and value[1] > 0:
        value = Fraction(value[0], value[1])
    elif isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise _fail(where, f"output_fps must be a number, found {type(value).__name__}")
    if not 0 < value <= MAX_FPS:  # also false for NaN
        raise _fail(where, f"output_fps must be above 0 and at most {MAX_FPS}, found {str(value)[:24]}")
    return Fraction(value).limit_denominator(10_000) if isinstance(value, float) else Fraction(value)


def _frame(values: Any, where: str) -> MotionFrame:
    if not isinstance(values, Mapping):
        raise _fail(where, f"must be a dict of arrays, found {type(values).__name__}")
    values = dict(values)
    rotation = next((k for k in _ROTATION_KEYS if k in values), None)
    missing = [k for k in REQUIRED_KEYS if k != "R" and k not in values] + (["R"] if rotation is None else [])
    if missing:
        raise _fail(where, f"lacks {', '.join(missing)} (a frame needs {', '.join(REQUIRED_KEYS)})")
    arrays = {k: _array(values[rotation if k == "R" else k], FRAME_SHAPES[k], f"{where} {k}")
              for k in FRAME_SHAPES if k in values or k == "R"}
    return MotionFrame(**arrays)


def _ratio_list(value: Any, n_frames: int, shape: tuple[int, ...], where: str) -> list[np.ndarray]:
    if isinstance(value, np.ndarray) and value.ndim > 0:  # stacked, as in .npz
        value = list(value)
    if not isinstance(value, (list, tuple)):
        raise _fail(where, f"must be a list, found {type(value).__name__}")
    if len(value) != n_frames:
        raise _fail(where, f"has {len(value)} entries for {n_frames} frames")
    return [_array(v, shape, f"{where}[{i}]") for i, v in enumerate(value)]


def _validated(where: str, n_frames: Any, fps: Any, motion: Any, eyes: Any, lips: Any,
               *, require_ratios: bool) -> MotionTemplate:
    if type(n_frames) is not int or not 1 <= n_frames <= MAX_TEMPLATE_FRAMES:
        raise _fail(where, f"n_frames must be an integer from 1 to {MAX_TEMPLATE_FRAMES}, found {n_frames!r:.40}")
    if not isinstance(motion, (list, tuple)):
        raise _fail(where, f"motion must be a list of per-frame dicts, found {type(motion).__name__}")
    if len(motion) != n_frames:
        raise _fail(where, f"n_frames is {n_frames} but motion has {len(motion)} frames")
    if (eyes is None) != (lips is None):
        raise _fail(where, "has eye ratios but no lip ratios" if lips is None else "has lip ratios but no eye ratios")
    if require_ratios and eyes is None:
        raise _fail(where, f"has no eye and lip ratio lists ({_EYE_KEYS[0]}, {_LIP_KEYS[0]}): it is an animal-style "
                           "template, and the human pipeline needs them to animate a human portrait")
    frames = [_frame(values, f"{where}: motion[{i}]") for i, values in enumerate(motion)]
    return MotionTemplate(
        fps=_fps(fps, where),
        frames=frames,
        eye_ratios=None if eyes is None else _ratio_list(eyes, n_frames, EYE_RATIO_SHAPE, f"{where}: eye ratios"),
        lip_ratios=None if lips is None else _ratio_list(lips, n_frames, LIP_RATIO_SHAPE, f"{where}: lip ratios"),
    )


# ----------------------------------------------------------------------------------------------- pickle
# The unpickler admits the globals numpy pickles name (found by reading the official templates and numpy's
# own __reduce__), but hands back stand-ins: numpy itself never receives a pickled dtype state or array
# state, whose flag fields could otherwise mark plain floats as object pointers.

_NUMBER_TYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})
_MAX_ARRAY_ITEMS = 1 << 24


class _Refused(pickle.UnpicklingError):
    pass


class _DtypeStandIn:
    """``numpy.dtype(code, align, copy)`` then ``__setstate__``: only a number type code and a byte order."""

    def __init__(self, code: Any, _align: Any = False, _copy: Any = True) -> None:
        if not isinstance(code, str) or code not in _NUMBER_TYPES:
            raise _Refused(f"numpy dtype {code!r:.30} is not a plain number type")
        self.code, self.order = code, "="

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise _Refused("malformed numpy dtype state")
        self.order = state[1]

    def dtype(self) -> np.dtype:
        return np.dtype(self.order + self.code)


def _checked_dtype(value: Any) -> np.dtype:
    if not isinstance(value, _DtypeStandIn):
        raise _Refused(f"expected a numpy dtype, found {type(value).__name__}")
    return value.dtype()


def _from_bytes(data: Any, dtype: np.dtype, shape: Any, order: str) -> np.ndarray:
    """A new array of ``shape`` from exactly as many ``data`` bytes as it needs."""
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise _Refused(f"malformed array shape {shape!r:.40}")
    count = math.prod(shape)
    if count > _MAX_ARRAY_ITEMS or not isinstance(data, (bytes, bytearray, pickle.PickleBuffer)):
        raise _Refused("array too large or without raw data")
    raw = bytes(data)
    if len(raw) != count * dtype.itemsize:
        raise _Refused(f"array data is {len(raw)} bytes, its shape {shape} needs {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype).reshape(shape, order="F" if order == "F" else "C").copy()


class _ArrayStandIn:
    """``_reconstruct(ndarray, ...)`` then ``__setstate__((version, shape, dtype, fortran, data))``."""

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("malformed numpy array state")
        shape, dtype, fortran, data = state[-4:]
        self.array = _from_bytes(data, _checked_dtype(dtype), shape, "F" if fortran is True else "C")


def _reconstruct(cls: Any, _shape: Any, _typecode: Any) -> _ArrayStandIn:
    if cls is not np.ndarray:
        raise _Refused("only plain numpy arrays are allowed")
    return _ArrayStandIn()


def _scalar(dtype: Any, data: Any) -> Any:
    return _from_bytes(data, _checked_dtype(dtype), (), "C")[()]


def _frombuffer(data: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _from_bytes(data, _checked_dtype(dtype), shape, order)


def _latin1_bytes(text: Any, encoding: Any) -> bytes:
    """``_codecs.encode`` for the one use numpy pickles of protocol 2 make of it."""
    if encoding != "latin1" or not isinstance(text, str):
        raise _Refused("_codecs.encode is allowed only to turn latin1 text into bytes")
    return text.encode("latin-1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Under numpy 1's (``numpy.core``) and numpy 2's (``numpy._core``) module names."""
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _DtypeStandIn,
                                           ("_codecs", "encode"): _latin1_bytes}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = _scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return allowed


class ForbiddenObject(pickle.UnpicklingError):
    """The pickle names a global outside the allow list."""


class _RestrictedUnpickler(pickle.Unpickler):
    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is None:
            raise ForbiddenObject(f"{module}.{name}")
        return found


# Opcodes for data that lives outside the pickle; a template never has any.
_OUTSIDE_DATA_OPCODES = frozenset({"PERSID", "BINPERSID", "NEXT_BUFFER", "READONLY_BUFFER"})


def _check_opcodes(data: bytes) -> None:
    """Walk the opcodes in pure Python first: every length field is checked against the bytes that are
    really there before the C unpickler would allocate that much."""
    for opcode, _arg, _pos in pickletools.genops(data):
        if opcode.name in _OUTSIDE_DATA_OPCODES:
            raise _Refused(f"opcode {opcode.name} refers to data outside the file")


def _arrays_in_place(value: Any, depth: int = 0) -> Any:
    """``value`` with array stand-ins replaced by their arrays, down to the depth a template has."""
    if isinstance(value, _ArrayStandIn):
        if value.array is None:
            raise _Refused("a numpy array without its data")
        return value.array
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {k: _arrays_in_place(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_arrays_in_place(v, depth + 1) for v in value)
    return value


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"


def _load_pickle(path: Path, data: bytes, require_ratios: bool) -> MotionTemplate:
    where = f"template {path}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning from a hostile pickle becomes a refusal, not stderr noise
            _check_opcodes(data)
            content = _arrays_in_place(_RestrictedUnpickler(io.BytesIO(data)).load())
    except ForbiddenObject as exc:
        raise _fail(where, f"refused: the pickle asks for `{exc}`, which is not part of a motion template "
                           "(only dicts, lists, numbers, strings and numpy arrays are allowed); nothing in it "
                           "was run. Convert trusted templates with `lpt template export`.") from None
    except Exception as exc:  # noqa: BLE001 - broken pickles raise almost any type; each one means "unreadable"
        raise _fail(where, f"is not a readable pickle ({_reason(exc)})") from None
    if not isinstance(content, dict):
        raise _fail(where, f"must hold a dict, found {type(content).__name__}")
    eyes = next((content[k] for k in _EYE_KEYS if k in content), None)
    lips = next((content[k] for k in _LIP_KEYS if k in content), None)
    return _validated(where, content.get("n_frames"), content.get("output_fps", DEFAULT_FPS), content.get("motion"),
                      eyes, lips, require_ratios=require_ratios)


# ------------------------------------------------------------------------------------------ npz / json


def _stacked(template: MotionTemplate) -> dict[str, np.ndarray]:
    arrays = {"lpt_motion_template_version": np.array(FORMAT_VERSION, np.int64),
              "fps": np.array([template.fps.numerator, template.fps.denominator], np.int64)}
    for key in FRAME_SHAPES:
        present = [getattr(f, key) for f in template.frames]
        if all(a is not None for a in present):
            arrays[key] = np.stack(present)
    if template.eye_ratios is not None:
        arrays["eye_ratios"] = np.stack(template.eye_ratios)
    if template.lip_ratios is not None:
        arrays["lip_ratios"] = np.stack(template.lip_ratios)
    return arrays


def _load_npz(path: Path, data: bytes, require_ratios: bool) -> MotionTemplate:
    where = f"template {path}"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = sum(info.file_size for info in archive.infolist())
        if declared > MAX_TEMPLATE_BYTES:
            raise _fail(where, f"unpacks to {declared / 2**20:.0f} MiB, more than {MAX_TEMPLATE_BYTES / 2**20:.0f} MiB")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile and numpy raise many types on corrupt archives
        raise _fail(where, f"is not a readable .npz archive ({_reason(exc)})") from None
    version = arrays.get("lpt_motion_template_version")
    if version is None or version.shape != () or version.dtype.kind not in "iu" or int(version) != FORMAT_VERSION:
        raise _fail(where, f"is not an lpt motion template of version {FORMAT_VERSION} (write one with "
                           "`lpt template export`)")
    if "R" not in arrays or arrays["R"].ndim == 0:
        raise _fail(where, "lacks the R array")
    n_frames = len(arrays["R"])
    if n_frames > MAX_TEMPLATE_FRAMES:
        raise _fail(where, f"has {n_frames} frames, more than {MAX_TEMPLATE_FRAMES}")
    for key in arrays.keys() & (set(FRAME_SHAPES) | {"eye_ratios", "lip_ratios"}):
        if arrays[key].ndim == 0 or len(arrays[key]) != n_frames:
            raise _fail(where, f"{key} does not have {n_frames} frames like R")
    motion = [{k: arrays[k][i] for k in FRAME_SHAPES if k in arrays} for i in range(n_frames)]
    fps = arrays.get("fps")
    fps_value = fps.tolist() if fps is not None and fps.dtype.kind == "i" else None
    return _validated(where, n_frames, fps_value, motion, arrays.get("eye_ratios"), arrays.get("lip_ratios"),
                      require_ratios=require_ratios)


def _to_json(template: MotionTemplate) -> str:
    eyes, lips = template.eye_ratios, template.lip_ratios
    document = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION,
        "fps": [template.fps.numerator, template.fps.denominator],
        "n_frames": template.n_frames,
        "frames": [{k: v.tolist() for k, v in f.arrays().items()} for f in template.frames],
        "eye_ratios": [r.tolist() for r in eyes] if eyes is not None else None,
        "lip_ratios": [r.tolist() for r in lips] if lips is not None else None,
    }
    return json.dumps(document, allow_nan=False, separators=(",", ":"))


def _load_json(path: Path, data: bytes, require_ratios: bool) -> MotionTemplate:
    where = f"template {path}"
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _fail(where, f"is not valid JSON ({_reason(exc)})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise _fail(where, f'is not an lpt motion template (no "format": "{FORMAT_NAME}")')
    if document.get("version") != FORMAT_VERSION:
        raise _fail(where, f"has version {document.get('version')!r:.20}; this lpt reads version {FORMAT_VERSION}")
    return _validated(where, document.get("n_frames"), document.get("fps"), document.get("frames"),
                      document.get("eye_ratios"), document.get("lip_ratios"), require_ratios=require_ratios)


# ------------------------------------------------------------------------------------------------ API


def load_template(path: Path | str, *, require_ratios: bool = True) -> MotionTemplate:
    """Read ``.pkl`` (official, restricted unpickling), ``.npz`` or ``.json`` (lpt's); ``TemplateError``
    with one line on anything unsafe or malformed. ``require_ratios`` refuses animal-style templates."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEMPLATE_SUFFIXES:
        raise TemplateError(f"template {path}: unknown format; expected one of {', '.join(TEMPLATE_SUFFIXES)}")
    if not path.is_file():
        raise TemplateError(f"template {path} does not exist" if not path.exists() else f"template {path} is not a file")
    size = path.stat().st_size
    if size == 0 or size > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"template {path} is {size} bytes: expected between 1 and {MAX_TEMPLATE_BYTES}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TemplateError(f"template {path} cannot be read: {exc.strerror or exc}") from None
    loader = _load_pickle if suffix in PICKLE_SUFFIXES else _load_npz if suffix == ".npz" else _load_json
    return loader(path, data, require_ratios)


def save_template(path: Path | str, template: MotionTemplate) -> Path:
    """Write ``template`` to ``path`` (``.npz`` or ``.json``, lpt's safe formats) atomically; the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **_stacked(template))
        write_atomic(path, buffer.getvalue())
    elif suffix == ".json":
        write_atomic(path, _to_json(template))
    else:
        raise TemplateError(f"template output {path}: the name must end in .npz or .json (lpt never writes pickles)")
    return path
