"""mypy over lpt's TensorRT code, once per TensorRT version, against stubs made from the real bindings.

TensorRT's libraries do not install from PyPI, but its Python bindings do (``tensorrt_cu1X_bindings``). Their
extension links nine C entry points of libnvinfer / libnvinfer_plugin / libnvonnxparser; a stub library
compiled here with ``cc`` under those sonames lets it import, for introspection only. pybind11-stubgen then
writes .pyi files, ``stubs.py`` mends them, and mypy checks every module of ours that touches ``tensorrt``
or ``cuda.bindings`` (cuda-python's stubs come from the matching cuda-bindings wheel).

Everything downloaded or generated lives under ``build/trt-typecheck`` (cached, keyed by versions and by
the generator's sources); the repository's virtualenv is not touched. A canary file with two known errors
is checked in the same mypy run, so stubs that failed to load cannot pass silently.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOOLS = ("mypy==2.4.1", "pybind11-stubgen==2.5.5")
CUDA_PATHFINDER = "cuda-pathfinder==1.9.0"  # cuda.bindings imports it; both cuda-bindings lines accept 1.9


@dataclass(frozen=True)
class Target:
    label: str
    bindings: str  # the TensorRT bindings wheel
    cuda: str  # the cuda-bindings of the same CUDA major
    soname: int  # libnvinfer.so.<soname>

    @property
    def wheels(self) -> tuple[str, ...]:
        return (self.bindings, self.cuda, CUDA_PATHFINDER)


TARGETS = {
    "10.16": Target("10.16", "tensorrt_cu12_bindings==10.16.1.11", "cuda-bindings==12.9.5", 10),
    "11.4": Target("11.4", "tensorrt_cu13_bindings==11.4.0.106", "cuda-bindings==13.4.4", 11),
}
LIBRARIES = ("libnvinfer", "libnvinfer_plugin", "libnvonnxparser")
# Checked with strict settings (every def typed, no unused ignores).
STRICT = ("lpt.engines", "lpt.runtime.trt_backend", "lpt.runtime.engine_parity", "lpt.cuda")
# Also checked, for API errors only: the TensorRT runners of `lpt parity`, and any other module of ours that
# imports tensorrt or cuda.bindings (found by a scan, so new ones cannot be missed).
CHECKED = (*STRICT, "lpt.export.parity")
USES_TENSORRT = re.compile(r"^\s*(import tensorrt|from tensorrt\b|from cuda\.bindings|import cuda\.bindings)", re.MULTILINE)
# Large untyped or slow-to-analyse libraries: their names are Any, which keeps a cold run short.
SKIPPED = ("torch", "torchvision", "onnx", "onnxruntime", "onnxscript", "onnxslim", "onnxconverter_common",
           "onnx_graphsurgeon", "modelopt", "polygraphy", "scipy", "cv2", "matplotlib", "av", "psutil", "click", "PIL")
CANARY = """import tensorrt as trt
from cuda.bindings import runtime as cudart

