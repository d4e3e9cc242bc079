"""``lpt triton export``: a Triton model repository from lpt's engines and ONNX graphs, one model per graph, plus
the Python-backend animation model. Every ``config.pbtxt`` is checked against ``lpt.specs`` as it is written.

Layout: ``<repo>/<graph>/config.pbtxt`` and ``<repo>/<graph>/1/model.plan|model.onnx`` (an ONNX graph's external
data file beside it, under the name the graph refers to), ``<repo>/lpt_animate/{config.pbtxt,1/model.py}`` (and ``lpt_animate_full`` the same way,
with --crop-on-server).

Depends on: lpt.specs, lpt.engines (engine names and sidecars), lpt.runtime.onnxruntime_backend (which ONNX file a
precision runs), onnx (external data), lpt.files, lpt.triton.config.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
from lpt.engines.plan import Platform, engine_name
from lpt.engines.sidecar import engine_mismatch
from lpt.runtime.onnxruntime_backend import graph_file
from lpt.runtime.openvino_backend import PRECISIONS as OPENVINO_PRECISIONS
from lpt.runtime.openvino_backend import graph_file as openvino_graph_file
from lpt.triton import config as cfg

from lpt.errors import LptError
from lpt.files import sha256_file, write_atomic
from lpt.specs import SPECS

VERSION = "1"  # Triton's model version folder
MODEL_PY = '''"""lpt's per-frame animation for Triton's Python backend (written by `lpt triton export`); the code is
lpt.triton.python_model, so lpt must be installed in the Python the backend runs."""

from lpt.triton.python_model import TritonPythonModel  # noqa: F401
'''


@dataclass(frozen=True)
class ExportedModel:
    name: str
    backend: str
    source: str  # the file it was made from, or what the Python model runs


def _place(src: Path, dst: Path, link: bool = True) -> None:
    """``src`` at ``dst`` as a whole or not at all: a hard link where the file system allows and ``link`` (engines
    and graphs are large), else a copy, under a temporary name renamed at the end."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        try:
            if not link:
                raise OSError("a copy was asked for")
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _external_data(path: Path) -> list[str]:
    """The external data files an ONNX graph names (the FP16 graphs keep their weights beside them)."""
    model = onnx.load(str(path), load_external_data=False)
    names = {entry.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
             for entry in t.external_data if entry.key == "location"}
    return sorted(names)


def find_engine_file(engines: Path, graph: str, precision: str, tag: str | None) -> Path | None:
    """The engine of ``graph`` and ``precision`` in ``engines`` (None when there is none), checked against its
    sidecar; ``tag`` (``trt10.8.sm90``) picks one where engines for several machines lie side by side."""
    found = sorted(engines.glob(f"{graph}.{precision}.trt*.engine"))
    if tag is not None:
        found = [p for p in found if p.name.endswith(f".{tag}.engine")]
    if len(found) > 1:
        raise LptError(f"{engines} holds {graph} {precision} engines for several machines ({', '.join(p.name for p in found)}); "
                       "pick one with --engine-tag TAG (such as trt10.8.sm90): an engine runs only where it was built")
    if not found:
        return None
    record, why = engine_mismatch(found[0], None, None)
    if record is None or why is not None:
        raise LptError(f"{found[0]} {why}; rebuild it with `lpt build`")
    cc = tuple(int(x) for x in record.compute_capability.split("."))
    expected = engine_name(graph, precision, Platform(record.tensorrt, record.gpu, (cc[0], cc[1])))
    if found[0].name != expected:
        raise LptError(f"{found[0]} is named for another machine than its sidecar says ({expected}); rebuild it")
    return found[0]


def _write_config(model_dir: Path, text: str, check: Callable[[str, str], object]) -> None:
    where = str(model_dir / "config.pbtxt")
    check(text, where)  # a configuration Triton would refuse is never written
    write_atomic(model_dir / "config.pbtxt", text)


def export_graph(out: Path, graph: str, backend: str, model_file: Path, instances: int) -> ExportedModel:
    model_dir = out / graph
    extra = _external_data(model_file) if backend in cfg.ONNX_BACKENDS else []
    for name in extra:
        data = model_file.parent / name
        if not data.is_file():
            raise LptError(f"{model_file} keeps its weights in {name}, which is not beside it")
        # Copied: onnx refuses external data with several hard links (a guard against link attacks).
        _place(data, model_dir / VERSION / name, link=False)
    _place(model_file, model_dir / VERSION / cfg.MODEL_FILES[backend])
    parameters = {"lpt_source_file": model_file.name, "lpt_source_sha256": sha256_file(model_file)}
    _write_config(model_dir, cfg.graph_config(SPECS[graph], backend, instances, parameters), cfg.check_graph_config)
    return ExportedModel(graph, backend, model_file.name)


