from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lpt.models.checkpoint import save_official_layout
from lpt.models.registry import NETWORK_NAMES, build

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_file(relative: str) -> Path:
    """A file of ../shared/ beside the checkout; the test skips when that folder is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} not found: the shared reference/assets folder is not beside this checkout")
    return path


@pytest.fixture(scope="session")
def small_networks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Default-initialised appearance extractor and the three MLPs: the cheap files, for loader tests."""
    torch.manual_seed(0)
    names = ("appearance_feature_extractor", "stitching", "eye_retargeting", "lip_retargeting")
    return save_official_layout(tmp_path_factory.mktemp("weights"), {n: build(n).state_dict() for n in names})


@pytest.fixture(scope="session")
def full_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every network, full size and default-initialised, in the official layout."""
    torch.manual_seed(0)
    return save_official_layout(tmp_path_factory.mktemp("weights"), {n: build(n).state_dict() for n in NETWORK_NAMES})


@pytest.fixture(scope="session")
def full_onnx_dir(full_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """One export of every graph in both grid-sample variants (FP32), shared by the export and runtime
    tests: (folder, status per file, progress lines)."""
    from lpt.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx")
    lines: list[str] = []
    results = export_onnx(full_weights_dir, out, grid_sample="both", trt="10", progress=lines.append)
    return out, [r.status for r in results], lines


# ---- the table of issue 14's checks (tests marked `usage`), printed at the end of the session ---------------

_USAGE: list[tuple[str, str, str, float]] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "usage(item, what): a check of lpt-run as people use it (issue 14), "
                                       "listed in a table at the end of the run")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("usage")
    if marker is not None and (report.when == "call" or report.outcome != "passed"):
        _USAGE.append((str(marker.args[0]), f"{marker.args[1]} [{item.name}]", report.outcome, report.duration))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _USAGE:
        return
    rows = [("item", "what a user checks", "result", "s"), *((i, w, r, f"{s:.1f}") for i, w, r, s in sorted(_USAGE))]
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    terminalreporter.section("lpt-run as people use it (issue 14; refusals are in the bad-input corpus table)")
    for row in rows:
        terminalreporter.write_line("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
