"""The console notifier: notices as readable text on a stream (stdout by default).

An incident's opening (and its reminders and escalation) prints the whole alert:
what fired, the numbers, the posts, the playbook, and the incident page. Other
notices print two lines: what happened, and the incident's headline.
"""

from __future__ import annotations

import sys
from typing import TextIO

from xwatch.alerting.incidents import Notice, NoticeKind
from xwatch.alerting.render import clean, render_text
from xwatch.alerting.summary import headline
from xwatch.model import AlertEvent, EventKind

IN_FULL = (NoticeKind.OPENED, NoticeKind.REMINDER, NoticeKind.ESCALATED)


def render_notice(notice: Notice, incident_url: str = "") -> str:
    incident = notice.incident
    title = f"INCIDENT {incident.id} {notice.kind.value.upper()}: {clean(notice.text)}"
    link = f"  incident    {incident_url}\n" if incident_url else ""
    if notice.kind not in IN_FULL:
        return f"{title}\n  {clean(headline(incident))}\n{link}"
    lead = incident.lead
    text = render_text(AlertEvent(EventKind.FIRING, lead.latest, notice.at))
    others = [
        f"  also        {clean(p.latest.title)} ({p.latest.rule_id}, "
        f"{'muted: explained by the critical alert' if p.muted_by else 'firing'})"
        for p in incident.parts
        if p is not lead and p.active
    ]
    return "\n".join([title, text.rstrip("\n"), *others]) + "\n" + link


class ConsoleNotifier:
    def __init__(
        self, name: str = "console", stream: TextIO | None = None, incident_url_base: str = ""
    ) -> None:
        self.name = name
        self.stream = stream
        self.incident_url_base = incident_url_base

    async def send(self, notice: Notice) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        url = f"{self.incident_url_base}{notice.incident.id}" if self.incident_url_base else ""
        stream.write(render_notice(notice, url) + "\n")
        stream.flush()
