"""Reading a calibration set: the manifest checked, shards verified, feeds per graph for any consumer.

``CalibrationSet(dir).feeds(graph)`` yields Polygraphy-style feed dicts (input name -> float32 array); the
quantizers take ``arrays(graph)``, every row stacked on axis 0. ``polygraphy_data_loader`` is a ready data
loader for Polygraphy's Comparator, and ``calibration/polygraphy_loader.py`` serves its command line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from lpt.export.manifest import sha256_file

from lpt.specs import SPECS

from .sampling import CALIBRATION, HELD_OUT, SPLITS, CalibrationError

MANIFEST = "manifest.json"
FORMAT = 1
REQUIRED_KEYS = ("recipe", "graphs", "tensors", "samples", "shards")


class CalibrationSet:
    """A built calibration set. Opening it checks the manifest, and every shard's hash when ``verify``."""

    def __init__(self, root: str | Path, verify: bool = True) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not self.root.is_dir():
            raise CalibrationError(f"calibration folder {self.root} not found (build it with `lpt calib build`)")
        if not path.is_file():
            raise CalibrationError(f"{path} not found: not a calibration set, or its build did not finish "
                                   "(run `lpt calib build`)")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CalibrationError(f"{path} is not readable JSON ({exc}); rebuild with `lpt calib build`") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CalibrationError(f"{path}: not a format-{FORMAT} calibration manifest; rebuild with `lpt calib build`")
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing:
            raise CalibrationError(f"{path}: missing key(s) {', '.join(missing)}; rebuild with `lpt calib build`")
        self.manifest: dict[str, Any] = manifest
        for shard in self.shards():
            file = self.root / shard["file"]
            if not file.is_file():
                raise CalibrationError(f"calibration shard {file} is missing; rebuild with `lpt calib build`")
            if verify and sha256_file(file) != shard["sha256"]:
                raise CalibrationError(f"calibration shard {file} does not match its sha256 in {path}; "
                                       "rebuild with `lpt calib build`")
        self._rows: dict[str, dict[str, np.ndarray]] = {}

    def shards(self, split: str | None = None) -> list[dict[str, Any]]:
        try:
            return [s for s in self.manifest["shards"] if split is None or s["split"] == split]
        except (TypeError, KeyError):
            raise CalibrationError(f"{self.root / MANIFEST}: malformed 'shards'; rebuild with `lpt calib build`") from None

    @property
    def graphs(self) -> tuple[str, ...]:
        return tuple(self.manifest["graphs"])

    @property
    def weights(self) -> dict[str, Any]:
        return dict(self.manifest["recipe"].get("weights", {}))

    @cached_property
    def digest(self) -> str:
        """Identifies the data, not the build: the samples, the graphs and every shard's hash. A rebuild that
        writes the same bytes (builds are reproducible) keeps the digest, and what was made from it."""
        content = {k: self.manifest[k] for k in ("graphs", "samples")}
        content["shards"] = [(s["file"], s["sha256"]) for s in self.shards()]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def samples(self, split: str = CALIBRATION) -> list[dict[str, Any]]:
        return [s for s in self.manifest["samples"] if s["split"] == split]

    def count(self, split: str = CALIBRATION) -> int:
        return len(self.samples(split))

    def _tensors(self, split: str) -> dict[str, np.ndarray]:
        if split not in SPLITS:
            raise CalibrationError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        if split not in self._rows:
            parts: dict[str, list[np.ndarray]] = {}
            for shard in self.shards(split):
                file = self.root / shard["file"]
                try:
                    with np.load(file, allow_pickle=False) as data:
                        for name in data.files:
                            parts.setdefault(name, []).append(data[name])
                except (OSError, ValueError) as exc:
                    raise CalibrationError(f"calibration shard {file} is unreadable ({exc})") from None
            self._rows[split] = {name: np.concatenate(arrays) for name, arrays in parts.items()}
        return self._rows[split]

    def arrays(self, graph: str, split: str = CALIBRATION, limit: int | None = None) -> dict[str, np.ndarray]:
        """The graph's inputs, every sample of the split stacked on axis 0 (the first ``limit`` only)."""
        if graph not in self.manifest["graphs"]:
            raise CalibrationError(f"the calibration set {self.root} has no data for graph {graph!r}; it has "
                                   f"{', '.join(self.graphs)} (rebuild with --graphs)")
        tensors = self._tensors(split)
        out = {}
        for name in SPECS[graph].input_names:
            if name not in tensors:
                raise CalibrationError(f"calibration shards of {self.root} ({split}) lack input {name!r} of {graph}")
            out[name] = tensors[name][:limit]
        return out

    def feeds(self, graph: str, split: str = CALIBRATION, batch: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Feed dicts of ``batch`` samples each (the last may be smaller), in sample order."""
        arrays = self.arrays(graph, split)
        rows = len(next(iter(arrays.values())))
        for i in range(0, rows, batch):
            yield {name: a[i : i + batch] for name, a in arrays.items()}


def polygraphy_data_loader(root: str | Path, graph: str, split: str = HELD_OUT, batch: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """A data loader for ``polygraphy.comparator.Comparator.run(data_loader=...)``."""
    return CalibrationSet(root).feeds(graph, split, batch)
