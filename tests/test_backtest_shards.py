"""``xwatch backtest --jobs``: the brands split across processes give the same alerts."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xwatch.backtest import (
    PROGRESS_SECONDS,
    event_to_json,
    replay_file,
    replay_in_processes,
    shards,
)
from xwatch.cli import main
from xwatch.demo.generate import generate
from xwatch.model import EventKind
from xwatch.settings import Settings, load_settings

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 19, tzinfo=UTC)  # Thursday: the demo's crisis is on Friday
BRANDS = {  # id -> (its name in the posts, the demo seed, crisis, hours its posts are shifted)
    "kettlebird": (("kettlebird", "ケトルバード"), 1, True, 0),
    "otterpot": (("otterpot", "オッターポット"), 2, True, 5),
    "wrenlamp": (("wrenlamp", "レンランプ"), 3, False, 0),
}


def _posts(brand: str) -> Iterator[dict[str, object]]:
    """The demo generator's posts, renamed to ``brand`` and shifted in time."""
    (latin, katakana), seed, crisis, hours = BRANDS[brand]
    for post in generate(seed, crisis=crisis, start=START, days=2):
        line = json.dumps(post, ensure_ascii=False)
        line = re.sub("kettlebird", latin, line, flags=re.IGNORECASE)
        renamed = json.loads(line.replace("ケトルバード", katakana))
        created = datetime.strptime(str(renamed["created_at"]), "%Y-%m-%dT%H:%M:%SZ")
        renamed["created_at"] = f"{created + timedelta(hours=hours):%Y-%m-%dT%H:%M:%SZ}"
        renamed["id"] = f"{brand}-{renamed['id']}"
        yield renamed


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    posts = sorted(
        (post for brand in BRANDS for post in _posts(brand)), key=lambda p: str(p["created_at"])
    )
    path = tmp_path_factory.mktemp("shards") / "history.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for post in posts:
            out.write(json.dumps(post, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    brands = "\n".join(
        f"  - id: {brand}\n    name: {latin.title()}\n"
        f"    terms: [{latin}, '@{latin}', '#{latin}', {katakana}]\n"
        f"    accounts: [{latin}, {latin}_jp]"
        for brand, ((latin, katakana), *_) in BRANDS.items()
    )
    config = tmp_path_factory.mktemp("config") / "xwatch.yaml"
    config.write_text(
        f"brands:\n{brands}\n"
        "sources:\n  - type: replay\n    path: history.jsonl.gz\n"
        f"rules_dir: {ROOT / 'rules'}\nplaybooks_dir: {ROOT / 'playbooks'}\n"
        "store:\n  enabled: false\n",
        "utf-8",
    )
    return load_settings(config)


def test_brands_are_dealt_into_at_most_jobs_shards() -> None:
    assert shards(["a", "b", "c", "d", "e"], 2) == [frozenset("ace"), frozenset("bd")]
    assert shards(["a", "b"], 8) == [frozenset("a"), frozenset("b")]
    assert shards(["a"], 0) == [frozenset("a")]


@pytest.fixture(scope="module")
def progress() -> list[str]:
    return []


@pytest.fixture(scope="module")
def whole(settings: Settings, history: Path, progress: list[str]) -> list[dict[str, object]]:
    """The events of one pipeline that judges every brand (its progress: a line a batch)."""
    ticks = itertools.count(step=PROGRESS_SECONDS)  # each look at the clock: the next line due
    events = asyncio.run(
        replay_file(settings, history, progress=progress.append, clock=lambda: next(ticks))
    )
    return [event_to_json(e) for e in events]


def test_the_brands_split_across_processes_give_the_same_alerts(
    settings: Settings, history: Path, whole: list[dict[str, object]]
) -> None:
    split = [event_to_json(e) for e in replay_in_processes(settings, history, 2)]
    fired = {e["brand"] for e in whole if e["event"] == EventKind.FIRING.value}
    assert {"kettlebird", "otterpot"} <= fired  # the two crises, in two different shards
    assert split == whole


def test_a_shard_alone_gives_its_brands_alerts_and_no_others(
    settings: Settings, history: Path, whole: list[dict[str, object]]
) -> None:
    shard = frozenset({"otterpot"})
    alone = [event_to_json(e) for e in asyncio.run(replay_file(settings, history, shard))]
    assert alone == [e for e in whole if e["brand"] == "otterpot"]
    assert alone


def test_a_long_replay_says_how_far_it_is(
    whole: list[dict[str, object]], progress: list[str]
) -> None:
    assert (
        progress[0]
        == "backtest: 1,000 mentions read, event time 2026-11-19 02:20 UTC, 0 alert events"
    )
    read = [int(line.split()[1].replace(",", "")) for line in progress]
    assert read == [1000 * (i + 1) for i in range(len(progress))]  # one line a batch here
    assert progress[-1].endswith(" alert events") and " 0 alert events" not in progress[-1]


def test_the_command_takes_jobs_and_refuses_zero(
    settings: Settings, history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(settings.config_file)
    assert main(["backtest", "-c", config, "--input", str(history), "--json", "--jobs", "0"]) == 2
    assert "--jobs must be 1 or more" in capsys.readouterr().err


@pytest.fixture(scope="module")
def holed(history: Path) -> Path:
    """The history with a hole of 5 days after its first day, and a post about one
    brand dated 2 years ahead among the first (a stray, refused)."""
    with gzip.open(history, "rt", encoding="utf-8") as lines:
        posts = [json.loads(line) for line in lines]
    hole_from = START + timedelta(days=1)
    for post in posts:
        created = datetime.strptime(str(post["created_at"]), "%Y-%m-%dT%H:%M:%SZ")
        if created.replace(tzinfo=UTC) >= hole_from:
            post["created_at"] = f"{created + timedelta(days=5):%Y-%m-%dT%H:%M:%SZ}"
    stray = {**posts[500], "id": "stray", "text": "otterpot from 2 years ahead"}
    stray["created_at"] = f"{START + timedelta(days=730):%Y-%m-%dT%H:%M:%SZ}"
    posts.insert(501, stray)
    path = history.with_name("holed.jsonl")
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts), "utf-8")
    return path


def test_a_hole_and_a_stray_give_the_same_alerts_split_across_processes(
    settings: Settings, holed: Path
) -> None:
    whole = [event_to_json(e) for e in asyncio.run(replay_file(settings, holed))]
    split = [event_to_json(e) for e in replay_in_processes(settings, holed, 2)]
    assert split == whole
    assert {e["brand"] for e in whole if e["event"] == EventKind.FIRING.value}
