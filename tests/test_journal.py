"""The ingest journal: posts on disk before a source hears they were taken, read back at
start so that a crash loses none and counts none twice."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.factories import T0, GatedSource
from tests.factories import mention as post
from tests.test_checkpoint import HOUR, RecordingPipeline, keyed, read_replay, traffic, write_replay
from tests.test_daemon_sources import processed, running, until_processed
from xwatch.daemon import Daemon
from xwatch.journal import Journal, JournalError, decode, encode
from xwatch.model import AlertEvent, Author, Mention, SeriesKey
from xwatch.settings import Settings, load_settings
from xwatch.store import Store


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project / "config.yaml")


def damaged_lines(journal: Journal) -> tuple[list[Mention], list[tuple[str, int, str]]]:
    damaged: list[tuple[str, int, str]] = []
    read = list(journal.read(lambda path, line, why: damaged.append((path.name, line, why))))
    return read, damaged


def break_under(journal: Journal) -> None:
    """Make the journal's next write fail, as a disk that fails under it."""
    assert journal._fd is not None
    os.close(journal._fd)
    journal._fd = os.open(os.devnull, os.O_RDONLY)  # (never a number reused by another file)


def never_damaged(segment: Path, line: int, why: str) -> None:
    pytest.fail(f"{segment}:{line}: {why}")


# -- the file ------------------------------------------------------------------------


def test_a_post_comes_back_exactly_as_it_was_written() -> None:
    original = Mention(
        id="1850000000000000001",
        text='ケトルバード "壊れた" <!channel> \u2028 😡\x00',
        created_at=datetime(2026, 11, 28, 12, 0, 0, 123457, tzinfo=UTC),
        source="mqtt",
        author=Author("42", "someone", 12_345, True),
        lang="ja",
        url="https://x.com/someone/status/1850000000000000001",
        likes=3,
        reposts=1,
        replies=2,
        quotes=4,
        brands=("kettlebird", "rival"),
    )
    line = encode(original)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == original
    bare = dataclasses.replace(original, lang=None, url=None, brands=())
    assert decode(encode(bare)) == bare


def test_the_sentiment_is_not_kept_it_is_scored_again() -> None:
    scored = post("kettlebird is awful", negative=True)
    assert scored.sentiment is not None
    assert decode(encode(scored)).sentiment is None