def export_animation(out: Path, params: cfg.AnimationParameters, instances: int) -> ExportedModel:
    """``lpt_animate`` (crops in, 512 frames out), or ``lpt_animate_full`` when ``params.crop_on_server`` (full
    images in, crop and paste-back inside, full-size frames out): the same model.py, told apart by the parameter."""
    name = cfg.FULL_ANIMATION_MODEL if params.crop_on_server else cfg.ANIMATION_MODEL
    model_dir = out / name
    write_atomic(model_dir / VERSION / cfg.MODEL_FILES[cfg.PYTHON], MODEL_PY)
    text = cfg.animation_config(params.strings(), instances, idle_seconds=params.idle_seconds,
                                crop_on_server=params.crop_on_server)
    _write_config(model_dir, text, cfg.parse_config)
    inside = "; crops and pastes back itself (face models from that folder)" if params.crop_on_server else ""
    return ExportedModel(name, cfg.PYTHON, f"lpt {params.backend} {params.precision} from {params.weights}{inside}")


def _onnx_file(onnx_dir: Path, graph: str, precision: str, backend: str) -> Path:
    """The file lpt's own backend of that name runs (OpenVINO: the gather sampler, as it reads no 5-D GridSample)."""
    if backend == cfg.OPENVINO:
        return openvino_graph_file(onnx_dir, graph, precision)
    return graph_file(onnx_dir, graph, precision, cuda=False)


def export_repository(out: Path, engines: Path | None, onnx_dir: Path | None, *, precision: str = "fp16",
                      onnx_precision: str = "fp32", onnx_backend: str = cfg.ONNXRUNTIME,
                      engine_tag: str | None = None, instances: int = 1,
                      animation: cfg.AnimationParameters | None = None, crop_on_server: bool = False,
                      progress: Callable[[str], None] = lambda line: None) -> list[ExportedModel]:
    """One model per graph: TensorRT where ``engines`` holds its engine, else ``onnx_backend`` (ONNX Runtime or
    OpenVINO, each from the file its lpt backend runs) where ``onnx_dir`` holds its graph (a graph with neither is
    left out, and said so); and the animation model when ``animation`` is given, with ``lpt_animate_full`` beside it
    (the crop and paste-back on the server) when ``crop_on_server``."""
    if onnx_backend not in cfg.ONNX_BACKENDS:
        raise LptError(f"ONNX graphs are served by {' or '.join(cfg.ONNX_BACKENDS)}, not {onnx_backend}")
    if onnx_backend == cfg.OPENVINO and onnx_precision not in OPENVINO_PRECISIONS:
        raise LptError(f"--onnx-precision {onnx_precision}: OpenVINO serves {' or '.join(OPENVINO_PRECISIONS)}")
    for what, folder in (("--engines", engines), ("--onnx", onnx_dir)):
        if folder is not None and not folder.is_dir():
            raise LptError(f"{what} {folder} is not a folder")
    if crop_on_server and animation is None:
        raise LptError("--crop-on-server writes the full-image animation model: give --weights too")
    if engines is None and onnx_dir is None and animation is None:
        raise LptError("nothing to export: give --engines, --onnx or --weights (the animation model)")
    models = []
    for graph in SPECS:
        engine = find_engine_file(engines, graph, precision, engine_tag) if engines is not None else None
        graph_onnx = _onnx_file(onnx_dir, graph, onnx_precision, onnx_backend) if onnx_dir is not None else None
        if engine is not None:
            models.append(export_graph(out, graph, cfg.TENSORRT, engine, instances))
        elif graph_onnx is not None and graph_onnx.is_file():
            models.append(export_graph(out, graph, onnx_backend, graph_onnx, instances))
        elif engines is not None or onnx_dir is not None:
            progress(f"  {graph}: no {precision} engine and no {onnx_precision} ONNX graph, left out")
            continue
        else:
            continue
        progress(f"  {graph}: {models[-1].backend} from {models[-1].source}")
    if (engines is not None or onnx_dir is not None) and not models:
        raise LptError(f"no engine or ONNX graph of any lpt graph in {engines or ''} {onnx_dir or ''}".strip())
    if animation is not None:
        for full in (False, True) if crop_on_server else (False,):
            models.append(export_animation(out, dataclasses.replace(animation, crop_on_server=full), instances))
            progress(f"  {models[-1].name}: python, {models[-1].source}")
    return models


def check_repository(repo: Path) -> list[str]:
    """Every ``config.pbtxt`` under ``repo`` parsed with Triton's schema, graph models matched against lpt.specs;
    one line per model. ConfigError on the first that fails."""
    configs = sorted(repo.glob("*/config.pbtxt"))
    if not configs:
        raise cfg.ConfigError(f"{repo} holds no <model>/config.pbtxt")
    lines = []
    for path in configs:
        text = path.read_text()
        parsed = cfg.parse_config(text, str(path))
        if parsed.name in SPECS:
            cfg.check_graph_config(text, str(path))
        files = [p.name for p in (path.parent / VERSION).glob("*")] if (path.parent / VERSION).is_dir() else []
        model_file = parsed.default_model_filename or cfg.MODEL_FILES.get(parsed.backend, "")
        if model_file not in files:
            raise cfg.ConfigError(f"{path.parent}: no {VERSION}/{model_file}")
        lines.append(f"{parsed.name}: {parsed.backend}, max batch {parsed.max_batch_size}, "
                     f"{len(parsed.input)} inputs, {len(parsed.output)} outputs: ok")
    return lines
