"""The replay source: malformed lines are counted and logged, and the replay goes on."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from xwatch.metrics import Metrics
from xwatch.model import Mention
from xwatch.sources import MetricsReport
from xwatch.sources.replay import ReplaySource


def good(i: int, minute: int = 0) -> bytes:
    return json.dumps(
        {
            "id": str(i),
            "text": f"kettlebird post {i}",
            "created_at": f"2026-11-16T09:{minute:02d}:{i % 60:02d}Z",
        }
    ).encode()


async def collect(source: ReplaySource) -> list[Mention]:
    async with source:
        return [m async for m in source]


@pytest.mark.asyncio
async def test_malformed_lines_are_counted_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                good(1),
                b"{not json",
                good(2),
                b"\xff\xfe garbage",
                b"",
                b"[]",
                json.dumps({"id": "3", "text": "x", "created_at": "soon"}).encode(),
                good(4),
                b"{also not json",
            ]
        )
        + b"\n"
    )
    registry = CollectorRegistry()
    report = MetricsReport(Metrics(registry), clock=lambda: 0.0)
    with caplog.at_level(logging.WARNING, "xwatch.sources"):
        mentions = await collect(ReplaySource(path, "replay", 0.0, report))
    assert [m.id for m in mentions] == ["1", "2", "4"]

    def rejected(reason: str) -> float | None:
        return registry.get_sample_value(
            "xwatch_mentions_rejected_total", {"source": "replay", "reason": reason}
        )

    assert rejected("not_json") == 2
    assert rejected("invalid_utf8") == 1
    assert rejected("wrong_type") == 1
    assert rejected("bad_timestamp") == 1
    assert registry.get_sample_value("xwatch_mentions_received_total", {"source": "replay"}) == 3
    # one line per reason per minute: the second not_json is counted, not logged again
    lines = [r.getMessage() for r in caplog.records]
    assert sum("reason=not_json" in line for line in lines) == 1
    assert any(f"{path}:2:" in line for line in lines)  # the log names file and line


@pytest.mark.asyncio
async def test_rejection_logging_resumes_after_a_minute_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    report = MetricsReport(Metrics(CollectorRegistry()), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "xwatch.sources"):
        for _ in range(5):
            report.rejected("s", "not_json", "x")
        now[0] = 61.0
        report.rejected("s", "not_json", "x")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "(+4 more since the last line)" in lines[1]


def test_reconnect_lines_are_limited_by_why_not_by_their_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A source down reconnects again and again, each time after another (jittered)
    delay; the delay was the line's key, so every attempt was logged."""
    now = [0.0]
    report = MetricsReport(Metrics(CollectorRegistry()), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "xwatch.sources"):
        for delay in (0.34, 0.71, 1.52, 3.05):
            report.reconnecting("mqtt", delay, "Connection refused")
        report.reconnecting("mqtt", 0.5, "[code:135] Not authorized")
        now[0] = 61.0
        report.reconnecting("mqtt", 6.1, "Connection refused")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "reconnecting source=mqtt reason=Connection refused detail='in 0.34s'",
        "reconnecting source=mqtt reason=[code:135] Not authorized detail='in 0.50s'",
        "reconnecting source=mqtt reason=Connection refused detail='in 6.10s' "
        "(+3 more since the last line)",
    ]


@pytest.mark.asyncio
async def test_gzip_files_and_x_payloads_replay(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    x_post = {
        "data": {
            "id": "9",
            "text": "@kettlebird hi",
            "author_id": "5",
            "created_at": "2026-11-16T09:00:00.000Z",
        },
        "includes": {"users": [{"id": "5", "username": "jo"}]},
    }
    path.write_bytes(gzip.compress(good(1) + b"\n" + json.dumps(x_post).encode() + b"\n"))
    report = MetricsReport(Metrics(CollectorRegistry()))
    mentions = await collect(ReplaySource(path, "r", 0.0, report))
    assert [m.id for m in mentions] == ["1", "9"]
    assert mentions[1].author.handle == "jo"


@pytest.mark.asyncio
async def test_speed_paces_the_replay_by_event_time(tmp_path: Path) -> None:
    path = tmp_path / "paced.jsonl"
    path.write_bytes(b"\n".join([good(0, 0), good(1, 1), good(2, 3)]) + b"\n")  # t = 0, 61, 182 s
    now = [100.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    source = ReplaySource(
        path,
        "r",
        60.0,
        MetricsReport(Metrics(CollectorRegistry())),
        sleep=fake_sleep,
        monotonic=lambda: now[0],
    )
    await collect(source)
    assert slept == pytest.approx([61 / 60, 121 / 60])  # a minute of posts per second


@pytest.mark.asyncio
async def test_a_post_dated_after_the_wall_clock_is_refused_and_the_replay_goes_on(
    tmp_path: Path,
) -> None:
    """A replay is history: one post from year 9999 would move the event clock there."""
    path = tmp_path / "future.jsonl"
    future = {"id": "9", "text": "kettlebird", "created_at": "2026-11-16T09:06:00Z"}
    path.write_bytes(b"\n".join([good(1), json.dumps(future).encode(), good(2)]) + b"\n")
    registry = CollectorRegistry()
    report = MetricsReport(Metrics(registry), clock=lambda: 0.0)
    now = datetime(2026, 11, 16, 9, 0, 30, tzinfo=UTC)  # the post is 5.5 minutes ahead of it
    mentions = await collect(ReplaySource(path, "replay", 0.0, report, now=lambda: now))
    assert [m.id for m in mentions] == ["1", "2"]
    assert (
        registry.get_sample_value(
            "xwatch_mentions_rejected_total", {"source": "replay", "reason": "bad_timestamp"}
        )
        == 1
    )
