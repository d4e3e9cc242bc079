"""A local tritonserver on the loopback address: found, started on free ports with this Python for its Python
backend, waited for, and stopped. For tests, measurements and trying a repository; production nodes run NVIDIA's
Triton container (see the README).

The binary is ``$LPT_TRITONSERVER``, else the one the nvidia-pytriton wheel bundles (with the Python backend and
a backend stub per Python version), else ``tritonserver`` on PATH.

Depends on: the standard library, lpt.errors; tritonclient (readiness), only while starting.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from lpt.errors import LptError

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 300.0  # CPU nodes load full-size networks and warm them up before the server reports ready


class ServerError(LptError):
    """tritonserver cannot be found, started or reached."""


@dataclass(frozen=True)
class Installation:
    binary: Path
    backends: Path | None  # a backend folder to pass (the wheel's); None: the binary's own default
    libraries: Path | None  # shared libraries the wheel keeps apart from the binary
    stub: Path | None  # the wheel's Python backend stub for this Python


def _wheel() -> Installation | None:
    spec = importlib.util.find_spec("pytriton")  # finds the package without importing it (and its numpy<2 needs)
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        return None
    stub = root / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / "triton_python_backend_stub"
    return Installation(binary, root / "backends", Path(spec.origin).parents[1] / "nvidia_pytriton.libs",
                        stub if stub.is_file() else None)


def find_installation() -> Installation:
    named = os.environ.get("LPT_TRITONSERVER")
    if named:
        if not Path(named).is_file():
            raise ServerError(f"LPT_TRITONSERVER={named} is not a file")
        return Installation(Path(named), None, None, None)
    found = _wheel()
    if found is not None:
        return found
    on_path = shutil.which("tritonserver")
    if on_path:
        return Installation(Path(on_path), None, None, None)
    raise ServerError("no tritonserver: install the bundled one with `pip install --no-deps nvidia-pytriton==0.7.0` "
                      "(`make install` does), set LPT_TRITONSERVER, or run in NVIDIA's Triton container")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _backend_folder(install: Installation, into: Path) -> Path | None:
    """The wheel keeps one Python backend stub per Python version apart; Triton looks for it beside the backend
    library, so a folder of links puts this Python's there (as pytriton itself does, by copying)."""
    if install.backends is None:
        return None
    python = into / "python"
    python.mkdir(parents=True)
    for item in (install.backends / "python").iterdir():
        if item.name != "__pycache__":
            (python / item.name).symlink_to(item)
    if install.stub is None:
        raise ServerError(f"the bundled tritonserver has no Python backend stub for Python "
                          f"{sys.version_info[0]}.{sys.version_info[1]}")
    (python / "triton_python_backend_stub").symlink_to(install.stub)
    return into


def _environment(install: Installation) -> dict[str, str]:
    """The Python backend embeds libpython and finds its packages from the first ``python3`` on PATH: this
    interpreter's folder first (a virtualenv's site-packages, lpt included), its libpython first."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    libraries = [str(p) for p in (sysconfig.get_config_var("LIBDIR"), install.libraries) if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libraries, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    return env


class LocalServer:
    """``with LocalServer(repo) as server:`` tritonserver serving ``repo`` on 127.0.0.1 (gRPC only), ready."""

    def __init__(self, repository: Path, grpc_port: int | None = None, log: Path | None = None,
                 ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.repository = repository
        self.grpc_port = grpc_port or free_port()
        self.log = log
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._work: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    def command(self, install: Installation, backends: Path | None) -> list[str]:
        args = [str(install.binary), f"--model-repository={self.repository.resolve()}",
                f"--grpc-address={LOOPBACK}", f"--grpc-port={self.grpc_port}", "--allow-http=false",
                "--allow-metrics=false", "--exit-timeout-secs=10"]
        return args + ([f"--backend-directory={backends}"] if backends is not None else [])

    def __enter__(self) -> LocalServer:
        if not self.repository.is_dir():
            raise ServerError(f"model repository {self.repository} is not a folder")
        install = find_installation()
        self._work = tempfile.TemporaryDirectory(prefix="lpt-triton-")
        work = Path(self._work.name)
        backends = _backend_folder(install, work / "backends")
        self.log = self.log or work / "tritonserver.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command(install, backends), stdout=out, stderr=subprocess.STDOUT,
                                            env=_environment(install), start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, lines: int = 15) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self) -> None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        deadline = time.monotonic() + self.ready_timeout
        try:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise ServerError(f"tritonserver exited with status {self.process.returncode} while starting; "
                                      f"its log ends:\n{self.log_tail()}")
                try:
                    if client.is_server_ready():
                        return
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                time.sleep(0.5)
        finally:
            client.close()
        raise ServerError(f"tritonserver was not ready after {self.ready_timeout:.0f} s; its log ends:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # Triton unloads its models and stops their stub processes
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._work is not None:
            self._work.cleanup()
            self._work = None

    def __exit__(self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None) -> None:
        self.stop()
