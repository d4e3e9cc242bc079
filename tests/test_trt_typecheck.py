"""The TensorRT type check: lpt's TensorRT code passes against 10.16 and 11.4, and planted errors fail.

Runs ``python -m tools.trt_typecheck`` as CI does; the first run downloads the bindings wheels, mypy and
pybind11-stubgen into build/trt-typecheck (about 40 MB; needs PyPI and a C compiler), later runs reuse them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tools.trt_typecheck.stubs import _IN_PARAMETER, _defaults_in_order

REPO = Path(__file__).resolve().parents[1]


def typecheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.trt_typecheck", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=900, check=False)


def test_stub_mending() -> None:
    line = "    def add_scale_nd(self, input: ITensor, shift: Weights = None, channel_axis: typing.SupportsInt) -> IScaleLayer:"
    assert _defaults_in_order(line).endswith("shift: Weights = None, channel_axis: typing.SupportsInt = ...) -> IScaleLayer:")
    keep = "    def f(self, a: dict[str, int] = {}, *args, b: int) -> None:"
    assert _defaults_in_order(keep) == keep
    assert _IN_PARAMETER.sub("in_", "    def f(self, in: list[int], out: int) -> int:") == \
        "    def f(self, in_: list[int], out: int) -> int:"


def _plant(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the engine builder that sets BuilderFlag.FP16 (gone in TensorRT 11), and a copy of the
    runtime with a misspelt TensorRT method and a CUDA call missing an argument."""
    build = (REPO / "engines" / "build.py").read_text().replace("from .", "from lpt.engines.")
    anchor = "        config: trt.IBuilderConfig = CreateConfig("
    assert anchor in build
    build = build.replace(anchor, "        builder.create_builder_config().set_flag(trt.BuilderFlag.FP16)\n" + anchor)
    backend = (REPO / "runtime" / "trt_backend.py").read_text().replace("from .", "from lpt.runtime.")
    assert "execute_async_v3(" in backend
    backend = backend.replace("execute_async_v3(", "execute_async_v2(")
    backend += "\n\ndef planted_copy(dst: int, src: int, nbytes: int) -> None:\n    from cuda.bindings import runtime as cudart\n\n" \
               "    cudart.cudaMemcpyAsync(dst, src, nbytes, cudart.cudaStreamNonBlocking)\n"
    paths = tmp_path / "planted_build.py", tmp_path / "planted_backend.py"
    paths[0].write_text(build)
    paths[1].write_text(backend)
    return paths


def test_tensorrt_code_passes_both_versions_and_planted_errors_fail(tmp_path: Path) -> None:
    clean = typecheck()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert re.search(r"^TensorRT 10\.16 .*lpt\.engines.*: OK", clean.stdout, re.MULTILINE), clean.stdout
    assert re.search(r"^TensorRT 11\.4 .*lpt\.runtime\.trt_backend.*: OK", clean.stdout, re.MULTILINE), clean.stdout

    build, backend = _plant(tmp_path)
    planted = typecheck(str(build), str(backend))
    assert planted.returncode == 1, planted.stdout + planted.stderr
    by_version = dict(re.findall(r"^TensorRT (\S+) .*?\n((?:  .*\n?)*)", planted.stdout, re.MULTILINE))
    assert set(by_version) == {"10.16", "11.4"}, planted.stdout
    for version, errors in by_version.items():
        assert re.search(r"planted_backend\.py:\d+: error: \"IExecutionContext\" has no attribute \"execute_async_v2\"",
                         errors), (version, errors)
        assert re.search(r"planted_backend\.py:\d+: error: Missing positional argument \"\w+\" in call to "
                         r"\"cudaMemcpyAsync\"", errors), (version, errors)
    assert re.search(r"planted_build\.py:\d+: error: \"type\[BuilderFlag\]\" has no attribute \"FP16\"", by_version["11.4"])
    assert "FP16" not in by_version["10.16"]  # 10.x still has the flag: the check is per version
