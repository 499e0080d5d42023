"""The daemon: sources → queue → pipeline → notifiers, plus the web server.

Lifecycle: every long-running part is a task in one ``asyncio.TaskGroup``.
SIGINT/SIGTERM (or ``stop``) start a graceful drain: sources stop, the mentions
already queued go through the pipeline, pending notifications are delivered, all
within ``drain_timeout_seconds``; then the web server closes.

A finite source (a replay) ending is not a reason to stop: the pipeline is
flushed (the last buckets close) and the daemon keeps serving metrics and
playbooks until told to stop, or stops by itself with ``exit_when_done``.

State: with ``store.enabled``, the detectors are restored from the store's
checkpoint before the first batch, checkpointed every
``store.checkpoint_interval_seconds`` (the SQLite write runs in a worker thread)
and once more at a graceful stop, after the drain. With ``store.journal``, every post
a live source hands over is written to the journal before it is queued, and a start
counts again the posts of it that the checkpoint had not learned (``xwatch.journal``).

Feedback: every alert event's sample posts are remembered (``api.remember_posts``
of them, the oldest forgotten first) so that ``POST /api/labels`` and a post's label
menu in Slack (``label_sample``, which also finds the post among its incident's
samples) can label a post by its id; the labels go to the store (``xwatch.feedback``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import os
import random
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from xwatch import logs
from xwatch.alerting import (
    MemoryRefs,
    MessageRefs,
    Notifier,
    PermanentFailure,
    TemporaryFailure,
)
from xwatch.alerting.console import ConsoleNotifier
from xwatch.alerting.email import EmailNotifier
from xwatch.alerting.incidents import (
    KEPT_IDS,
    Change,
    Incident,
    IncidentBook,
    Notice,
    Policy,
    Route,
    Silence,
    UnknownIncident,
)
from xwatch.alerting.lifecycle import ActiveAlert
from xwatch.alerting.render import clean
from xwatch.alerting.service import DEFAULT_SILENCE, Action, IncidentRecord
from xwatch.alerting.slack import SlackActions, SlackNotifier
from xwatch.alerting.webhook import WebhookNotifier
from xwatch.clock import Clock, LiveCompleteness, WallClock, WallSteps
from xwatch.config import (
    Config,
    EmailNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
    WebhookSourceConfig,
    XStreamSourceConfig,
)
from xwatch.detect.state import STATE_VERSION, Checkpoint, CheckpointError
from xwatch.errors import ConfigError, PayloadError
from xwatch.feedback import Feedback, LabelsUnavailable, api_token
from xwatch.journal import Journal, JournalError
from xwatch.malloc import release_free_memory
from xwatch.metrics import CHANGE_DROP_REASONS, PROBLEM_KINDS, STORE_OPERATIONS, Metrics
from xwatch.model import (
    AlertEvent,
    EventKind,
    Mention,
    SeriesKey,
    SourcePosition,
    format_scale,
    utc,
)
from xwatch.outbox import MAX_UNSTORED_NOTICES, NOTICES_IN_MEMORY, NoticeStub, Outbox
from xwatch.pipeline import Pipeline
from xwatch.sentiment.router import LanguageRouter
from xwatch.sentiment.trained import ModelError, router_from_config
from xwatch.settings import Settings
from xwatch.sources import (
    MAX_FUTURE_SKEW,
    MAX_PAST_AGE,
    MetricsReport,
    Resumable,
    Source,
    WarmStart,
    build_sources,
)
from xwatch.sources.webhook import WebhookIngest
from xwatch.store import (
    MEMORY,
    CheckpointRow,
    Store,
    StoredLabel,
    StoreError,
    Unreadable,
    checkpoint_rows,
    refused,
)
from xwatch.store_worker import StoreWorker
from xwatch.web import LabelsApi, make_app
from xwatch.web import runner as web_runner
from xwatch.web_incidents import add_incident_routes

log = logging.getLogger("xwatch.daemon")

MAX_BATCH = 1000
# A batch costs a round of bucket closing and incident bookkeeping whatever its size: when
# the queue runs dry, the consumer waits this long once for more posts before ingesting.
BATCH_WAIT_SECONDS = 0.02
SLOW_BATCH_SECONDS = 0.5
"""A batch that took longer than this (many series, and a backlog whose batches span
minutes of event time: each minute closes a bucket of every series) makes the next ones
end at the post that closes buckets: one round of closes per batch, and the event loop
(``/healthz``, the web, the checkpoint's steps) turns between rounds. A day's backlog
for 1,000 brands held it for 6-10 s at a time. Batches are cut so until one that was
not cut (the queue ran dry, or it filled) is quick again."""
ROUNDS_PER_BATCH = 5
"""Otherwise a batch ends at its fifth round of bucket closes at the most: a thousand
posts of a sparse backlog may span hours of event time, a round of closes a minute, and
a batch cannot be known to be slow before it has run (a backlog's first batch held the
loop 4-5 s at 500 brands, and a sparser one could hold it for good)."""
EVIDENCE_POSTS = 3  # sample posts of an alert logged at debug level (cut short)
SECRET_ENV_FIELDS = (
    "bearer_token_env",
    "secret_env",
    "password_env",
    "token_env",
    "signing_secret_env",
    "routing_key_env",
)
TICK_SECONDS = 1.0
RECENT_INCIDENT_IDS = KEPT_IDS  # resolved incidents whose ids a restart keeps taken
PROGRESS_SECONDS = 5.0
CATCH_UP_SECONDS = 300.0  # after a reconnect, wait this long at most for a source's backlog
WATCH_SECONDS = 2.0  # how often the rules and playbooks folders are checked for changes
RESTART_SECONDS = (1.0, 300.0)  # a failed live source starts again after this, doubling
MAX_UNSAVED = 10_000  # incident changes kept while the store fails (the oldest go first)
CHANGE_ATTEMPTS = 3  # writes of a change the store refuses for what it is (then set aside)
PRUNE_SECONDS = 600.0  # how often history past ``store.retention_days`` is deleted
JOURNAL_RETRY_SECONDS = 5.0  # after a failed journal write, posts go unjournaled this long


class UnsavedChanges:
    """Incident changes the store has not taken yet, oldest first. Added on the event
    loop; written, and dropped once written, on the store's worker thread (its jobs run
    one at a time, so a change is written once, in its place).

    A change the store refuses for what it is (``store.refused``: a constraint, a value
    it cannot take), not because it takes no writes, held up every later change for
    good. Such a change is tried ``CHANGE_ATTEMPTS`` times, then set aside: logged with
    its incident and the error, and counted (``dropped``, by reason). Meanwhile the
    other incidents' changes are written, and the later changes of its own incident wait
    behind it: a change stores the incident whole, as it was then, and one written after
    a later one would put the incident back in an older state. Once it is set aside, the
    next change of its incident stores the incident as it is then; what is lost is the
    set-aside change's timeline entries (its notices went out, and their delivery's
    record makes their outbox rows)."""

    def __init__(self, limit: int, dropped: Callable[[str], None]) -> None:
        self.limit = limit  # kept while the store fails: the oldest go first
        self.dropped = dropped  # told the reason of each change dropped (a metric)
        self._changes: list[_Unsaved] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._changes)

    def add(self, changes: Sequence[Change]) -> list[_Unsaved]:
        """Queue ``changes`` to be written; each one's ``written`` says, once the write
        is over, whether the store took it (its notices are pending there)."""
        added = [_Unsaved(change) for change in changes]
        with self._lock:
            self._changes.extend(added)
        return added

    def clear(self) -> None:
        with self._lock:
            self._changes.clear()

    def write(self, records: Store) -> None:
        """Write every change waiting (on the store's worker thread): all in one
        transaction, or, when the store refuses what one of them is, one at a time.
        Raises why a change still waits; no more than ``limit`` wait."""
        with self._lock:
            waiting = list(self._changes)
        if not waiting:
            return
        try:
            records.record_changes([item.change for item in waiting])
        except Exception as exc:  # a bug too (``StoreWorker`` logs it)
            if not refused(exc):
                self._keep(waiting, len(waiting))
                raise
        else:
            for item in waiting:
                item.written = True
            self._keep([], len(waiting))
            return
        left, error = self._write_each(records, waiting)
        self._keep(left, len(waiting))
        if error is not None:
            raise error

    def _write_each(
        self, records: Store, waiting: list[_Unsaved]
    ) -> tuple[list[_Unsaved], Exception | None]:
        """Write ``waiting`` one change at a time, oldest first. What the store takes
        goes, and what it refused ``CHANGE_ATTEMPTS`` times is set aside; the rest is
        left, with why, and with it the later changes of its incident. An error that is
        the store's (it takes no writes now) leaves everything from there on."""
        left: list[_Unsaved] = []
        held: set[str] = set()  # incidents with a change left: their later ones wait
        error: Exception | None = None
        for at, item in enumerate(waiting):
            incident_id = item.change.incident.id
            if incident_id in held:
                left.append(item)
                continue
            try:
                records.record_changes([item.change])
            except Exception as exc:
                if not refused(exc):
                    return [*left, *waiting[at:]], exc
                item.refusals += 1
                if item.refusals < CHANGE_ATTEMPTS:
                    left.append(item)
                    held.add(incident_id)
                    error = exc
                    continue
                log.error(
                    "incident %s: a change (%s) is set aside, never to be written: the store "
                    "refused it %d times: %s",
                    incident_id,
                    ", ".join(entry.kind for entry in item.change.entries) or "no entries",
                    item.refusals,
                    exc,
                    extra=_dropped_event(incident_id, "refused"),
                )
                self.dropped("refused")
            else:
                item.written = True
        return left, error

    def _keep(self, left: list[_Unsaved], taken: int) -> None:
        """``left`` in place of the first ``taken`` changes (those just written or not);
        when some are left (the store failed), beyond ``limit`` the oldest go, logged and
        counted."""
        with self._lock:
            self._changes[:taken] = left
            over = max(0, len(self._changes) - self.limit) if left else 0
            gone = self._changes[:over]
            del self._changes[:over]
        for item in gone:
            incident_id = item.change.incident.id
            log.error(
                "incident %s: a change is dropped, never to be written: more than %d "
                "changes wait for the store",
                incident_id,
                self.limit,
                extra=_dropped_event(incident_id, "overflow"),
            )
            self.dropped("overflow")


@dataclass(slots=True)
class _Unsaved:
    """An incident change waiting, how many times the store refused it for what it is,
    and whether it was written (set on the store's worker thread, read on the event loop
    once the write's ``done`` runs: its notices may then wait in the store, not memory)."""

    change: Change
    refusals: int = 0
    written: bool = False


def _dropped_event(incident_id: str, reason: str) -> dict[str, object]:
    return {"event": "incident_change_dropped", "incident": incident_id, "reason": reason}


class _EndOfSources:
    """Queue marker: every finite source has ended."""


class _Stop:
    """Queue marker: drain what came before, then stop consuming."""


QueueItem = Mention | _EndOfSources | _Stop


def secret_env_names(config: Config) -> list[str]:
    """The environment variables the configured sources and notifiers read secrets from."""
    parts = [*config.sources, *config.notifiers.values()]
    names = (getattr(part, field, None) for part in parts for field in SECRET_ENV_FIELDS)
    return [name for name in names if isinstance(name, str)]


def incident_policy(settings: Settings) -> Policy:
    """How the incident book groups, reminds, escalates and routes, from the settings."""
    alerting = settings.config.alerting
    rules = settings.rules
    return Policy(
        repeat_after=timedelta(seconds=alerting.repeat_after_seconds)
        if alerting.repeat_after_seconds
        else None,
        escalate_to=alerting.escalate_to,
        routes=tuple(
            Route(route.severity, tuple(sorted(route.labels.items())), route.notify)
            for route in alerting.routes
        ),
        quiet=rules.quiet,
    )


class StoreRefs:
    """``MessageRefs`` kept in the daemon's store (its incident records), so that a
    notifier finds its Slack message again after a restart.

    A reference the store refuses to write is kept in memory (and ``on_error`` is
    told): the message was posted, so the notice must not fail and be posted again.
    """

    def __init__(
        self,
        records: Callable[[], Store | None],
        on_error: Callable[[str, StoreError], None] = lambda operation, exc: None,
        on_written: Callable[[], None] = lambda: None,
    ) -> None:
        self.records = records
        self.on_error = on_error
        self.on_written = on_written
        # while no store is open (tests that never run), or the store refused the write
        self.memory = MemoryRefs()

    async def get(self, channel: str, incident_id: str) -> dict[str, str] | None:
        records = self.records()
        kept = await self.memory.get(channel, incident_id)
        if records is None or kept is not None:
            return kept
        return await asyncio.to_thread(records.message_ref, channel, incident_id)

    async def put(self, channel: str, incident_id: str, ref: dict[str, str]) -> None:
        records = self.records()
        if records is None:
            await self.memory.put(channel, incident_id, ref)
            return
        try:
            await asyncio.to_thread(records.save_message_ref, channel, incident_id, ref)
        except StoreError as exc:
            await self.memory.put(channel, incident_id, ref)
            self.on_error("message_refs", exc)
            return
        self.memory.refs.pop((channel, incident_id), None)
        self.on_written()


ModelStamps = dict[tuple[str, str], tuple[float, int]]
"""(language, model file) -> the file's (mtime, size), or (-1, -1) when it cannot be read."""


def model_stamps(config: Config) -> ModelStamps:
    """What the configured sentiment models' files look like now (a reload reads them
    again when this changes)."""
    stamps: ModelStamps = {}
    for lang, path in config.sentiment.models.items():
        try:
            stat = path.stat()
            stamps[(lang, str(path))] = (float(stat.st_mtime_ns), stat.st_size)
        except OSError:
            stamps[(lang, str(path))] = (-1.0, -1)
    return stamps


@dataclass(frozen=True, slots=True)
class ModelReload:
    """The sentiment models read again on a reload, and the files' stamps they were read at."""

    router: LanguageRouter
    stamps: ModelStamps


def build_notifiers(
    settings: Settings, refs: MessageRefs, env: Mapping[str, str] = os.environ
) -> dict[str, Notifier]:
    """One notifier per configured name; a missing secret is a ``ConfigError``."""
    config = settings.config
    notifiers: dict[str, Notifier] = {}
    for name, notifier in config.notifiers.items():
        base = config.incident_url_base
        if isinstance(notifier, SlackNotifierConfig):
            notifiers[name] = SlackNotifier.from_config(
                name,
                notifier,
                refs=refs,
                incident_url_base=base,
                labels=config.store.enabled,  # labels are kept in the store
                env=env,
            )
        elif isinstance(notifier, EmailNotifierConfig):
            notifiers[name] = EmailNotifier.from_config(
                name, notifier, incident_url_base=base, env=env
            )
        elif isinstance(notifier, WebhookNotifierConfig):
            notifiers[name] = WebhookNotifier.from_config(
                name, notifier, incident_url_base=base, env=env
            )
        else:
            notifiers[name] = ConsoleNotifier(name, incident_url_base=config.incident_url_base)
    return notifiers


def _refuse_newer_state(store: Store, newest: int) -> None:
    """Stop, saying why, when the detectors' state was saved by a newer xwatch (``newest``:
    the newest state version in the store; a rollback after an upgrade): each series would
    be refused and start fresh, and the first checkpoint would replace the newer one, a
    month of learning gone for good, for the version rolled back to and for the one
    rolled back from."""
    if newest > STATE_VERSION:
        raise StoreError(
            f"cannot use the store {store.path}: its detectors were saved by a newer xwatch "
            f"(state version {newest}; this one reads up to {STATE_VERSION}); run that "
            "xwatch, or move the store aside to start afresh (nothing was changed)"
        )


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        sources: Sequence[Source] | None = None,
        notifiers: dict[str, Notifier] | None = None,
        clock: Clock | None = None,
        exit_when_done: bool = False,
        reload: Callable[[], Settings] | None = None,
        settle: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.reload = reload  # reads the config, rules and playbooks again (SIGHUP)
        self._reload_wanted = asyncio.Event()  # ``request_reload``: served by ``_reloads``
        # called once what the daemon keeps for good is loaded (the store's detectors
        # restored), before the first post: ``xwatch run`` settles the garbage collector
        # there (``gc_tuning.settle``), so that it never walks the restored state again
        self.settle = settle
        config = settings.config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.completeness = LiveCompleteness(
            timedelta(seconds=config.detect.allowed_lateness_seconds),
            timedelta(seconds=CATCH_UP_SECONDS),
        )
        self.report = MetricsReport(self.metrics, on_connection=self._connection_changed)
        self._model_stamps = model_stamps(config)  # the sentiment models' files, as read
        for lang, path in config.sentiment.models.items():
            log.info(
                "sentiment: the trained model %s scores %s",
                path,
                lang,
                extra={"event": "model_in_use", "lang": lang},
            )
        self.pipeline = Pipeline(
            config,
            settings.rules,
            settings.playbooks,
            router_from_config(config),
            self.metrics,
        )
        self.sources = list(sources) if sources is not None else build_sources(config, self.report)
        # the sources that take up after a restart where the checkpoint's state stopped
        # (``Resumable``), and the newest post of each that the pipeline has ingested
        self._resumable = frozenset(s.name for s in self.sources if isinstance(s, Resumable))
        self._positions: dict[str, SourcePosition] = {}
        self.webhook = self._webhook()
        self.feedback = Feedback(config.api.remember_posts)
        self.api_token = api_token(config.api)  # None: the JSON API answers 503
        # Signs the incident pages' forms: from the API token when there is one (pages
        # stay valid across restarts), else random for this process.
        self.page_secret = (
            hmac.new(self.api_token.encode(), b"xwatch incident page forms", "sha256").digest()
            if self.api_token
            else secrets.token_bytes(32)
        )
        self.refs = StoreRefs(lambda: self.records, self._store_failed, self._store_written)
        slack = [n for n in config.notifiers.values() if isinstance(n, SlackNotifierConfig)]
        # One /slack/actions endpoint: its signing secret is the (first) Slack app's.
        self.slack_actions = SlackActions.from_config(slack[0], self, self) if slack else None
        self.notifiers = (
            notifiers if notifiers is not None else build_notifiers(settings, self.refs)
        )
        self.clock = clock or WallClock()
        for source in self.sources:
            if source.live:
                self.completeness.started(source.name, self.clock.now())
        if self.webhook is not None:
            self.completeness.pushing()
        self.exit_when_done = exit_when_done
        # live: time is the wall clock's (ticks close buckets, run the incident book's
        # timers and date people's actions); the webhook is a live source too, though
        # not one of ``sources`` (an endpoint of the web server)
        self.completeness_matters = (
            any(source.live for source in self.sources) or self.webhook is not None
        )
        self.stop = asyncio.Event()
        self.sources_done = asyncio.Event()
        self.serving = asyncio.Event()  # the web server listens (web_url is set)
        self.started = asyncio.Event()  # the store is open, incidents restored, tasks start
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue(config.queue_size)
        self.book = IncidentBook(incident_policy(settings))
        # each notifier's notices to send, in order; at most NOTICES_IN_MEMORY held whole,
        # the others wait in the store, queued by id (``xwatch.outbox``)
        self.outboxes: dict[str, Outbox] = {
            name: Outbox(
                name,
                self._notice_dropped,
                limit=NOTICES_IN_MEMORY,
                unstored_limit=MAX_UNSTORED_NOTICES,
            )
            for name in self.notifiers
        }
        self.metrics.rules_loaded.set(len(settings.rules.rules))
        for source_config in config.sources:
            if isinstance(source_config, XStreamSourceConfig) and source_config.monthly_post_cap:
                cap = self.metrics.x_monthly_post_cap.labels(source_config.name)
                cap.set(source_config.monthly_post_cap)
        for result in ("ok", "failed"):
            self.metrics.rule_reloads.labels(result)
        self.ingested = 0
        # the last batch: when it was ingested (wall time) and how old its newest post was
        self._last_batch: tuple[datetime, timedelta] | None = None
        self._slow_batches = False  # the last batch took long: cut them at bucket closes
        self.alerts = 0
        self.web_url: str | None = None
        self.store: Store | None = None  # open while ``run`` runs, with store.enabled
        # Incidents, silences and the outbox: the store, or without one a private
        # in-memory store (pages and API work; a restart forgets them).
        self.records: Store | None = None
        # what the incident book did that the store has not taken yet (it was locked or
        # failing): written before anything newer, at the next change or checkpoint
        self._unsaved = UnsavedChanges(MAX_UNSAVED, self._change_dropped)
        self._unqueued = 0  # notices made, not queued yet: their change waits for the store
        self.store_worker = StoreWorker()  # every write to the store, in order, off the loop
        self.failing: set[str] = set()  # notifiers whose last attempt failed (retrying)
        self._journal_problem: str | None = None  # why the journal's last write failed
        self.store_problem = None  # why the last write to the store failed, for /readyz
        # every post a live source hands over, on disk before it is queued (``_open_store``)
        self.journal: Journal | None = None
        self._unread: tuple[Journal, dict[int, float]] | None = None  # read in ``_run``
        self._starting = "starting"  # what /readyz says until ``started``
        # set while no checkpoint holds the closes: the end of a finite stream waits for it
        self._closes_free = asyncio.Event()
        self._closes_free.set()
        self._journal_retry_at = 0.0  # monotonic: after a failed write, retry from then
        logs.add_secret_env(*secret_env_names(config), config.api.token_env)
        self._declare_metrics()

    def _declare_metrics(self) -> None:
        """Every series whose label values are known now starts at zero."""
        types = {source.name: source.type for source in self.settings.config.sources}
        for source in self.sources:
            self.metrics.declare_source(
                source.name,
                live=source.live,
                reasons=PayloadError.REASONS,
                kinds=PROBLEM_KINDS.get(types.get(source.name, ""), ()),
            )
        if self.webhook is not None:
            self.metrics.declare_source(
                self.webhook.name,
                live=False,
                reasons=PayloadError.REASONS,
                kinds=PROBLEM_KINDS["webhook"],
            )
        self.metrics.declare_channels(self.notifiers)
        for operation in STORE_OPERATIONS:
            self.metrics.store_write_errors.labels(operation)
        for what in ("incidents", "silences"):
            self.metrics.store_pruned.labels(what)
        for reason in CHANGE_DROP_REASONS:
            self.metrics.incident_changes_dropped.labels(reason)

    @property
    def store_problem(self) -> str | None:
        """Why the last write to the store failed (``None``: the last one worked)."""
        return self._store_problem

    @store_problem.setter
    def store_problem(self, problem: str | None) -> None:
        self._store_problem = problem
        self.metrics.store_writable.set(0 if problem or self._journal_problem else 1)

    @property
    def journal_problem(self) -> str | None:
        """Why the journal's last write failed (``None``: the last one worked)."""
        return self._journal_problem

    @journal_problem.setter
    def journal_problem(self, problem: str | None) -> None:
        self._journal_problem = problem
        self.metrics.store_writable.set(0 if problem or self._store_problem else 1)

    def _store_failed(self, operation: str, exc: StoreError) -> None:
        """A write other than a checkpoint failed: count it; /readyz says so until one works."""
        self.metrics.store_write_errors.labels(operation).inc()
        self.store_problem = f"store not writable: {exc}"

    def _change_dropped(self, reason: str) -> None:
        """An incident change will never be written (``UnsavedChanges`` logged it)."""
        self.metrics.incident_changes_dropped.labels(reason).inc()

    def _notice_dropped(self, notice: Notice) -> None:
        """A notice the store never took went from its outbox, never to be sent: more
        than ``MAX_UNSTORED_NOTICES`` such waited for its notifier (``Outbox``)."""
        self.metrics.notices_dropped.labels(notice.channel, "overflow").inc()
        log.error(
            "notifier %s: %s is dropped, never to be sent: more than %d notices the store "
            "did not take wait for it (sent at the next start if its change is written yet)",
            notice.channel,
            notice.id,
            self.outboxes[notice.channel].unstored_limit,
            extra={
                "event": "notification_dropped",
                "channel": notice.channel,
                "notice": notice.id,
                "incident": notice.incident.id,
            },
        )

    def _set_aside(self, unreadable: Unreadable) -> asyncio.Future[None] | None:
        """A pending notice whose stored record cannot be decoded: recorded failed for
        good (its record kept, to mend by hand), logged without its content, and
        counted; the future is done once that is written. Raised, it failed every start
        (one among a notifier's first ``NOTICES_IN_MEMORY``), or stayed pending, read
        again at each start. If the store does not take the write, the next start sets
        it aside again."""
        error = f"could not be read: {clean(unreadable.error, 1000)}"
        self.metrics.notices_dropped.labels(unreadable.channel, "unreadable").inc()
        fields = {
            "event": "notification_unreadable",
            "channel": unreadable.channel,
            "notice": unreadable.id,
            "error": error,
        }
        log.error(
            "notifier %s: %s is set aside as failed, never to be sent: its stored record %s",
            unreadable.channel,
            unreadable.id,
            error,
            extra=fields,
        )
        records = self.records
        if records is None:
            return None
        return self.store_worker.submit(
            lambda: records.fail_pending(unreadable.id, error),
            self._on_write("deliveries", f"{unreadable.id} not set aside", fields),
        )

    def _store_written(self) -> None:
        """A write worked: the problem is over, unless incident changes still wait to be
        written (a delivery's record that works says nothing of a change that fails)."""
        if self._unsaved:
            return
        if self.store_problem is not None:
            log.info("the store takes writes again", extra={"event": "store_writable"})
        self.store_problem = None

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        await self._open_store()
        if self.settle is not None:
            self.settle()
        try:
            await self._run()
        finally:
            await self._close_store()

    async def _run(self) -> None:
        self._install_signal_handlers()
        runner = await self._start_web()
        try:
            if self._unread is not None:  # served meanwhile: /healthz answers, /readyz 503
                await self._read_journal(*self._unread)
                self._unread = None
            self.started.set()
            async with asyncio.TaskGroup() as group:
                consumer = group.create_task(self._consume(), name="pipeline")
                workers = [
                    group.create_task(self._deliver(notifier), name=f"notify:{name}")
                    for name, notifier in self.notifiers.items()
                ]
                pumps = [
                    group.create_task(self._pump(source), name=f"source:{source.name}")
                    for source in self.sources
                ]
                helpers = [group.create_task(self._await_sources(pumps), name="sources-done")]
                if self.completeness_matters:  # live: the wall clock moves time on
                    helpers.append(group.create_task(self._tick(), name="ticker"))
                if self.store is not None:
                    helpers.append(group.create_task(self._checkpoints(), name="checkpoints"))
                if self.settings.config.store.retention_days is not None:
                    helpers.append(group.create_task(self._prune_history(), name="retention"))
                if self.reload is not None:
                    helpers.append(group.create_task(self._watch_rules(), name="rules-watcher"))
                    helpers.append(group.create_task(self._reloads(), name="reloads"))
                await self.stop.wait()
                log.info(
                    "stopping: draining the pipeline (at most %.0fs)",
                    self.settings.config.drain_timeout_seconds,
                    extra={"event": "stopping"},
                )
                for task in [*pumps, *helpers]:
                    task.cancel()
                await self._drain(consumer)
                for task in workers:
                    task.cancel()
                if self.store is not None:
                    await self._checkpoint(final=True)
        finally:
            if runner is not None:
                await runner.cleanup()
            self._remove_signal_handlers()
        log.info(
            "stopped: %d mentions ingested, %d alert events",
            self.ingested,
            self.alerts,
            extra={"event": "stopped", "mentions": self.ingested, "alert_events": self.alerts},
        )

    async def _drain(self, consumer: asyncio.Task[None]) -> None:
        try:
            async with asyncio.timeout(self.settings.config.drain_timeout_seconds):
                await self.queue.put(_Stop())
                await consumer
                await self.store_worker.settled()  # the last changes written, notices queued
                for outbox in self.outboxes.values():
                    await outbox.join()
        except TimeoutError:
            mentions = self.queue.qsize()
            # the notices waiting, and the one each notifier is sending (its retries), and
            # those not queued yet: their incident's change waits for the store
            unwritten = self._unqueued
            notices = sum(outbox.depth for outbox in self.outboxes.values()) + unwritten
            log.error(
                "drain timed out: %d mentions and %d notifications were not processed "
                "(%d of them waiting for their incident's change to be written; the "
                "notifications stay pending in the store, if there is one and it takes "
                "their change, for the next start)",
                mentions,
                notices,
                unwritten,
                extra={
                    "event": "drain_timeout",
                    "mentions": mentions,
                    "notices": notices,
                    "unwritten": unwritten,
                },
            )
            consumer.cancel()

    # -- the store -------------------------------------------------------------------

    async def _open_store(self) -> None:
        """Open the store (with ``store.enabled``; else a private in-memory one for the
        incidents), restore the detectors, the open incidents, the silences, and queue
        the notifications that were still pending when the daemon stopped."""
        config = self.settings.config.store
        if config.enabled:
            store = await asyncio.to_thread(Store.open, config.path)
            try:
                _refuse_newer_state(store, await asyncio.to_thread(store.newest_state_version))
                self.metrics.store_size.set(await asyncio.to_thread(store.size_bytes))
                # in a thread (nothing else uses the pipeline yet), a page of rows at a time
                await asyncio.to_thread(self._restore_detectors, store)
                self._resume_sources(await asyncio.to_thread(store.source_positions))
            except BaseException:
                await asyncio.to_thread(store.close)
                raise
            self.store = store
            for outcome in ("saved", "failed"):
                self.metrics.checkpoints.labels(outcome)
        self.records = self.store if self.store is not None else Store.open(MEMORY)
        await self._restore_incidents(self.records)
        if self.store is not None and config.journal and self.completeness_matters:
            await self._open_journal(self.store)

    async def _open_journal(self, store: Store) -> None:
        """Open the journal (``<store.path>.journal``); each series goes on from the first
        bucket the restored detectors had not learned (``Pipeline.continue_from``). What
        it holds is read back once the web server is up (``_read_journal``): a large
        journal takes a while, and a start that did not answer /healthz meanwhile was
        killed by its orchestrator, to read it again from the start, for ever."""
        journal = await asyncio.to_thread(Journal.open, Path(f"{store.path}.journal"))
        marks = await asyncio.to_thread(store.journal_marks)
        self.journal = journal  # what is taken from now on goes to a segment of its own
        if marks is None:  # damaged (the store said so): not read, pruned as it goes
            return
        self.pipeline.continue_from(marks)
        self._unread = (journal, marks)

    async def _read_journal(self, journal: Journal, marks: dict[int, float]) -> None:
        """Count again the journal's posts that the restored detectors had not learned:
        those of the buckets open at the last checkpoint, and every post taken since;
        the older ones are only remembered as seen. Then the live sources are owed the
        time since its last write (``LiveCompleteness``): the buckets from there wait for
        their backlog (the broker's session, X's search)."""
        earliest = min(marks.values(), default=-math.inf)
        replayed = known = damaged = 0
        started = last_said = time.monotonic()
        self._starting = "starting: reading the ingest journal back"

        def on_damaged(segment: Path, line: int, why: str) -> None:
            nonlocal damaged
            damaged += 1
            self.metrics.journal_damaged.inc()
            log.warning(
                "journal %s, line %d: skipped, %s",
                segment,
                line,
                why,
                extra={"event": "journal_line_damaged", "segment": str(segment), "line": line},
            )

        batch: list[Mention] = []
        for mention in journal.read(on_damaged):
            if mention.created_at.timestamp() < earliest:
                # learned by the checkpoint's detectors: not counted, but known (a broker
                # that sends it again, never acknowledged, is a duplicate)
                self.pipeline.dedup.first_time(mention.id)
                known += 1
                if known % MAX_BATCH == 0:  # (a checkpoint interval of them: seconds)
                    await asyncio.sleep(0)
                continue
            batch.append(mention)
            if len(batch) >= MAX_BATCH:
                self._dispatch(self.pipeline.replay(batch))
                replayed += len(batch)
                batch = []
                self._starting = (
                    f"starting: reading the ingest journal back ({replayed:,} posts so far)"
                )
                if time.monotonic() - last_said >= PROGRESS_SECONDS:
                    last_said = time.monotonic()
                    log.info(
                        "journal %s: %d posts counted again so far",
                        journal.directory,
                        replayed,
                        extra={"event": "journal_progress", "replayed": replayed},
                    )
                await asyncio.sleep(0)
        if batch:
            self._dispatch(self.pipeline.replay(batch))
            replayed += len(batch)
        self._start_journal_segment(journal)  # (its file's time: when this start was)
        self.metrics.journal_bytes.set(journal.size_bytes)
        # when it stopped taking posts: its last write, or (a journal emptied by hand) the
        # latest bucket the checkpoint had closed
        stopped = (
            journal.last_write
            if journal.last_write is not None
            else max(marks.values(), default=None)
        )
        if stopped is not None:
            down_since = datetime.fromtimestamp(stopped, UTC)
            for source in self.sources:
                if source.live and down_since < self.clock.now():
                    self.completeness.started(source.name, down_since)
        if replayed or known or damaged:
            log.info(
                "journal %s: %d posts counted again (taken since the checkpoint, or in the "
                "buckets it left open), %d known already, %d lines damaged, in %.1fs",
                journal.directory,
                replayed,
                known,
                damaged,
                time.monotonic() - started,
                extra={
                    "event": "journal_replayed",
                    "replayed": replayed,
                    "known": known,
                    "damaged": damaged,
                },
            )

    def _journal_posts(self, mentions: Sequence[Mention]) -> None:
        """Write posts to the journal before they are queued (and so before their source
        is told they were taken). A journal that fails is said once, counted per post,
        and tried again ``JOURNAL_RETRY_SECONDS`` later: the posts go on meanwhile,
        unjournaled (a crash would lose them, as without a journal)."""
        journal = self.journal
        if journal is None:
            return
        if self._journal_problem is not None and time.monotonic() < self._journal_retry_at:
            self.metrics.store_write_errors.labels("journal").inc(len(mentions))
            return
        try:
            journal.append(mentions)
        except JournalError as exc:
            self.metrics.store_write_errors.labels("journal").inc(len(mentions))
            self._journal_retry_at = time.monotonic() + JOURNAL_RETRY_SECONDS
            if self.journal_problem is None:
                log.error(
                    "%s; posts are taken without it (a crash would lose those) until it "
                    "works again",
                    exc,
                    extra={"event": "journal_not_writable"},
                )
            self.journal_problem = f"journal not writable: {exc}"
            return
        if self.journal_problem is not None:
            log.info("the journal takes writes again", extra={"event": "journal_writable"})
            self.journal_problem = None

    def _resume_sources(self, saved: Mapping[str, SourcePosition]) -> None:
        """Tell each resumable source where the restored state stopped, so that it fetches
        what was posted while xwatch was down (X: recent search) before its live posts."""
        for source in self.sources:
            position = saved.get(source.name)
            if position is not None and isinstance(source, Resumable):
                source.resume_after(position)
                self._positions[source.name] = position

    def _note_positions(self, batch: Sequence[Mention]) -> None:
        """The newest post of each resumable source in a batch the pipeline has ingested:
        saved with the next checkpoint, it is where that source takes up after a restart."""
        positions = self._positions
        for mention in batch:
            if mention.source in self._resumable:
                position = SourcePosition.of(mention)
                known = positions.get(mention.source)
                if known is None or position.is_after(known):
                    positions[mention.source] = position

    def _restore_detectors(self, store: Store) -> None:
        saved_at: datetime | None = None  # when the checkpoint was saved (its newest row)

        def noted(items: Iterator[Checkpoint]) -> Iterator[Checkpoint]:
            nonlocal saved_at
            for item in items:
                if item.saved_at is not None and (saved_at is None or item.saved_at > saved_at):
                    saved_at = item.saved_at
                yield item

        restored, refused = self.pipeline.restore(noted(store.iter_checkpoints()), self._refused)
        if not restored and not refused:
            log.info(
                "store %s: no checkpoint yet, every series starts fresh",
                store.path,
                extra={"event": "store_restored", "restored": 0, "refused": 0},
            )
            return
        log.info(
            "store %s: restored %d series from the checkpoint saved %s, %d refused (started fresh)",
            store.path,
            restored,
            f"{saved_at:%Y-%m-%d %H:%M:%S} UTC" if saved_at else "at an unknown time",
            refused,
            extra={"event": "store_restored", "restored": restored, "refused": refused},
        )

    async def _restore_incidents(self, records: Store) -> None:
        incidents = await asyncio.to_thread(records.open_incidents)
        silences = await asyncio.to_thread(records.silences)
        pending = await asyncio.to_thread(records.pending_notice_ids)
        # the newest resolved ones too, for their ids only: a late post opens no incident
        # under the id of one resolved in the same second (the store would replace it)
        recent = await asyncio.to_thread(records.incidents, limit=RECENT_INCIDENT_IDS)
        self.book.restore([*recent, *incidents], silences)
        self.pipeline.restore_alerts(
            # the part's latest is its strongest firing: the peak a new firing must beat to
            # be "stronger" (with none, a weaker one after a restart was announced as such)
            ActiveAlert(
                part.first, part.latest, part.since, part.latest.signal.end, peak=part.latest
            )
            for incident in incidents
            for part in incident.parts
            if part.active
        )
        for channel, ids in pending.items():
            outbox = self.outboxes.get(channel)
            if outbox is None:
                await asyncio.to_thread(_fail_pending, records, ids)
            else:
                await self._restore_outbox(records, outbox, ids)
        self._incident_metrics()
        waiting = sum(len(ids) for ids in pending.values())
        if incidents or waiting:
            log.info(
                "store: %d open incidents, %d silences and %d pending notifications restored",
                len(incidents),
                len(silences),
                waiting,
                extra={
                    "event": "incidents_restored",
                    "incidents": len(incidents),
                    "pending": waiting,
                },
            )

    async def _restore_outbox(self, records: Store, outbox: Outbox, ids: list[str]) -> None:
        """Queue a notifier's pending notices, ``ids`` in their order: the first ones
        whole (as many as its outbox holds whole), the rest by id, read when their turn
        comes. Decoding every one at start took 167 kB each (each has its own copy of
        its incident): about 6,000 pending filled the pod's 1 GiB, and every start read
        them all again."""
        whole = await asyncio.to_thread(records.pending_notices, outbox.channel, outbox.limit)
        for item, _attempts in whole:
            if isinstance(item, Unreadable):
                self._set_aside(item)  # the others go on, in their order
            else:
                self._enqueue(item, stored=True)
        read = {item.id for item, _attempts in whole}
        at = time.time()
        for notice_id in ids:
            if notice_id not in read:
                outbox.put_stub(NoticeStub(notice_id, outbox.channel), at)
        self._outbox_metrics(outbox.channel)

    @staticmethod
    def _refused(series: SeriesKey, error: CheckpointError) -> None:
        log.warning(
            "series %s: checkpoint refused, the series starts fresh: %s",
            series,
            error,
            extra={"event": "checkpoint_refused", "brand": series.brand, "series": str(series)},
        )

    async def _checkpoints(self) -> None:
        interval = self.settings.config.store.checkpoint_interval_seconds
        while True:
            await asyncio.sleep(interval)
            await self._checkpoint()

    async def _checkpoint(self, *, final: bool = False) -> None:
        """Save every detector's state; a failure is logged and counted, never fatal.
        Incident changes the store refused before are written first."""
        assert self.store is not None
        self._save_changes()
        started = time.perf_counter()
        try:
            rows: list[CheckpointRow] = []
            series: set[SeriesKey] = set()
            at = self.clock.now()
            # as of the first chunk: every series' state has seen at least these posts
            positions = dict(self._positions) if self._resumable else None
            # on the loop, a chunk of series at a time, the posts flowing in between
            # (10,000 series take a while), but no bucket closing: the states are of one
            # instant, that of ``marks``. Each chunk is encoded at once and its states
            # dropped: holding every state until the write tripled the checkpoint's peak
            # memory (186 MiB at 10,000 series), which the allocator then kept.
            self._closes_free.clear()
            try:
                with self.pipeline.closes_held():
                    marks = self.pipeline.closed_through()
                    if self.journal is not None:  # the posts from now on: a segment to keep
                        self._start_journal_segment(self.journal)
                    for chunk in self.pipeline.checkpoint_chunks():
                        rows.extend(checkpoint_rows(chunk, at))
                        series.update(item.series for item in chunk)
                        await asyncio.sleep(0)
                    broken = self.pipeline.hold_broken
            finally:
                self._closes_free.set()
            if broken:  # rare: posts that jumped a day ahead; the next one will do
                log.warning(
                    "checkpoint not saved: the posts jumped a hole in the data while it was "
                    "taken, so its states are not of one instant; the next one is saved",
                    extra={"event": "checkpoint_skipped"},
                )
                return
            saved = len(rows)  # (the write empties the list)
            await self.store_worker.run(lambda: self._write_checkpoint(rows, positions, marks))
            size = await asyncio.to_thread(self.store.size_bytes)
            if self.journal is not None and marks:
                self.journal.prune(min(marks.values()))  # a few files: on the loop, as appends
                self.metrics.journal_bytes.set(self.journal.size_bytes)
        except (StoreError, CheckpointError) as exc:
            self.metrics.checkpoints.labels("failed").inc()
            self.store_problem = f"store not writable: {exc}"
            log.error("checkpoint failed: %s", exc, extra={"event": "checkpoint_failed"})
            return
        except Exception as exc:
            self.metrics.checkpoints.labels("failed").inc()
            self.store_problem = f"store not writable: {exc}"
            log.exception("checkpoint failed", extra={"event": "checkpoint_failed"})
            return
        self._store_written()
        elapsed = time.perf_counter() - started
        self.metrics.checkpoint_seconds.observe(elapsed)
        self.metrics.checkpoints.labels("saved").inc()
        self.metrics.store_size.set(size)
        (log.info if final else log.debug)(
            "checkpoint saved: %d detectors of %d series in %.3fs",
            saved,
            len(series),
            elapsed,
            extra={"event": "checkpoint_saved", "seconds": round(elapsed, 6)},
        )

    async def _prune_history(self) -> None:
        """Every ``PRUNE_SECONDS``, from the start: delete the history older than
        ``store.retention_days`` (in the store, or the in-memory one without it), a batch
        of incidents at a time, on the store's worker thread. Live, the days are the wall
        clock's; in a replay, the data's (its incidents live there), so a replay prunes
        only once its posts have a time: by the wall clock, the start of a replay of last
        year's posts deleted the history its previous run had made."""
        retention_days = self.settings.config.store.retention_days
        assert retention_days is not None
        while True:
            records = self.records
            now = self.clock.now() if self.completeness_matters else self.pipeline.clock.watermark
            if records is None or now is None:
                await asyncio.sleep(TICK_SECONDS)
                continue
            await self._prune(records, now - timedelta(days=retention_days))
            await asyncio.sleep(PRUNE_SECONDS)

    async def _prune(self, records: Store, before: datetime) -> None:
        incidents = silences = 0
        more = True
        while more:
            try:
                pruned = await self.store_worker.run(lambda: records.prune(before))
            except StoreError as exc:
                self._store_failed("retention", exc)
                log.error("history not pruned: %s", exc, extra={"event": "prune_failed"})
                return
            except Exception as exc:  # a bug: raised in the task group, it stopped the daemon
                self._store_failed("retention", StoreError(f"{type(exc).__name__}: {exc}"))
                log.exception("history not pruned", extra={"event": "prune_failed"})
                return
            self.metrics.store_pruned.labels("incidents").inc(pruned.incidents)
            self.metrics.store_pruned.labels("silences").inc(pruned.silences)
            incidents += pruned.incidents
            silences += pruned.silences
            more = pruned.more
        if incidents or silences:
            log.info(
                "store: %d incidents resolved and %d silences ended before %s deleted "
                "(store.retention_days)",
                incidents,
                silences,
                f"{before:%Y-%m-%d %H:%M} UTC",
                extra={"event": "store_pruned", "incidents": incidents, "silences": silences},
            )

    def _start_journal_segment(self, journal: Journal) -> None:
        try:
            journal.start_segment()
        except JournalError as exc:  # appends go on in the segment before
            log.error("%s", exc, extra={"event": "journal_not_writable"})

    def _write_checkpoint(
        self,
        rows: list[CheckpointRow],
        positions: Mapping[str, SourcePosition] | None,
        marks: Mapping[int, float],
    ) -> None:
        """Write the rows and the sources' positions (in a worker thread), then give the
        memory they took back to the system: glibc keeps freed memory for reuse, and the
        checkpoint's transient would otherwise stay in the resident size for good."""
        assert self.store is not None
        self.store.save_checkpoint_rows(rows, positions, marks)
        rows.clear()
        release_free_memory()

    async def settled(self) -> None:
        """Every change to incidents and silences so far is written (or failed, and
        counted) and the notices it made are queued."""
        await self.store_worker.settled()

    async def _close_store(self) -> None:
        await self.store_worker.settled()
        self.store_worker.close()
        if self._unsaved:  # the last write failed too: nothing keeps them past the exit
            log.error(
                "stopping with %d incident changes the store did not take: the next start "
                "does not know of them",
                len(self._unsaved),
                extra={"event": "incidents_not_saved", "waiting": len(self._unsaved)},
            )
        if self.journal is not None:
            self.journal.close()
        records, self.records = self.records, None
        if self.store is not None:
            store, self.store = self.store, None
            await asyncio.to_thread(store.close)
        elif records is not None:
            records.close()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop.set)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def reload_rules(self) -> bool:
        """Read the rules and playbooks again, now, on the caller's thread; a bad file keeps
        the old ones. True if the new ones are in use. (SIGHUP and changed files go through
        ``request_reload``, which reads them off the event loop.)

        Only rules, playbooks and the sentiment models' files (``sentiment.models``, read
        again when a file changed: a model retrained in place) change on a reload; other
        config changes (sources, brands, scales, which models) need a restart, and the
        log says so. A model that cannot be loaded fails the reload: everything stays.
        """
        if self.reload is None:
            log.warning("reload requested, but this daemon has no config to read again")
            return False
        read = self._read_again(self.reload)
        return read is not None and self._apply_reload(*read)

    def request_reload(self) -> None:
        """Ask for a reload (SIGHUP, or a changed rule file). The files are read in a
        thread (``_reloads``), so the event loop goes on meanwhile, and the requests that
        come while they are read make one more reload after it, not one each: a burst of
        signals costs at most two reloads."""
        if self.reload is None:
            log.warning("reload requested, but this daemon has no config to read again")
            return
        self._reload_wanted.set()

    async def _reloads(self) -> None:
        """Serve ``request_reload``: one reload at a time, read off the event loop, and
        applied on it (between two batches of posts)."""
        reload = self.reload
        assert reload is not None  # the task runs only for a daemon that can reload
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            read = await asyncio.to_thread(self._read_again, reload)
            if read is not None:
                self._apply_reload(*read)

    def _read_again(
        self, reload: Callable[[], Settings]
    ) -> tuple[Settings, ModelReload | None] | None:
        """The config, rules and playbooks read again, and the sentiment models if their
        files changed (None: something could not be read; logged and counted as a failed
        reload). Safe on any thread: it changes nothing of the daemon's but a counter."""
        try:
            settings = reload()
            stamps = model_stamps(self.settings.config)
            if stamps == self._model_stamps:
                return settings, None
            return settings, ModelReload(router_from_config(self.settings.config), stamps)
        except ModelError as exc:
            self.metrics.rule_reloads.labels("failed").inc()
            log.error(
                "reload failed, the previous rules and sentiment models stay: %s",
                exc,
                extra={"event": "reload_failed"},
            )
        except ConfigError as exc:
            self.metrics.rule_reloads.labels("failed").inc()
            for problem in exc.problems:
                log.error(
                    "reload failed, the previous rules stay: %s",
                    problem,
                    extra={"event": "reload_failed", "file": problem.file, "line": problem.line},
                )
        except Exception:  # a case the validation did not foresee: the daemon goes on
            self.metrics.rule_reloads.labels("failed").inc()
            log.exception(
                "reload failed, the previous rules stay", extra={"event": "reload_failed"}
            )
        return None

    def _apply_reload(self, settings: Settings, models: ModelReload | None = None) -> bool:
        """Judge with the rules and playbooks read again (and score with ``models``, the
        sentiment models read again), unless the rules folder holds none now. True if
        they are in use. The alerts of the rules that are gone end, and their incidents
        say why (``Pipeline.reload_rules``)."""
        had = len(self.pipeline.rules.rules)
        if had and not settings.rules.rules:  # a folder emptied, or swapped not at once
            self.metrics.rule_reloads.labels("failed").inc()
            log.error(
                "reload refused: %s holds no rule now (it held %d): the previous rules stay "
                "(to run without rules, restart)",
                settings.config.rules_dir,
                had,
                extra={"event": "reload_failed"},
            )
            return False
        if settings.config != self.settings.config:
            log.warning(
                "the config changed: rules and playbooks are reloaded, the rest "
                "(sources, brands, scales, ...) takes effect at the next restart"
            )
        ended = self.pipeline.reload_rules(settings.rules, settings.playbooks)
        if models is not None:
            self.pipeline.use_scorer(models.router)
            self._model_stamps = models.stamps
            log.info(
                "sentiment models reloaded: %s",
                ", ".join(f"{lang}: {path}" for lang, path in models.stamps),
                extra={"event": "models_reloaded"},
            )
        self.settings = Settings(
            self.settings.config, self.settings.config_file, settings.playbooks, settings.rules
        )
        self.book.policy = incident_policy(self.settings)
        # the alerts of the rules that are gone end now: their incidents say why
        self._dispatch(ended)
        self.metrics.rule_reloads.labels("ok").inc()
        self.metrics.rules_loaded.set(len(settings.rules.rules))
        log.info(
            "rules reloaded: %d rules, %d playbooks",
            len(settings.rules.rules),
            len(settings.playbooks.playbooks),
            extra={"event": "reload_ok"},
        )
        return True

    async def _watch_rules(self) -> None:
        """Reload the rules and playbooks when a file in their folders changes (polled:
        no dependency, works on every file system, including mounted ConfigMaps)."""
        seen = self._rule_files()
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            now = self._rule_files()
            if now != seen:
                seen = now
                log.info("rule or playbook files changed: reloading", extra={"event": "reload"})
                self.request_reload()

    def _rule_files(self) -> dict[str, tuple[float, int]]:
        """(mtime, size) of every file in the rules and playbooks folders, and of the
        sentiment models' files (a model retrained in place is reloaded)."""
        config = self.settings.config
        found: dict[str, tuple[float, int]] = {
            str(path): stamp for (_, path), stamp in model_stamps(config).items()
        }
        for folder in (config.rules_dir, config.playbooks_dir):
            try:
                for path in folder.iterdir():
                    with contextlib.suppress(OSError):
                        stat = path.stat()
                        found[str(path)] = (stat.st_mtime, stat.st_size)
            except OSError:
                found[str(folder)] = (-1.0, -1)
        return found

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    async def _start_web(self) -> web.AppRunner | None:
        server = self.settings.config.server
        if not server.enabled:
            return None
        app = make_app(
            self.registry,
            self.settings.playbooks,
            self._ready,
            ingest=self.webhook.handle if self.webhook is not None else None,
            labels=LabelsApi(
                self.api_token,
                self.feedback,
                lambda: self.store,
                token_env=self.settings.config.api.token_env,
                on_stored=self.metrics.labels_stored.labels("api").inc,
            ),
        )
        self._add_incident_routes(app)
        runner = web_runner(app)
        await runner.setup()
        site = web.TCPSite(runner, server.host, server.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                f"cannot listen on {server.host}:{server.port}: {exc.strerror}; "
                "set server.port in the config (0 picks a free port) or stop the other process"
            ) from exc
        port = runner.addresses[0][1] if runner.addresses else server.port
        self.web_url = f"http://{server.host}:{port}"
        self.serving.set()
        if self.api_token is None:
            log.info(
                "the JSON API (/api/labels) is off: %s is not set",
                self.settings.config.api.token_env,
                extra={"event": "api_off"},
            )
        log.info(
            "serving %s/metrics, /healthz, /readyz, /playbooks/ and /incidents/",
            self.web_url,
            extra={"event": "serving", "url": self.web_url},
        )
        return runner

    def _add_incident_routes(self, app: web.Application) -> None:
        """Slack's buttons (for each Slack notifier's app), the incident pages and API."""
        if self.slack_actions is not None:
            self.slack_actions.routes(app)
        add_incident_routes(
            app,
            incidents=self,
            actions=self,
            playbooks=lambda: self.settings.playbooks,
            api_token=self.api_token,
            page_secret=self.page_secret,
            incident_url_base=self.settings.config.incident_url_base,
            token_env=self.settings.config.api.token_env,
        )

    def _ready(self) -> tuple[bool, str]:
        if self.stop.is_set():
            return False, "stopping"
        if not self.started.is_set():
            return False, self._starting
        if self.queue.full():
            return False, "overloaded: the pipeline queue is full"
        down = [s.name for s in self.sources if s.live and not self.report.up.get(s.name)]
        if down:
            return False, f"not connected: {', '.join(down)}"
        if self.store_problem is not None:
            return False, self.store_problem
        if self.journal_problem is not None:
            return False, self.journal_problem
        if self.failing:  # ready for mentions still: the outbox keeps what waits
            return True, f"ok, but retrying deliveries: {', '.join(sorted(self.failing))}"
        return True, "ok"

    def _webhook(self) -> WebhookIngest | None:
        config = next(
            (s for s in self.settings.config.sources if isinstance(s, WebhookSourceConfig)), None
        )
        return None if config is None else WebhookIngest(config, self.report, self._offer)

    def _offer(self, mentions: list[Mention]) -> bool:
        """Queue all of these mentions, or none (the webhook answers 503 then)."""
        room = self.queue.maxsize - self.queue.qsize()
        if self.stop.is_set() or len(mentions) > room:
            return False
        self._journal_posts(mentions)
        for mention in mentions:
            self.queue.put_nowait(mention)
        return True

    # -- tasks -------------------------------------------------------------------------

    async def _pump(self, source: Source) -> None:
        """Move a source's mentions into the queue (waiting when it is full).

        Sources retry what they expect to fail (a broker down, the X stream's errors).
        A live source that fails all the same (a bug) starts again after a pause that
        doubles each time, up to 5 minutes (``RESTART_SECONDS``), counted as a "crashed"
        problem; a daemon that watches a brand must not go blind on one bad day. A
        replay that fails ends: starting again would replay it from its first line."""
        pause, longest = RESTART_SECONDS
        while not await self._pump_once(source) and source.live and not self.stop.is_set():
            self.report.problem(source.name, "crashed", f"starting again in {pause:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), pause)
            pause = min(pause * 2, longest)

    async def _pump_once(self, source: Source) -> bool:
        """``_pump`` until the source ends (True) or fails (False: logged)."""
        lag = self.metrics.ingest_lag.labels(source.name)
        try:
            async with source:
                if isinstance(source, WarmStart):
                    self._warm_start(source.name, source.warm_counts)
                    # taught: kept, they held 1.1 MB a brand (a week of minutes) for good
                    source.warm_counts = {}
                self.metrics.sources_running.inc()
                try:
                    async for mention in source:
                        if source.live:
                            now = self.clock.now()
                            if mention.created_at - now > MAX_FUTURE_SKEW:
                                self.report.rejected(
                                    source.name,
                                    "bad_timestamp",
                                    f"post {mention.id} is from the future: {mention.created_at}",
                                )
                                continue
                            if now - mention.created_at > MAX_PAST_AGE:
                                self.report.rejected(
                                    source.name,
                                    "bad_timestamp",
                                    f"post {mention.id} is too old for a live source: "
                                    f"{mention.created_at}",
                                )
                                continue
                            lag.observe(max(0.0, (now - mention.created_at).total_seconds()))
                            self.completeness.delivered(source.name, mention.created_at)
                            self._journal_posts((mention,))
                        await self.queue.put(mention)
                finally:
                    self.metrics.sources_running.dec()
            log.info("source %s ended", source.name, extra=_source_event("ended", source))
            return True
        except Exception:
            log.exception(
                "source %s failed; the other sources go on",
                source.name,
                extra=_source_event("failed", source),
            )
            return False

    def _warm_start(self, source: str, counts: Mapping[str, list[tuple[datetime, int]]]) -> None:
        """Teach the brands' volume detectors the counts a source brought (the series
        that have learned nothing yet: no checkpoint, no post from another source)."""
        taught = {
            brand: self.pipeline.warm_start(brand, minutes) for brand, minutes in counts.items()
        }
        warmed = sorted(brand for brand, series in taught.items() if series)
        if counts:
            log.info(
                "source %s: warm start from its counts: %d series of %d brands learned their "
                "volume; %d brands were learning already",
                source,
                sum(len(series) for series in taught.values()),
                len(warmed),
                len(counts) - len(warmed),
                extra={"event": "warm_start", "source": source, "brands": warmed},
            )

    async def _await_sources(self, pumps: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*pumps)
        await self.queue.put(_EndOfSources())

    async def _tick(self) -> None:
        steps = WallSteps(time.monotonic)
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now, step = steps.at(self.clock.now())
            if step is not None:
                self.metrics.clock_steps.inc()
                log.warning(
                    "the wall clock jumped %.0f s ahead of the time that passed: the buckets "
                    "close by the time that passed until it is back in line (posts still "
                    "move event time)",
                    step,
                    extra={"event": "clock_step", "seconds": step},
                )
            self.tick(now)

    def tick(self, now: datetime) -> None:
        """Wall time passing closes the buckets of a silent feed, but not while the daemon
        is behind: then the posts it has yet to take (in its queue, or still at the
        broker) carry the event time, and closing their buckets by the wall clock first
        would make them all late (counted nowhere)."""
        self.pipeline.clock.hold = self.completeness.hold(now)
        if not self._behind(now):
            self._dispatch(self.pipeline.tick(now))

    def _behind(self, now: datetime) -> bool:
        """Posts wait in the queue, or the last batch, just ingested, was older than the
        allowed lateness (a backlog is being worked through)."""
        if not self.queue.empty():
            return True
        if self._last_batch is None:
            return False
        at, lag = self._last_batch
        lateness = self.pipeline.clock.allowed_lateness
        return lag > lateness and now - at < lateness + timedelta(seconds=TICK_SECONDS)

    def _connection_changed(self, source: str, up: bool) -> None:
        self.completeness.connected(source, up, self.clock.now())

    async def _consume(self) -> None:
        last_progress = time.monotonic()
        while True:
            batch: list[Mention] = []
            marker: _EndOfSources | _Stop | None = None
            item = await self.queue.get()
            waited = False
            timer = self._timer_post_time()
            closing = None
            cut_short = False  # ended at its first round of closes (``SLOW_BATCH_SECONDS``)
            if isinstance(item, Mention):
                rounds = 1 if self._slow_batches else ROUNDS_PER_BATCH
                closing = self._closing_post_time(item.created_at, rounds)
            cuts = [at for at in (timer, closing) if at is not None]
            cut = min(cuts) if cuts else None
            while True:
                if isinstance(item, Mention):
                    batch.append(item)
                else:
                    marker = item
                    break
                if len(batch) >= MAX_BATCH:
                    break
                if cut is not None and item.created_at >= cut:
                    cut_short = (
                        self._slow_batches and closing is not None and item.created_at >= closing
                    )
                    break
                if self.queue.empty() and not waited:
                    waited = True  # a post seldom comes alone: wait for the next ones once
                    await asyncio.sleep(BATCH_WAIT_SECONDS)
                if self.queue.empty():
                    break
                item = self.queue.get_nowait()
            self.metrics.queue_depth.set(self.queue.qsize())
            if batch:
                if self.completeness_matters:
                    self.pipeline.clock.hold = self.completeness.hold(self.clock.now())
                started = time.monotonic()
                with self.metrics.batch_seconds.time():
                    self._dispatch(self.pipeline.ingest(batch))
                if self._resumable:
                    self._note_positions(batch)
                if not cut_short:  # a batch cut short is quick: it says nothing of the next
                    self._slow_batches = time.monotonic() - started > SLOW_BATCH_SECONDS
                self.ingested += len(batch)
                now = self.clock.now()
                self._last_batch = (now, now - max(m.created_at for m in batch))
            for _ in range(len(batch) + (marker is not None)):
                self.queue.task_done()
            if isinstance(marker, _EndOfSources):
                await self._closes_free.wait()  # a checkpoint's hold would keep them open
                for events in self.pipeline.flush_rounds():
                    self._dispatch(events)
                    await asyncio.sleep(0)  # the web, the checkpoint's steps
                    await self._closes_free.wait()
                self.sources_done.set()
                log.info(
                    "all sources ended: %d mentions ingested, %d alert events%s",
                    self.ingested,
                    self.alerts,
                    "" if self.exit_when_done else "; still serving, Ctrl-C to stop",
                    extra={
                        "event": "sources_ended",
                        "mentions": self.ingested,
                        "alert_events": self.alerts,
                    },
                )
                if self.exit_when_done:
                    self.stop.set()
            if isinstance(marker, _Stop):
                return
            if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                last_progress = time.monotonic()
                self._log_progress()
            await asyncio.sleep(0)  # a full queue never blocks get(): let the others run

    def _closing_post_time(self, first: datetime, rounds: int) -> datetime:
        """The event time of a post that brings the watermark to the end of the finest
        scale's open buckets (their round of closes), or of the ``rounds``-th round after
        it, for a batch whose first post is at ``first`` (``SLOW_BATCH_SECONDS``,
        ``ROUNDS_PER_BATCH``)."""
        lateness = self.pipeline.clock.allowed_lateness
        mark = self.pipeline.clock.watermark or first - lateness
        finest = min(self.settings.config.detect.scales_seconds)
        ends = (int(mark.timestamp()) // finest + rounds) * finest
        return datetime.fromtimestamp(ends, UTC) + lateness

    def _timer_post_time(self) -> datetime | None:
        """The event time of a post that brings the watermark to the incident book's next
        timer (a reminder, an escalation, a silence's end), when that is still ahead: a
        batch ends at such a post, and the book hears of the time before the later posts.
        A fast replay's batch can span hours of event time, and an escalation due 15
        minutes after the opening went out at the end of the batch, 38 minutes after it;
        live, the ticks keep the book on time anyway."""
        due = self.book.next_due()
        mark = self.pipeline.clock.watermark
        if due is None or (mark is not None and due <= mark):  # none, or for the next round
            return None
        return due + self.pipeline.clock.allowed_lateness

    def _log_progress(self) -> None:
        newest = self.pipeline.clock.newest
        at = f"{newest:%Y-%m-%d %H:%M} UTC" if newest else "-"
        log.info(
            "progress: event time %s, %d mentions ingested, %d alert events",
            at,
            self.ingested,
            self.alerts,
            extra={
                "event": "progress",
                "event_time": newest,
                "mentions": self.ingested,
                "alert_events": self.alerts,
            },
        )

    def _dispatch(self, events: list[AlertEvent]) -> None:
        """The pipeline's alert events → the incident book → the store → the outboxes.

        The book also runs on rounds without events: reminders, escalations and
        silence expiry follow event time (the watermark)."""
        for event in events:
            self.alerts += 1
            _log_alert_event(event)
            self.feedback.recent.remember(event)
        now = self.pipeline.clock.watermark or max((e.at for e in events), default=None)
        if now is None or (not events and not self.book.incidents and not self.book.silences):
            return
        silences = set(self.book.silences)
        self._apply(self.book.observe(events, now))
        for silence_id in silences - set(self.book.silences):  # expired: the store says so
            self._end_silence(silence_id, "expired", now)  # (it came back at each restart)

    def _apply(self, changes: list[Change]) -> None:
        """Store what the book did, then queue its notices once it is written (or could
        not be): the write runs on the store's worker thread, after the writes before it."""
        if not changes:
            return
        for change in changes:
            if any(e.kind == "opened" for e in change.entries):
                self.metrics.incidents_opened.labels(change.incident.severity.value).inc()
        notices = [notice for change in changes for notice in change.notices]
        self._unqueued += len(notices)

        def queue(stored: set[str]) -> None:
            self._unqueued -= len(notices)
            for notice in notices:
                self._enqueue(notice, stored=notice.id in stored)

        self._save_changes(changes, then=queue)
        self._incident_metrics()

    def _save_changes(
        self,
        changes: Sequence[Change] = (),
        then: Callable[[set[str]], None] = lambda stored: None,
    ) -> None:
        """Write ``changes`` after what the store has not taken yet, oldest first, then
        call ``then`` with the ids of their notices now pending in the store (those of
        the changes it took; the others exist only in memory). While the store fails,
        the notifications are sent all the same, and the changes wait in memory (at most
        ``MAX_UNSAVED``) to be written at the next change, checkpoint or stop: a store
        locked for a few seconds must not lose an incident or a notice for good. One the
        store refuses for what it is goes after ``CHANGE_ATTEMPTS`` writes
        (``UnsavedChanges``), logged and counted."""
        records = self.records
        if records is None:
            self._unsaved.clear()
            then(set())
            return
        added = self._unsaved.add(changes)
        if not self._unsaved:
            then(set())
            return

        def written(error: StoreError | None) -> None:
            if error is None:
                self._store_written()
            else:  # sending beats not sending: go on, say so
                self._store_failed("incidents", error)
                log.error(
                    "incidents not saved yet (their notifications are sent anyway; %d "
                    "changes wait to be written): %s",
                    len(self._unsaved),
                    error,
                    extra={"event": "incidents_not_saved", "waiting": len(self._unsaved)},
                )
            then({n.id for item in added if item.written for n in item.change.notices})

        self.store_worker.submit(lambda: self._unsaved.write(records), written)

    def _incident_metrics(self) -> None:
        self.metrics.incidents_open.set(len(self.book.incidents))
        self.metrics.silences_active.set(len(self.book.silences))

    def _enqueue(self, notice: Notice, *, stored: bool) -> None:
        """Queue ``notice`` to its notifier; ``stored``: it is pending in the store, so
        past the outbox's bound it waits there, queued by its id."""
        outbox = self.outboxes.get(notice.channel)
        if outbox is None:  # validated: rules and routes name configured notifiers
            log.error("no notifier %r for %s", notice.channel, notice.id)
            return
        outbox.put(notice, stored=stored, at=time.time())
        self._outbox_metrics(notice.channel)

    def _outbox_metrics(self, channel: str) -> None:
        outbox = self.outboxes[channel]
        self.metrics.outbox_depth.labels(channel).set(outbox.depth)
        self.metrics.outbox_oldest.labels(channel).set(outbox.oldest or 0)

    async def _deliver(self, notifier: Notifier) -> None:
        """Send one notifier's notices in order; retry temporary failures with capped
        exponential backoff (or the far end's Retry-After, never past giving up) until
        they go through or ``give_up_after_seconds`` have passed. A notifier that is
        down holds up only its own queue, never the pipeline or the other notifiers."""
        outbox = self.outboxes[notifier.name]
        while True:
            item = await outbox.get()
            try:
                notice = item if isinstance(item, Notice) else await self._read_notice(item)
                if notice is not None:
                    await self._deliver_one(notifier, notice)
            except Exception:  # a bug (or the store failing a read) must not stop the
                # daemon: the notice stays pending in the store, if it is there, for the
                # next start (a row that cannot be decoded is set aside, not raised)
                log.exception(
                    "notifier %s: %s could not be handled; it stays pending until the next start",
                    notifier.name,
                    item.id,
                    extra={"event": "notification_error", "channel": notifier.name},
                )
            finally:
                outbox.task_done()
                self._outbox_metrics(notifier.name)

    async def _read_notice(self, stub: NoticeStub) -> Notice | None:
        """The notice a stub stands for, read from the store on its worker thread (after
        the writes before it: the last delivery's record among them); ``None`` when it
        is no longer pending there (recorded delivered or failed, or deleted), skipped,
        or when its record cannot be decoded, set aside."""
        records = self.records
        notice = None
        if records is not None:
            notice = await self.store_worker.run(lambda: records.pending_notice(stub.id))
        if isinstance(notice, Unreadable):
            await _written(self._set_aside(notice))
            return None
        if notice is None:
            log.info(
                "notifier %s: %s is no longer pending in the store, skipped",
                stub.channel,
                stub.id,
                extra={"event": "notification_skipped", "channel": stub.channel},
            )
        return notice

    async def _deliver_one(self, notifier: Notifier, notice: Notice) -> None:
        alerting = self.settings.config.alerting
        first_try = time.monotonic()
        delay = alerting.retry_initial_seconds
        while True:
            try:
                await notifier.send(notice)
            except PermanentFailure as exc:
                await _written(self._delivered(notice, "failed", str(exc)))
                return
            except Exception as exc:
                error = str(exc) or type(exc).__name__
                retry_after = exc.retry_after if isinstance(exc, TemporaryFailure) else None
                if time.monotonic() - first_try >= alerting.give_up_after_seconds:
                    failed = self._delivered(notice, "failed", f"gave up after retrying: {error}")
                    await _written(failed)
                    return
                wait = retry_after if retry_after is not None else random.uniform(0, delay)
                # the far end's Retry-After is waited for, but never past giving up
                left = alerting.give_up_after_seconds - (time.monotonic() - first_try)
                wait = max(0.0, min(wait, left))
                self._delivered(notice, "retry", error, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, alerting.retry_max_seconds)
                continue
            await _written(self._delivered(notice, "delivered"))
            return

    def _delivered(
        self, notice: Notice, outcome: str, error: str = "", wait: float = 0
    ) -> asyncio.Future[None] | None:
        """Count, log and store one delivery attempt; the future is done once it is
        written (or could not be). The notifier waits for it before its next notice: a
        delivery still unrecorded is sent again after a kill, and while a checkpoint
        held the store, a notifier sent notice after notice, none of them recorded (a
        SIGKILL then sent every one again, not just the one in flight)."""
        error = clean(error, 1000)  # a far end's words: one line, text any store takes
        channel = notice.channel
        metric = {"delivered": "sent", "retry": "retried", "failed": "failed"}[outcome]
        self.metrics.notifications.labels(channel, metric).inc()
        self.metrics.notifier_failing.labels(channel).set(1 if outcome == "retry" else 0)
        if outcome == "retry":
            self.failing.add(channel)
        else:
            self.failing.discard(channel)
        fields = {
            "event": f"notification_{metric}",
            "channel": channel,
            "notice": notice.id,
            "incident": notice.incident.id,
            "kind": notice.kind.value,
        }
        if outcome == "retry":
            log.warning(
                "notifier %s: %s not delivered (%s), retrying in %.1fs",
                channel,
                notice.id,
                error,
                wait,
                extra=fields,
            )
        elif outcome == "failed":
            log.error(
                "notifier %s: %s failed for good: %s", channel, notice.id, error, extra=fields
            )
        records = self.records
        if records is None:
            return None
        return self.store_worker.submit(
            lambda: records.record_attempt(notice, outcome, error),
            self._on_write("deliveries", f"delivery of {notice.id} not recorded", fields),
        )

    # -- what people do (Slack buttons, the incident page, the JSON API) -------------------

    def _action_time(self) -> datetime:
        """Live: the wall clock. A replay: the data's time (its incidents live there)."""
        if self.completeness_matters:
            return self.clock.now()
        return self.pipeline.clock.watermark or self.clock.now()

    async def act(
        self,
        incident_id: str,
        action: Action,
        who: str,
        *,
        via: str,
        silence_for: timedelta = DEFAULT_SILENCE,
    ) -> Incident:
        at = self._action_time()
        if action == "acknowledge":
            changes = self.book.acknowledge(incident_id, who, at)
        elif action == "resolve":
            changes = self.book.resolve(incident_id, who, at)
        elif action == "escalate":
            changes = self.book.escalate(incident_id, who, at)
        else:
            silence, changes = self.book.silence_incident(
                incident_id, who, at, silence_for, self._silence_id(at)
            )
            self._save_silence(silence)
        self.metrics.incident_actions.labels(action, via).inc()
        log.info(
            "incident %s: %s by %s via %s",
            incident_id,
            action,
            logs.excerpt(who),
            via,
            extra={"event": "incident_action", "incident": incident_id, "action": action},
        )
        self._apply(changes)
        await self.settled()  # what the API answers next (a page, a list) includes it
        if changes:
            return changes[-1].incident
        incident = self.book.incidents.get(incident_id)
        if incident is None:
            raise UnknownIncident(incident_id)
        return incident

    async def label_sample(
        self, incident_id: str, post_id: str, label: str, who: str
    ) -> StoredLabel:
        """``SampleLabels``: a label chosen in Slack for one of an incident's sample posts,
        found among the remembered samples or, failing that (after a restart), among the
        incident's own (open in the book, or from the store)."""
        store = self.store
        if store is None:
            raise LabelsUnavailable(
                "this xwatch runs without a store (store.enabled: false), where labels are kept"
            )
        known: list[tuple[Mention, str]] = []
        if post_id not in self.feedback.recent:
            incident = self.book.incidents.get(incident_id)
            if incident is None:
                record = await self.incident(incident_id)
                incident = record.incident if record is not None else None
            for part in incident.parts if incident is not None else ():
                for alert in (part.latest, part.first):
                    known.extend((m, alert.identity) for m in alert.bucket.samples)
        stored = await self.feedback.label_post(
            store, post_id, label, who, source="slack", known=known
        )
        self.metrics.labels_stored.labels("slack").inc()
        return stored

    async def incident(self, incident_id: str) -> IncidentRecord | None:
        records = self.records
        if records is None:
            return None
        return await self.store_worker.run(lambda: records.incident_record(incident_id))

    async def incidents(
        self,
        *,
        state: str | None = None,
        brand: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Incident]:
        records = self.records
        if records is None:
            return []
        return await self.store_worker.run(
            lambda: records.incidents(state=state, brand=brand, limit=limit, before=before)
        )

    async def silences(self) -> list[Silence]:
        return sorted(self.book.silences.values(), key=lambda s: s.ends_at)

    async def add_silence(
        self,
        *,
        who: str,
        ends_at: datetime,
        brand: str = "",
        rules: tuple[str, ...] = (),
        labels: tuple[tuple[str, str], ...] = (),
        comment: str = "",
    ) -> Silence:
        at = self._action_time()
        # ``ends_at`` is wall time; a replay's incidents live in the data's time.
        shift = at - self.clock.now() if not self.completeness_matters else timedelta(0)
        silence = Silence(
            id=self._silence_id(at),
            ends_at=utc(ends_at) + shift,
            created_at=at,
            who=who,
            comment=comment,
            brand=brand,
            rules=rules,
            labels=labels,
        )
        self._save_silence(silence)
        self.metrics.incident_actions.labels("silence", "api").inc()
        self._apply(self.book.silence(silence, at))
        self._incident_metrics()
        await self.settled()
        return silence

    async def remove_silence(self, silence_id: str, who: str) -> bool:
        at = self._action_time()
        if silence_id not in self.book.silences:
            return False
        self._apply(self.book.unsilence(silence_id, who, at))
        self._end_silence(silence_id, who, at)
        self._incident_metrics()
        await self.settled()
        return True

    def _end_silence(self, silence_id: str, who: str, at: datetime) -> None:
        """Mark a silence removed (by ``who``, or "expired") in the store."""
        records = self.records
        if records is not None:
            self.store_worker.submit(
                lambda: records.remove_silence(silence_id, who, at),
                self._on_write("silences", f"removal of silence {silence_id} not saved"),
            )

    def _silence_id(self, at: datetime) -> str:
        """Unique across restarts too (a counter from 1 at each start made the same id
        again, and the store replaced the silence of that id: it vanished)."""
        while True:
            candidate = f"silence-{at:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
            if candidate not in self.book.silences:
                return candidate

    def _save_silence(self, silence: Silence) -> None:
        records = self.records
        if records is not None:
            self.store_worker.submit(
                lambda: records.save_silence(silence),
                self._on_write("silences", f"silence {silence.id} not saved"),
            )

    def _on_write(
        self, operation: str, failure: str, fields: Mapping[str, object] | None = None
    ) -> Callable[[StoreError | None], None]:
        """What follows a write of ``operation`` (``StoreWorker.submit``'s ``done``): the
        store takes writes, or the failure is counted and logged (``failure``: what was
        not saved)."""

        def done(exc: StoreError | None) -> None:
            if exc is None:
                self._store_written()
            else:
                self._store_failed(operation, exc)
                log.error("%s: %s", failure, exc, extra=fields)

        return done


def _fail_pending(records: Store, ids: Sequence[str]) -> None:
    """Record the pending notices ``ids`` failed for good (in a worker thread): their
    notifier is not configured any more. By their ids, none decoded: one that could not
    be decoded failed the start."""
    for notice_id in ids:
        records.fail_pending(notice_id, "notifier not configured any more")


async def _written(pending: asyncio.Future[None] | None) -> None:
    """Wait for a write ``StoreWorker.submit`` queued (``None``: it is done)."""
    if pending is not None:
        await pending


def _source_event(what: str, source: Source) -> dict[str, object]:
    return {"event": f"source_{what}", "source": source.name}


def _log_alert_event(event: AlertEvent) -> None:
    """One info line per alert event, with its identity and numbers; its sample posts
    only at debug level, cut short (post texts never go to the logs at info)."""
    alert, signal, series = event.alert, event.alert.signal, event.alert.series
    fields: dict[str, object] = {
        "event": f"alert_{event.kind.value}",
        "alert": alert.identity,
        "rule": alert.rule_id,
        "brand": series.brand,
        "severity": alert.severity.value,
        "measure": signal.measure.value,
        "direction": signal.direction,
        "scale": format_scale(series.scale_seconds),
        "observed": round(signal.observed, 6),
        "expected": round(signal.expected, 3),
        "likelihood": signal.likelihood,
        "at": event.at,
        "playbook": alert.playbook.id,
    }
    if series.topic:
        fields["topic"] = series.topic
    where = f"{series.brand}/{series.topic}" if series.topic else series.brand
    log.info(
        "alert %s: %s for %s (%s, %s %s)",
        event.kind.value,
        alert.rule_id,
        where,
        alert.severity.value,
        signal.measure.value.replace("_", " "),
        signal.direction,
        extra=fields,
    )
    if event.kind is EventKind.FIRING and log.isEnabledFor(logging.DEBUG):
        for post in alert.bucket.samples[:EVIDENCE_POSTS]:
            log.debug(
                "alert %s evidence: post %s: %s",
                alert.identity,
                post.id,
                logs.excerpt(post.text),
                extra={"event": "alert_evidence", "alert": alert.identity, "post": post.id},
            )
