"""TensorRT flavour: Q/DQ placed by NVIDIA ModelOpt's ONNX post-training quantization (run as a subprocess).

Options: ``method`` (entropy or max calibration) and ``high_precision`` (fp32 or fp16: what the layers left
unquantized compute in). Calibration runs on ONNX Runtime's CPU provider, one sample per step.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from lpt.calibration.dataset import CalibrationSet
from lpt.calibration.ptq_job import Job, excluded_in, run

DEFAULTS = {"method": "max", "high_precision": "fp32"}


def quantize(job: Job, src: Path, out: Path) -> dict[str, Any]:
    from modelopt.onnx.quantization import quantize as modelopt_quantize

    for name in ("modelopt", "modelopt.onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    options = {**DEFAULTS, **job.options}
    excluded = excluded_in(src, job)
    data = CalibrationSet(job.calib, verify=False).arrays(job.graph, limit=job.limit)
    modelopt_quantize(
        onnx_path=str(src), quantize_mode="int8", calibration_data=data, calibration_method=options["method"],
        calibration_eps=["cpu"], nodes_to_exclude=[f"^{re.escape(n)}$" for n in excluded] or None,
        high_precision_dtype=options["high_precision"], output_path=str(out), log_level="ERROR",
    )
    return {"samples": len(next(iter(data.values()))), "excluded": excluded, "quantizer": "modelopt", **options}


if __name__ == "__main__":
    run(quantize)
