"""The report: markdown tables for the terminal, and a PNG bar chart, both made from the JSON report alone."""

from __future__ import annotations

import io
import math
from collections import Counter, defaultdict
from typing import Any

STAGES = ("load", "decode", "crop", "motion", "features", "warp", "generator", "warp+generator", "paste-back", "encode")


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    """Milliseconds or rates spanning six decades: three decimals below 1, none above 100."""
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _psnr(fidelity: dict[str, Any] | None) -> str:
    if fidelity is None:
        return "–"
    return "identical" if fidelity["psnr_db"] is None else f"{fidelity['psnr_db']:.1f}"


def _maxdiff(fidelity: dict[str, Any] | None, digits: int = 2) -> str:
    return "–" if fidelity is None else f"{fidelity['max_abs']:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def graphs_table(rows: list[dict[str, Any]]) -> str:
    measured = [r for r in rows if r["status"] == "measured"]
    body = [[r["graph"], f"{r['backend']} {r['precision']}", r["device"], str(r["batch"]), _ms(r["median_ms"]),
             _ms(r["p90_ms"]), str(r["runs"]), _ms(r["throughput_per_s"]), _maxdiff(r["fidelity"]),
             _psnr(r["fidelity"])] for r in measured]
    text = _table(["graph", "backend", "device", "batch", "median ms", "p90 ms", "runs", "items/s",
                   "max abs diff", "PSNR dB"], body)
    return text + "\n" + _not_measured(rows)


def _not_measured(rows: list[dict[str, Any]]) -> str:
    """Skipped and failed measurements, grouped by reason so a missing backend is one line, not one per graph."""
    cells_of = Counter(f"{r['backend']} {r['precision']}" for r in rows)
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for r in rows:
        if r["status"] != "measured":
            reason = r["reason"].replace(r["graph"], "<graph>")  # one line for a file missing for every graph
            groups[(r["status"], f"{r['backend']} {r['precision']}", reason)].append(f"{r['graph']} b{r['batch']}")
    lines = []
    for (status, label, reason), cells in groups.items():
        where = "every graph" if len(cells) == cells_of[label] else ", ".join(cells)
        lines.append(f"- {status}: **{label}** ({where}): {reason}")
    return "\n".join(lines)


def end_to_end_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        if r["status"] != "measured":
            continue
        name = r["name"] + (" (lpt default)" if r["default"] and r["kind"] == "lpt" else "")
        first = f"{_num(r['call_s'])} ({r['call_frames']} fr.)"
        body.append([name, _num(r["load_s"]), first, _num(r["warm_fps"], 3), _ms(r["per_frame_ms"]),
                     _num(r["peak_rss_mib"], 0), _num(r["peak_gpu_mib"], 0), _psnr(r["fidelity"]),
                     _maxdiff(r["fidelity"], 3)])
    text = _table(["run", "load s", "first call s", "warm frames/s", "warm ms/frame", "peak host MiB", "peak GPU MiB",
                   "PSNR dB", "max pixel diff"], body)
    notes = [f"- {r['status']}: **{r['name']}**: {r['reason']}" for r in rows if r["status"] != "measured"]
    notes += [f"- {r['name']}: process start to written video; fidelity: {r['fidelity_of']}" for r in rows
              if r["kind"] == "cold" and r["status"] == "measured"]
    return "\n".join([text, *notes])


def stages_table(rows: list[dict[str, Any]]) -> str:
    measured = [r for r in rows if r["status"] == "measured" and r["stage_ms"]]
    stages = [s for s in STAGES if any(s in r["stage_ms"] for r in measured)]
    stages += sorted({s for r in measured for s in r["stage_ms"]} - set(stages))
    body = [[r["name"] + (" (whole call)" if r["kind"] == "original" else " (warm)"),
             *(_ms(r["stage_ms"].get(s)) for s in stages)] for r in measured]
    return _table(["run: ms per frame of each stage", *stages], body)


def comparison_table(comparison: dict[str, Any]) -> str:
    original, ours = comparison["original"], comparison["lpt"]

    def ratio(key: str, digits: int = 2) -> str:
        a, b = original.get(key), ours.get(key)
        return f"{a / b:.{digits}f}x" if a and b else "–"

    rows = [
        ["what runs", original["describe"], ours["describe"], ""],
        ["one call, s (models loaded, every frame, video written)", _num(original["call_s"]), _num(ours["call_s"]),
         ratio("call_s")],
        ["of which model loading, s", _num(original["load_s"]), _num(ours["load_s"]), ratio("load_s")],
        ["animation per frame, ms ((call - load) / frames)", _ms(original["frame_ms"]), _ms(ours["frame_ms"]),
         ratio("frame_ms")],
        ["PSNR dB vs PyTorch FP32 reference", _psnr(original["fidelity"]), _psnr(ours["fidelity"]), ""],
        ["max pixel diff vs reference", _maxdiff(original["fidelity"], 3), _maxdiff(ours["fidelity"], 3), ""],
        ["peak host memory, MiB", _num(original["peak_rss_mib"], 0), _num(ours["peak_rss_mib"], 0), ratio("peak_rss_mib")],
        ["peak GPU memory, MiB", _num(original["peak_gpu_mib"], 0), _num(ours["peak_gpu_mib"], 0), ratio("peak_gpu_mib")],
    ]
    return _table(["", "original-style", f"lpt default ({ours['name']})", "original / lpt"], rows)


