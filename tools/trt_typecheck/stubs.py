"""Stub files for mypy: ``tensorrt`` from pybind11-stubgen's output, mended; ``cuda.bindings.runtime`` from
introspection. Run inside a process that can import the bindings (see ``typecheck.py``):

    python stubs.py tensorrt RAW_DIR OUT_DIR   # mend pybind11-stubgen's ``tensorrt_bindings`` into OUT_DIR/tensorrt
    python stubs.py cuda OUT_DIR               # write OUT_DIR/cuda/bindings/runtime.pyi
"""

from __future__ import annotations

import ast
import inspect
import keyword
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# pybind11-stubgen names C++ parameters as they are; ``in`` is a Python keyword.
_IN_PARAMETER = re.compile(r"(?<=[(,] )in(?=\s*[:,)=])|(?<=\()in(?=\s*[:,)=])")


def _split_parameters(text: str) -> list[str]:
    """Top-level comma split of a parameter list (brackets in annotations and defaults kept whole)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _defaults_in_order(line: str) -> str:
    """A parameter without a default after one with a default is a syntax error; pybind11 allows it.
    Such parameters get ``= ...`` (the bindings still require them, mypy then does not)."""
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not match:
        return line
    seen_default, keyword_only, fixed = False, False, []
    for param in _split_parameters(match[2]):
        keyword_only |= param.startswith("*")  # after * or *args a parameter needs no default
        if seen_default and not keyword_only and "=" not in param and param != "/":
            param += " = ..."
        seen_default |= "=" in param
        fixed.append(param)
    return f"{match[1]}{', '.join(fixed)}{match[3]}"


def mend_tensorrt(raw: Path, out: Path) -> None:
    """``raw/tensorrt_bindings`` (what pybind11-stubgen wrote) -> ``out/tensorrt``, which mypy accepts."""
    target = out / "tensorrt"
    shutil.copytree(raw / "tensorrt_bindings", target)
    for path in target.rglob("*.pyi"):
        lines = []
        for line in path.read_text().replace("tensorrt_bindings", "tensorrt").splitlines():
            if line.lstrip().startswith("def "):
                line = _defaults_in_order(_IN_PARAMETER.sub("in_", line))
            lines.append(line)
            if line.startswith("class IHostMemory"):  # the generator misses the buffer protocol
                lines.append("    def __buffer__(self, flags: int, /) -> memoryview: ...")
        text = "\n".join(lines) + "\n"
        try:
            ast.parse(text)
        except SyntaxError as exc:
            raise SystemExit(f"{path}: still not valid Python after mending, line {exc.lineno}: {exc.msg}") from None
        path.write_text(text)


def _annotation(param: inspect.Parameter, classes: set[str]) -> str:
    note = param.annotation
    name = note if isinstance(note, str) else getattr(note, "__name__", "")
    return name if name in classes else "Any"


def _function(name: str, fn: Any, classes: set[str]) -> str:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        params = ["*args: Any", "**kwargs: Any"]
    else:
        params = []
        for p in signature.parameters.values():
            pname = p.name + "_" if keyword.iskeyword(p.name) else p.name
            star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
            default = "" if p.default is p.empty else " = ..."
            params.append(f"{star}{pname}: {_annotation(p, classes)}{default}")
    return f"def {name}({', '.join(params)}) -> Any: ..."


def _class(name: str, cls: type, classes: set[str]) -> list[str]:
    lines = [f"class {name}:"]
    members = getattr(cls, "__members__", None)
    if isinstance(members, Mapping) and members:  # an enum (enum.Enum in 12.x, a FastEnum in 13.x)
        lines += [f"    {m}: ClassVar[{name}]" for m in members if m.isidentifier() and not keyword.iskeyword(m)]
        lines += ["    name: str", "    value: int", "    def __init__(self, value: int) -> None: ...",
                  "    def __int__(self) -> int: ..."]
        return lines
    lines += ["    def __init__(self, *args: Any, **kwargs: Any) -> None: ...", "    def __int__(self) -> int: ..."]
    for attr in sorted(a for a in dir(cls) if not a.startswith("_")):
        value = inspect.getattr_static(cls, attr, None)
        if callable(value) and not isinstance(value, property):
            lines.append(f"    def {attr}(self, *args: Any, **kwargs: Any) -> Any: ...")
        else:
            lines.append(f"    {attr}: Any")
    return lines


def cuda_runtime_stub(module: Any) -> str:
    """Every public name of ``cuda.bindings.runtime``: functions with their parameter names (results are
    ``(error, *values)`` tuples, typed Any), enums with their members, classes with their attributes."""
    names = sorted(n for n in dir(module) if not n.startswith("_"))
    classes = {n for n in names if inspect.isclass(getattr(module, n))}
    lines = ["from typing import Any, ClassVar", ""]
    for name in names:
        value = getattr(module, name)
        if name in classes:
            lines += _class(name, value, classes)
        elif callable(value):
            lines.append(_function(name, value, classes))
        elif isinstance(value, (bool, int, float, str, bytes)):
            lines.append(f"{name}: {type(value).__name__}")
        else:
            lines.append(f"{name}: Any")
    return "\n".join(lines) + "\n"


def write_cuda(out: Path) -> None:
    from cuda.bindings import runtime

    folder = out / "cuda" / "bindings"
    folder.mkdir(parents=True, exist_ok=True)
    (out / "cuda" / "__init__.pyi").write_text("")
    (folder / "__init__.pyi").write_text("")
    text = cuda_runtime_stub(runtime)
    ast.parse(text)
    (folder / "runtime.pyi").write_text(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["tensorrt"] and len(sys.argv) == 4:
        mend_tensorrt(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1:2] == ["cuda"] and len(sys.argv) == 3:
        write_cuda(Path(sys.argv[2]))
    else:
        raise SystemExit(__doc__)
