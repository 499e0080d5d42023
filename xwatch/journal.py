"""The ingest journal: every post a live source hands the daemon, on disk before the source
is told it was taken, so that a crash loses none.

Why
    The detectors' state is saved by the checkpoint, every few minutes; the posts taken
    since, and those in the buckets still open at the checkpoint, lived only in memory.
    An MQTT message is acknowledged once the daemon has taken its posts, so a crash
    (``SIGKILL``, the out-of-memory killer, a failed node's pod) lost them for good:
    the broker had handed them over. Now the daemon writes each post here first
    (``append``), and a start reads them back (``read``) and counts again those that the
    checkpoint's detectors had not learned (see ``Pipeline.continue_from``).

What it is
    A folder of segments, ``00000001.jsonl``, ``00000002.jsonl`` ..., each line one post
    as a JSON array (``encode``; version 1). Appends go to the newest segment with one
    ``write`` system call each: once it returns, the post is the kernel's, and survives
    the process (not a power loss: there is no ``fsync``, as there is none for the
    store's ``synchronous=NORMAL``). Each checkpoint starts a new segment
    (``start_segment``) and, once saved, deletes the segments whose every post is older
    than what the checkpoint's detectors have learned (``prune``): the journal holds
    about the longest time scale, the allowed lateness and one checkpoint interval of
    posts (at 1,000 posts a second, 20 minutes take about 400 MB).

What it is not
    A queue: it is read once, at start, before the sources. A line that cannot be read
    (a disk error, a file edited by hand) is skipped, and said (``on_damaged``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from xwatch.errors import XwatchError
from xwatch.model import Author, Mention

log = logging.getLogger("xwatch.journal")

VERSION = 1  # the first item of each line
_SEGMENT = re.compile(r"^(\d{8})\.jsonl$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class JournalError(XwatchError, OSError):
    """The journal's folder or a segment cannot be read or written."""


def encode(mention: Mention) -> bytes:
    """One post as a line: its fields as a source gave them (not its sentiment: scored again
    when read back), its time in whole microseconds (exact)."""
    author = mention.author
    return (
        orjson.dumps(
            [
                VERSION,
                mention.id,
                mention.text,
                (mention.created_at - _EPOCH) // _MICROSECOND,
                mention.source,
                author.id,
                author.handle,
                author.followers,
                author.verified,
                mention.lang,
                mention.url,
                mention.likes,
                mention.reposts,
                mention.replies,
                mention.quotes,
                mention.brands,
            ]
        )
        + b"\n"
    )


def decode(line: bytes) -> Mention:
    """``encode``'s line as the post; ValueError (or TypeError) if it is not one."""
    item = orjson.loads(line)
    if not isinstance(item, list) or len(item) != 16 or item[0] != VERSION:
        raise ValueError(f"not a version {VERSION} journal line")
    (_, post_id, text, micros, source, author_id, handle, followers, verified) = item[:9]
    lang, url, likes, reposts, replies, quotes, brands = item[9:]
    if not all(isinstance(v, str) for v in (post_id, text, source, author_id, handle)):
        raise ValueError("a text field is not text")
    counts = (micros, followers, likes, reposts, replies, quotes)
    if not all(type(v) is int for v in counts) or not isinstance(verified, bool):
        raise ValueError("a number field is not a whole number")
    if not (lang is None or isinstance(lang, str)) or not (url is None or isinstance(url, str)):
        raise ValueError("lang or url is not text")
    if not isinstance(brands, list) or not all(isinstance(b, str) for b in brands):
        raise ValueError("brands is not a list of text")
    try:
        created_at = _EPOCH + micros * _MICROSECOND
    except OverflowError as exc:  # (a whole number no datetime holds)
        raise ValueError(f"the time is out of range: {exc}") from exc
    return Mention(
        id=post_id,
        text=text,
        created_at=created_at,
        source=source,
        author=Author(author_id, handle, followers, verified),
        lang=lang,
        url=url,
        likes=likes,
        reposts=reposts,
        replies=replies,
        quotes=quotes,
        brands=tuple(brands),
    )


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    newest: float = -math.inf  # epoch seconds of its newest post (-inf: none; inf: unknown)


OnDamaged = Callable[[Path, int, str], None]  # segment, line number, why


