"""The collector settled for a long stream: what is loaded is frozen, the young generation
is collected less often, and a cycle made afterwards is still collected."""

from __future__ import annotations

import gc
import gzip
import json
import weakref
from pathlib import Path

import pytest
import yaml

from xwatch import gc_tuning
from xwatch.cli import main


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settle_freezes_what_is_loaded_and_collects_the_young_less_often() -> None:
    loaded = [Node() for _ in range(100)]
    _, older, oldest = gc.get_threshold()
    gc_tuning.settle()
    frozen = gc.get_freeze_count()
    assert frozen >= len(loaded)
    assert gc.get_threshold() == (gc_tuning.GEN0_THRESHOLD, older, oldest)
    walked = {id(obj) for obj in gc.get_objects()}  # the frozen ones are not walked
    assert not any(id(node) in walked for node in loaded)
    # made afterwards: tracked, and a cycle of it is garbage the collector finds
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None  # a cycle: reference counts alone do not free it
    gc.collect()
    assert gone() is None
    assert gc.get_freeze_count() == frozen


def posts_file(folder: Path) -> Path:
    posts = folder / "posts.jsonl.gz"
    with gzip.open(posts, "wt", encoding="utf-8") as out:
        for i in range(3):
            post = {"id": str(i), "text": "my kettlebird smokes", "brands": ["kettlebird"]}
            out.write(json.dumps(post | {"created_at": f"2026-11-16T09:00:0{i}Z"}) + "\n")
    return posts


@pytest.fixture
def settles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Calls of ``gc_tuning.settle`` (recorded, not made: this process is left alone)."""
    calls: list[str] = []
    monkeypatch.setattr(gc_tuning, "settle", lambda: calls.append("settled"))
    return calls


def test_a_backtest_settles_once_its_settings_are_loaded(
    tmp_path: Path, settles: list[str]
) -> None:
    posts = posts_file(tmp_path)
    assert main(["backtest", "--input", str(posts), "--json", "--jobs", "1"]) == 0
    assert settles == ["settled"]


def test_the_daemon_settles_once_loaded(project: Path, settles: list[str]) -> None:
    path = project / "config.yaml"
    config = yaml.safe_load(path.read_text("utf-8"))
    config["sources"] = [{"type": "replay", "path": str(posts_file(project))}]
    config["server"] = {"host": "127.0.0.1", "port": 0}
    path.write_text(yaml.safe_dump(config), "utf-8")
    assert main(["run", "-c", str(path), "--exit-when-done"]) == 0
    assert settles == ["settled"]
