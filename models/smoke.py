"""Load every network from a weights folder and run it once on inputs of the official shapes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import torch

from .checkpoint import load
from .named_io import example_inputs, run
from .registry import NETWORK_NAMES
from .synthetic import synthetic_marker


@torch.inference_mode()
def smoke_test(weights_dir: str | Path) -> Iterator[str]:
    networks = load(weights_dir)
    synthetic = synthetic_marker(weights_dir)
    if synthetic:
        yield f"*** {synthetic.rstrip('.')}: they animate nothing ***"
    yield f"{'network':<30} {'run ms':>8}  outputs"
    for name in NETWORK_NAMES:
        start = time.perf_counter()
        outputs = run(networks[name], name, example_inputs(name))
        ms = (time.perf_counter() - start) * 1000
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items())
        yield f"{name:<30} {ms:>8.0f}  {shapes}"
