"""``python -m tools.walls [ROOT]``: the walls between lpt's stages, checked by import-linter.

import-linter reads packages from folders, and lpt's subpackages live in folders of other names (models/
is ``lpt.models``, serving/ is ``lpt.triton``, as pyproject.toml maps them). So the check lays out a mirror
of links in a temporary folder, ``lpt/`` with each subpackage under its import name, and lints that. Every
import counts, those inside functions too. Exit status 0 when every contract is kept, 1 otherwise.

Depends on: import-linter (the dev extra), the standard library.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = Path(__file__).with_name("contracts.ini")


def package_folders(root: Path) -> dict[str, Path]:
    """Import name -> folder, from pyproject.toml's package-dir table."""
    mapping = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in mapping.items()}


def mirror(root: Path, into: Path) -> None:
    """``into/lpt``: the lpt package as Python would import it, made of links to the checkout's files."""
    folders = package_folders(root)
    top = into / "lpt"
    top.mkdir()
    for entry in folders["lpt"].iterdir():
        if entry.suffix == ".py":
            (top / entry.name).symlink_to(entry)
    for name, folder in folders.items():
        parts = name.split(".")
        if len(parts) == 2:  # lpt.<stage>; deeper packages (lpt.runtime.faces) come with their parent's folder
            (top / parts[1]).symlink_to(folder, target_is_directory=True)


def check(root: Path = REPO, contracts: Path = CONTRACTS) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="lpt-walls-") as tmp:
        mirror(root, Path(tmp))
        env = {**os.environ, "PYTHONPATH": tmp}
        lint = Path(sys.executable).with_name("lint-imports")
        return subprocess.run([str(lint), "--config", str(contracts), "--no-cache"], cwd=tmp, env=env,
                              capture_output=True, text=True, check=False)


def main() -> int:
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO
    done = check(root)
    print(done.stdout.strip().split("---------\nContracts\n---------")[-1].strip() or done.stderr.strip())
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
