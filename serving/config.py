"""Triton model configurations (``config.pbtxt``) written from ``lpt.specs``, and read back through Triton's
own model-config protobuf to check that a file says what its graph declares.

Depends on: lpt.specs, lpt.errors; tritonclient's ``model_config_pb2`` and protobuf (the ``triton`` extra),
only to parse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lpt.errors import LptError
from lpt.specs import SPECS, GraphSpec, TensorSpec

# Triton's backends and file names (the model-config defaults each backend looks for).
TENSORRT = "tensorrt"
ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"  # Triton's OpenVINO backend reads ONNX files too (CPU nodes)
PYTHON = "python"
ONNX_BACKENDS = (ONNXRUNTIME, OPENVINO)
MODEL_FILES = {TENSORRT: "model.plan", ONNXRUNTIME: "model.onnx", OPENVINO: "model.onnx", PYTHON: "model.py"}
INSTANCE_KINDS = {TENSORRT: "KIND_GPU", ONNXRUNTIME: "KIND_AUTO", OPENVINO: "KIND_CPU"}
DATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
              "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL", "uint64": "TYPE_UINT64"}
# The source's feature volume is made once per stream; every other graph runs once or more per frame.
PER_SOURCE_GRAPHS = ("appearance_feature_extractor",)
QUEUE_DELAY_US = 1000  # how long a request may wait for others to fill a batch: a millisecond against ~10 ms frames


class ConfigError(LptError):
    """A ``config.pbtxt`` that does not parse or does not match its graph."""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dims(shape: Iterable[int]) -> str:
    return "[ " + ", ".join(str(d) for d in shape) + " ]"


def _tensor(t: TensorSpec, extra: str = "") -> str:
    return (f"  {{ name: {_quote(t.name)} data_type: {DATA_TYPES[t.dtype]} dims: {_dims(t.shape[1:])}{extra} }}")


def _parameters(parameters: Mapping[str, str]) -> list[str]:
    return [f"parameters {{ key: {_quote(k)} value {{ string_value: {_quote(v)} }} }}" for k, v in parameters.items()]


def _warmup(spec: GraphSpec) -> list[str]:
    """Zero inputs at batch 1 and at the profile's largest batch: the first client request then finds every
    kernel chosen and every buffer allocated (TensorRT's and ONNX Runtime's first run costs the most)."""
    blocks = []
    for batch in sorted({1, spec.batch[2]}):
        inputs = " ".join(f"inputs {{ key: {_quote(t.name)} value {{ data_type: {DATA_TYPES[t.dtype]} "
                          f"dims: {_dims(t.shape[1:])} zero_data: true }} }}" for t in spec.inputs)
        blocks.append(f"  {{ name: {_quote(f'zeros-batch{batch}')} batch_size: {batch} {inputs} }}")
    return ["model_warmup [", ",\n".join(blocks), "]"]


def graph_config(spec: GraphSpec, backend: str, instances: int = 1, parameters: Mapping[str, str] | None = None) -> str:
    """``config.pbtxt`` of one graph served by ``backend`` (tensorrt, onnxruntime or openvino): tensors and the
    largest batch from the spec, dynamic batching on the per-frame graphs, ``instances`` copies, a warm-up."""
    if backend not in INSTANCE_KINDS:
        raise ValueError(f"graph models are served by {', '.join(INSTANCE_KINDS)}, not {backend!r}")
    # TensorRT engines need a GPU; ONNX Runtime takes a GPU where the node has one and the CPU otherwise, so one
    # repository serves both kinds of node; OpenVINO is for CPU nodes.
    kind = INSTANCE_KINDS[backend]
    lines = [f"name: {_quote(spec.name)}", f"backend: {_quote(backend)}", f"max_batch_size: {spec.batch[2]}",
             f"default_model_filename: {_quote(MODEL_FILES[backend])}",
             "input [", ",\n".join(_tensor(t) for t in spec.inputs), "]",
             "output [", ",\n".join(_tensor(t) for t in spec.outputs), "]",
             f"instance_group [ {{ count: {instances} kind: {kind} }} ]"]
    if spec.name not in PER_SOURCE_GRAPHS:
        lines.append(f"dynamic_batching {{ preferred_batch_size: [ {spec.batch[2]} ] "
                     f"max_queue_delay_microseconds: {QUEUE_DELAY_US} }}")
    lines += _warmup(spec)
    lines += _parameters({"lpt_graph": spec.name, **(parameters or {})})
    return "\n".join(lines) + "\n"


# The per-frame animation model: its tensors (without the batch axis of Triton's batching).
ANIMATION_MODEL = "lpt_animate"
ANIMATION_INPUTS = (
    TensorSpec("source_crop", (1, 256, 256, 3), "uint8"),  # on a stream's first request only
    TensorSpec("driving_crop", (1, 256, 256, 3), "uint8"),  # on every request but an END without a frame
    TensorSpec("relative_to_first", (1, 1), "bool"),  # first request: drive relative to the first frame (a video)
)
ANIMATION_OPTIONAL = ("source_crop", "driving_crop", "relative_to_first")
# An END request that carries no driving frame is answered without outputs.
ANIMATION_OUTPUTS = (TensorSpec("frame", (1, 512, 512, 3), "uint8"),)
SEQUENCE_CONTROLS = ("START", "END", "CORRID")

# The same animation with the crop and paste-back on the server (``lpt triton export --crop-on-server``): full
# source image and full driving frames in, full-size frames out (the source's size; 512x512 with --no-crop or
# --no-pasteback), so every image dimension is variable (-1). The crop options of lpt-run ride on the first request.
FULL_ANIMATION_MODEL = "lpt_animate_full"
FULL_ANIMATION_INPUTS = (
    TensorSpec("source_image", (1, -1, -1, 3), "uint8"),  # on a stream's first request only, as lpt-run loads it
    TensorSpec("driving_image", (1, -1, -1, 3), "uint8"),  # on every request but an END without a frame
    TensorSpec("relative_to_first", (1, 1), "bool"),
    TensorSpec("crop", (1, 1), "bool"),  # first request; absent: true (false: lpt-run --no-crop)
    TensorSpec("crop_driving", (1, 1), "bool"),  # first request; absent: false (lpt-run --crop-driving)
    TensorSpec("pasteback", (1, 1), "bool"),  # first request; absent: true (false: lpt-run --no-pasteback)
    TensorSpec("hold_missing", (1, 1), "bool"),  # first request; absent: false (lpt-run --on-missing-face hold)
)
FULL_ANIMATION_OUTPUTS = (TensorSpec("frame", (1, -1, -1, 3), "uint8"),)
MAX_IMAGE_SIDE = 4096  # what the full model takes (lpt-run's images are at most 1280 on their longer side)


@dataclass(frozen=True)
class CropOptions:
    """lpt-run's crop settings for one stream of the full model (sent on its first request)."""

    crop: bool = True
    crop_driving: bool = False
    pasteback: bool = True
    hold_missing: bool = False

    def flags(self) -> dict[str, bool]:
        return dict(self.__dict__)
