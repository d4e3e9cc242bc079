"""Errors a user can act on. The CLI prints their message as one line and exits non-zero; a stop signal
(SIGINT, SIGTERM, SIGHUP) unwinds the command like an exception, so every ``with``/``finally`` removes
what it had half-written, and exits 128 + the signal's number.

Depends on: the standard library only.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class LptError(Exception):
    """Base of every error caused by the user's input or environment, never by a bug in lpt."""


class CheckpointError(LptError):
    """A weights file or folder is missing, unreadable, or not in the official layout."""


class OnnxError(LptError):
    """A file given as an ONNX model is missing or cannot be read as one."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C; kill, timeout, docker stop; a closed terminal


class Stopped(BaseException):
    """A stop signal arrived. A BaseException, as KeyboardInterrupt is, so ``except Exception`` lets it pass."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, _frame: FrameType | None) -> None:
    for number in STOP_SIGNALS:  # a second signal must not interrupt the clean-up the first one started
        signal.signal(number, signal.SIG_IGN)
    raise Stopped(signum)


@contextmanager
def stop_signals_unwind() -> Iterator[None]:
    """While inside, every stop signal raises ``Stopped`` in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def reports_errors(fn: F) -> F:
    """Turn an ``LptError`` into ``lpt: error: <message>`` on stderr and exit status 2, and a stop signal
    into one line and exit status 128 + its number, after the command cleaned up."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with stop_signals_unwind():
                return fn(*args, **kwargs)
        except LptError as exc:
            print(f"lpt: error: {exc}", file=sys.stderr)
            sys.exit(2)
        except Stopped as stop:
            print(f"lpt: stopped by {stop}; nothing half-written was left behind", file=sys.stderr)
            sys.exit(128 + stop.signum)

    return wrapper  # type: ignore[return-value]