def test_appends_are_read_back_in_order_across_segments(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j")
    posts = [post(f"kettlebird {i}", at=i, id=str(i)) for i in range(10)]
    journal.append(posts[:3])
    journal.append(posts[3:4])
    journal.start_segment()
    journal.append(posts[4:])
    journal.close()
    again = Journal.open(tmp_path / "j")
    assert len(again) == 2
    assert [m.id for m in again.read(never_damaged)] == [str(i) for i in range(10)]
    assert again.last_write is not None and abs(again.last_write - datetime.now().timestamp()) < 60
    again.start_segment()  # numbering goes on after the segments found
    assert sorted(os.listdir(tmp_path / "j")) == [f"0000000{i}.jsonl" for i in (1, 2, 3)]


def test_a_damaged_line_is_skipped_and_said_and_the_others_are_read(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    journal.append([post("kettlebird one", id="1"), post("kettlebird two", at=1, id="2")])
    journal.close()
    segment = tmp_path / "00000001.jsonl"
    good = segment.read_bytes()
    wrong_version = encode(post("kettlebird", id="3")).replace(b"[1,", b"[2,", 1)
    segment.write_bytes(
        b"not json\n" + good + b'{"id": "x"}\n' + wrong_version + good[:40]  # a torn last line
    )
    read, damaged = damaged_lines(Journal.open(tmp_path))
    assert [m.id for m in read] == ["1", "2"]
    assert [(name, line) for name, line, _ in damaged] == [
        ("00000001.jsonl", 1),
        ("00000001.jsonl", 4),
        ("00000001.jsonl", 5),
        ("00000001.jsonl", 6),
    ]
    assert damaged[1][2] == "not a version 1 journal line"
    assert damaged[3][2] == "a line cut short"


@pytest.mark.parametrize(
    ("field", "value"),
    [(1, 17), (3, 1.5), (3, "2026-11-28"), (8, "yes"), (15, "kettlebird"), (15, [1])],
)
def test_a_line_of_the_right_shape_with_a_wrong_type_is_damaged(field: int, value: object) -> None:
    import orjson

    item = orjson.loads(encode(post("kettlebird")))
    item[field] = value
    with pytest.raises((ValueError, TypeError)):
        decode(orjson.dumps(item))


def test_prune_deletes_the_segments_whose_posts_are_all_older(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    journal.append([post("kettlebird", at=0, id="a"), post("kettlebird", at=100, id="b")])
    journal.start_segment()
    journal.append([post("kettlebird", at=50, id="c")])  # late: an older post after newer
    journal.start_segment()
    journal.append([post("kettlebird", at=10, id="d")])  # the one appended to: kept
    boundary = (T0 + timedelta(seconds=60)).timestamp()
    assert journal.prune(boundary) == 1  # the second: its newest is before the boundary
    assert sorted(os.listdir(tmp_path)) == ["00000001.jsonl", "00000003.jsonl"]
    assert journal.prune(math.inf) == 1
    assert sorted(os.listdir(tmp_path)) == ["00000003.jsonl"]


def test_segments_found_at_start_are_pruned_once_read(tmp_path: Path) -> None:
    first = Journal.open(tmp_path)
    first.append([post("kettlebird", at=0, id="a")])
    first.close()
    second = Journal.open(tmp_path)
    assert second.prune(math.inf) == 0  # not read: its posts' times are not known yet
    assert [m.id for m in second.read(never_damaged)] == ["a"]
    second.start_segment()
    assert second.prune(math.inf) == 1


def test_a_write_that_fails_raises_a_journal_error_and_the_next_goes_to_a_new_segment(
    tmp_path: Path,
) -> None:
    journal = Journal.open(tmp_path)
    journal.append([post("kettlebird", id="a")])
    break_under(journal)
    with pytest.raises(JournalError, match="cannot write to the journal"):
        journal.append([post("kettlebird", id="b")])
    journal.append([post("kettlebird", id="c")])
    journal.close()
    assert sorted(os.listdir(tmp_path)) == ["00000001.jsonl", "00000002.jsonl"]
    assert [m.id for m in Journal.open(tmp_path).read(never_damaged)] == ["a", "c"]


def test_a_folder_that_cannot_be_made_is_a_journal_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(JournalError, match="cannot open the journal"):
        Journal.open(tmp_path / "file" / "journal")


# -- a crash, then the journal read back ---------------------------------------------


def jostled(posts: list[dict[str, str]], seed: int) -> list[dict[str, str]]:
    """A live stream's order: now and then a post comes a little after later ones."""
    rng = random.Random(seed)
    out = list(posts)
    for i in range(len(out) - 3):
        if rng.random() < 0.1:
            j = i + rng.randint(1, 3)
            out[i], out[j] = out[j], out[i]
    return out


@pytest.mark.asyncio
@pytest.mark.parametrize(("checkpoint_at", "crash_at"), [(0.31, 0.52), (0.6, 0.6), (0.05, 0.97)])
async def test_a_crash_anywhere_then_the_journal_counts_every_post_once(
    settings: Settings, tmp_path: Path, checkpoint_at: float, crash_at: float
) -> None:
    """A pipeline checkpointed (mid-stream, buckets open at every scale, posts coming while
    it is taken), then killed; a new one restored from that checkpoint reads the journal
    and the rest of the stream. Its detectors end exactly as those of a pipeline that ran
    through, and judged every bucket after the checkpoint exactly alike."""
    stream = await read_replay(
        write_replay(tmp_path / "s.jsonl", jostled(traffic(0, 20 * HOUR, 7, 14 * HOUR), 7))
    )
    batches = [stream[i : i + 17] for i in range(0, len(stream), 17)]
    through = RecordingPipeline(settings)
    for batch in batches:
        through.ingest(batch)
    through.flush()

    crashed = RecordingPipeline(settings)
    journal = Journal.open(tmp_path / "journal")
    saved = closed = None
    for i, batch in enumerate(batches):
        if i == int(len(batches) * checkpoint_at):
            with crashed.closes_held():
                closed = crashed.closed_through()
                saved = []
                for n, chunk in enumerate(crashed.checkpoint_chunks(size=3)):
                    saved.extend(chunk)
                    crashed.ingest(batches[i - 1][n % 5 :: 7])  # posts keep coming (dupes)
            journal.start_segment()
        if i == int(len(batches) * crash_at):
            break  # SIGKILL: what it learned since the checkpoint is gone
        journal.append(batch)
        crashed.ingest(batch)
    assert saved is not None and closed is not None
    assert min(closed.values()) < max(closed.values())  # the scales' boundaries differ
    journal.close()

    restarted = RecordingPipeline(settings)
    restarted.restore(saved)
    restarted.continue_from(closed)
    earliest = min(closed.values())
    read = Journal.open(tmp_path / "journal").read(never_damaged)
    again = [m for m in read if m.created_at.timestamp() >= earliest]
    for n in range(0, len(again), 250):
        restarted.replay(again[n : n + 250])
    for batch in batches[int(len(batches) * crash_at) :]:
        restarted.ingest(batch)
    restarted.flush()

    def after_checkpoint(pipeline: RecordingPipeline) -> list[object]:
        return [
            s for s in pipeline.signals if s.start.timestamp() >= closed[s.series.scale_seconds]
        ]

    assert after_checkpoint(restarted) == after_checkpoint(through)
    assert len(after_checkpoint(through)) > 100
    assert keyed(restarted.checkpoint()) == keyed(through.checkpoint())
    # the posts read again are not late (they were counted before); the stream's own are
    assert late(restarted) <= late(through)


def late(pipeline: RecordingPipeline) -> float:
    return pipeline.metrics.late._value.get()  # type: ignore[no-any-return]


def test_a_checkpoint_in_closes_held_is_of_one_instant(settings: Settings) -> None:
    pipeline = RecordingPipeline(settings)
    pipeline.ingest([post("kettlebird", at=s, id=str(s)) for s in range(0, 600, 7)])
    closed = pipeline.closed_through()
    watermark = 595 - settings.config.detect.allowed_lateness_seconds
    assert closed == {
        scale: T0.timestamp() + watermark // scale * scale for scale in (60, 300, 900)
    }
    with pipeline.closes_held():
        pipeline.ingest([post("kettlebird", at=1200, id="late-comer")])
        assert pipeline.closed_through() == closed  # nothing closed, nothing learned
        assert pipeline.tick(T0 + timedelta(hours=1)) == []
        assert pipeline.closed_through() == closed
    pipeline.ingest([post("kettlebird", at=1201, id="next")])
    assert pipeline.closed_through()[60] > closed[60]  # what was due closes at once


def test_before_the_first_post_nothing_is_closed_and_nothing_continues(
    settings: Settings,
) -> None:
    pipeline = RecordingPipeline(settings)
    assert pipeline.closed_through() == {}
    pipeline.continue_from({})
    pipeline.ingest([post("kettlebird", at=5, id="1")])
    assert pipeline.aggregator.start == (T0 + timedelta(seconds=5)).timestamp()


# -- the daemon ----------------------------------------------------------------------


def live_source(texts: list[str], name: str) -> GatedSource:
    now = datetime.now(UTC)
    source = GatedSource(
        [post(text, at=now, id=f"{name}-{i}") for i, text in enumerate(texts)], name, held=True
    )
    source.live = True
    return source


def store_config(project: Path) -> Path:
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace("port: 9464", "port: 0")
    config.write_text(text.replace("store:\n  enabled: false", "store:\n  enabled: true"))
    return config


def journaled(project: Path) -> list[str]:
    return [m.id for m in Journal.open(project / "xwatch.sqlite3.journal").read(never_damaged)]


def journal_errors(daemon: Daemon) -> float:
    value = daemon.registry.get_sample_value(
        "xwatch_store_write_errors_total", {"operation": "journal"}
    )
    return value or 0.0


@pytest.mark.asyncio
async def test_a_graceful_stop_keeps_the_open_buckets_for_the_next_start(project: Path) -> None:
    """The posts of the buckets still open at a stop were lost with it; the journal keeps
    them, and the next start counts them where they were."""
    config = store_config(project)
    first_source = live_source(["kettlebird one", "kettlebird two", "kettlebird three"], "a")
    first_source.go.set()
    async with running(Daemon(load_settings(config), sources=[first_source])) as first:
        await until_processed(first, 3)
    assert journaled(project) == ["a-0", "a-1", "a-2"]

    second = Daemon(load_settings(config), sources=[live_source([], "a")])
    async with running(second):
        await second.started.wait()
        key = SeriesKey("kettlebird", "", 60)
        counts = [b.count for b in second.pipeline.aggregator.series[key].open.values()]
    assert counts == [3]  # the first minute's bucket, open still, with its three posts
    assert processed(second) == 3


@pytest.mark.asyncio
async def test_a_journal_that_fails_is_said_and_counted_and_posts_go_on_until_it_works(
    project: Path,
) -> None:
    config = store_config(project)
    failing = live_source(["kettlebird one", "kettlebird two"], "a")
    later = live_source(["kettlebird three"], "b")
    async with running(Daemon(load_settings(config), sources=[failing, later])) as daemon:
        await daemon.started.wait()
        for source in ("a", "b"):
            daemon.report.connected(source, True)
        assert daemon.journal is not None
        break_under(daemon.journal)
        failing.go.set()
        await until_processed(daemon, 2)  # the posts go on all the same
        assert journal_errors(daemon) == 2  # each post not journaled
        assert daemon._ready() == (False, daemon.journal_problem)
        assert "journal not writable" in str(daemon.journal_problem)
        assert daemon.registry.get_sample_value("xwatch_store_writable") == 0

        daemon._journal_retry_at = 0.0  # the retry's time has come
        later.go.set()
        await until_processed(daemon, 3)
        assert daemon.journal_problem is None
        assert daemon._ready() == (True, "ok")
        assert daemon.registry.get_sample_value("xwatch_store_writable") == 1
    assert journaled(project) == ["b-0"]


@pytest.mark.asyncio
async def test_damaged_journal_lines_are_skipped_said_and_counted_at_start(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = store_config(project)
    folder = project / "xwatch.sqlite3.journal"
    journal = Journal.open(folder)
    now = datetime.now(UTC)
    journal.append([post("kettlebird one", at=now, id="1"), post("kettlebird two", at=now, id="2")])
    journal.close()
    segment = folder / "00000001.jsonl"
    segment.write_bytes(segment.read_bytes() + b"\xff\xfe garbage\n")
    daemon = Daemon(load_settings(config), sources=[live_source([], "a")])
    async with running(daemon):
        await daemon.started.wait()
    assert processed(daemon) == 2
    assert daemon.registry.get_sample_value("xwatch_journal_lines_damaged_total") == 1
    assert "00000001.jsonl, line 3: skipped" in caplog.text


@pytest.mark.asyncio
async def test_the_journal_is_read_back_with_the_web_server_up_and_not_ready(
    project: Path,
) -> None:
    """A journal of a busy hour takes a while to read back: /healthz must answer
    meanwhile (or an orchestrator kills the start, which reads it again, for ever), and
    /readyz says why it is not ready."""
    config = store_config(project)
    journal = Journal.open(project / "xwatch.sqlite3.journal")
    now = datetime.now(UTC)
    journal.append([post("kettlebird", at=now, id=str(i)) for i in range(2500)])
    journal.close()
    daemon = Daemon(load_settings(config), sources=[live_source([], "a")])
    seen: list[tuple[bool, tuple[bool, str]]] = []
    replay = daemon.pipeline.replay

    def watched(mentions: Sequence[Mention]) -> list[AlertEvent]:
        seen.append((daemon.serving.is_set(), daemon._ready()))
        return replay(mentions)

    daemon.pipeline.replay = watched  # type: ignore[method-assign]
    async with running(daemon):
        await daemon.started.wait()
    assert [serving for serving, _ in seen] == [True, True, True]
    assert [ready for _, ready in seen] == [
        (False, "starting: reading the ingest journal back"),
        (False, "starting: reading the ingest journal back (1,000 posts so far)"),
        (False, "starting: reading the ingest journal back (2,000 posts so far)"),
    ]
    assert processed(daemon) == 2500


def test_a_line_whose_time_is_out_of_range_is_damaged_not_fatal(tmp_path: Path) -> None:
    """A line of the right shape whose time no datetime can hold (a file edited by hand, a
    disk error in its digits) raised OverflowError out of ``read``: the start failed, and
    every start after it, until the journal was deleted by hand."""
    import orjson

    journal = Journal.open(tmp_path)
    journal.append([post("kettlebird one", id="1")])
    journal.close()
    item = orjson.loads(encode(post("kettlebird two", id="2")))
    item[3] = 10**18  # microseconds: year 33,658
    segment = tmp_path / "00000001.jsonl"
    segment.write_bytes(segment.read_bytes() + orjson.dumps(item) + b"\n")
    read, damaged = damaged_lines(Journal.open(tmp_path))
    assert [m.id for m in read] == ["1"]
    assert [(name, line) for name, line, _ in damaged] == [("00000001.jsonl", 2)]


@pytest.mark.parametrize("ticked_first", [True, False])
def test_a_restart_days_after_the_checkpoint_does_not_judge_each_empty_bucket_between(
    settings: Settings, ticked_first: bool
) -> None:
    """Down three days, nothing in the journal to count again: ``continue_from`` put every
    series back at the checkpoint's buckets, and the first tick (or post) closed every
    bucket of the three days, empty (4,320 at one minute), the detectors learning days of
    silence. A hole in the data longer than ``MAX_GAP`` is skipped, not judged
    (``Pipeline._skip_gap``), as it was before the journal when a restart began the
    series at its first post."""
    first = RecordingPipeline(settings)
    first.ingest([post("kettlebird", at=s, id=str(s)) for s in range(0, 3600, 20)])
    with first.closes_held():
        closed = first.closed_through()
        saved = first.checkpoint()
    restarted = RecordingPipeline(settings)
    restarted.restore(saved)
    restarted.continue_from(closed)
    later = T0 + timedelta(days=3)
    if ticked_first:  # the ticker runs before the sources deliver
        restarted.tick(later)
    restarted.ingest([post("kettlebird back", at=later, id="back-1")])
    restarted.ingest([post("kettlebird back", at=later + timedelta(seconds=5), id="back-2")])
    restarted.tick(later + timedelta(minutes=30))
    hole = [
        s
        for s in restarted.signals
        if T0 + timedelta(hours=2) <= s.start < later - timedelta(hours=1)
    ]
    assert hole == []
    assert any(s.start >= later for s in restarted.signals)  # it goes on after the hole


@pytest.mark.asyncio
async def test_posts_the_checkpoint_had_learned_are_read_back_with_the_loop_turning(
    project: Path,
) -> None:
    """The posts before the marks are only remembered as seen, but a journal holds a whole
    checkpoint interval of them (300,000 at 1,000 posts a second, about 3 s to read): the
    read let the loop turn only between posts counted again, so /healthz went unanswered
    meanwhile, which the read with the web server up is for."""
    from xwatch.store import Store

    config = store_config(project)
    now = datetime.now(UTC)
    journal = Journal.open(project / "xwatch.sqlite3.journal")
    journal.append(
        [post("kettlebird", at=now - timedelta(hours=1), id=str(i)) for i in range(2500)]
    )
    journal.close()
    store = Store.open(project / "xwatch.sqlite3")
    store.save_checkpoint_rows([], None, {scale: now.timestamp() for scale in (60, 300, 900)})
    store.close()
    daemon = Daemon(load_settings(config), sources=[live_source([], "a")])
    turns = 0
    seen_at: list[int] = []
    first_time = daemon.pipeline.dedup.first_time

    def watched(post_id: str) -> bool:
        seen_at.append(turns)
        return first_time(post_id)

    daemon.pipeline.dedup.first_time = watched  # type: ignore[method-assign]

    async def turning() -> None:
        nonlocal turns
        while not daemon.started.is_set():
            turns += 1
            await asyncio.sleep(0)

    async with running(daemon):
        await turning()
    assert len(seen_at) == 2500  # all known, none counted
    assert processed(daemon) == 0
    assert len(set(seen_at)) >= 3  # the loop turned every thousand posts at least


@pytest.mark.asyncio
async def test_damaged_marks_leave_the_journal_unread_rather_than_count_it_twice(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Read whole, a journal would count again what the checkpoint's detectors learned."""
    config = store_config(project)
    journal = Journal.open(project / "xwatch.sqlite3.journal")
    now = datetime.now(UTC)
    journal.append([post("kettlebird", at=now, id=str(i)) for i in range(3)])
    journal.close()
    with Store.open(project / "xwatch.sqlite3") as store:
        store.save_checkpoint_rows([], marks={60: now.timestamp()})
        with store._write() as db:  # a store edited by hand
            db.execute("UPDATE journal_marks SET closed_through = 'soon'")
        assert store.journal_marks() is None
    daemon = Daemon(load_settings(config), sources=[live_source([], "a")])
    async with running(daemon):
        await daemon.started.wait()
    assert processed(daemon) == 0
    assert "a journal mark is damaged" in caplog.text
