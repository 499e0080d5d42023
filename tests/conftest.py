from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPYTHON_THRESHOLDS = gc.get_threshold()


@pytest.fixture(autouse=True)
def collector_as_cpython_sets_it() -> Iterator[None]:
    """A test that runs ``xwatch run`` or ``xwatch backtest`` in this process has the
    collector settled (``xwatch.gc_tuning``): undone after it, for the tests that follow."""
    yield
    if gc.get_freeze_count() or gc.get_threshold() != CPYTHON_THRESHOLDS:
        gc.unfreeze()
        gc.set_threshold(*CPYTHON_THRESHOLDS)


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
