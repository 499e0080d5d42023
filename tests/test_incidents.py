"""The incident book: grouping, inhibition, silences, reminders, escalation, actions.

Time is injected: every call says when it happens (event time for the data, the
person's time for actions), so each timing rule is tested to the second.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from tests.factories import T0, alert, notice
from xwatch.alerting.codec import CodecError, from_json, to_json
from xwatch.alerting.incidents import (
    KEPT_IDS,
    KEPT_RESOLVED_PARTS,
    Change,
    Incident,
    IncidentBook,
    Notice,
    NoticeKind,
    Policy,
    Route,
    Silence,
    State,
    UnknownIncident,
)
from xwatch.alerting.lifecycle import AlertBook
from xwatch.alerting.summary import share_when, summarize
from xwatch.model import Alert, AlertEvent, EventKind, Measure, Severity

AT = T0 + timedelta(hours=13)


def fire(book: IncidentBook, a: Alert, at: datetime | None = None) -> list[Change]:
    when = at or a.signal.end
    return book.observe([AlertEvent(EventKind.FIRING, a, when)], when)


def notices(changes: list[Change]) -> list[Notice]:
    return [n for c in changes for n in c.notices]


def kinds(changes: list[Change]) -> list[tuple[NoticeKind, str]]:
    return [(n.kind, n.channel) for n in notices(changes)]


def warning(rule: str = "mention-volume-spike", **kw: object) -> Alert:
    return alert(rule=rule, severity="warning", measure="volume", **kw)  # type: ignore[arg-type]


def test_first_alert_opens_an_incident_and_notifies_its_channels() -> None:
    book = IncidentBook(Policy())
    changes = fire(book, alert(at=AT, channels=("slack", "email")))
    assert kinds(changes) == [(NoticeKind.OPENED, "email"), (NoticeKind.OPENED, "slack")]
    incident = changes[0].incident
    assert incident.state is State.FIRING
    assert incident.id == "kettlebird-20261116-130000"
    assert [e.kind for e in changes[0].entries] == ["opened"]
    assert incident.announced_at == AT


def test_alerts_of_one_brand_group_into_one_incident_not_a_burst() -> None:
    book = IncidentBook(Policy())
    opened = fire(book, warning(at=AT, channels=("slack",)))
    joined = fire(
        book,
        warning(rule="negative-share-spike", at=AT + timedelta(minutes=1), channels=("slack",)),
    )
    assert joined[0].incident.id == opened[0].incident.id
    assert len(joined[0].incident.parts) == 2
    assert kinds(joined) == [(NoticeKind.UPDATED, "slack")]  # an update, in the thread
    other_brand = fire(book, warning(brand="acme", at=AT, channels=("slack",)))
    assert other_brand[0].incident.id != opened[0].incident.id
    assert kinds(other_brand) == [(NoticeKind.OPENED, "slack")]


def test_a_critical_part_mutes_the_lesser_alerts_it_explains() -> None:
    book = IncidentBook(Policy())
    fire(book, alert(rule="product-defect-surge", at=AT, channels=("slack",)))
    lesser = fire(book, warning(at=AT + timedelta(minutes=1), channels=("slack",)))
    assert notices(lesser) == []  # muted: no message of its own
    part = lesser[0].incident.part(warning().identity)
    assert part is not None and part.muted_by.startswith("product-defect-surge:")
    assert lesser[0].incident.severity is Severity.CRITICAL


def test_a_lesser_incident_that_turns_critical_says_so_and_mutes_the_rest() -> None:
    book = IncidentBook(Policy())
    fire(book, warning(at=AT, channels=("slack",)))
    rose = fire(
        book, alert(rule="product-defect-surge", at=AT + timedelta(minutes=2), channels=("slack",))
    )
    (notice,) = notices(rose)
    assert notice.kind is NoticeKind.UPDATED and notice.text == "severity now critical"
    spike = rose[0].incident.part(warning().identity)
    assert spike is not None and spike.muted_by


def test_refiring_updates_and_resolution_is_announced_with_hysteresis() -> None:
    lifecycle = AlertBook(timedelta(minutes=30))
    book = IncidentBook(Policy(repeat_after=None))
    a = warning(at=AT, channels=("slack",))
    events = lifecycle.observe([a], AT)
    book.observe(events, AT)
    stronger = dataclasses.replace(
        a,
        signal=dataclasses.replace(
            a.signal, surprise=a.signal.surprise + 3, end=AT + timedelta(minutes=5)
        ),
    )
    updated = book.observe(
        lifecycle.observe([stronger], AT + timedelta(minutes=5)), AT + timedelta(minutes=5)
    )
    assert kinds(updated) == [(NoticeKind.UPDATED, "slack")]
    assert [e.kind for e in updated[0].entries] == ["peak"]
    # calm for 29 minutes: still firing; at 30, resolved and announced
    calm = AT + timedelta(minutes=5 + 29)
    assert book.observe(lifecycle.observe([], calm), calm) == []
    over = AT + timedelta(minutes=5 + 30)
    resolved = book.observe(lifecycle.observe([], over), over)
    assert kinds(resolved) == [(NoticeKind.RESOLVED, "slack")]
    assert resolved[0].incident.state is State.RESOLVED
    assert book.incidents == {}


def test_reminder_after_the_repeat_interval_while_unacknowledged() -> None:
    book = IncidentBook(Policy(repeat_after=timedelta(hours=1)))
    opened = fire(book, warning(at=AT, channels=("slack",)))
    incident_id = opened[0].incident.id
    assert book.advance(AT + timedelta(minutes=59)) == []
    reminded = book.advance(AT + timedelta(minutes=60))
    assert kinds(reminded) == [(NoticeKind.REMINDER, "slack")]
    assert book.advance(AT + timedelta(minutes=61)) == []  # not again before another hour
    book.acknowledge(incident_id, "@maria", AT + timedelta(minutes=70))
    assert book.advance(AT + timedelta(hours=3)) == []  # acknowledged: no more reminders


def test_critical_escalates_when_not_acknowledged_within_the_playbook_time() -> None:
    book = IncidentBook(Policy(repeat_after=None, escalate_to=("pager",)))
    fire(book, alert(at=AT, channels=("slack",)))  # its playbook: 30 min first response
    assert book.advance(AT + timedelta(minutes=29, seconds=59)) == []
    escalated = book.advance(AT + timedelta(minutes=30))
    assert kinds(escalated) == [(NoticeKind.ESCALATED, "pager"), (NoticeKind.ESCALATED, "slack")]
    assert book.advance(AT + timedelta(minutes=45)) == []  # once


def test_acknowledged_in_time_does_not_escalate() -> None:
    book = IncidentBook(Policy(escalate_to=("pager",)))
    opened = fire(book, alert(at=AT, channels=("slack",)))
    acked = book.acknowledge(opened[0].incident.id, "@maria", AT + timedelta(minutes=10))
    assert kinds(acked) == [(NoticeKind.ACKNOWLEDGED, "slack")]
    assert acked[0].incident.acknowledged_by == "@maria"
    assert acked[0].entries[0].who == "@maria"
    assert book.advance(AT + timedelta(hours=2)) == []


def test_warnings_do_not_escalate() -> None:
    book = IncidentBook(Policy(repeat_after=None, escalate_to=("pager",)))
    fire(book, warning(at=AT, channels=("slack",)))
    assert book.advance(AT + timedelta(hours=5)) == []


def test_silence_mutes_matching_alerts_until_it_expires() -> None:
    book = IncidentBook(Policy(repeat_after=None))
    silence = Silence(
        "s1",
        AT + timedelta(hours=1),
        AT,
        "@maria",
        brand="kettlebird",
        rules=("mention-volume-spike",),
    )
    book.silence(silence, AT)
    quiet = fire(book, warning(at=AT + timedelta(minutes=5), channels=("slack",)))
    assert notices(quiet) == []
    assert quiet[0].incident.state is State.SILENCED
    other_rule = fire(
        book,
        warning(rule="negative-share-spike", at=AT + timedelta(minutes=6), channels=("slack",)),
    )
    assert kinds(other_rule) == [(NoticeKind.OPENED, "slack")]  # not covered: announced
    assert other_rule[0].incident.state is State.FIRING


def test_an_expired_silence_announces_what_still_fires() -> None:
    book = IncidentBook(Policy(repeat_after=None))
    book.silence(Silence("s1", AT + timedelta(hours=1), AT, "@maria", brand="kettlebird"), AT)
    fire(book, warning(at=AT + timedelta(minutes=5), channels=("slack",)))
    assert book.advance(AT + timedelta(minutes=59)) == []
    expired = book.advance(AT + timedelta(hours=1))
    assert kinds(expired) == [(NoticeKind.OPENED, "slack")]
    assert expired[0].incident.state is State.FIRING
    assert book.silences == {}


def test_silencing_an_incident_from_a_button_edits_it_and_later_unsilences() -> None:
    book = IncidentBook(Policy(repeat_after=None))
    opened = fire(book, warning(at=AT, channels=("slack",)))
    silence, changes = book.silence_incident(
        opened[0].incident.id, "@maria", AT + timedelta(minutes=2), timedelta(hours=1), "s9"
    )
    assert silence.brand == "kettlebird" and silence.rules == ("mention-volume-spike",)
    assert kinds(changes) == [(NoticeKind.SILENCED, "slack")]
    assert changes[0].incident.state is State.SILENCED
    back = book.unsilence("s9", "@maria", AT + timedelta(minutes=3))
    assert back[0].incident.state is State.FIRING
    assert kinds(back) == [(NoticeKind.UPDATED, "slack")]


def test_silence_needs_a_matcher() -> None:
    with pytest.raises(ValueError, match="needs a brand, rules or labels"):
        Silence("s1", AT, AT, "@maria")


def test_silence_by_label() -> None:
    silence = Silence("s1", AT, AT, "@m", labels=(("team", "support"),))
    assert silence.matches(warning(labels=(("team", "support"),)))
    assert not silence.matches(warning(labels=(("team", "legal"),)))


def test_resolving_by_hand_ends_the_incident_and_later_refiring_opens_a_new_one() -> None:
    book = IncidentBook(Policy())
    opened = fire(book, warning(at=AT, channels=("slack",)))
    first_id = opened[0].incident.id
    resolved = book.resolve(first_id, "@maria", AT + timedelta(minutes=5))
    assert kinds(resolved) == [(NoticeKind.RESOLVED, "slack")]
    assert resolved[0].incident.state is State.RESOLVED
    with pytest.raises(UnknownIncident):
        book.acknowledge(first_id, "@maria", AT + timedelta(minutes=6))
    # the lifecycle still sees the identity active: it sends an update only when the alert
    # is clearly stronger than its peak (a second, bigger wave): that is news again, a
    # new incident, as a firing after a restart is (it used to be dropped)
    a = warning(at=AT + timedelta(minutes=10), channels=("slack",))
    wave = book.observe([AlertEvent(EventKind.UPDATED, a, a.signal.end)], a.signal.end)
    assert kinds(wave) == [(NoticeKind.OPENED, "slack")]
    assert wave[0].incident.id != first_id
    book.resolve(wave[0].incident.id, "@maria", AT + timedelta(minutes=15))
    # ...and a new firing after it resolved is a new incident
    again = fire(book, warning(at=AT + timedelta(hours=2), channels=("slack",)))
    assert again[0].incident.id not in (first_id, wave[0].incident.id)
    assert kinds(again) == [(NoticeKind.OPENED, "slack")]


def test_a_pager_that_was_paged_hears_the_acknowledgement_and_the_resolution() -> None:
    """The escalation's notifiers are told what follows it: a PagerDuty incident stayed
    triggered (and kept paging) after the team acknowledged and resolved it."""
    book = IncidentBook(Policy(repeat_after=None, escalate_to=("pager",)))
    opened = fire(book, alert(at=AT, channels=("slack",)))
    incident_id = opened[0].incident.id
    assert kinds(book.advance(AT + timedelta(minutes=30)))[0] == (NoticeKind.ESCALATED, "pager")
    acked = book.acknowledge(incident_id, "@maria", AT + timedelta(minutes=31))
    assert sorted(kinds(acked)) == [
        (NoticeKind.ACKNOWLEDGED, "pager"),
        (NoticeKind.ACKNOWLEDGED, "slack"),
    ]
    resolved = book.resolve(incident_id, "@maria", AT + timedelta(minutes=40))
    assert sorted(kinds(resolved)) == [
        (NoticeKind.RESOLVED, "pager"),
        (NoticeKind.RESOLVED, "slack"),
    ]
    # not escalated: the pager hears nothing of it
    other = IncidentBook(Policy(repeat_after=None, escalate_to=("pager",)))
    calm = fire(other, alert(at=AT, channels=("slack",)))
    assert kinds(other.resolve(calm[0].incident.id, "@maria", AT + timedelta(minutes=5))) == [
        (NoticeKind.RESOLVED, "slack")
    ]


def test_acknowledge_twice_is_a_no_op() -> None:
    book = IncidentBook(Policy())
    opened = fire(book, warning(at=AT, channels=("slack",)))
    book.acknowledge(opened[0].incident.id, "@a", AT)
    assert book.acknowledge(opened[0].incident.id, "@b", AT) == []


def test_routes_add_notifiers_by_severity_and_label() -> None:
    routes = (
        Route((Severity.CRITICAL,), (), ("exec",)),
        Route((), (("team", "support"),), ("support",)),
    )
    book = IncidentBook(Policy(routes=routes))
    critical = fire(book, alert(at=AT, channels=("slack",)))
    assert {c for _, c in kinds(critical)} == {"slack", "exec"}
    labelled = fire(
        book, warning(brand="acme", at=AT, channels=("slack",), labels=(("team", "support"),))
    )
    assert {c for _, c in kinds(labelled)} == {"slack", "support"}


def test_quiet_hours_hold_warnings_until_they_end_but_not_critical() -> None:
    def quiet(rule: str, at: datetime) -> bool:
        return at < AT + timedelta(hours=1)

    book = IncidentBook(Policy(quiet=quiet, repeat_after=None))
    held = fire(book, warning(at=AT, channels=("slack",)))
    assert notices(held) == []
    assert held[0].incident.announced_at is None
    assert book.advance(AT + timedelta(minutes=59)) == []
    later = book.advance(AT + timedelta(hours=1))
    assert kinds(later) == [(NoticeKind.OPENED, "slack")]
    critical = fire(book, alert(brand="acme", at=AT, channels=("slack",)))
    assert kinds(critical) == [(NoticeKind.OPENED, "slack")]


def test_resolved_before_announced_sends_nothing() -> None:
    book = IncidentBook(Policy(quiet=lambda rule, at: True))
    a = warning(at=AT, channels=("slack",))
    fire(book, a)
    resolved = book.observe(
        [AlertEvent(EventKind.RESOLVED, a, AT + timedelta(minutes=30))], AT + timedelta(minutes=30)
    )
    assert resolved[0].incident.state is State.RESOLVED
    assert notices(resolved) == []


def test_restored_book_treats_a_known_identity_as_an_update_not_a_new_incident() -> None:
    book = IncidentBook(Policy())
    opened = fire(book, warning(at=AT, channels=("slack",)))
    restored = IncidentBook(Policy())
    restored.restore([opened[0].incident], [])
    again = fire(restored, warning(at=AT + timedelta(minutes=5), channels=("slack",)))
    assert again[0].incident.id == opened[0].incident.id
    assert kinds(again) == [(NoticeKind.UPDATED, "slack")]


def test_notice_ids_are_unique_and_number_the_notices() -> None:
    book = IncidentBook(Policy())
    opened = fire(book, warning(at=AT, channels=("slack", "email")))
    acked = book.acknowledge(opened[0].incident.id, "@m", AT + timedelta(minutes=1))
    ids = [n.id for n in notices(opened) + notices(acked)]
    assert ids == [
        "kettlebird-20261116-130000/1/email",
        "kettlebird-20261116-130000/1/slack",
        "kettlebird-20261116-130000/2/email",
        "kettlebird-20261116-130000/2/slack",
    ]


# -- the codec: incidents and notices as JSON and back ------------------------------------


def test_incident_round_trips_through_json() -> None:
    book = IncidentBook(Policy())
    changes = fire(book, alert(at=AT, channels=("slack",)))
    notice = notices(changes)[0]
    assert from_json(Notice, to_json(notice)) == notice
    assert from_json(Incident, to_json(notice.incident)) == notice.incident


def test_codec_refuses_foreign_data_naming_the_field() -> None:
    data = to_json(notices(fire(IncidentBook(Policy()), alert(at=AT)))[0].incident)
    data["parts"][0]["first"]["signal"]["end"] = 12
    with pytest.raises(CodecError, match=r"parts\[0\]\.first\.signal\.end"):
        from_json(Incident, data)
    data = to_json(notices(fire(IncidentBook(Policy()), alert(at=AT)))[0].incident)
    data["surprise"] = 1
    with pytest.raises(CodecError, match="unknown field"):
        from_json(Incident, data)


def test_next_due_is_when_advance_next_has_something_to_do() -> None:
    """Escalation, reminders and a silence's end, each at its time; nothing in between."""
    book = IncidentBook(Policy(repeat_after=timedelta(hours=1), escalate_to=("pager",)))
    assert book.next_due() is None
    opened = fire(book, alert(at=AT, channels=("slack",)))  # critical: 30 min first response
    book.silence(Silence("s1", AT + timedelta(minutes=45), AT, "@maria", brand="other"), AT)
    seen = []
    for _ in range(4):
        due = book.next_due()
        assert due is not None
        assert book.advance(due - timedelta(seconds=1)) == []  # nothing before it
        seen.append((due - AT, [n.kind for n in notices(book.advance(due))]))
    assert seen == [
        (timedelta(minutes=30), [NoticeKind.ESCALATED, NoticeKind.ESCALATED]),
        (timedelta(minutes=45), []),  # the silence ended (it covered nothing)
        (timedelta(minutes=60), [NoticeKind.REMINDER]),
        (timedelta(minutes=120), [NoticeKind.REMINDER]),
    ]
    assert book.silences == {}
    book.acknowledge(opened[0].incident.id, "@maria", AT + timedelta(minutes=130))
    assert book.next_due() is None  # acknowledged: no more reminders


