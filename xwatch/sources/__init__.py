"""Sources: where mentions come from. One module per source.

A source is an async context (connect / close) and an async iterator of
mentions. It never raises on bad input: it tells its ``SourceReport`` and goes on.
``live`` says whether its posts arrive in real time (then the daemon ticks the
event clock with wall time so that quiet buckets close).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from prometheus_client import Counter

from xwatch.config import (
    Config,
    DemoSourceConfig,
    MqttSourceConfig,
    ReplaySourceConfig,
    XStreamSourceConfig,
)
from xwatch.metrics import Metrics
from xwatch.model import Mention, SourcePosition

log = logging.getLogger("xwatch.sources")

# A live post "from the future" beyond this is refused (``bad_timestamp``): its event time
# would move the watermark far ahead of every real post (from year 9999, the pipeline
# would close a bucket for every minute until then).
MAX_FUTURE_SKEW = timedelta(minutes=5)

# A live post older than this is refused too (``bad_timestamp``). It is beyond the
# MQTT session expiry (7 days by default), so no backlog the broker kept for xwatch is
# refused; a post from year 1 as the first a fresh daemon sees would otherwise start
# every series there, and the next post would close a bucket per minute since then.
# Older posts belong to ``xwatch backtest``, which replays in event time.
MAX_PAST_AGE = timedelta(days=8)


class SourceReport(Protocol):
    """What a source tells the rest of the daemon (metrics and logs), never raising."""

    def received(self, source: str) -> None:
        """One mention read (before deduplication)."""

    def rejected(self, source: str, reason: str, detail: str) -> None:
        """A payload that is not a mention; ``reason`` is one of ``PayloadError.REASONS``."""

    def connected(self, source: str, up: bool) -> None:
        """The connection to the peer is up (or down)."""

    def reconnecting(self, source: str, delay_seconds: float, why: str) -> None:
        """The source will reconnect after ``delay_seconds`` because of ``why``."""

    def problem(self, source: str, kind: str, detail: str) -> None:
        """An operational problem; ``kind`` is a short bounded label (``http_429``,
        ``http_5xx``, ``network``, ``stall``, ``stream_error``, ``rule_cap``, ...)."""


@runtime_checkable
class RateLimitReport(Protocol):
    """Optional on a ``SourceReport``: the rate-limit headers of an API's responses.

    Sources check for it (``isinstance(report, RateLimitReport)``) so that a report
    without it stays a valid ``SourceReport``.
    """

    def rate_limit(
        self, source: str, endpoint: str, remaining: int, reset_at: float | None
    ) -> None:
        """``remaining`` requests are left on ``endpoint`` (``stream``, ``rules``,
        ``search``, ``counts`` for X) until ``reset_at`` (Unix time), as the last response said."""


@runtime_checkable
class WarmStart(Protocol):
    """Optional on a source: its brands' recent posts per minute, known once it is entered
    (the X source's ``warm_start``: X's recent counts). The daemon teaches them to the
    brands' volume detectors before the source's first post (``Pipeline.warm_start``)."""

    warm_counts: Mapping[str, list[tuple[datetime, int]]]  # brand -> (minute, posts), oldest first


@runtime_checkable
class Resumable(Protocol):
    """Optional on a live source that can fetch what was posted while xwatch was down (the
    X source: recent search). Before the source is entered, the daemon tells it the newest
    of its posts that the restored state has seen (saved with each checkpoint); a source
    told nothing starts from now, as a fresh daemon does."""

    name: str

    def resume_after(self, position: SourcePosition) -> None: ...


class Source(Protocol):
    name: str
    live: bool

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def __aiter__(self) -> AsyncIterator[Mention]: ...


class MetricsReport:
    """Counts every mention and rejection; logs each rejection reason at most once a minute."""

    def __init__(
        self,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        every_seconds: float = 60.0,
        on_connection: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.on_connection = on_connection
        self.clock = clock
        self.every = every_seconds
        self._last_logged: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self.up: dict[str, bool] = {}  # connection state by source, for /readyz
        self._received: dict[str, Counter] = {}  # by source: ``labels()`` is not free

    def received(self, source: str) -> None:
        counter = self._received.get(source)
        if counter is None:
            counter = self._received[source] = self.metrics.received.labels(source)
        counter.inc()

    def rejected(self, source: str, reason: str, detail: str) -> None:
        self.metrics.rejected.labels(source, reason).inc()
        self._log_limited(
            "rejected payload",
            source,
            reason,
            detail,
            {"event": "payload_rejected", "source": source, "reason": reason},
        )

    def connected(self, source: str, up: bool) -> None:
        self.metrics.source_up.labels(source).set(1 if up else 0)
        self.up[source] = up
        if self.on_connection is not None:
            self.on_connection(source, up)
        state = "connected" if up else "disconnected"
        log.info(
            "source %s %s", source, state, extra={"event": f"source_{state}", "source": source}
        )

    def reconnecting(self, source: str, delay_seconds: float, why: str) -> None:
        self.metrics.source_reconnects.labels(source).inc()
        self._log_limited(  # by why (a few kinds), not by the delay (a new one each time)
            "reconnecting",
            source,
            why,
            f"in {delay_seconds:.2f}s",
            {"event": "source_reconnecting", "source": source, "delay_seconds": delay_seconds},
        )

    def problem(self, source: str, kind: str, detail: str) -> None:
        self.metrics.source_problems.labels(source, kind).inc()
        self._log_limited(
            "source problem",
            source,
            kind,
            detail,
            {"event": "source_problem", "source": source, "kind": kind},
        )

    def rate_limit(
        self, source: str, endpoint: str, remaining: int, reset_at: float | None
    ) -> None:
        self.metrics.x_rate_limit_remaining.labels(source, endpoint).set(remaining)
        if reset_at is not None:
            self.metrics.x_rate_limit_reset.labels(source, endpoint).set(reset_at)

    def _log_limited(
        self,
        what: str,
        source: str,
        reason: str,
        detail: str,
        fields: Mapping[str, object] | None = None,
    ) -> None:
        """Log at most one line per (source, reason) per ``every_seconds``; count the rest."""
        key = (source, f"{what}:{reason}")
        now = self.clock()
        last = self._last_logged.get(key)
        if last is not None and now - last < self.every:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last_logged[key] = now
        more = self._suppressed.pop(key, 0)
        log.warning(
            "%s source=%s reason=%s detail=%r%s",
            what,
            source,
            reason,
            detail,
            f" (+{more} more since the last line)" if more else "",
            extra={**(fields or {}), "suppressed": more},
        )


def build_sources(config: Config, report: SourceReport) -> list[Source]:
    """The configured sources that produce mentions by themselves.

    The webhook is not among them: it is an endpoint of the daemon's web server.
    """
    from xwatch.demo.generate import bundled_demo_path
    from xwatch.sources.mqtt import MqttSource
    from xwatch.sources.replay import ReplaySource
    from xwatch.sources.x_stream import XStreamSource

    sources: list[Source] = []
    for source in config.sources:
        if isinstance(source, ReplaySourceConfig):
            sources.append(ReplaySource(source.path, source.name, source.speed, report))
        elif isinstance(source, DemoSourceConfig):
            sources.append(ReplaySource(bundled_demo_path(), source.name, source.speed, report))
        elif isinstance(source, MqttSourceConfig):
            sources.append(MqttSource(source, report))
        elif isinstance(source, XStreamSourceConfig):
            sources.append(XStreamSource(source, config.brands, report))
    return sources
