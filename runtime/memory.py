"""Peak host memory of a process, as the run table and the benchmarks report it."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mib(pid: int | str = "self") -> float | None:
    """Peak resident set size of a process's own address space: VmHWM from /proc (Linux). Not ru_maxrss,
    which a child started by fork and exec inherits from its parent: every child of a 4 GiB bench process
    would report at least 4 GiB. None when the process is gone; ru_maxrss where there is no /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if pid == "self" else None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return None