class Journal:
    """``open`` a folder; ``read`` what it holds (once, at start); then ``start_segment``
    and ``append``; ``start_segment`` again at each checkpoint, ``prune`` once it is saved."""

    def __init__(self, directory: Path, segments: list[_Segment], last_write: float | None):
        self.directory = directory
        self._segments = segments  # oldest first; the last is the one appended to, if open
        self._fd: int | None = None
        # when the newest segment was last written at ``open`` (epoch seconds, wall time):
        # about when the process that wrote it stopped taking posts
        self.last_write = last_write

    @classmethod
    def open(cls, directory: Path) -> Journal:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            segments = sorted(
                (
                    _Segment(int(found.group(1)), directory / name, math.inf)  # until read
                    for name in os.listdir(directory)
                    if (found := _SEGMENT.match(name))
                ),
                key=lambda segment: segment.number,
            )
            last_write = segments[-1].path.stat().st_mtime if segments else None
        except OSError as exc:
            raise JournalError(f"cannot open the journal {directory}: {exc}") from exc
        return cls(directory, segments, last_write)

    @property
    def size_bytes(self) -> int:
        total = 0
        for segment in self._segments:
            try:
                total += segment.path.stat().st_size
            except OSError:
                continue
        return total

    def __len__(self) -> int:
        """How many segments it holds."""
        return len(self._segments)

    def read(self, on_damaged: OnDamaged) -> Iterator[Mention]:
        """Every post of the segments there are now (not of those started while it is
        read), in the order they were written; learns each segment's newest post on the
        way (``prune`` needs it)."""
        return self._read(list(self._segments), on_damaged)

    def _read(self, segments: list[_Segment], on_damaged: OnDamaged) -> Iterator[Mention]:
        for segment in segments:
            segment.newest = -math.inf
            try:
                with segment.path.open("rb") as lines:
                    for number, line in enumerate(lines, start=1):
                        if not line.strip():
                            continue
                        try:
                            mention = decode(line)
                        except (ValueError, TypeError) as exc:
                            why = "a line cut short" if not line.endswith(b"\n") else str(exc)
                            on_damaged(segment.path, number, why)
                            continue
                        segment.newest = max(segment.newest, mention.created_at.timestamp())
                        yield mention
            except OSError as exc:
                on_damaged(segment.path, 0, f"cannot read it: {exc}")
                segment.newest = math.inf  # unknown: kept until it can be read

    def start_segment(self) -> None:
        """Append to a new segment from now on (the ones before can then be pruned)."""
        number = self._segments[-1].number + 1 if self._segments else 1
        path = self.directory / f"{number:08d}.jsonl"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise JournalError(f"cannot start the journal segment {path}: {exc}") from exc
        self._close_fd()
        self._fd = fd
        self._segments.append(_Segment(number, path))

    def append(self, mentions: Sequence[Mention]) -> None:
        """Write these posts: on disk (the kernel's) when this returns."""
        if self._fd is None:
            self.start_segment()
        assert self._fd is not None
        data = b"".join(encode(mention) for mention in mentions)
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # a regular file takes it all, unless the disk is full
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            # the segment may end with part of a line: the next ones go to a new segment
            self._close_fd()
            raise JournalError(f"cannot write to the journal {self.directory}: {exc}") from exc
        segment = self._segments[-1]
        for mention in mentions:
            at = mention.created_at.timestamp()
            if at > segment.newest:
                segment.newest = at

    def prune(self, before: float) -> int:
        """Delete the segments, but the one appended to, whose posts are all older than
        ``before`` (epoch seconds); return how many."""
        return self._delete(lambda segment: segment.newest < before)

    def clear(self) -> int:
        """Delete every segment but the one appended to, read or not; return how many."""
        return self._delete(lambda segment: True)

    def _delete(self, wanted: Callable[[_Segment], bool]) -> int:
        current = self._segments[-1] if self._fd is not None else None
        kept, removed = [], 0
        for segment in self._segments:
            if segment is current or not wanted(segment):
                kept.append(segment)
                continue
            try:
                segment.path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning(
                    "journal: cannot delete %s: %s", segment.path, exc, extra={"event": "journal"}
                )
                kept.append(segment)
                continue
            removed += 1
        self._segments = kept
        return removed

    def close(self) -> None:
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