MAX_STREAMS_PER_INSTANCE = 64


def animation_config(parameters: Mapping[str, str], instances: int = 1, max_batch: int = 4,
                     idle_seconds: int = 600, crop_on_server: bool = False) -> str:
    """``config.pbtxt`` of the Python-backend animation model: a sequence batcher (Oldest strategy) routes every
    stream's requests to the one instance that holds its source features, many streams per instance.
    ``crop_on_server``: the full-image model (``lpt_animate_full``, every input optional, variable image dims)."""
    optional = " optional: true"
    name, inputs, outputs = ((FULL_ANIMATION_MODEL, FULL_ANIMATION_INPUTS, FULL_ANIMATION_OUTPUTS) if crop_on_server
                             else (ANIMATION_MODEL, ANIMATION_INPUTS, ANIMATION_OUTPUTS))
    lines = [f"name: {_quote(name)}", f"backend: {_quote(PYTHON)}", f"max_batch_size: {max_batch}",
             "input [", ",\n".join(_tensor(t, optional if crop_on_server or t.name in ANIMATION_OPTIONAL else "")
                                   for t in inputs), "]",
             "output [", ",\n".join(_tensor(t) for t in outputs), "]",
             # The Python model picks its device itself (the backend inside it); Triton only places the process.
             f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]",
             "sequence_batching {",
             f"  max_sequence_idle_microseconds: {idle_seconds * 1_000_000}",
             "  control_input [",
             '    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },',
             '    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },',
             '    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }',
             "  ]",
             f"  oldest {{ max_candidate_sequences: {MAX_STREAMS_PER_INSTANCE} max_queue_delay_microseconds: 0 }}",
             "}"]
    lines += _parameters(parameters)
    return "\n".join(lines) + "\n"


