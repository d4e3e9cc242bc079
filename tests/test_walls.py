"""The walls between the stages (tools/walls/contracts.ini) hold, and the checker catches a planted breach."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools.walls.__main__ import REPO, check, package_folders

pytest.importorskip("importlinter", reason="import-linter (the dev extra) is not installed")


def test_every_wall_holds() -> None:
    done = check()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "KEPT" in done.stdout


def test_a_planted_breach_is_named(tmp_path: Path) -> None:
    """A checkout whose models/ imports the runtime, inside a function: the contract breaks and says where."""
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root)
    for name, folder in package_folders(REPO).items():
        if name.count(".") <= 1:
            (root / folder.name).symlink_to(folder, target_is_directory=True)
    (root / "models").unlink()
    shutil.copytree(REPO / "models", root / "models", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "models" / "planted.py").write_text("def later() -> None:\n    from lpt.runtime import video  # noqa: F401\n")
    done = check(root)
    assert done.returncode != 0
    assert "models/ knows no later stage BROKEN" in done.stdout
    assert "lpt.models.planted -> lpt.runtime.video" in done.stdout