def test_a_new_incident_never_takes_the_id_of_a_resolved_one() -> None:
    """A late post opened an incident in the same second as one resolved by hand: it took
    its id, and the store replaced the resolved incident (timeline, notices) with it."""
    book = IncidentBook(Policy())
    opened = fire(book, alert(at=AT, channels=("slack",)))[0].incident
    [first] = book.resolve(opened.id, "@rita", AT + timedelta(minutes=1))
    late = warning(rule="high-reach-complaint", at=AT, channels=("slack",))
    second = fire(book, late, AT)[0].incident
    assert second.id == f"{opened.id}-2"
    [resolved] = book.resolve(second.id, "@rita", AT + timedelta(minutes=2))
    restored = IncidentBook(Policy())  # after a restart: the ids the store gave back
    restored.restore([first.incident, resolved.incident], [])
    third = fire(restored, warning(rule="mention-volume-spike", at=AT), AT)[0].incident
    assert third.id == f"{opened.id}-3"


def test_the_ids_kept_taken_are_the_newest_not_every_one_ever_given() -> None:
    """Months of incidents opening and resolving: the book kept every id it ever gave (a
    set that only grew, for the life of the process). It keeps the newest ``KEPT_IDS``,
    as a restart does, and a late post still never takes a recent one's id."""
    book = IncidentBook(Policy())
    at = AT
    for n in range(KEPT_IDS + 500):  # one incident an hour, for two months
        at = AT + timedelta(hours=n)
        opened = fire(book, alert(at=at, brand=f"brand{n % 7}", channels=("slack",)))
        book.resolve(opened[0].incident.id, "@rita", at + timedelta(minutes=1))
    assert len(book.ids) == KEPT_IDS
    assert f"brand0-{AT:%Y%m%d-%H%M%S}" not in book.ids  # the oldest are forgotten
    last = f"brand{(KEPT_IDS + 499) % 7}"
    late = warning(rule="high-reach-complaint", at=at, brand=last, channels=("slack",))
    assert fire(book, late, at)[0].incident.id == f"{last}-{at:%Y%m%d-%H%M%S}-2"