def _schema() -> tuple[Any, Any]:
    """protobuf's text format and Triton's model-config messages (the optional ``triton`` extra)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise ConfigError("checking Triton configurations needs tritonclient: `pip install -e .[triton]`") from None
    return text_format, model_config_pb2


def parse_config(text: str, where: str) -> Any:
    """``text`` parsed as Triton's ``inference.ModelConfig``; ConfigError naming ``where`` when it does not parse."""
    text_format, model_config_pb2 = _schema()
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"{where}: not a Triton model configuration: {exc}") from None


def _declared(tensors: Iterable[Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    model_config_pb2 = _schema()[1]
    return {t.name: (model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in tensors}


def _expected(tensors: Iterable[TensorSpec]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {t.name: (DATA_TYPES[t.dtype], t.shape[1:]) for t in tensors}


def mismatches(config: Any, spec: GraphSpec) -> list[str]:
    """What a parsed graph configuration says differently from ``spec`` (empty when they agree)."""
    found = []
    if config.name != spec.name:
        found.append(f"name {config.name!r}, expected {spec.name!r}")
    if config.max_batch_size != spec.batch[2]:
        found.append(f"max_batch_size {config.max_batch_size}, the profile's largest batch is {spec.batch[2]}")
    for what, declared, expected in (("input", config.input, spec.inputs), ("output", config.output, spec.outputs)):
        have, want = _declared(declared), _expected(expected)
        for name in sorted(set(have) | set(want)):
            if have.get(name) != want.get(name):
                found.append(f"{what} {name}: {have.get(name, 'missing')}, expected {want.get(name, 'none')}")
    return found


def check_graph_config(text: str, where: str) -> Any:
    """Parse ``text`` and require it to match the spec of the graph it names; the parsed config."""
    config = parse_config(text, where)
    spec = SPECS.get(config.name)
    if spec is None:
        raise ConfigError(f"{where}: model {config.name!r} is not an lpt graph ({', '.join(SPECS)})")
    problems = mismatches(config, spec)
    if problems:
        raise ConfigError(f"{where} does not match lpt.specs for {spec.name}: {'; '.join(problems)}")
    return config


@dataclass(frozen=True)
class AnimationParameters:
    """What the animation model runs with, as its ``config.pbtxt`` parameters (strings) carry it."""

    backend: str = "torch"
    precision: str = "fp32"
    weights: str = ""
    onnx: str = ""
    engines: str = ""
    relative: bool = True
    stitching: bool = True
    region: str = "all"
    driving_multiplier: float = 1.0
    warmup: bool = True
    crop_on_server: bool = False  # lpt_animate_full: full images in, crop and paste-back inside the model
    idle_seconds: int = 600  # a CPU node takes tens of seconds per batch of frames: no stream must idle out meanwhile

    def strings(self) -> dict[str, str]:
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_strings(cls, values: Mapping[str, str]) -> AnimationParameters:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        typed: dict[str, Any] = {}
        for key, text in known.items():
            kind = cls.__dataclass_fields__[key].type
            if kind == "bool":
                typed[key] = text.strip().lower() in ("1", "true", "yes")
            elif kind in ("float", "int"):
                try:
                    typed[key] = float(text) if kind == "float" else int(text)
                except ValueError:
                    raise ConfigError(f"parameter {key} of {ANIMATION_MODEL} must be a number, got {text!r}") from None
            else:
                typed[key] = text
        return cls(**typed)


def model_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """The string parameters of a model configuration as JSON (Triton's Python backend, the client's get_model_config)."""
    return {key: value.get("string_value", "") for key, value in (config.get("parameters") or {}).items()}
