"""CPU flavour: ONNX Runtime's own static quantizer, QDQ with u8 activations and s8 per-channel weights on
the op types its CPU kernels fuse into integer kernels (run as a subprocess, apart from ModelOpt).

Options: ``op_types`` (the op types quantized), ``no_output_quant`` (op types whose outputs stay float),
``preprocess`` (ORT's shape inference and graph optimisation first), ``reduce_range`` (7-bit weights, for
CPUs whose u8 x s8 instruction can saturate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lpt.calibration.dataset import CalibrationSet
from lpt.calibration.ptq_job import Job, excluded_in, run

DEFAULTS: dict[str, Any] = {"op_types": ["Conv", "MatMul", "Gemm"], "no_output_quant": [], "preprocess": True,
                            "reduce_range": False}


def quantize(job: Job, src: Path, out: Path) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    options = {**DEFAULTS, **job.options}
    data = CalibrationSet(job.calib, verify=False).arrays(job.graph, limit=job.limit)
    rows = len(next(iter(data.values())))

    class Reader(CalibrationDataReader):
        """One sample at a time: with CalibStridedMinMax 1, ORT merges each sample's ranges and drops its
        activations (the generator's would otherwise pile up to tens of GB)."""

        def __init__(self) -> None:
            self.next, self.end = 0, rows

        def __len__(self) -> int:
            return rows

        def set_range(self, start_index: int, end_index: int) -> None:
            self.next, self.end = start_index, min(end_index, rows)

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.next >= self.end:
                return None
            self.next += 1
            return {k: v[self.next - 1 : self.next] for k, v in data.items()}

    model = src
    if options["preprocess"]:
        model = src.with_name(f"{src.stem}.pre.onnx")
        quant_pre_process(str(src), str(model), skip_symbolic_shape=True)
    excluded = excluded_in(model, job)  # preprocessing may fuse and rename nodes: resolve on what is quantized
    quantize_static(
        str(model), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, per_channel=True, reduce_range=options["reduce_range"],
        op_types_to_quantize=list(options["op_types"]), nodes_to_exclude=excluded,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"CalibStridedMinMax": 1, "OpTypesToExcludeOutputQuantization": list(options["no_output_quant"])},
    )
    return {"samples": rows, "excluded": excluded, "quantizer": "onnxruntime", **options}


if __name__ == "__main__":
    run(quantize)
