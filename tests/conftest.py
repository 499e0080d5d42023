from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def in_repo_root() -> Iterator[Path]:
    """Run in the repository root, where the embedded default config finds rules/."""
    before = Path.cwd()
    os.chdir(ROOT)
    try:
        yield ROOT
    finally:
        os.chdir(before)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped config, rules and playbooks in a temporary folder."""
    import shutil

    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    config = (ROOT / "xwatch" / "defaults" / "config.yaml").read_text("utf-8")
    (tmp_path / "config.yaml").write_text(config, "utf-8")
    return tmp_path
