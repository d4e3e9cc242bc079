"""Running a corpus case as a real process and judging what it did: the contract of issue 7.

A bad input must give a non-zero exit, one ``lpt: error:`` line naming the problem, no traceback or other
noise on stderr (only the lines lpt-run announces before it reads its inputs), nothing new in the output
folder (no output, no temporary file), no trace of a payload, and all that within the time limit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .corpus import Case

TIME_LIMIT_S = 60.0
ERROR_PREFIX = "lpt: error: "
ANNOUNCEMENTS = ("backend: ", "faces: ")  # what lpt-run says about its setup once the inputs read well


@dataclass(frozen=True)
class Outcome:
    case: Case
    exit_code: int | None  # None: still running at the time limit, killed
    stderr: str
    seconds: float
    left: tuple[str, ...]  # files new or changed in the watched folder, and "absent" files that exist

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith(ERROR_PREFIX)]

    def problems(self) -> list[str]:
        """What broke the contract; empty when the case behaved."""
        if self.exit_code is None:
            return [f"still running after {TIME_LIMIT_S:.0f} s"]
        problems = [] if self.exit_code != 0 else ["exit status 0"]
        errors = self.error_lines
        if len(errors) != 1:
            problems.append(f"{len(errors)} error lines instead of one")
        else:
            problems += [f"error line lacks {fragment!r}" for fragment in self.case.expect if fragment not in errors[0]]
        noise = [line for line in self.stderr.splitlines() if line not in errors and not line.startswith(ANNOUNCEMENTS)]
        if noise:
            problems.append(f"{len(noise)} more stderr line(s): {noise[-1][:100]!r}")
        if self.left:
            problems.append(f"left behind: {', '.join(self.left)}")
        return problems


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (hidden temporary files included): size and modification time."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def program(name: str) -> str:
    """The console script of this interpreter's environment (the venv running the tests)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed beside {sys.executable} nor on PATH")
    return found


def run_case(case: Case, folder: Path) -> Outcome:
    """Run ``case`` in its ``folder`` with a private cache, killed at the time limit."""
    before = _listing(case.watched)
    env = {**os.environ, "LPT_CACHE": str(folder / "cache"), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    try:
        done = subprocess.run([program(case.argv[0]), *case.argv[1:]], cwd=folder, env=env, capture_output=True,
                              text=True, check=False, timeout=TIME_LIMIT_S)
        exit_code, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        exit_code = None
    seconds = time.perf_counter() - start
    after = _listing(case.watched)
    left = [name for name, stat in after.items() if before.get(name) != stat]
    left += [str(path) for path in case.absent if path.exists()]
    return Outcome(case, exit_code, stderr, seconds, tuple(left))


def table(outcomes: Mapping[str, Outcome], skipped: Mapping[str, str], titles: Mapping[str, str]) -> str:
    """One row per case: its outcome, the exit status, the seconds and the error line it printed."""
    rows = [("case", "what", "result", "exit", "s", "stderr")]
    for name, title in titles.items():
        if name in skipped:
            rows.append((name, title, "skipped", "", "", skipped[name]))
            continue
        outcome = outcomes[name]
        problems = outcome.problems()
        errors = outcome.error_lines
        message = errors[0].removeprefix(ERROR_PREFIX) if len(errors) == 1 else ""
        if problems:
            message = "; ".join(problems) + (f" -- {message}" if message else "")
        rows.append((name, title, "FAIL" if problems else "ok", "killed" if outcome.exit_code is None else
                     str(outcome.exit_code), f"{outcome.seconds:.1f}", message))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5] for row in rows)
