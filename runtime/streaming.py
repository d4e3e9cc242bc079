"""Decode, inference and encode overlapped on three threads joined by bounded queues.

At most ``depth`` items wait between two stages, so memory stays flat whatever the video's length.
The work stage runs on the CALLING thread: GPU contexts, CUDA streams and ``torch.no_grad()`` are
per-thread state the caller has set up there. Decoding and encoding run on two helper threads (FFmpeg
and numpy release the GIL while they work). An exception in any stage stops the other two and is
raised to the caller; nothing waits forever.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
U = TypeVar("U")

_POLL_S = 0.05  # how often a blocked stage looks whether another stage has stopped
_END = object()


@dataclass
class StreamStats:
    """Items that went through all three stages and the seconds each stage spent working (not waiting)."""

    items: int = 0
    decode_s: float = 0.0
    work_s: float = 0.0
    encode_s: float = 0.0
    wall_s: float = 0.0


class _Stage:
    """A helper thread that remembers the exception that ended it."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        self.error: BaseException | None = None
        self._target = target
        self._stop = stop
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self.error = exc
            self._stop.set()


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; whether it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    """The next item, or ``_END`` as soon as ``stop`` is set (what is still queued is dropped)."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _END


def stream(source: Iterable[T], work: Callable[[T], U], sink: Callable[[U], None], *, depth: int = 8,
           max_items: int | None = None) -> StreamStats:
    """Run ``sink(work(item))`` for each item of ``source`` (at most ``max_items``), the three overlapped.

    ``source`` is iterated on a decode thread, ``sink`` called in order on an encode thread, ``work`` on
    this thread. Returns when the sink has taken the last item; the first exception of any stage is
    raised here after the helper threads have stopped.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    stats = StreamStats()
    started = time.perf_counter()
    stop = threading.Event()  # some stage failed or the caller is leaving: everyone stops
    inputs: queue.Queue[Any] = queue.Queue(maxsize=depth)
    outputs: queue.Queue[Any] = queue.Queue(maxsize=depth)

    def decode() -> None:
        iterator = iter(source)
        count = 0
        while max_items is None or count < max_items:
            begin = time.perf_counter()
            item = next(iterator, _END)
            stats.decode_s += time.perf_counter() - begin
            if item is _END or not _put(inputs, item, stop):
                break
            count += 1
        _put(inputs, _END, stop)

    def encode() -> None:
        while (item := _get(outputs, stop)) is not _END:
            begin = time.perf_counter()
            sink(item)
            stats.encode_s += time.perf_counter() - begin
            stats.items += 1

    decoder = _Stage("lpt-decode", decode, stop)
    encoder = _Stage("lpt-encode", encode, stop)
    decoder.thread.start()
    encoder.thread.start()
    try:
        while (item := _get(inputs, stop)) is not _END:
            begin = time.perf_counter()
            result = work(item)
            stats.work_s += time.perf_counter() - begin
            if not _put(outputs, result, stop):
                break
        _put(outputs, _END, stop)
        encoder.thread.join()
    finally:
        stop.set()
        decoder.thread.join()
        encoder.thread.join()
    for stage in (decoder, encoder):
        if stage.error is not None:
            raise stage.error
    stats.wall_s = time.perf_counter() - started
    return stats
