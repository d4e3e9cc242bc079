"""Where ``lpt-run`` writes, decided before any work: what the inputs can make, which file is written,
that no input and no existing file is lost, and that one run at a time writes an output.

Depends on: the standard library, ``lpt.runtime.media`` and ``lpt.runtime.templates`` (what a file is) and
``lpt.runtime.video`` (output suffixes).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from lpt.runtime.media import media_kind
from lpt.runtime.templates import TEMPLATE_SUFFIXES
from lpt.runtime.video import IMAGE_OUTPUTS, OUTPUT_FORMATS, check_output_path

from lpt.errors import LptError

DEFAULT_FOLDER = Path("animations")
InputKind = Literal["image", "video", "template"]
OutputKind = Literal["image", "video"]


def driving_kind(path: Path) -> InputKind:
    """What ``path`` is as a driving input: a template by its suffix (which names the format to parse), else an image or a video by content;
    ``MediaError`` naming the file when it is none of them."""
    return "template" if path.suffix.lower() in TEMPLATE_SUFFIXES else media_kind(path, "driving")


def output_kind(path: Path) -> OutputKind:
    return "image" if path.suffix.lower() in IMAGE_OUTPUTS else "video"


def possible_outputs(source: InputKind, driving: InputKind) -> tuple[OutputKind, ...]:
    """One frame needs one source picture and one driving picture; everything else makes a video."""
    return ("image", "video") if source == "image" and driving == "image" else ("video",)


def check_kinds(source: InputKind, driving: InputKind, output: Path) -> None:
    """``LptError`` saying what is possible instead when these inputs cannot make ``output``'s kind."""
    if output_kind(output) in possible_outputs(source, driving):
        return
    made = "an animation" if source == "image" else "a video"
    raise LptError(f"output {output}: {_a(source)} source driven by {_a(driving)} makes {made}, not one image; "
                   f"name the output {output.with_suffix('.mp4').name} ({', '.join(OUTPUT_FORMATS)})")


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def default_output(source: Path, driving: Path) -> Path:
    """``animations/<source>--<driving>.mp4``, as upstream names its results."""
    return DEFAULT_FOLDER / f"{source.stem}--{driving.stem}.mp4"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(output: Path, inputs: dict[str, Path]) -> None:
    """``LptError`` when ``output`` is one of the inputs, by file identity (links and relative paths too)."""
    for what, path in inputs.items():
        if _same_file(output, path):  # an output that does not exist yet cannot be an input
            raise LptError(f"output {output} is the {what} {path}: writing it would destroy the input; "
                           "choose another -o")


def check_overwrite(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise LptError(f"output {output} exists; give --overwrite (-y) to replace it, or choose another -o")


@dataclass
class OutputClaim:
    """An advisory lock (``.<name>.lpt-lock`` beside the output) held while one run writes ``path``: a
    second run for the same output fails at once instead of both succeeding and one silently winning.
    The kernel drops the lock when the process dies, so a killed run never blocks the next one."""

    path: Path
    _fd: int = -1

    @property
    def lock_path(self) -> Path:
        return self.path.parent / f".{self.path.name}.lpt-lock"

    def __enter__(self) -> OutputClaim:
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise LptError(f"output {self.path} is being written by another lpt-run (pid {holder}); wait for "
                               "it or choose another -o") from None
            if self._still_linked(fd):
                break
            os.close(fd)  # the run before removed the file we locked: lock the one now there
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
        except FileNotFoundError:
            return False

    def __exit__(self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None) -> None:
        self.lock_path.unlink(missing_ok=True)  # still held: no other run can be between open and lock on it
        os.close(self._fd)
        self._fd = -1


def plan_output(output: Path | None, source: Path, driving: Path, source_kind: InputKind, driving_kind: InputKind,
                *, overwrite: bool) -> Path:
    """The output path, checked before any work: the default one (its folder created), the kinds the
    inputs can make, not an input, not an existing file unless ``overwrite``, a writable folder."""
    if output is None:
        output = default_output(source, driving)
        output.parent.mkdir(parents=True, exist_ok=True)
    check_kinds(source_kind, driving_kind, output)
    check_not_input(output, {"source": source, "driving": driving})
    check_output_path(output)
    check_overwrite(output, overwrite)
    return output