def test_a_restart_keeps_the_newest_ids_taken_whatever_order_the_store_gives() -> None:
    book = IncidentBook(Policy(), kept_ids=2)
    made = []
    for hour in range(3):
        opened = fire(book, alert(at=AT + timedelta(hours=hour)))[0].incident
        made.append(book.resolve(opened.id, "@rita", AT + timedelta(hours=hour, minutes=1))[0])
    restored = IncidentBook(Policy(), kept_ids=2)
    restored.restore([c.incident for c in reversed(made)], [])  # newest first, as the store
    assert list(restored.ids) == [made[1].incident.id, made[2].incident.id]


def test_an_incident_open_for_weeks_keeps_its_latest_resolved_parts_not_every_one() -> None:
    """A brand never calm for two hours keeps one incident open; each day a new term
    surges and calms down, a part of its own: the incident grew by a part a day, rewritten
    to the store and carried by every notice. Its oldest resolved parts go (the timeline
    says so); the active ones and the latest resolved stay."""
    book = IncidentBook(Policy(repeat_after=None))
    complaint = warning(rule="high-reach-complaint", at=AT)
    fire(book, complaint)
    forgotten = []
    days = KEPT_RESOLVED_PARTS + 10
    for day in range(days):
        at = AT + timedelta(days=day, hours=1)
        term = dataclasses.replace(warning(rule="new-term-surge", at=at), term=f"#crisis{day}")
        fire(book, term, at)
        calm = at + timedelta(hours=3)
        changes = book.observe([AlertEvent(EventKind.RESOLVED, term, calm)], calm)
        forgotten += [e for c in changes for e in c.entries if e.kind == "parts_forgotten"]
        refire = dataclasses.replace(
            complaint, signal=dataclasses.replace(complaint.signal, end=calm)
        )  # the complaints go on: the incident stays open
        book.observe([AlertEvent(EventKind.UPDATED, refire, calm)], calm)
    [incident] = book.incidents.values()
    assert len(incident.parts) == KEPT_RESOLVED_PARTS + 1
    assert incident.parts[0].identity == complaint.identity  # active: kept, and first
    terms = [p.first.term for p in incident.parts[1:]]
    assert terms == [f"#crisis{day}" for day in range(10, days)]  # the latest resolved
    assert len(forgotten) == 10
    most = KEPT_RESOLVED_PARTS
    assert forgotten[0].text == f"1 resolved part(s) no longer listed (at most {most})"