trt.ICudaEngine.lpt_canary
cudart.lpt_canary
"""


class SetupError(Exception):
    """The check could not be set up (no network, no C compiler): not a verdict on the code."""


def _key(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise SetupError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result


def _cached(folder: Path, make: Callable[[Path], None]) -> Path:
    """``folder``, made by ``make(tmp)`` in a temporary sibling and renamed: never half-made, and two
    concurrent runs cannot corrupt it (the loser's copy is dropped)."""
    if folder.is_dir():
        return folder
    stem = folder.name.rsplit("-", 1)[0]  # older versions of the same folder (another key) are dropped
    for old in folder.parent.glob(f"{stem}-*") if folder.parent.is_dir() else []:
        if old.name.rsplit("-", 1)[0] == stem:
            shutil.rmtree(old, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        make(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _pip(target: Path, specs: tuple[str, ...], deps: bool) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(target)]
    _run(cmd + ([] if deps else ["--no-deps"]) + list(specs), f"pip install {' '.join(specs)} (needs PyPI)")


def tools_dir(cache: Path) -> Path:
    return _cached(cache / f"tools-{_key(*TOOLS)}", lambda tmp: _pip(tmp, TOOLS, deps=True))


def site_dir(cache: Path, target: Target) -> Path:
    return _cached(cache / f"site-{target.label}-{_key(*target.wheels)}", lambda tmp: _pip(tmp, target.wheels, deps=False))


def _stub_libraries(folder: Path, soname: int) -> None:
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise SetupError("no C compiler (cc): it builds the stand-in TensorRT libraries the bindings load")
    for lib in LIBRARIES:
        name = f"{lib}.so.{soname}"
        _run([compiler, "-shared", "-fPIC", f"-Wl,-soname,{name}", "-o", str(folder / name), str(HERE / "nvinfer_stub.c")],
             f"cc {name}")


def stubs_dir(cache: Path, target: Target, tools: Path, site: Path) -> Path:
    generator = (HERE / "stubs.py").read_bytes() + (HERE / "nvinfer_stub.c").read_bytes()

    def make(tmp: Path) -> None:
        libs, raw, out = tmp / "lib", tmp / "raw", tmp / "stubs"
        libs.mkdir()
        _stub_libraries(libs, target.soname)
        env = {"PYTHONPATH": os.pathsep.join((str(tools), str(site))), "LD_LIBRARY_PATH": str(libs)}
        _run([sys.executable, "-m", "pybind11_stubgen", "tensorrt_bindings", "--ignore-all-errors", "-o", str(raw)],
             f"pybind11-stubgen on {target.bindings}", env)
        _run([sys.executable, str(HERE / "stubs.py"), "tensorrt", str(raw), str(out)], "mending the tensorrt stubs")
        _run([sys.executable, str(HERE / "stubs.py"), "cuda", str(out)], f"stubs of {target.cuda}", {"PYTHONPATH": str(site)})

    return _cached(cache / f"stubs-{target.label}-{_key(*target.wheels, *TOOLS, generator)}", make) / "stubs"


def package_dirs() -> dict[str, Path]:
    """``lpt`` and each ``lpt.<sub>`` -> its folder in the checkout (pyproject maps them to top-level folders)."""
    dirs = {"lpt": REPO / "lpt"}
    for child in sorted(REPO.iterdir()):
        if (child / "__init__.py").is_file() and child.name != "lpt":
            spec = importlib.util.find_spec(f"lpt.{child.name}")
            locations = list(spec.submodule_search_locations or []) if spec is not None else []
            if locations and Path(locations[0]).resolve() == child.resolve():
                dirs[f"lpt.{child.name}"] = child
    return dirs


def shadow_tree(cache: Path, dirs: dict[str, Path]) -> Path:
    """A folder where ``lpt`` is laid out as it installs (symlinks into the checkout), for mypy, which cannot
    follow the editable install's import hook."""
    layout = sorted((name, str(path)) for name, path in dirs.items())

    def make(tmp: Path) -> None:
        root = tmp / "lpt"
        root.mkdir()
        for item in dirs["lpt"].iterdir():
            if item.suffix == ".py":
                (root / item.name).symlink_to(item.resolve())
        for name, path in dirs.items():
            if name != "lpt":
                (root / name.split(".", 1)[1]).symlink_to(path.resolve(), target_is_directory=True)

    return _cached(cache / f"src-{_key(repr(layout), *sorted(p.name for p in dirs['lpt'].glob('*.py')))}", make)


def modules_to_check(dirs: dict[str, Path]) -> list[str]:
    found = list(CHECKED)
    for name, path in dirs.items():
        for file in sorted(path.glob("*.py")):
            module = name if file.stem == "__init__" else f"{name}.{file.stem}"
            if USES_TENSORRT.search(file.read_text(errors="replace")) and not any(
                    module == c or module.startswith(c + ".") for c in found):
                found.append(module)
    return found


def mypy_config(path: Path, stubs: Path, shadow: Path) -> None:
    skipped = ",".join(f"{m},{m}.*" for m in SKIPPED)
    strict = ",".join(f"{m},{m}.*" for m in STRICT)
    path.write_text(f"""[mypy]
python_version = {sys.version_info[0]}.{sys.version_info[1]}
mypy_path = {stubs}{os.pathsep}{shadow}
follow_imports = silent
ignore_missing_imports = True
check_untyped_defs = True
strict_equality = True
warn_redundant_casts = True

[mypy-{strict}]
disallow_untyped_defs = True
disallow_incomplete_defs = True
warn_unused_ignores = True

[mypy-tensorrt,tensorrt.*,cuda,cuda.*]
ignore_errors = True
ignore_missing_imports = False

[mypy-{skipped}]
follow_imports = skip
""")


@dataclass
class Verdict:
    target: Target
    ok: bool
    errors: list[str]
    seconds: float
    checked: list[str]


def check(target: Target, cache: Path, extra_files: list[Path]) -> Verdict:
    start = time.perf_counter()
    tools = tools_dir(cache)
    stubs = stubs_dir(cache, target, tools, site_dir(cache, target))
    dirs = package_dirs()
    shadow = shadow_tree(cache, dirs)
    work = cache / f"mypy-{target.label}"
    work.mkdir(parents=True, exist_ok=True)
    _seed_mypy_cache(work / "cache", cache)
    config, canary = work / "mypy.ini", work / "lpt_canary.py"
    mypy_config(config, stubs, shadow)
    canary.write_text(CANARY)
    modules = modules_to_check(dirs)
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(work / "cache"),
           "--no-error-summary", "--show-error-codes", "--hide-error-context", str(canary)]
    for module in modules:  # as files under the shadow tree: mypy takes files or modules, not both
        path = shadow / module.replace(".", "/")
        cmd += [str(p) for p in sorted(path.glob("*.py"))] if path.is_dir() else [str(path.with_suffix(".py"))]
    cmd += [str(f) for f in extra_files]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tools)}, cwd=REPO)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    canary_hits = [line for line in lines if "lpt_canary" in line]
    errors = [_readable(line, shadow, dirs) for line in lines if "lpt_canary" not in line]
    if len(canary_hits) != 2:
        errors.append(f"the canary's 2 known errors were not reported ({len(canary_hits)} seen): the {target.label} "
                      f"stubs in {stubs} were not used, so this run proves nothing")
    if result.returncode not in (0, 1):
        errors.append(f"mypy exited {result.returncode}")
    ok = not errors
    return Verdict(target, ok, errors, time.perf_counter() - start, modules + [str(f) for f in extra_files])


