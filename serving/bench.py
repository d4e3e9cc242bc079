"""``lpt triton bench``: N concurrent streams against the animation model (crops in, or full images in with the
crop on the server), each its own source and sequence,
measured from the client: frames per second in all, per-request latency percentiles, CPU utilisation.

Depends on: numpy, psutil, lpt.triton.client (tritonclient).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
from lpt.triton.client import AnimationStream, FullFrameStream, connect
from lpt.triton.config import CropOptions


@dataclass(frozen=True)
class StreamInput:
    source_crop: np.ndarray  # (256, 256, 3) uint8
    driving_crops: tuple[np.ndarray, ...]  # one per frame
    relative_to_first: bool = True

    @property
    def driving(self) -> tuple[np.ndarray, ...]:
        return self.driving_crops

    @property
    def source(self) -> np.ndarray:
        return self.source_crop


@dataclass(frozen=True)
class FullStreamInput:
    """A stream for ``lpt_animate_full``: the source image and driving frames whole, crop settings beside them."""

    source_image: np.ndarray  # (H, W, 3) uint8, as lpt.runtime.media.load_image gives it
    driving_images: tuple[np.ndarray, ...]  # full frames, one per request
    relative_to_first: bool = True
    crop: CropOptions = field(default_factory=CropOptions)

    @property
    def driving(self) -> tuple[np.ndarray, ...]:
        return self.driving_images

    @property
    def source(self) -> np.ndarray:
        return self.source_image


@dataclass
class StreamResult:
    latencies: list[float]  # seconds per frame request; the first one prepares the source too
    frames: list[np.ndarray] = field(default_factory=list)  # kept only when asked
    error: str | None = None


@dataclass
class BenchReport:
    streams: int
    frames: int
    wall_s: float
    results: list[StreamResult]
    cpu_percent: float  # of all the machine's cores, over the run
    cores: int
    server_cpu_percent: float | None  # tritonserver and its Python stubs, when it runs on this machine

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def latencies_ms(self, first: bool) -> np.ndarray:
        picked = [r.latencies[:1] if first else r.latencies[1:] for r in self.results]
        return np.array([x for xs in picked for x in xs]) * 1000

    def percentiles(self, first: bool) -> dict[str, float]:
        values = self.latencies_ms(first)
        if values.size == 0:
            return {}
        return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)} | {"max": float(values.max())}

    def as_dict(self) -> dict[str, Any]:
        return {"streams": self.streams, "frames": self.frames, "wall_s": self.wall_s, "fps": self.fps,
                "fps_per_stream": self.fps / max(1, self.streams), "latency_ms": self.percentiles(False),
                "first_frame_latency_ms": self.percentiles(True), "cpu_percent": self.cpu_percent,
                "cores": self.cores, "server_cpu_percent": self.server_cpu_percent}

    def table(self) -> str:
        rows = [("streams", f"{self.streams}"), ("frames", f"{self.frames}"), ("wall time (s)", f"{self.wall_s:.1f}"),
                ("frames/s, all streams", f"{self.fps:.3f}"), ("frames/s per stream", f"{self.fps / max(1, self.streams):.3f}")]
        for label, first in (("latency", False), ("first frame (with source)", True)):
            for name, value in self.percentiles(first).items():
                rows.append((f"{label} {name} (ms)", f"{value:,.0f}"))
        rows.append((f"CPU, machine ({self.cores} cores)", f"{self.cpu_percent:.0f}%"))
        if self.server_cpu_percent is not None:
            rows.append(("CPU, tritonserver + stubs", f"{self.server_cpu_percent:.0f}% of one core"))
        width = max(len(k) for k, _ in rows)
        lines = [f"| {'measure':<{width}} | {'value':>12} |", f"| {'-' * width} | {'-' * 12} |"]
        return "\n".join(lines + [f"| {k:<{width}} | {v:>12} |" for k, v in rows])


def _server_processes(port: int) -> list[psutil.Process]:
    """tritonserver listening on ``port`` here and its children (the Python backend stubs), if it is local."""
    try:
        pids = {c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                and c.status == psutil.CONN_LISTEN and c.pid}
    except psutil.AccessDenied:
        return []
    found = []
    for pid in pids:
        try:
            server = psutil.Process(pid)
            found += [server, *server.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return found


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _one(client: Any, model: str, data: StreamInput | FullStreamInput, keep: bool, result: StreamResult,
         go: threading.Barrier) -> None:
    stream = FullFrameStream(client, model, crop=data.crop) if isinstance(data, FullStreamInput) else \
        AnimationStream(client, model)
    go.wait()
    try:
        for i, image in enumerate(data.driving):
            frame = stream.frame(image, data.source if i == 0 else None, data.relative_to_first)
            if keep:
                result.frames.append(frame)
        stream.end()
    except Exception as exc:  # noqa: BLE001 - reported by the caller, with the stream it ended
        result.error = str(exc)
    finally:
        result.latencies = stream.latencies[: len(data.driving)]
        client.close()


def run_bench(url: str, model: str, inputs: list[StreamInput] | list[FullStreamInput],
              keep_frames: bool = False) -> BenchReport:
    """Every stream of ``inputs`` on its own thread and connection, all started together: 256 crops to
    ``lpt_animate`` (``StreamInput``) or full images to ``lpt_animate_full`` (``FullStreamInput``)."""
    port = int(url.rsplit(":", 1)[1]) if ":" in url else 8001
    server = _server_processes(port) if url.split(":")[0] in ("127.0.0.1", "localhost") else []
    results = [StreamResult([]) for _ in inputs]
    clients = [connect(url) for _ in inputs]  # one channel per stream, as separate clients would have
    go = threading.Barrier(len(inputs) + 1)
    threads = [threading.Thread(target=_one, args=(client, model, data, keep_frames, result, go), daemon=True)
               for client, data, result in zip(clients, inputs, results)]
    for t in threads:
        t.start()
    psutil.cpu_percent(None)
    server_before = _cpu_seconds(server)
    go.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    cpu = psutil.cpu_percent(None)
    server_cpu = (_cpu_seconds(server) - server_before) / wall * 100 if server and wall > 0 else None
    frames = sum(len(r.latencies) for r in results if r.error is None)
    return BenchReport(len(inputs), frames, wall, results, cpu, psutil.cpu_count() or 1, server_cpu)