def test_an_acknowledged_incident_s_return_from_silence_is_said_and_not_acknowledged_again() -> (
    None
):
    """Acknowledged, silenced, unsilenced: the return was never said (Slack showed
    "silenced" while it fired), and a second Acknowledge on the silenced incident sent a
    duplicate notice and overwrote who owns it."""
    book = IncidentBook(Policy(repeat_after=None))
    opened = fire(book, warning(at=AT, channels=("slack",)))[0].incident
    book.acknowledge(opened.id, "@maria", AT + timedelta(minutes=5))
    book.silence_incident(opened.id, "@maria", AT + timedelta(minutes=6), timedelta(hours=1), "s1")
    assert book.acknowledge(opened.id, "@bob", AT + timedelta(minutes=7)) == []
    back = book.unsilence("s1", "@maria", AT + timedelta(minutes=20))
    assert back[0].incident.state is State.ACKNOWLEDGED
    assert back[0].incident.acknowledged_by == "@maria"
    assert kinds(back) == [(NoticeKind.UPDATED, "slack")]


def test_a_paged_pager_hears_that_a_silence_ended_while_the_incident_fires() -> None:
    """It was told of the silence (PagerDuty: acknowledge) and never of its end: the
    crisis fired on, unacknowledged, and nobody was paged again."""
    book = IncidentBook(Policy(repeat_after=None, escalate_to=("pager",)))
    opened = fire(book, alert(at=AT, channels=("slack",)))[0].incident
    book.advance(AT + timedelta(minutes=30))  # escalated
    _, silenced = book.silence_incident(
        opened.id, "@maria", AT + timedelta(minutes=40), timedelta(hours=1), "s1"
    )
    assert sorted(kinds(silenced)) == [
        (NoticeKind.SILENCED, "pager"),
        (NoticeKind.SILENCED, "slack"),
    ]
    ended = book.advance(AT + timedelta(minutes=100))
    assert sorted(kinds(ended)) == [(NoticeKind.UPDATED, "pager"), (NoticeKind.UPDATED, "slack")]


