"""Incidents: the alerts of one brand's crisis, tracked until it is over.

The pipeline's alert lifecycle (``xwatch.alerting.lifecycle``) says when each alert
identity fires, peaks and resolves. The ``IncidentBook`` turns those events, and
what people do (acknowledge, resolve, silence, escalate), into incidents and into
the notices the notifiers send:

* **Grouping**: an alert joins its brand's open incident, if there is one, as a new
  *part*; an incident is one Slack message (updates in its thread) and one email,
  not a burst of them.
* **Inhibition**: while an incident has a critical part firing, its lesser parts
  are *muted* (shown, never notified on their own): the critical one explains them.
* **Silences**: a silence (by brand, rules and/or labels, until a time) mutes the
  parts it covers; an incident whose every active part is silenced is ``silenced``.
  When it expires, what still fires is announced.
* **Reminders**: a firing incident nobody acknowledged is announced again every
  ``repeat_after``.
* **Escalation**: a critical incident not acknowledged within its playbook's
  first-response time is sent to the escalation notifiers too, once.
* **Quiet hours**: a rule's quiet hours hold the notices of its non-critical
  incidents; what still fires when they end is announced then.
* **Resolution**: an incident resolves when all its parts have resolved (each with
  the lifecycle's hysteresis) or when a person resolves it; that is announced to
  everyone who was told it opened.

Every change is a ``Change``: the incident as it is now, the timeline entries it
gained and the notices to send. The daemon writes each change to the store, then
hands its notices to the outbox. The book is pure: time comes in as an argument
(event time for what the data drives, the person's time for their actions), and
it holds only the open incidents (the store keeps the history).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from xwatch.alerting.render import MEASURE_NAMES, describe
from xwatch.errors import XwatchError
from xwatch.model import SEVERITY_RANK, Alert, AlertEvent, EventKind, PlaybookRef, Severity

KEPT_IDS = 1000
"""The most ids the book keeps taken for incidents that are no longer open (the newest):
as many as a restart gives back (the daemon's ``RECENT_INCIDENT_IDS``). An id is taken
again only by an incident of the same brand opened in the same second, which a late post
can do within minutes or hours, not a thousand incidents later; every id given would
otherwise be kept for the life of the process."""

KEPT_RESOLVED_PARTS = 20
"""The most resolved parts an open incident keeps (the latest resolved). A brand that is
never calm for long keeps one incident open for weeks, and each new surging term joins
it as a part of its own: a month of them made an incident of 31 parts (430 kB of JSON,
rewritten to the store at every change and carried by every notice, each hourly
reminder included). The oldest resolved parts go; the timeline keeps their story, and
one fired again starts a part afresh."""

SEVERITY_ROSE = "severity now "
"""How an ``updated`` notice that raised the incident's severity begins (email sends those)."""


class State(StrEnum):
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    RESOLVED = "resolved"


class NoticeKind(StrEnum):
    OPENED = "opened"  # first announcement of an incident
    UPDATED = "updated"  # a new part, a higher severity, a new peak
    REMINDER = "reminder"  # still firing, nobody acknowledged
    ESCALATED = "escalated"  # critical and not acknowledged in time (or a person escalated)
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    RESOLVED = "resolved"


class UnknownIncident(XwatchError, KeyError):
    """No open incident has this id."""


@dataclass(frozen=True, slots=True)
class Part:
    """One alert identity within an incident."""

    identity: str
    first: Alert  # the first firing
    latest: Alert  # the strongest firing so far (what the incident shows); resolved: the last
    since: datetime
    resolved_at: datetime | None = None
    muted_by: str = ""  # identity of the critical part that explains this one
    silenced_by: str = ""  # id of the silence that covers it

    @property
    def active(self) -> bool:
        return self.resolved_at is None

    @property
    def notifiable(self) -> bool:
        """Firing, and neither muted nor silenced."""
        return self.active and not self.muted_by and not self.silenced_by


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of an incident's timeline (the audit trail of its state changes)."""

    at: datetime
    kind: str  # opened, part_added, peak, part_resolved, acknowledged, silenced, ...
    text: str
    who: str = ""  # the person, for actions; "" for what the data did


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    brand: str
    state: State
    opened_at: datetime
    updated_at: datetime
    parts: tuple[Part, ...]
    acknowledged_by: str = ""
    resolved_at: datetime | None = None
    escalated_at: datetime | None = None
    announced_at: datetime | None = None  # the last opened/reminder notice (None: not yet)
    notices: int = 0  # notices made so far (numbers the next one)

    @property
    def is_open(self) -> bool:
        return self.state is not State.RESOLVED

    @property
    def lead(self) -> Part:
        """The part the incident is named after: the most severe, then the first."""
        active = [p for p in self.parts if p.active and not p.silenced_by] or list(self.parts)
        return max(active, key=lambda p: (SEVERITY_RANK[p.first.severity], -p.since.timestamp()))

    @property
    def severity(self) -> Severity:
        return self.lead.first.severity

    @property
    def title(self) -> str:
        return self.lead.first.title

    @property
    def playbook(self) -> PlaybookRef:
        return self.lead.first.playbook

    def part(self, identity: str) -> Part | None:
        return next((p for p in self.parts if p.identity == identity), None)


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification for one notifier: what happened, and the incident as it is now."""

    id: str  # unique: the incident, the notice's number, the notifier
    kind: NoticeKind
    incident: Incident
    channel: str  # the notifier's name
    at: datetime
    text: str = ""  # what happened, in a few words ("acknowledged by @maria")


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes the alerts it matches until ``ends_at``; at least one matcher is set."""

    id: str
    ends_at: datetime
    created_at: datetime
    who: str
    comment: str = ""
    brand: str = ""
    rules: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not (self.brand or self.rules or self.labels):
            raise ValueError("a silence needs a brand, rules or labels to match")

    def matches(self, alert: Alert) -> bool:
        labels = alert.label_map
        return (
            (not self.brand or alert.series.brand == self.brand)
            and (not self.rules or alert.rule_id in self.rules)
            and all(labels.get(key) == value for key, value in self.labels)
        )


@dataclass(frozen=True, slots=True)
class Change:
    """What one step did to one incident: store ``incident`` and ``entries``, send ``notices``."""

    incident: Incident
    entries: tuple[Entry, ...]
    notices: tuple[Notice, ...]


@dataclass(frozen=True, slots=True)
class Route:
    severity: tuple[Severity, ...]
    labels: tuple[tuple[str, str], ...]
    notify: tuple[str, ...]

    def matches(self, severity: Severity, labels: Iterable[dict[str, str]]) -> bool:
        if self.severity and severity not in self.severity:
            return False
        if not self.labels:
            return True
        return any(all(found.get(k) == v for k, v in self.labels) for found in labels)


def never_quiet(rule_id: str, at: datetime) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Policy:
    repeat_after: timedelta | None = timedelta(hours=1)  # None: no reminders
    escalate_to: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    quiet: Callable[[str, datetime], bool] = never_quiet  # is this rule in its quiet hours?


class IncidentBook:
    def __init__(self, policy: Policy, kept_ids: int = KEPT_IDS) -> None:
        self.policy = policy
        self.incidents: dict[str, Incident] = {}  # the open ones, by id
        self.silences: dict[str, Silence] = {}
        # the newest ``kept_ids`` ids given (or restored), oldest first: a new incident
        # never takes a resolved one's id (a late post opened one in the same second, and
        # the store replaced the resolved incident, its timeline and its notices with it)
        self.ids: OrderedDict[str, None] = OrderedDict()
        self.kept_ids = kept_ids

    def restore(self, incidents: Iterable[Incident], silences: Iterable[Silence]) -> None:
        """Put back the open incidents and the silences kept in the store."""
        for incident in sorted(incidents, key=lambda i: (i.opened_at, i.id)):  # oldest first
            self._take(incident.id)
            if incident.is_open:
                self.incidents[incident.id] = incident
        for silence in silences:
            self.silences[silence.id] = silence

    def open_for(self, brand: str) -> Incident | None:
        return next((i for i in self.incidents.values() if i.brand == brand), None)

    # -- what the data does ----------------------------------------------------------

    def observe(self, events: Sequence[AlertEvent], now: datetime) -> list[Change]:
        """Take the lifecycle's events; then reminders, escalations and expiries at ``now``."""
        changes: dict[str, Change] = {}
        for event in events:
            change = self._observe(event)
            if change is not None:
                changes[change.incident.id] = _merge(changes.get(change.incident.id), change)
        for change in self.advance(now):
            changes[change.incident.id] = _merge(changes.get(change.incident.id), change)
        return list(changes.values())

    def _observe(self, event: AlertEvent) -> Change | None:
        alert = event.alert
        if event.kind is EventKind.FIRING:
            return self._fire(alert, event.at)
        incident = self._holding(alert.identity)
        if incident is None:  # a person resolved its incident already
            if event.kind is EventKind.UPDATED:  # and it grew since: news again, as after
                return self._fire(alert, event.at)  # a restart (a second, bigger wave)
            return None
        part = incident.part(alert.identity)
        assert part is not None
        if event.kind is EventKind.UPDATED:
            part = dataclasses.replace(part, latest=alert)
            entry = Entry(event.at, "peak", f"{alert.rule_id}: stronger, {_numbers(alert)}")
            return self._update(incident, part, entry, event.at, announce=part.notifiable)
        part = dataclasses.replace(part, latest=alert, resolved_at=event.at)
        why = event.why or ("" if event.settled is None else _settled(alert, event.settled))
        entry = Entry(event.at, "part_resolved", f"{alert.rule_id}: {why or 'back to normal'}")
        return self._update(incident, part, entry, event.at, announce=False, why=why)

    def _fire(self, alert: Alert, at: datetime) -> Change:
        part = Part(alert.identity, alert, alert, at, silenced_by=self._silence_for(alert))
        incident = self._holding(alert.identity) or self.open_for(alert.series.brand)
        if incident is None:
            incident = Incident(
                id=self._new_id(alert.series.brand, at),
                brand=alert.series.brand,
                state=State.FIRING,
                opened_at=at,
                updated_at=at,
                parts=(),
            )
            entry = Entry(at, "opened", f"{alert.rule_id}: {alert.title}, {_numbers(alert)}")
        else:
            old = incident.part(alert.identity)
            if old is not None:  # it fired again after resolving, or after a restart
                part = dataclasses.replace(old, latest=alert, resolved_at=None)
            entry = Entry(at, "part_added", f"{alert.rule_id}: {alert.title}, {_numbers(alert)}")
        return self._update(incident, part, entry, at, announce=True)

    def _update(
        self,
        incident: Incident,
        part: Part,
        entry: Entry,
        at: datetime,
        *,
        announce: bool,
        why: str = "",
    ) -> Change:
        """The incident with ``part`` in it, and what to tell. ``why``: the resolving
        part's reason, when not "back to normal" (its change became the normal, or its rule
        was removed)."""
        before_severity = incident.severity if incident.parts else None
        parts = [p for p in incident.parts if p.identity != part.identity] + [part]
        parts, forgotten = _forget_resolved(parts)
        parts.sort(key=lambda p: p.since)
        incident = _with_parts(incident, parts, at)
        entries = [entry]
        if forgotten:
            text = f"{forgotten} resolved part(s) no longer listed (at most {KEPT_RESOLVED_PARTS})"
            entries.append(Entry(at, "parts_forgotten", text))
        notices: list[Notice] = []
        if not any(p.active for p in incident.parts):
            incident = dataclasses.replace(incident, state=State.RESOLVED, resolved_at=at)
            ended = f"every alert has ended: {why}" if why else "every alert is back to normal"
            entries.append(Entry(at, "resolved", ended))
            self.incidents.pop(incident.id, None)
            if incident.announced_at is not None:
                incident, notices = self._notify(
                    incident, NoticeKind.RESOLVED, at, why or "back to normal", everyone=True
                )
            return Change(incident, tuple(entries), tuple(notices))
        self.incidents[incident.id] = incident
        part = incident.part(part.identity) or part  # muting recomputed
        if incident.state is State.SILENCED or not announce or not part.notifiable:
            return Change(incident, tuple(entries), ())
        if incident.announced_at is None:
            incident, notices = self._announce(incident, at)
        else:
            rose = before_severity is not None and (
                SEVERITY_RANK[incident.severity] > SEVERITY_RANK[before_severity]
            )
            text = f"{SEVERITY_ROSE}{incident.severity.value}" if rose else entry.text
            incident, notices = self._notify(incident, NoticeKind.UPDATED, at, text)
        self.incidents[incident.id] = incident
        return Change(incident, tuple(entries), tuple(notices))

    def next_due(self) -> datetime | None:
        """The earliest time at which ``advance`` has something to do that is known in
        advance (None: nothing): a silence ends, a critical incident is not acknowledged
        within its playbook's first-response time, a reminder is due. (A notice held for
        quiet hours goes out at the first round after they end.)"""
        dues = [silence.ends_at for silence in self.silences.values()]
        repeat = self.policy.repeat_after
        for incident in self.incidents.values():
            if incident.state is not State.FIRING or incident.announced_at is None:
                continue
            if incident.severity is Severity.CRITICAL and incident.escalated_at is None:
                dues.append(_escalation_due(incident))
            if repeat is not None:
                dues.append(incident.announced_at + repeat)
        return min(dues, default=None)

    def advance(self, now: datetime) -> list[Change]:
        """Time passed: expire silences, announce what was held, remind, escalate."""
        changes: list[Change] = []
        for silence in [s for s in self.silences.values() if s.ends_at <= now]:
            del self.silences[silence.id]
            changes.extend(self._unsilence(silence.id, now, "silence expired"))
        for incident in list(self.incidents.values()):
            change = self._advance(incident, now)
            if change is not None:
                changes.append(change)
        return _merged(changes)

    def _advance(self, incident: Incident, now: datetime) -> Change | None:
        if incident.state is not State.FIRING:
            return None
        if incident.announced_at is None:
            incident, notices = self._announce(incident, now)
            self.incidents[incident.id] = incident
            return Change(incident, (), tuple(notices)) if notices else None
        announced_at = incident.announced_at
        playbook = incident.playbook
        if (
            incident.severity is Severity.CRITICAL
            and incident.escalated_at is None
            and now >= _escalation_due(incident)
        ):
            text = f"not acknowledged within {playbook.first_response_minutes} min"
            incident = dataclasses.replace(incident, escalated_at=now, updated_at=now)
            entry = Entry(now, "escalated", text)
            incident, notices = self._notify(
                incident, NoticeKind.ESCALATED, now, text, extra=self.policy.escalate_to
            )
            self.incidents[incident.id] = incident
            return Change(incident, (entry,), tuple(notices))
        repeat = self.policy.repeat_after
        if repeat is not None and now - announced_at >= repeat:
            minutes = int((now - incident.opened_at).total_seconds() // 60)
            incident = dataclasses.replace(incident, announced_at=now)
            incident, notices = self._notify(
                incident,
                NoticeKind.REMINDER,
                now,
                f"still firing after {minutes} min, unacknowledged",
            )
            self.incidents[incident.id] = incident
            return Change(incident, (Entry(now, "reminder", "reminder sent"),), tuple(notices))
        return None

    # -- what people do ---------------------------------------------------------------

    def acknowledge(self, incident_id: str, who: str, at: datetime) -> list[Change]:
        incident = self._get(incident_id)
        if incident.state is State.ACKNOWLEDGED or incident.acknowledged_by:
            return []  # (a silence after it shows "silenced", but it was acknowledged)
        incident = dataclasses.replace(
            incident, state=State.ACKNOWLEDGED, acknowledged_by=who, updated_at=at
        )
        entry = Entry(at, "acknowledged", f"acknowledged by {who}", who)
        notices: list[Notice] = []
        if incident.announced_at is not None:
            incident, notices = self._notify(
                incident, NoticeKind.ACKNOWLEDGED, at, f"acknowledged by {who}", everyone=True
            )
        self.incidents[incident.id] = incident
        return [Change(incident, (entry,), tuple(notices))]

    def resolve(self, incident_id: str, who: str, at: datetime) -> list[Change]:
        incident = self._get(incident_id)
        parts = [
            p if not p.active else dataclasses.replace(p, resolved_at=at) for p in incident.parts
        ]
        incident = dataclasses.replace(
            incident, parts=tuple(parts), state=State.RESOLVED, resolved_at=at, updated_at=at
        )
        del self.incidents[incident.id]
        entry = Entry(at, "resolved", f"resolved by {who}", who)
        notices: list[Notice] = []
        if incident.announced_at is not None:
            incident, notices = self._notify(
                incident, NoticeKind.RESOLVED, at, f"resolved by {who}", everyone=True
            )
        return [Change(incident, (entry,), tuple(notices))]

    def escalate(self, incident_id: str, who: str, at: datetime) -> list[Change]:
        incident = self._get(incident_id)
        incident = dataclasses.replace(incident, escalated_at=at, updated_at=at)
        entry = Entry(at, "escalated", f"escalated by {who}", who)
        incident, notices = self._notify(
            incident,
            NoticeKind.ESCALATED,
            at,
            f"escalated by {who}",
            extra=self.policy.escalate_to,
            everyone=True,
        )
        self.incidents[incident.id] = incident
        return [Change(incident, (entry,), tuple(notices))]

    def silence(self, silence: Silence, at: datetime) -> list[Change]:
        """Add a silence; the open incidents it covers change now."""
        self.silences[silence.id] = silence
        changes = []
        until = f"{silence.ends_at:%Y-%m-%d %H:%M} UTC"
        for incident in list(self.incidents.values()):
            parts = [
                dataclasses.replace(p, silenced_by=silence.id)
                if p.active and not p.silenced_by and silence.matches(p.first)
                else p
                for p in incident.parts
            ]
            if parts == list(incident.parts):
                continue
            updated = _with_parts(incident, parts, at)
            entry = Entry(at, "silenced", f"silenced by {silence.who} until {until}", silence.who)
            notices: list[Notice] = []
            if updated.state is State.SILENCED and updated.announced_at is not None:
                updated, notices = self._notify(
                    updated, NoticeKind.SILENCED, at, entry.text, everyone=True
                )
            self.incidents[updated.id] = updated
            changes.append(Change(updated, (entry,), tuple(notices)))
        return changes

    def silence_incident(
        self, incident_id: str, who: str, at: datetime, duration: timedelta, silence_id: str
    ) -> tuple[Silence, list[Change]]:
        """Silence what makes this incident fire: its brand and its rules, for ``duration``."""
        incident = self._get(incident_id)
        rules = tuple(sorted({p.first.rule_id for p in incident.parts}))
        silence = Silence(
            id=silence_id,
            ends_at=at + duration,
            created_at=at,
            who=who,
            comment=f"from incident {incident.id}",
            brand=incident.brand,
            rules=rules,
        )
        return silence, self.silence(silence, at)

    def unsilence(self, silence_id: str, who: str, at: datetime) -> list[Change]:
        if self.silences.pop(silence_id, None) is None:
            return []
        return self._unsilence(silence_id, at, f"silence removed by {who}", who)

    def _unsilence(self, silence_id: str, at: datetime, text: str, who: str = "") -> list[Change]:
        changes = []
        for incident in list(self.incidents.values()):
            if not any(p.silenced_by == silence_id for p in incident.parts):
                continue
            parts = [
                dataclasses.replace(p, silenced_by=self._silence_for(p.first, skip=silence_id))
                if p.silenced_by == silence_id
                else p
                for p in incident.parts
            ]
            updated = _with_parts(incident, parts, at)
            self.incidents[updated.id] = updated
            change = Change(updated, (Entry(at, "unsilenced", text, who),), ())
            # back from silence (firing, or acknowledged before it): said to everyone who
            # was told of the silence, a pager that was paged included (an acknowledged
            # incident's return was never said: Slack showed "silenced" while it fired)
            if updated.state is not State.SILENCED and updated.announced_at is not None:
                everyone = incident.state is State.SILENCED
                updated, notices = self._notify(
                    updated, NoticeKind.UPDATED, at, text, everyone=everyone
                )
                self.incidents[updated.id] = updated
                change = Change(updated, change.entries, tuple(notices))
            changes.append(change)
        return changes

    # -- helpers ----------------------------------------------------------------------

    def _get(self, incident_id: str) -> Incident:
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise UnknownIncident(incident_id)
        return incident

    def _holding(self, identity: str) -> Incident | None:
        return next((i for i in self.incidents.values() if i.part(identity) is not None), None)

    def _silence_for(self, alert: Alert, skip: str = "") -> str:
        return next((s.id for s in self.silences.values() if s.id != skip and s.matches(alert)), "")

    def _new_id(self, brand: str, at: datetime) -> str:
        base = f"{brand}-{at:%Y%m%d-%H%M%S}"
        candidate, n = base, 1
        while candidate in self.ids:
            n += 1
            candidate = f"{base}-{n}"
        self._take(candidate)
        return candidate

    def _take(self, incident_id: str) -> None:
        """Keep ``incident_id`` taken, forgetting the oldest past ``kept_ids`` (an incident
        still open needs none: its brand's alerts join it, never open another)."""
        self.ids[incident_id] = None
        self.ids.move_to_end(incident_id)  # taken again: the newest
        while len(self.ids) > self.kept_ids:
            self.ids.popitem(last=False)

    def _announce(self, incident: Incident, at: datetime) -> tuple[Incident, list[Notice]]:
        """The first notice of an incident, unless every notifiable part is in quiet hours
        (and the incident is not critical): then it waits for ``advance``."""
        notifiable = [p for p in incident.parts if p.notifiable]
        if not notifiable:
            return incident, []
        quiet = all(self.policy.quiet(p.first.rule_id, at) for p in notifiable)
        if quiet and incident.severity is not Severity.CRITICAL:
            return incident, []
        incident = dataclasses.replace(incident, announced_at=at)
        return self._notify(incident, NoticeKind.OPENED, at, incident.lead.first.title)

    def _notify(
        self,
        incident: Incident,
        kind: NoticeKind,
        at: datetime,
        text: str,
        *,
        extra: tuple[str, ...] = (),
        everyone: bool = False,
    ) -> tuple[Incident, list[Notice]]:
        """Number a notice for each notifier of the incident; return the incident with
        its count of notices moved on."""
        number = incident.notices + 1
        incident = dataclasses.replace(incident, notices=number)
        channels = sorted({*self._channels(incident, everyone), *extra})
        notices = [
            Notice(f"{incident.id}/{number}/{channel}", kind, incident, channel, at, text)
            for channel in channels
        ]
        return incident, notices

    def _channels(self, incident: Incident, everyone: bool) -> set[str]:
        """The notifiers of the incident's notifiable parts (``everyone``: of all its parts,
        and of its escalation if it was escalated, e.g. to say it is acknowledged or over:
        a pager that was paged must hear it), plus the routes that match it."""
        parts = incident.parts if everyone else [p for p in incident.parts if p.notifiable]
        channels = {channel for part in parts for channel in part.first.channels}
        if everyone and incident.escalated_at is not None:
            channels.update(self.policy.escalate_to)
        labels = [part.first.label_map for part in parts]
        for route in self.policy.routes:
            if route.matches(incident.severity, labels):
                channels.update(route.notify)
        return channels


def _with_parts(incident: Incident, parts: Sequence[Part], at: datetime) -> Incident:
    """The incident with these parts: muting recomputed, and silenced when every active
    part is silenced (firing again when one is not)."""
    active = [p for p in parts if p.active and not p.silenced_by]
    top = max((SEVERITY_RANK[p.first.severity] for p in active), default=-1)
    critical = next((p for p in active if p.first.severity is Severity.CRITICAL and top == 2), None)
    muted = [
        dataclasses.replace(
            p,
            muted_by=critical.identity
            if critical is not None
            and p is not critical
            and p.first.severity is not Severity.CRITICAL
            else "",
        )
        for p in parts
    ]
    state = incident.state
    if any(p.active for p in muted) and not active:
        state = State.SILENCED
    elif state is State.SILENCED and active:
        state = State.ACKNOWLEDGED if incident.acknowledged_by else State.FIRING
    return dataclasses.replace(incident, parts=tuple(muted), state=state, updated_at=at)


def _forget_resolved(parts: list[Part]) -> tuple[list[Part], int]:
    """The parts less the resolved ones past ``KEPT_RESOLVED_PARTS`` (those resolved first
    go first), and how many went; an incident whose every part has resolved keeps them all
    (it is over: the store keeps it as it ended)."""
    resolved = [p for p in parts if not p.active]
    extra = len(resolved) - KEPT_RESOLVED_PARTS
    if extra <= 0 or len(resolved) == len(parts):
        return parts, 0
    oldest = sorted(resolved, key=lambda p: p.resolved_at or p.since)[:extra]
    gone = {p.identity for p in oldest}
    return [p for p in parts if p.identity not in gone], extra


def _escalation_due(incident: Incident) -> datetime:
    """When a critical incident not acknowledged is escalated: its playbook's first-response
    time after it became critical (its first critical part), not after it opened (a warning
    that turned critical two hours in was escalated at once, "not acknowledged within 30
    min" after 0 minutes of being critical)."""
    critical = [p.since for p in incident.parts if p.first.severity is Severity.CRITICAL]
    became = min(critical, default=incident.opened_at)
    return became + timedelta(minutes=incident.playbook.first_response_minutes)


def _numbers(alert: Alert) -> str:
    return describe(alert.signal)


def _settled(alert: Alert, ratio: float) -> str:
    """Why an alert ended whose change became its series' normal (``AlertEvent.settled``:
    the normal now over the normal before): not "back to normal", which a negative share
    still three times its old level is not."""
    name = MEASURE_NAMES[alert.signal.measure]
    return f"the {name} has held at {ratio:.2g}x its level before, long enough to be its normal now"


def _merge(first: Change | None, second: Change) -> Change:
    if first is None:
        return second
    return Change(second.incident, first.entries + second.entries, first.notices + second.notices)


def _merged(changes: list[Change]) -> list[Change]:
    by_id: dict[str, Change] = {}
    for change in changes:
        by_id[change.incident.id] = _merge(by_id.get(change.incident.id), change)
    return list(by_id.values())