def headline_table(lines: list[dict[str, Any]]) -> str:
    body = [[line["name"] + (" (lpt default)" if line["default"] else ""), _ms(line["frame_ms"]),
             f"{line['speedup']:.2f}x", _psnr(line["fidelity"])] for line in lines]
    return _table(["run", "ms per driving frame", "speed-up vs original-style", "frame PSNR dB vs PyTorch FP32"], body)


def markdown(report: dict[str, Any]) -> str:
    from lpt.bench.machine import one_line

    load = report.get("load_average") or {}
    busy = f" Load average {load['start']:.1f} at the start, {load['end']:.1f} at the end." if "end" in load else ""
    parts = [f"## lpt bench — {report['started']}", "", f"Machine: {one_line(report['machine'])}.{busy}", ""]
    weights = report["weights"]
    if weights["synthetic"]:
        parts += [(f"**Synthetic weights** in {weights['path']} ({weights['synthetic'].rstrip('.')}): the speed "
                   "figures hold for the real weights; the fidelity figures compare implementations on the same "
                   "inputs, not animation quality."), ""]
    else:
        parts += [f"Weights: {weights['path']}.", ""]
    if report.get("graphs") is not None:
        b = report["budget"]
        note = (f"Median and p90 over at most {b['runs']} timed runs after up to {b['warmup']} warm-up runs, at "
                f"least {b['min_runs']}, about {b['seconds']:g} s per measurement; error against PyTorch FP32 on the "
                "same seeded inputs (worst output; PSNR peak = its range).")
        parts += ["### Per graph", "", note, "", graphs_table(report["graphs"]), ""]
    if report.get("end_to_end") is not None:
        inputs = report["inputs"]
        note = (f"{inputs['source']} driven by the first {inputs['frames']} frame(s) of {inputs['driving']}. Each run "
                "in a process of its own; fidelity of the rendered frames against lpt on PyTorch FP32.")
        rows = report["end_to_end"]
        parts += ["### End to end", "", note, "", end_to_end_table(rows), "", stages_table(rows), ""]
    if report.get("headline"):
        parts += ["### Per driving frame: the original-style run against every lpt path (all measured in this run)",
                  "", "Per frame of the call that loads the models: (call - loading) / frames.", "",
                  headline_table(report["headline"]), ""]
    if report.get("original_vs_lpt"):
        parts += ["### Original versus optimized (both measured in this run)", "",
                  comparison_table(report["original_vs_lpt"]), ""]
    parts += [f"Wall time of this bench: {report['wall_s']:.0f} s."]
    return "\n".join(parts)


def chart_png(report: dict[str, Any]) -> bytes:
    """Batch-1 median latency per graph and backend (log scale), and end-to-end seconds per frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    cells = [r for r in report.get("graphs") or [] if r["status"] == "measured" and r["batch"] == 1]
    graphs = list(dict.fromkeys(r["graph"] for r in cells))
    labels = list(dict.fromkeys(f"{r['backend']} {r['precision']}" for r in cells))
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        values = {r["graph"]: r["median_ms"] for r in cells if f"{r['backend']} {r['precision']}" == label}
        xs = [g + i * width for g, name in enumerate(graphs) if name in values]
        left.bar(xs, [values[name] for name in graphs if name in values], width, label=label)
    left.set_xticks([g + width * (len(labels) - 1) / 2 for g in range(len(graphs))],
                    [g.replace("_", "\n", 1) for g in graphs], fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("median latency at batch 1, ms (log)")
    left.set_title("per graph")
    if labels:
        left.legend(fontsize=8)

    runs = [r for r in report.get("end_to_end") or [] if r["status"] == "measured"]
    names = [r["name"] for r in runs]
    per_frame = [(r["per_frame_ms"] or 1000 * (r["call_s"] - (r["load_s"] or 0)) / max(1, r["call_frames"])) / 1000
                 for r in runs]
    colours = ["tab:red" if r["kind"] == "original" else "tab:green" if r["default"] else "tab:blue" for r in runs]
    right.set_title("end to end")
    if runs:
        bars = right.barh(names, per_frame, color=colours)
        speedups = {line["name"]: line["speedup"] for line in report.get("headline") or []}
        for bar, name in zip(bars, names):
            if name in speedups:
                right.annotate(f"{speedups[name]:.2f}x", (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                               xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        right.set_xlabel("s per frame (warm; original-style: call less loading;\ncold: whole process)")
        right.invert_yaxis()
    else:
        right.text(0.5, 0.5, "not run", ha="center", va="center", transform=right.transAxes)
        right.set_axis_off()
    if report["weights"]["synthetic"]:
        figure.suptitle("synthetic weights: speed holds, fidelity compares implementations only", fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()