def test_an_incident_that_turns_critical_is_escalated_a_first_response_time_later() -> None:
    """A warning that turned critical two hours in was escalated at once, "not
    acknowledged within 30 min" after 0 minutes of being critical."""
    book = IncidentBook(Policy(repeat_after=None, escalate_to=("pager",)))
    fire(book, warning(at=AT, channels=("slack",)))
    later = AT + timedelta(hours=2)
    turned = fire(book, alert(at=later, channels=("slack",)), later)  # critical joins
    assert NoticeKind.ESCALATED not in [n.kind for n in notices(turned)]
    assert book.next_due() == later + timedelta(minutes=30)
    assert book.advance(later + timedelta(minutes=29)) == []
    escalated = book.advance(later + timedelta(minutes=30))
    assert (NoticeKind.ESCALATED, "pager") in kinds(escalated)


def test_a_resolved_incident_s_negative_share_is_not_said_to_be_now() -> None:
    """The closing notice said "41% now" next to "resolved": the share is its last alert's."""
    opened = notice()
    resolved = notice(NoticeKind.RESOLVED)
    assert share_when(summarize(opened.incident, "http://x/")) == "now"
    assert share_when(summarize(resolved.incident, "http://x/")) == "at the last alert"


# -- the lifecycle's re-firings: when a new peak is news, what a resolution carries --------
# These and the next section's tests came from mutation testing: each guards a line no
# test covered, and its docstring says what a user would see if that line broke.


def surprising(surprise: float, at: datetime) -> Alert:
    """A re-firing of ``warning()``'s identity with this surprise, at ``at``."""
    a = warning(at=at, channels=("slack",))
    return dataclasses.replace(a, signal=dataclasses.replace(a.signal, surprise=surprise))


def reaching(reach: int, at: datetime) -> Alert:
    """A mention rule's firing (one post matched) whose post reaches ``reach`` people."""
    a = alert(rule="high-reach-complaint", severity="warning", at=at, channels=("slack",))
    return dataclasses.replace(
        a,
        signal=dataclasses.replace(a.signal, measure=Measure.MENTION),
        bucket=dataclasses.replace(a.bucket, reach=reach),
    )


def refire(lifecycle: AlertBook, a: Alert) -> list[EventKind]:
    return [e.kind for e in lifecycle.observe([a], a.signal.end)]


def test_a_new_peak_is_news_only_when_ten_times_less_likely_than_the_last() -> None:
    """Every re-firing at the same strength (or a little more) posted "stronger" in the
    incident's thread: the next bucket of one spike spammed it."""
    lifecycle = AlertBook(timedelta(minutes=30))
    assert refire(lifecycle, surprising(5.0, AT)) == [EventKind.FIRING]
    assert refire(lifecycle, surprising(5.0, AT + timedelta(minutes=1))) == []
    assert refire(lifecycle, surprising(5.5, AT + timedelta(minutes=2))) == []
    assert refire(lifecycle, surprising(6.0, AT + timedelta(minutes=3))) == [EventKind.UPDATED]


def test_a_new_peak_is_measured_against_the_last_peak_not_the_first_firing() -> None:
    """After one "stronger" update, the same strength again was announced as stronger
    again, on every re-firing: the peak was never remembered."""
    lifecycle = AlertBook(timedelta(minutes=30))
    assert refire(lifecycle, surprising(3.0, AT)) == [EventKind.FIRING]
    assert refire(lifecycle, surprising(5.0, AT + timedelta(minutes=1))) == [EventKind.UPDATED]
    assert refire(lifecycle, surprising(5.0, AT + timedelta(minutes=2))) == []
    assert refire(lifecycle, surprising(5.9, AT + timedelta(minutes=3))) == []


def test_a_mention_rule_s_new_post_is_news_from_twice_the_reach() -> None:
    """A mention rule's posts have no surprise to compare: a post with twice the reach of
    the one announced is news (its post is what the incident shows); a little more is not."""
    lifecycle = AlertBook(timedelta(minutes=30))
    assert refire(lifecycle, reaching(250_000, AT)) == [EventKind.FIRING]
    assert refire(lifecycle, reaching(375_000, AT + timedelta(minutes=1))) == []
    assert refire(lifecycle, reaching(500_000, AT + timedelta(minutes=2))) == [EventKind.UPDATED]