def _seed_mypy_cache(folder: Path, cache: Path) -> None:
    """Start a version's first run from another version's mypy cache: what they share (numpy, our own
    modules' imports) is valid in both, and mypy re-checks whatever differs (the tensorrt stubs)."""
    if folder.is_dir():
        return
    other = next((p / "cache" for p in sorted(cache.glob("mypy-*")) if (p / "cache").is_dir()), None)
    if other is not None:
        with contextlib.suppress(OSError):
            shutil.copytree(other, folder)


def _readable(line: str, shadow: Path, dirs: dict[str, Path]) -> str:
    """mypy names files by their shadow path; name them by their place in the checkout."""
    for name, path in sorted(dirs.items(), key=lambda item: -len(item[0])):
        inside = shadow / name.replace(".", "/")
        for prefix in (str(inside) + "/", os.path.relpath(inside, REPO) + "/"):
            line = line.replace(prefix, os.path.relpath(path, REPO) + "/")
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.trt_typecheck", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="extra files to check beside lpt's TensorRT modules")
    parser.add_argument("--versions", default=",".join(TARGETS), help=f"of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "trt-typecheck",
                        help="downloads, stubs and mypy caches [default: build/trt-typecheck]")
    args = parser.parse_args(argv)
    labels = [v.strip() for v in args.versions.split(",") if v.strip()]
    unknown = [v for v in labels if v not in TARGETS]
    if unknown or not labels:
        parser.error(f"--versions: expected names among {', '.join(TARGETS)}, got {args.versions!r}")
    cache = args.cache.resolve()
    try:  # downloads in parallel: on a cold cache they are most of the time
        with ThreadPoolExecutor() as pool:
            list(pool.map(lambda make: make(), [lambda: tools_dir(cache)] +
                          [lambda t=TARGETS[label]: site_dir(cache, t) for label in labels]))
    except SetupError as exc:
        print(f"trt-typecheck: cannot set up: {exc}", file=sys.stderr)
        return 2
    failed = False
    for label in labels:
        try:
            verdict = check(TARGETS[label], cache, [f.resolve() for f in args.files])
        except SetupError as exc:
            print(f"trt-typecheck: cannot set up TensorRT {label}: {exc}", file=sys.stderr)
            return 2
        target = verdict.target
        head = f"TensorRT {label} ({target.bindings}, {target.cuda}): {', '.join(verdict.checked)}"
        if verdict.ok:
            print(f"{head}: OK ({verdict.seconds:.1f} s)")
        else:
            failed = True
            print(f"{head}: FAILED ({verdict.seconds:.1f} s)")
            print("\n".join(f"  {line}" for line in verdict.errors))
    return 1 if failed else 0
