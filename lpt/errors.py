"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""


class LptError(Exception):
    """Base of every error caused by the user's input or environment, never by a bug in lpt."""


class CheckpointError(LptError):
    """A weights file or folder is missing, unreadable, or not in the official layout."""


class OnnxError(LptError):
    """A file given as an ONNX model is missing or cannot be read as one."""