def test_a_mention_rule_s_post_with_no_reach_is_topped_by_two_people_not_one() -> None:
    """A first post that reached nobody made every later post "twice its reach": each one
    was announced as stronger. It counts as a reach of 1."""
    lifecycle = AlertBook(timedelta(minutes=30))
    assert refire(lifecycle, reaching(0, AT)) == [EventKind.FIRING]
    assert refire(lifecycle, reaching(0, AT + timedelta(minutes=1))) == []
    assert refire(lifecycle, reaching(1, AT + timedelta(minutes=2))) == []
    assert refire(lifecycle, reaching(2, AT + timedelta(minutes=3))) == [EventKind.UPDATED]


def test_a_resolution_carries_the_latest_firing_not_the_first() -> None:
    """The "back to normal" showed the numbers of the first firing, an hour old, not those
    of the last bucket that fired before it calmed down."""
    lifecycle = AlertBook(timedelta(minutes=30))
    first = surprising(5.0, AT)
    last = surprising(4.5, AT + timedelta(minutes=5))
    lifecycle.observe([first], AT)
    assert lifecycle.observe([last], AT + timedelta(minutes=5)) == []  # weaker: no news
    over = AT + timedelta(minutes=35)
    (event,) = lifecycle.observe([], over)
    assert event.kind is EventKind.RESOLVED and event.at == over
    assert event.alert is last


# -- the incident book's bookkeeping: what it stores, and who it tells -------------------


def test_silencing_an_incident_for_an_hour_keeps_it_silent_for_that_hour() -> None:
    """ "Silence for 1h" from the incident's button must end an hour from now; one that
    ended an hour ago expired at the next round and the incident fired on Slack again."""
    book = IncidentBook(Policy(repeat_after=None))
    opened = fire(book, warning(at=AT, channels=("slack",)))[0].incident
    at = AT + timedelta(minutes=2)
    silence, _ = book.silence_incident(opened.id, "@maria", at, timedelta(hours=1), "s1")
    assert silence.ends_at == at + timedelta(hours=1)
    assert book.advance(at + timedelta(minutes=30)) == []
    assert book.incidents[opened.id].state is State.SILENCED
    assert "s1" in book.silences


def test_an_incident_held_for_quiet_hours_is_announced_once_when_they_end() -> None:
    """Once the quiet hours ended, the incident was announced as opened at every round:
    the book forgot it had announced it."""

    def quiet(rule: str, at: datetime) -> bool:
        return at < AT + timedelta(hours=1)

    book = IncidentBook(Policy(quiet=quiet, repeat_after=None))
    held = fire(book, warning(at=AT, channels=("slack",)))[0].incident
    end = AT + timedelta(hours=1)
    assert kinds(book.advance(end)) == [(NoticeKind.OPENED, "slack")]
    assert book.incidents[held.id].announced_at == end
    assert book.advance(end + timedelta(minutes=1)) == []


def test_a_manual_escalation_is_not_repeated_when_the_first_response_time_passes() -> None:
    """Someone escalated by hand; at the playbook's first-response time the book escalated
    again: the pager was paged twice, with a notice id it had already seen."""
    book = IncidentBook(Policy(repeat_after=None, escalate_to=("pager",)))
    opened = fire(book, alert(at=AT, channels=("slack",)))[0].incident  # 30 min first response
    at = AT + timedelta(minutes=10)
    escalated = book.escalate(opened.id, "@maria", at)
    assert sorted(kinds(escalated)) == [
        (NoticeKind.ESCALATED, "pager"),
        (NoticeKind.ESCALATED, "slack"),
    ]
    assert book.incidents[opened.id].escalated_at == at
    assert book.advance(AT + timedelta(minutes=30)) == []
    assert book.next_due() is None


def test_a_manual_escalation_tells_the_notifiers_of_every_part_muted_ones_included() -> None:
    """A person escalating wants everyone on it: the team of a muted part (explained by the
    critical one) was never told its incident was escalated."""
    book = IncidentBook(Policy(repeat_after=None, escalate_to=("pager",)))
    opened = fire(book, alert(at=AT, channels=("slack",)))[0].incident
    fire(book, warning(at=AT + timedelta(minutes=1), channels=("email",)))  # muted
    escalated = book.escalate(opened.id, "@maria", AT + timedelta(minutes=5))
    assert sorted(kinds(escalated)) == [
        (NoticeKind.ESCALATED, "email"),
        (NoticeKind.ESCALATED, "pager"),
        (NoticeKind.ESCALATED, "slack"),
    ]


def test_silencing_some_parts_of_an_incident_is_no_silenced_notice() -> None:
    """A silence of one rule posted "silenced" for an incident whose other rule still
    fired: people stopped watching a crisis that was not silenced."""
    book = IncidentBook(Policy(repeat_after=None))
    opened = fire(book, warning(at=AT, channels=("slack",)))[0].incident
    fire(
        book,
        warning(rule="negative-share-spike", at=AT + timedelta(minutes=1), channels=("slack",)),
    )
    silence = Silence("s1", AT + timedelta(hours=1), AT, "@maria", rules=("mention-volume-spike",))
    changes = book.silence(silence, AT + timedelta(minutes=2))
    assert len(changes) == 1 and notices(changes) == []
    assert [e.kind for e in changes[0].entries] == ["silenced"]
    assert changes[0].incident.state is State.FIRING
    assert book.incidents[opened.id].state is State.FIRING


def test_silencing_an_incident_never_announced_says_nothing() -> None:
    """An incident held for quiet hours, then silenced: the first anyone heard of it was
    "silenced", for an incident nobody was told had opened."""
    book = IncidentBook(Policy(quiet=lambda rule, at: True, repeat_after=None))
    held = fire(book, warning(at=AT, channels=("slack",)))[0].incident
    silence = Silence("s1", AT + timedelta(hours=1), AT, "@maria", brand="kettlebird")
    changes = book.silence(silence, AT + timedelta(minutes=2))
    assert notices(changes) == []
    assert book.incidents[held.id].state is State.SILENCED


