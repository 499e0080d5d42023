"""Alerting: the lifecycle of alerts, incidents, their rendering, and one module per notifier.

    lifecycle.py   one alert per identity: firing, stronger (updated), resolved
    incidents.py   alerts grouped into incidents; silences, reminders, escalation, actions
    summary.py     what every notifier says about an incident, as plain data
    render.py      plain text (console, logs)
    chart.py       the PNG chart of an incident's brand: volume and negative share
    codec.py       records as JSON and back (the store)
    console.py, slack.py, email.py, webhook.py: the notifiers
    (durable delivery, written before sending, retried and marked when done, is the
    daemon's ``_deliver`` with the store's ``outbox`` table)

A notifier is anything with a ``name`` and ``async send(notice)``: it is told about
every notice routed to it (``Notice.channel`` is its name). It raises
``TemporaryFailure`` for what is worth retrying (a 5xx, a 429 with its Retry-After,
a network error) and ``PermanentFailure`` for what is not (an invalid channel, a
revoked token); anything else counts as temporary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from xwatch.alerting.incidents import Notice
from xwatch.errors import ConfigError, Problem, XwatchError


class Notifier(Protocol):
    name: str

    async def send(self, notice: Notice) -> None: ...


class DeliveryError(XwatchError):
    """A notification could not be delivered."""


class TemporaryFailure(DeliveryError):
    """Worth retrying; after ``retry_after`` seconds when the far end said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFailure(DeliveryError):
    """Not worth retrying: the notification is marked failed and the metric counts it."""


class MessageRefs(Protocol):
    """Where a notifier remembers what it sent for an incident (Slack: the message's
    channel and ts, so that updates go in its thread and edit it), kept in the store
    so that it survives a restart."""

    async def get(self, channel: str, incident_id: str) -> dict[str, str] | None: ...

    async def put(self, channel: str, incident_id: str, ref: dict[str, str]) -> None: ...


class MemoryRefs:
    """``MessageRefs`` in a dict: for tests and for a daemon without a store."""

    def __init__(self) -> None:
        self.refs: dict[tuple[str, str], dict[str, str]] = {}

    async def get(self, channel: str, incident_id: str) -> dict[str, str] | None:
        return self.refs.get((channel, incident_id))

    async def put(self, channel: str, incident_id: str, ref: dict[str, str]) -> None:
        self.refs[(channel, incident_id)] = dict(ref)


def env_secret(env: Mapping[str, str], variable: str, missing: str) -> str:
    """A notifier's secret from the environment variable its config names.

    Unset or blank is a ``ConfigError``: "<variable> is not set" followed by ``missing``
    (what the notifier needs it for). The value is never part of a message.
    """
    value = env.get(variable, "")
    if not value.strip():
        raise ConfigError([Problem("environment", 0, f"{variable} is not set{missing}")])
    return value
