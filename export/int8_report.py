"""The INT8 accuracy verdict: each measurement against its spec's threshold, a table, and a JSON report."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lpt.files import write_atomic
from lpt.specs import INT8_FRAME_THRESHOLD, SPECS, Int8Threshold

from . import int8_accuracy as acc
from .int8 import Int8Manifest, Target

Progress = Callable[[str], None]


def output_failures(name: str, threshold: Int8Threshold, errors: list[dict[str, Any]]) -> list[str]:
    """Outputs named in ``max_abs`` are judged in their own units; every other one by SNR; images by PSNR too."""
    failures = []
    for e in errors:
        where = f"{name} {e['output']}"
        if e["output"] in threshold.max_abs:
            if e["max_abs"] > threshold.max_abs[e["output"]]:
                failures.append(f"{where}: max abs error {e['max_abs']:.4g} > {threshold.max_abs[e['output']]:g}")
        elif e["snr_db"] < threshold.min_snr_db:
            failures.append(f"{where}: SNR {e['snr_db']:.1f} dB < {threshold.min_snr_db:g} dB")
        if e["psnr_db"] is not None and threshold.min_psnr_db is not None and e["psnr_db"] < threshold.min_psnr_db:
            failures.append(f"{where}: PSNR {e['psnr_db']:.2f} dB < {threshold.min_psnr_db:g} dB")
    return failures


def chain_failures(key: str, result: Mapping[str, Any], threshold: Int8Threshold = INT8_FRAME_THRESHOLD) -> list[str]:
    failures = []
    if threshold.min_psnr_db is not None and result["psnr_db"] < threshold.min_psnr_db:
        failures.append(f"frame ({key}): PSNR {result['psnr_db']:.2f} dB < {threshold.min_psnr_db:g} dB")
    if threshold.min_ssim is not None and result["ssim"] < threshold.min_ssim:
        failures.append(f"frame ({key}): SSIM {result['ssim']:.4f} < {threshold.min_ssim:g}")
    return failures


def _db(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"  # inf and -inf (NaN outputs) print as themselves


def accuracy_table(targets: list[Target], manifest: Int8Manifest) -> list[str]:
    width = max(len(t.dst.name) for t in targets)
    header = (f"{'file':<{width}} {'output':<14} {'max abs':>9} {'mean abs':>9} {'|ref| max':>9} {'SNR dB':>7} "
              f"{'PSNR':>6}  verdict")
    lines = [header, "-" * len(header)]
    for t in targets:
        entry = manifest.files[t.dst.name]
        threshold = SPECS[t.graph].int8_threshold
        for e in entry["evaluation"]["errors"]:
            failed = output_failures(t.dst.name, threshold, [e])
            lines.append(f"{t.dst.name:<{width}} {e['output']:<14} {e['max_abs']:9.3g} {e['mean_abs']:9.3g} "
                         f"{e['ref_max_abs']:9.3g} {_db(e['snr_db']):>7} {_db(e['psnr_db']):>6}  {'FAIL' if failed else 'ok'}")
    return lines


def timing_table(targets: list[Target], manifest: Int8Manifest) -> list[str]:
    """Per graph and grid-sample variant: FP32, int8-cpu and int8 (Q/DQ) medians on ONNX Runtime CPU."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for t in targets:
        ev = manifest.files[t.dst.name]["evaluation"]
        row = rows.setdefault((t.graph, t.sampler or ""), {})
        row["fp32"], row[t.flavour] = ev["fp32_seconds"], ev["seconds"]
    header = f"{'graph':<38} {'FP32 ms':>9} {'int8-cpu ms':>12} {'int8 Q/DQ ms':>13}"
    lines = [header, "-" * len(header)]
    for (graph, sampler), row in rows.items():
        ms = [acc.ms(row[k]) if k in row else "-" for k in ("fp32", "int8-cpu", "int8")]
        label = f"{graph} ({sampler})" if sampler else graph
        lines.append(f"{label:<38} {ms[0]:>9} {ms[1]:>12} {ms[2]:>13}")
    return lines


def verdict(targets: list[Target], chains: list[str], manifest: Int8Manifest) -> list[str]:
    failures = []
    for t in targets:
        failures += output_failures(t.dst.name, SPECS[t.graph].int8_threshold,
                                    manifest.files[t.dst.name]["evaluation"]["errors"])
    for key in chains:
        failures += chain_failures(key, manifest.chains[key])
    return failures


def write_report(path: Path, targets: list[Target], chains: list[str], manifest: Int8Manifest,
                 context: Mapping[str, Any], failures: list[str]) -> None:
    files = []
    for t in targets:
        entry = manifest.files[t.dst.name]
        spec = SPECS[t.graph]
        quantizer = dict(entry["quantizer"])
        excluded = quantizer.pop("excluded", [])
        files.append({"file": t.dst.name, "graph": t.graph, "flavour": t.flavour, "grid_sample": t.sampler,
                      "source": t.src.name, "quantizer": quantizer, "kept_high_precision": excluded,
                      "exclusions": entry["inputs"]["exclusions"], "exclusions_why": spec.int8_exclude.why,
                      "threshold": asdict(spec.int8_threshold), **entry["evaluation"]})
    report = {**context, "files": files,
              "chains": [{"chain": f"F -> W -> G ({key})", **manifest.chains[key], "threshold": asdict(INT8_FRAME_THRESHOLD)}
                         for key in chains],
              "passed": not failures, "failures": failures}
    write_atomic(path, json.dumps(_finite(report), indent=1, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """Strict JSON: an infinite SNR or PSNR (bit-identical outputs) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
