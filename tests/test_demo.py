"""The bundled demo stream and the generator that builds it (``xwatch.demo.generate``)."""

from __future__ import annotations

import gzip
import json
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xwatch.demo.generate import (
    BRAND_TERMS,
    CRISIS_HOURS,
    CRISIS_KEYWORDS,
    CRISIS_ONSET,
    DEFAULT_START,
    bundled_demo_path,
    generate,
    main,
    write,
)

Post = dict[str, object]

WEEKDAYS = ("2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20")
WEEKEND = ("2026-11-21", "2026-11-22")


@pytest.fixture(scope="module")
def crisis_stream() -> list[Post]:
    return list(generate())


@pytest.fixture(scope="module")
def calm_stream() -> list[Post]:
    return list(generate(crisis=False))


@pytest.fixture(scope="module")
def crisis_only(crisis_stream: list[Post], calm_stream: list[Post]) -> list[Post]:
    calm_ids = {p["id"] for p in calm_stream}
    return [p for p in crisis_stream if p["id"] not in calm_ids]


def _text(post: Post) -> str:
    return str(post["text"])


def _created(post: Post) -> datetime:
    return datetime.strptime(str(post["created_at"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _author(post: Post) -> dict[str, object]:
    author = post["author"]
    assert isinstance(author, dict)
    return author


def _metric(post: Post, name: str) -> int:
    metrics = post["metrics"]
    assert isinstance(metrics, dict)
    value = metrics[name]
    assert isinstance(value, int)
    return value


def _stamp(at: datetime) -> str:
    """``at`` in the posts' created_at format, which sorts like the times it stands for."""
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _count_between(posts: Iterable[Post], start: datetime, end: datetime) -> int:
    low, high = _stamp(start), _stamp(end)
    return sum(1 for p in posts if low <= str(p["created_at"]) < high)


def _mentions_crisis(post: Post) -> bool:
    text = _text(post).lower()
    return any(keyword in text for keyword in CRISIS_KEYWORDS)


# --- the bundled file ---------------------------------------------------------------------------


def test_bundled_file_is_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    rebuilt = tmp_path / "demo.jsonl.gz"
    count = write(rebuilt)
    bundled = bundled_demo_path().read_bytes()
    # Compare the content, not the compressed bytes: another zlib may compress differently.
    assert gzip.decompress(rebuilt.read_bytes()) == gzip.decompress(bundled), (
        "the bundled demo is stale: python -m xwatch.demo.generate --out xwatch/demo/demo.jsonl.gz"
    )
    assert count == len(gzip.decompress(bundled).splitlines())


def test_bundled_file_is_small_gzip_with_a_reproducible_header() -> None:
    data = bundled_demo_path().read_bytes()
    assert len(data) < 3_000_000
    assert data[:3] == b"\x1f\x8b\x08"
    assert data[3] == 0, "no file name (or other optional field) in the header"
    assert data[4:8] == b"\x00\x00\x00\x00", "mtime is zero"


def test_bundled_file_holds_one_compact_json_object_per_line(crisis_stream: list[Post]) -> None:
    lines = gzip.decompress(bundled_demo_path().read_bytes()).decode("utf-8").splitlines()
    assert lines[0] == json.dumps(crisis_stream[0], ensure_ascii=False, separators=(",", ":"))
    assert "ケトルバード" in "".join(lines[:2000]), "Japanese is stored as UTF-8, not escaped"
    assert len(lines) == len(crisis_stream)


# --- the shape of a post ------------------------------------------------------------------------


def test_posts_have_the_documented_shape(crisis_stream: list[Post]) -> None:
    for post in crisis_stream:
        assert set(post) == {"id", "text", "created_at", "lang", "author", "url", "metrics"}
        post_id = post["id"]
        assert isinstance(post_id, str)
        assert post_id.isdigit()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(post["created_at"]))
        assert post["lang"] in ("en", "ja")
        author = _author(post)
        assert set(author) == {"id", "handle", "followers", "verified"}
        assert str(author["id"]).isdigit()
        assert re.fullmatch(r"[A-Za-z0-9_]{1,15}", str(author["handle"]))
        assert isinstance(author["followers"], int)
        assert isinstance(author["verified"], bool)
        assert post["url"] == f"https://x.com/{author['handle']}/status/{post_id}"
        metrics = post["metrics"]
        assert isinstance(metrics, dict)
        assert set(metrics) == {"likes", "reposts", "replies", "quotes"}
        assert all(isinstance(v, int) and v >= 0 for v in metrics.values())
    json.dumps(crisis_stream[:100])  # plain JSON types only


def test_posts_are_in_time_order_with_unique_ids(crisis_stream: list[Post]) -> None:
    created = [str(p["created_at"]) for p in crisis_stream]
    assert created == sorted(created)
    assert len({p["id"] for p in crisis_stream}) == len(crisis_stream)
    assert created[0] >= "2026-11-16T00:00:00Z"
    assert created[-1] < "2026-11-23T00:00:00Z"


def test_every_post_names_the_brand(crisis_stream: list[Post]) -> None:
    terms = tuple(term.lower() for term in BRAND_TERMS)
    for post in crisis_stream:
        text = _text(post).lower()
        assert any(term in text for term in terms), post


# --- the background -----------------------------------------------------------------------------


def test_a_week_is_about_two_posts_a_minute(calm_stream: list[Post]) -> None:
    assert 17_000 < len(calm_stream) < 23_000


def test_both_languages_in_normal_times(calm_stream: list[Post]) -> None:
    for day in (*WEEKDAYS, *WEEKEND):
        langs = Counter(p["lang"] for p in calm_stream if str(p["created_at"]).startswith(day))
        assert langs["en"] > 1_000
        assert langs["ja"] > 300
    japanese = sum(1 for p in calm_stream if p["lang"] == "ja") / len(calm_stream)
    assert 0.2 < japanese < 0.3


def test_japanese_posts_peak_at_another_time_of_day(calm_stream: list[Post]) -> None:
    by_hour: dict[str, Counter[int]] = {"en": Counter(), "ja": Counter()}
    for post in calm_stream:
        by_hour[str(post["lang"])][_created(post).hour] += 1
    assert 7 <= by_hour["ja"].most_common(1)[0][0] <= 14  # evening in Japan
    assert by_hour["en"].most_common(1)[0][0] in (22, 23, 0, 1, 2)  # evening in the US


def test_the_daily_rhythm_is_quiet_at_night(calm_stream: list[Post]) -> None:
    weekday_hours = Counter(
        _created(p).hour for p in calm_stream if str(p["created_at"])[:10] in WEEKDAYS
    )
    night = sum(weekday_hours[h] for h in (6, 7, 8)) / (3 * 5 * 60)  # posts a minute
    busy = sum(weekday_hours[h] for h in (22, 23, 0)) / (3 * 5 * 60)
    assert night < 1.0
    assert busy > 3.0


def test_weekends_are_quieter(calm_stream: list[Post]) -> None:
    per_day = Counter(str(p["created_at"])[:10] for p in calm_stream)
    assert max(per_day[d] for d in WEEKEND) < min(per_day[d] for d in WEEKDAYS)
    ratio = statistics.mean(per_day[d] for d in WEEKEND) / statistics.mean(
        per_day[d] for d in WEEKDAYS
    )
    assert 0.55 < ratio < 0.8


def test_followers_are_heavy_tailed(calm_stream: list[Post]) -> None:
    followers = [int(str(_author(p)["followers"])) for p in calm_stream]
    assert 120 < statistics.median(followers) < 350
    assert max(followers) > 50_000


def test_the_brand_posts_about_one_percent(calm_stream: list[Post]) -> None:
    own = sum(1 for p in calm_stream if _author(p)["handle"] in ("kettlebird", "kettlebird_jp"))
    assert 0.005 < own / len(calm_stream) < 0.02


def test_texts_are_varied(calm_stream: list[Post]) -> None:
    texts = Counter(_text(p) for p in calm_stream)
    assert len(texts) > len(calm_stream) / 3
    assert texts.most_common(1)[0][1] < len(calm_stream) / 100


# --- the crisis ---------------------------------------------------------------------------------


def test_calm_stream_is_the_crisis_stream_without_the_crisis(
    crisis_stream: list[Post], calm_stream: list[Post], crisis_only: list[Post]
) -> None:
    calm_ids = {p["id"] for p in calm_stream}
    assert [p for p in crisis_stream if p["id"] in calm_ids] == calm_stream
    assert len(crisis_stream) == len(calm_stream) + len(crisis_only)
    assert crisis_only
    first, last = _created(crisis_only[0]), _created(crisis_only[-1])
    assert CRISIS_ONSET <= first < CRISIS_ONSET + timedelta(minutes=1)
    assert last < CRISIS_ONSET + timedelta(hours=CRISIS_HOURS)


def test_calm_stream_never_mentions_the_crisis(calm_stream: list[Post]) -> None:
    assert [p for p in calm_stream if _mentions_crisis(p)] == []


def test_crisis_posts_talk_about_the_defect(crisis_only: list[Post]) -> None:
    assert sum(map(_mentions_crisis, crisis_only)) > 0.5 * len(crisis_only)
    for lang in ("en", "ja"):
        assert sum(1 for p in crisis_only if p["lang"] == lang and _mentions_crisis(p)) > 300


def test_high_reach_accounts_amplify_the_crisis(crisis_only: list[Post]) -> None:
    loud = [
        p
        for p in crisis_only
        if _author(p)["verified"] is True
        and 50_000 <= int(str(_author(p)["followers"])) <= 500_000
        and _metric(p, "reposts") >= 1_000
        and _mentions_crisis(p)
    ]
    early = [p for p in loud if _created(p) < CRISIS_ONSET + timedelta(hours=2)]
    assert len(early) >= 3


def test_the_crisis_hour_has_several_times_the_usual_volume(crisis_stream: list[Post]) -> None:
    hour = timedelta(hours=1)
    day = timedelta(days=1)
    onset_hour = _count_between(crisis_stream, CRISIS_ONSET, CRISIS_ONSET + hour)
    day_before = _count_between(crisis_stream, CRISIS_ONSET - day, CRISIS_ONSET - day + hour)
    assert onset_hour > 4 * day_before
    quarter = timedelta(minutes=15)
    first_quarter = _count_between(crisis_stream, CRISIS_ONSET, CRISIS_ONSET + quarter)
    quarter_before = _count_between(crisis_stream, CRISIS_ONSET - day, CRISIS_ONSET - day + quarter)
    assert first_quarter > 2 * quarter_before


def test_the_crisis_fades_within_a_day(crisis_only: list[Post]) -> None:
    per_hour = Counter((_created(p) - CRISIS_ONSET) // timedelta(hours=1) for p in crisis_only)
    peak_hour, peak = per_hour.most_common(1)[0]
    assert 0 <= peak_hour <= 2
    assert per_hour[18] < peak / 10


def test_no_crisis_before_the_onset(crisis_stream: list[Post], calm_stream: list[Post]) -> None:
    onset = _stamp(CRISIS_ONSET)
    before = [p for p in crisis_stream if str(p["created_at"]) < onset]
    assert before == [p for p in calm_stream if str(p["created_at"]) < onset]


# --- determinism, windows and the command line --------------------------------------------------


def test_a_shorter_window_is_a_prefix(crisis_stream: list[Post]) -> None:
    one_day = list(generate(days=1))
    assert one_day == [p for p in crisis_stream if str(p["created_at"]) < "2026-11-17"]


def test_a_window_around_the_onset_has_the_crisis(crisis_only: list[Post]) -> None:
    start = CRISIS_ONSET - timedelta(hours=1)
    window = list(generate(start=start, days=1))
    ids = {p["id"] for p in window}
    expected = [p for p in crisis_only if _created(p) < start + timedelta(days=1)]
    assert all(p["id"] in ids for p in expected)


def test_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        next(iter(generate(start=DEFAULT_START.replace(tzinfo=None))))


def test_command_line_writes_a_calm_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], calm_stream: list[Post]
) -> None:
    out = tmp_path / "calm.jsonl.gz"
    assert main(["--out", str(out), "--calm", "--days", "1"]) == 0
    lines = gzip.decompress(out.read_bytes()).decode("utf-8").splitlines()
    assert capsys.readouterr().out.strip() == f"wrote {len(lines)} posts to {out}"
    assert [json.loads(line) for line in lines] == [
        p for p in calm_stream if str(p["created_at"]) < "2026-11-17"
    ]


def test_command_line_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--calm" in capsys.readouterr().out