def test_a_part_that_resolves_while_others_fire_sends_nothing() -> None:
    """One rule calming down while the crisis goes on is a timeline entry, not a message."""
    book = IncidentBook(Policy(repeat_after=None))
    a = warning(at=AT, channels=("slack",))
    fire(book, a)
    fire(book, warning(rule="negative-share-spike", at=AT, channels=("slack",)))
    at = AT + timedelta(minutes=30)
    changes = book.observe([AlertEvent(EventKind.RESOLVED, a, at)], at)
    assert notices(changes) == []
    assert [e.kind for e in changes[0].entries] == ["part_resolved"]
    assert changes[0].incident.state is State.FIRING


def test_an_incident_whose_critical_part_resolved_is_no_longer_critical() -> None:
    """The critical alert was over and the incident still showed (and escalated as)
    critical, named after it, while only a warning fired."""
    book = IncidentBook(Policy(repeat_after=None))
    critical = alert(at=AT, channels=("slack",))
    fire(book, critical)
    lesser = warning(rule="mention-volume-spike", at=AT + timedelta(minutes=1))
    fire(book, lesser)
    at = AT + timedelta(minutes=30)
    [change] = book.observe([AlertEvent(EventKind.RESOLVED, critical, at)], at)
    assert change.incident.severity is Severity.WARNING
    assert change.incident.lead.identity == lesser.identity
    part = change.incident.part(lesser.identity)
    assert part is not None and not part.muted_by  # no longer explained by the critical one


def test_the_last_part_resolving_records_that_the_incident_is_over() -> None:
    """The timeline said the last alert was back to normal and never that the incident was
    resolved."""
    book = IncidentBook(Policy(repeat_after=None))
    a = warning(at=AT, channels=("slack",))
    fire(book, a)
    at = AT + timedelta(minutes=30)
    [change] = book.observe([AlertEvent(EventKind.RESOLVED, a, at)], at)
    assert [(e.kind, e.at) for e in change.entries] == [("part_resolved", at), ("resolved", at)]
    assert change.incident.resolved_at == at


def test_a_part_that_fires_again_after_resolving_keeps_when_it_began() -> None:
    """A rule that calmed down and fired again within the incident showed as new, its
    start the second firing's, as if the crisis had just begun."""
    book = IncidentBook(Policy(repeat_after=None))
    a = warning(at=AT, channels=("slack",))
    fire(book, a)
    fire(book, warning(rule="negative-share-spike", at=AT, channels=("slack",)))
    resolved_at = AT + timedelta(minutes=30)
    book.observe([AlertEvent(EventKind.RESOLVED, a, resolved_at)], resolved_at)
    again = warning(at=AT + timedelta(minutes=40), channels=("slack",))
    [change] = fire(book, again)
    part = change.incident.part(a.identity)
    assert part is not None
    assert part.since == AT and part.active and part.latest is again
    assert len(change.incident.parts) == 2


def test_acting_on_an_incident_never_announced_sends_nothing() -> None:
    """An incident held for quiet hours, acknowledged or resolved from its page: the
    channels got "acknowledged" or "resolved" for an incident they never heard of."""
    book = IncidentBook(Policy(quiet=lambda rule, at: True, repeat_after=None))
    held = fire(book, warning(at=AT, channels=("slack",)))[0].incident
    acked = book.acknowledge(held.id, "@maria", AT + timedelta(minutes=1))
    assert notices(acked) == [] and acked[0].incident.acknowledged_by == "@maria"
    resolved = book.resolve(held.id, "@maria", AT + timedelta(minutes=2))
    assert notices(resolved) == [] and resolved[0].incident.state is State.RESOLVED
    assert [e.kind for e in resolved[0].entries] == ["resolved"]


# -- after the opening: what the book says as an incident goes on and ends -----------------
# From a mutation audit of the book's second half (updates, timers, actions, restore): each
# test failed under a mutant that every other test let through.


def test_a_new_peak_is_posted_with_its_numbers_not_as_a_change_of_severity() -> None:
    """A stronger firing of the same severity is "stronger" and its numbers in the thread;
    saying "severity now warning" (or dropping the numbers) tells people nothing."""
    book = IncidentBook(Policy(repeat_after=None))
    a = warning(at=AT, channels=("slack",))
    fire(book, a)
    later = AT + timedelta(minutes=5)
    stronger = dataclasses.replace(a, signal=dataclasses.replace(a.signal, surprise=9.0))
    [change] = book.observe([AlertEvent(EventKind.UPDATED, stronger, later)], later)
    [update] = notices([change])
    said = "mention-volume-spike: stronger, volume 143 (expected 31.0, band 18-47)"
    assert (update.kind, update.text) == (NoticeKind.UPDATED, said)
    assert [(e.kind, e.text) for e in change.entries] == [("peak", said)]


def test_a_part_that_peaks_keeps_its_place_among_the_parts() -> None:
    """The parts are listed in the order they began, whichever one fired last."""
    book = IncidentBook(Policy(repeat_after=None))
    first = warning(at=AT, channels=("slack",))
    fire(book, first)
    second = warning(rule="negative-share-spike", at=AT + timedelta(minutes=1))
    fire(book, second)
    later = AT + timedelta(minutes=5)
    [change] = book.observe([AlertEvent(EventKind.UPDATED, first, later)], later)
    assert [p.identity for p in change.incident.parts] == [first.identity, second.identity]


def test_escalation_is_due_a_first_response_time_after_the_first_critical_part() -> None:
    """A second critical alert must not put off the escalation of the first."""
    book = IncidentBook(Policy(repeat_after=None, escalate_to=("pager",)))
    fire(book, alert(at=AT, channels=("slack",)))  # 30 min first response
    fire(book, alert(rule="product-defect-surge", at=AT + timedelta(minutes=20)))
    assert book.next_due() == AT + timedelta(minutes=30)
    escalated = book.advance(AT + timedelta(minutes=30))
    assert (NoticeKind.ESCALATED, "pager") in kinds(escalated)


