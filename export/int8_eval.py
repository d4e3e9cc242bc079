"""Measuring the INT8 files on the held-out samples: errors against FP32, ORT CPU timings, and the final frame
of the F -> W -> G chain. Results live in the INT8 manifest beside what they were measured on, so an
unchanged file is not measured again."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from lpt.calibration.dataset import CalibrationSet
from lpt.calibration.sampling import HELD_OUT

from lpt.metrics import UNIT_PEAK, max_abs_error, psnr_db, ssim

from . import int8_accuracy as acc
from .int8 import Int8Manifest, Target, fp32_path, int8_path
from .manifest import sha256_file

Progress = Callable[[str], None]
CHAIN = ("appearance_feature_extractor", "warping_module", "spade_generator")


class Fp32Cache:
    """FP32 outputs and timings of each source file, measured once per run."""

    def __init__(self, held_out: Callable[[str], list[acc.Feed]], timing_runs: int) -> None:
        self.held_out, self.timing_runs = held_out, timing_runs
        self._outputs: dict[Path, list[acc.Outputs]] = {}
        self._seconds: dict[Path, float] = {}

    def measure(self, path: Path, graph: str) -> tuple[list[acc.Outputs], float]:
        if path not in self._outputs:
            sess = acc.session(path)
            feeds = self.held_out(graph)
            self._outputs[path] = acc.run_all(sess, feeds)
            self._seconds[path] = acc.median_seconds(sess, feeds[0], self.timing_runs)
        return self._outputs[path], self._seconds[path]


def evaluate_targets(targets: list[Target], made: Mapping[Target, bool], calib: CalibrationSet,
                     manifest: Int8Manifest, timing_runs: int, progress: Progress) -> None:
    """Errors and timings of every target, stored in its manifest entry under ``evaluation``."""
    feeds: dict[str, list[acc.Feed]] = {}

    def held_out(graph: str) -> list[acc.Feed]:
        if graph not in feeds:
            feeds[graph] = acc.rows(calib.arrays(graph, HELD_OUT))
        return feeds[graph]

    fp32 = Fp32Cache(held_out, timing_runs)
    width = max(len(t.dst.name) for t in targets)
    for target in targets:
        entry = manifest.files[target.dst.name]
        previous = entry.get("evaluation")
        if not made[target] and previous and previous.get("timing_runs") == timing_runs:
            continue
        ref, fp32_seconds = fp32.measure(target.src, target.graph)
        sess = acc.session(target.dst)
        got = acc.run_all(sess, held_out(target.graph))
        errors = acc.output_errors(target.graph, ref, got)
        seconds = acc.median_seconds(sess, held_out(target.graph)[0], timing_runs)
        entry["evaluation"] = {"samples": len(got), "timing_runs": timing_runs, "fp32_seconds": fp32_seconds,
                               "seconds": seconds, "errors": [asdict(e) for e in errors]}
        manifest.save()
        worst = min(errors, key=lambda e: e.snr_db)
        progress(f"  {target.dst.name:<{width}}  measured: worst SNR {worst.snr_db:5.1f} dB ({worst.output}), "
                 f"{acc.ms(seconds):>8} ms vs FP32 {acc.ms(fp32_seconds):>8} ms")


def chain_members(onnx_dir: Path, flavour: str, sampler: str | None) -> dict[str, Path]:
    """The INT8 files of one chain: F and G, and the warping module in the given grid-sample variant."""
    return {graph: int8_path(onnx_dir, graph, flavour, sampler if graph == "warping_module" else None)
            for graph in CHAIN}


def evaluate_chains(onnx_dir: Path, targets: list[Target], calib: CalibrationSet, manifest: Int8Manifest,
                    progress: Progress) -> list[str]:
    """PSNR and SSIM of the final frame for each flavour and grid-sample variant whose three INT8 files are all
    among ``targets``, against one FP32 chain (native sampling where exported: the two samplers agree to
    1e-5); returns the keys of the chains measured (stored in ``manifest.chains``)."""
    made = {t.dst for t in targets}
    if not all(g in calib.graphs for g in ("appearance_feature_extractor", "warping_module")):
        return []
    sampler = None if fp32_path(onnx_dir, "warping_module").is_file() else "gather"
    refs = {g: fp32_path(onnx_dir, g, sampler if g == "warping_module" else None) for g in CHAIN}
    held = acc.rows({**calib.arrays("appearance_feature_extractor", HELD_OUT), **calib.arrays("warping_module", HELD_OUT)})
    reference: np.ndarray | None = None
    keys = []
    for flavour, variant in sorted({(t.flavour, t.sampler or "") for t in targets if t.graph == "warping_module"}):
        members = chain_members(onnx_dir, flavour, variant or None)
        if not all(p in made for p in members.values()):
            continue
        files = {p.name: sha256_file(p) for p in (*members.values(), *refs.values())}
        key = f"{flavour} {variant or 'native'}"
        keys.append(key)
        stored = manifest.chains.get(key, {})
        if stored.get("files") == files and stored.get("calibration") == calib.digest:
            continue
        if reference is None:
            reference = acc.chain_frames(*(acc.session(refs[g]) for g in CHAIN), held)
        frames = acc.chain_frames(*(acc.session(members[g]) for g in CHAIN), held)
        result: dict[str, Any] = {"files": files, "calibration": calib.digest, "samples": len(frames),
                                  "psnr_db": psnr_db(frames, reference, UNIT_PEAK), "ssim": ssim(frames, reference),
                                  "max_abs": max_abs_error(frames, reference)}
        manifest.chains[key] = result
        manifest.save()
        progress(f"  chain F -> W -> G, {key}: frame PSNR {result['psnr_db']:.2f} dB, SSIM {result['ssim']:.4f}")
    return keys
