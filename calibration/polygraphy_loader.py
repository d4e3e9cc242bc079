"""Polygraphy ``--data-loader-script`` for a calibration set, e.g.

    LPT_CALIB=build/calib LPT_CALIB_GRAPH=stitching \
        polygraphy run build/onnx/stitching.onnx --onnxrt --data-loader-script calibration/polygraphy_loader.py:load_data

LPT_CALIB_SPLIT picks ``calibration`` or ``held_out`` (default), LPT_CALIB_BATCH the rows per feed (default 1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
from lpt.calibration.dataset import polygraphy_data_loader
from lpt.calibration.sampling import HELD_OUT, CalibrationError


def load_data() -> Iterator[dict[str, np.ndarray]]:
    root, graph = os.environ.get("LPT_CALIB"), os.environ.get("LPT_CALIB_GRAPH")
    if not root or not graph:
        raise CalibrationError("set LPT_CALIB (the calibration folder) and LPT_CALIB_GRAPH (a graph name)")
    batch = os.environ.get("LPT_CALIB_BATCH", "1")
    if not batch.isdigit() or int(batch) < 1:
        raise CalibrationError(f"LPT_CALIB_BATCH must be a positive integer, got {batch!r}")
    return polygraphy_data_loader(root, graph, os.environ.get("LPT_CALIB_SPLIT", HELD_OUT), int(batch))