def test_an_incident_held_for_quiet_hours_has_no_reminder_due() -> None:
    """Nothing was announced, so nothing is to be repeated: the next timer is the end of
    the quiet hours' round, not a reminder an hour after no announcement."""
    book = IncidentBook(Policy(quiet=lambda rule, at: True, repeat_after=timedelta(hours=1)))
    fire(book, warning(at=AT, channels=("slack",)))
    assert book.next_due() is None


def test_a_warning_s_next_timer_is_its_reminder_as_warnings_never_escalate() -> None:
    book = IncidentBook(Policy(repeat_after=timedelta(hours=1), escalate_to=("pager",)))
    fire(book, warning(at=AT, channels=("slack",)))
    assert book.next_due() == AT + timedelta(hours=1)


def test_escalations_and_reminders_say_why_in_their_notice_and_the_timeline() -> None:
    """The pager's only line of text: an escalation says it was not acknowledged in time,
    a reminder how long the incident has fired."""
    book = IncidentBook(Policy(repeat_after=timedelta(hours=1), escalate_to=("pager",)))
    fire(book, alert(at=AT, channels=("slack",)))  # 30 min first response
    [escalated] = book.advance(AT + timedelta(minutes=30))
    assert {n.text for n in escalated.notices} == {"not acknowledged within 30 min"}
    assert [(e.kind, e.text) for e in escalated.entries] == [
        ("escalated", "not acknowledged within 30 min")
    ]
    [reminded] = book.advance(AT + timedelta(minutes=90))
    assert [n.text for n in reminded.notices] == ["still firing after 90 min, unacknowledged"]
    assert [(e.kind, e.text) for e in reminded.entries] == [("reminder", "reminder sent")]


def test_people_s_actions_are_said_and_in_the_timeline_with_who_did_them() -> None:
    book = IncidentBook(Policy(repeat_after=None, escalate_to=("pager",)))
    opened = fire(book, alert(at=AT, channels=("slack",)))[0].incident
    acts = [
        book.acknowledge(opened.id, "@maria", AT + timedelta(minutes=1)),
        book.escalate(opened.id, "@bob", AT + timedelta(minutes=2)),
        book.resolve(opened.id, "@rita", AT + timedelta(minutes=3)),
    ]
    assert [(e.kind, e.text, e.who) for [change] in acts for e in change.entries] == [
        ("acknowledged", "acknowledged by @maria", "@maria"),
        ("escalated", "escalated by @bob", "@bob"),
        ("resolved", "resolved by @rita", "@rita"),
    ]
    assert [{n.text for n in change.notices} for [change] in acts] == [
        {"acknowledged by @maria"},
        {"escalated by @bob"},
        {"resolved by @rita"},
    ]


def test_resolving_by_hand_ends_the_parts_still_firing_and_keeps_when_the_others_ended() -> None:
    book = IncidentBook(Policy(repeat_after=None))
    calmed = warning(at=AT, channels=("slack",))
    fire(book, calmed)
    firing = warning(rule="negative-share-spike", at=AT, channels=("slack",))
    opened = fire(book, firing)[0].incident
    calm_at = AT + timedelta(minutes=30)
    book.observe([AlertEvent(EventKind.RESOLVED, calmed, calm_at)], calm_at)
    by_hand = AT + timedelta(minutes=40)
    [change] = book.resolve(opened.id, "@maria", by_hand)
    ended = {p.identity: p.resolved_at for p in change.incident.parts}
    assert ended == {calmed.identity: calm_at, firing.identity: by_hand}


def test_an_incident_over_by_itself_says_so_in_its_notice_and_timeline() -> None:
    book = IncidentBook(Policy(repeat_after=None))
    a = warning(at=AT, channels=("slack",))
    fire(book, a)
    over = AT + timedelta(minutes=30)
    [change] = book.observe([AlertEvent(EventKind.RESOLVED, a, over)], over)
    assert [(n.kind, n.text) for n in change.notices] == [(NoticeKind.RESOLVED, "back to normal")]
    assert [e.text for e in change.entries] == [
        "mention-volume-spike: back to normal",
        "every alert is back to normal",
    ]


def test_an_incident_whose_change_became_the_normal_says_so_not_back_to_normal() -> None:
    """A negative share that rose from 10 % to 30 % and stayed: its detector adopted it
    as the normal, the alert ended, and the resolution said "back to normal" while the
    share was still three times what it was. The event says how far the normal moved
    (``AlertEvent.settled``), and the notice and the timeline say it."""
    book = IncidentBook(Policy(repeat_after=None))
    a = alert(severity="warning", at=AT, channels=("slack",))
    fire(book, a)
    over = AT + timedelta(hours=5)
    event = AlertEvent(EventKind.RESOLVED, a, over, since=AT, settled=3.04)
    [change] = book.observe([event], over)
    said = "the negative share has held at 3x its level before, long enough to be its normal now"
    assert [(n.kind, n.text) for n in change.notices] == [(NoticeKind.RESOLVED, said)]
    assert [e.text for e in change.entries] == [
        f"negative-share-spike: {said}",
        f"every alert has ended: {said}",
    ]


def test_a_silence_kept_in_the_store_still_ends_after_a_restart() -> None:
    """A restart forgot the silences it was given back: the silenced incident never came
    back when its silence ended, and new alerts it covered were announced."""
    book = IncidentBook(Policy(repeat_after=None))
    opened = fire(book, warning(at=AT, channels=("slack",)))[0].incident
    silence, [silenced] = book.silence_incident(
        opened.id, "@maria", AT + timedelta(minutes=5), timedelta(hours=1), "s1"
    )
    restored = IncidentBook(Policy(repeat_after=None))
    restored.restore([silenced.incident], [silence])
    assert restored.next_due() == silence.ends_at
    ended = restored.advance(silence.ends_at)
    assert [(n.kind, n.text) for n in notices(ended)] == [(NoticeKind.UPDATED, "silence expired")]
    assert restored.incidents[opened.id].state is State.FIRING
