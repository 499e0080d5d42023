"""Alerting: the lifecycle of alerts, their rendering, and one module per notifier.

A notifier is anything with a ``name`` and ``async send(event)``; it is told
about every alert event routed to it (an alert's ``channels`` name notifiers).
"""

from __future__ import annotations

from typing import Protocol

from xwatch.model import AlertEvent


class Notifier(Protocol):
    name: str

    async def send(self, event: AlertEvent) -> None: ...
