"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class LptError(Exception):
    """Base of every error caused by the user's input or environment, never by a bug in lpt."""


class CheckpointError(LptError):
    """A weights file or folder is missing, unreadable, or not in the official layout."""


class OnnxError(LptError):
    """A file given as an ONNX model is missing or cannot be read as one."""


def reports_errors(fn: F) -> F:
    """Turn an ``LptError`` into ``lpt: error: <message>`` on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LptError as exc:
            print(f"lpt: error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
