"""What one quantizer subprocess does, and the parts both flavours share.

ModelOpt patches ONNX Runtime's quantizer when it runs, so each flavour runs in a process of its own
(``python -m lpt.calibration.ptq_modelopt JOB`` / ``ptq_ort JOB``, JOB a JSON object). The quantizer works in a
private folder beside the output (ModelOpt writes helper files next to its input), the result is renamed into
place, and the last stdout line is a JSON summary. A failure prints one line on stderr and exits 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx
from lpt.export.fp16 import downstream_nodes

from lpt.specs import Int8Exclusions

# Quiet the libraries' progress bars and INFO lines: the parent prints the progress.
QUIET_ENV = {"TQDM_DISABLE": "1", "ORT_LOGGING_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


@dataclass(frozen=True)
class Job:
    graph: str
    src: str  # the FP32 ONNX file
    dst: str  # the INT8 file to write
    calib: str  # the calibration folder
    exclusions: dict[str, Any] = field(default_factory=dict)  # Int8Exclusions fields
    options: dict[str, Any] = field(default_factory=dict)  # flavour settings (see each module)
    limit: int | None = None  # calibration samples used (the first ones); None: all

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))


def excluded_nodes(model: onnx.ModelProto, exclusions: Int8Exclusions) -> list[str]:
    """Names of the nodes the exclusions name, in graph order."""
    picked = set(downstream_nodes(model, exclusions.from_op_types))
    feeds_head = {i for n in model.graph.node if n.op_type in exclusions.into_op_types for i in n.input}
    weights = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        params = [i for i in node.input if i in weights]
        if (node.op_type in exclusions.op_types or any(re.match(p, node.name) for p in exclusions.nodes)
                or any(re.search(p, w) for p in exclusions.params for w in params)
                or any(o in feeds_head for o in node.output)):
            picked.add(node.name)
    return [n.name for n in model.graph.node if n.name in picked]


def qdq_counts(model: onnx.ModelProto) -> dict[str, Any]:
    """Q and DQ nodes, and by op type the nodes that take a dequantized input (the INT8 compute)."""
    counts: dict[str, Any] = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
        elif any(i in dequantized for i in node.input):
            quantized[node.op_type] = quantized.get(node.op_type, 0) + 1
    return {**counts, "int8_inputs": dict(sorted(quantized.items()))}


@contextmanager
def workdir(dst: Path) -> Iterator[Path]:
    dst.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".work", dir=dst.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def exclusions_of(job: Job) -> Int8Exclusions:
    return Int8Exclusions(**{k: tuple(v) if isinstance(v, list) else v for k, v in job.exclusions.items()})


def excluded_in(path: Path, job: Job) -> list[str]:
    return excluded_nodes(onnx.load(str(path), load_external_data=False), exclusions_of(job))


def run(quantize: Callable[[Job, Path, Path], dict[str, Any]]) -> None:
    """Entry point of a flavour module: ``quantize(job, src_link, out)`` writes ``out`` in the work folder and
    returns details (``excluded``: the node names left high precision); this puts the file in place and prints
    the summary."""
    try:
        job = Job.from_json(sys.argv[1])
        start = time.perf_counter()
        dst = Path(job.dst)
        with workdir(dst) as work:
            link = work / Path(job.src).name
            link.symlink_to(Path(job.src).resolve())
            out = work / dst.name
            details = quantize(job, link, out)
            result = onnx.load(str(out), load_external_data=False)
            os.replace(out, dst)
        summary = {"seconds": round(time.perf_counter() - start, 1), "nodes": len(result.graph.node),
                   **qdq_counts(result), **details}
        print(json.dumps(summary))
    except Exception as exc:  # noqa: BLE001 - the parent reports one line; the trace goes to stderr first
        traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        sys.exit(1)
