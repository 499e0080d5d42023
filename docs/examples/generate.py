"""Rendered examples of what xwatch sends, from the bundled demo's crisis (for the README).

    .venv/bin/python docs/examples/generate.py     (or: make examples)

Replays the demo week through the same pipeline and incident book the daemon uses,
takes the first incident (the Friday product-defect crisis), and writes what each
notifier would send for it, rendered by the notifiers' own code:

    console.txt            the console notifier's text
    slack-message.json     the Slack message (Block Kit; paste the blocks into Slack's
                           Block Kit Builder to see it) as first posted
    slack-message.md       the same message drawn in Markdown, for the README
    email.txt, email.html  the email's text and HTML parts (the subject on the first line)
    incident-page.html     the incident page, acknowledged, with its timeline
    incident-chart.png     the chart that goes with all of them
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from xwatch.alerting.chart import incident_chart
from xwatch.alerting.console import render_notice
from xwatch.alerting.email import html_body, subject, text_body
from xwatch.alerting.incidents import Entry, IncidentBook, Notice, NoticeKind
from xwatch.alerting.service import Delivery, IncidentRecord
from xwatch.alerting.slack import blocks
from xwatch.alerting.summary import summarize
from xwatch.backtest import replay_file
from xwatch.daemon import incident_policy
from xwatch.incident_page import render_incident
from xwatch.settings import load_settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEMO = ROOT / "xwatch" / "demo" / "demo.jsonl.gz"
URL = "http://127.0.0.1:9464/incidents/"


def first_incident_notices() -> tuple[list[Notice], list[Entry]]:
    """The first incident's notices (opened, then acknowledged 4 minutes later) and its
    timeline, as the daemon would make them on the demo."""
    settings = load_settings(None, default_base=ROOT)
    events = asyncio.run(replay_file(settings, DEMO))
    book = IncidentBook(incident_policy(settings))
    notices: list[Notice] = []
    entries: list[Entry] = []
    incident_id = ""
    for event in events:
        for change in book.observe([event], event.at):
            if not incident_id:
                incident_id = change.incident.id
            if change.incident.id == incident_id:
                notices.extend(n for n in change.notices if n.channel == "console")
                entries.extend(change.entries)
        if incident_id and event.at > notices[0].at + timedelta(minutes=3):
            break
    at = notices[0].at + timedelta(minutes=4)
    for change in book.acknowledge(incident_id, "@maria (PR on call)", at):
        notices.extend(n for n in change.notices if n.channel == "console")
        entries.extend(change.entries)
    return notices, entries


def slack_markdown(message: dict[str, Any]) -> str:
    """The Block Kit message drawn as a Markdown quote (Slack's *bold* is Markdown's **)."""

    def md(text: str) -> str:
        text = re.sub(r"<([^|>]+)\|([^>]+)>", r"[\2](\1)", text)  # <url|label> links
        text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"**\1**", text)
        return text.replace("\n>", "<br>▎ ").replace("\n", "<br>")

    lines = []
    for block in message["blocks"]:
        kind = block["type"]
        if kind == "header":
            lines.append(f"**{block['text']['text']}**")
        elif kind == "section" and "fields" in block:
            lines.append(" · ".join(md(f["text"]).replace("<br>", " ") for f in block["fields"]))
        elif kind == "section":
            menu = block.get("accessory")
            shown = f" `[ {menu['placeholder']['text']} ▾ ]`" if menu else ""
            lines.append(md(block["text"]["text"]) + shown)
        elif kind == "context":
            lines.append("<sub>" + " ".join(md(e["text"]) for e in block["elements"]) + "</sub>")
        elif kind == "actions":
            lines.append(" ".join(f"`[ {e['text']['text']} ]`" for e in block["elements"]))
    return "\n>\n".join("> " + line for line in lines) + "\n"


def render() -> tuple[str, dict[str, str | bytes]]:
    """The demo's first incident id, and each example file's name and content."""
    notices, entries = first_incident_notices()
    opened = next(n for n in notices if n.kind is NoticeKind.OPENED)
    latest = notices[-1]
    url = URL + opened.incident.id
    summary = summarize(opened.incident, url)
    files: dict[str, str | bytes] = {"console.txt": render_notice(opened, url)}
    # as a daemon with a store sends it: each post has its label menu
    message = {"text": summary.headline, "blocks": blocks(summary, opened, labels=True)}
    files["slack-message.json"] = json.dumps(message, indent=2, ensure_ascii=False) + "\n"
    files["slack-message.md"] = slack_markdown(message)
    files["email.txt"] = f"Subject: {subject(opened, summary)}\n\n{text_body(opened, summary)}"
    html = html_body(opened, summary, "incident-chart.png")  # inline in a mail: cid:
    files["email.html"] = html.replace("cid:incident-chart.png", "incident-chart.png")
    deliveries = tuple(
        Delivery(n.id, "slack", n.kind.value, "delivered", 1, "", n.at, n.at) for n in notices
    )
    record = IncidentRecord(latest.incident, tuple(entries), deliveries)
    settings = load_settings(None, default_base=ROOT)
    page = render_incident(
        record,
        settings.playbooks.get(latest.incident.playbook.id),
        incident_url=URL + latest.incident.id,
        action_token="example-token",
    )
    files["incident-page.html"] = page
    chart = incident_chart(opened.incident)
    assert chart is not None
    files["incident-chart.png"] = chart
    return opened.incident.id, files


def main() -> None:
    incident, files = render()
    for name, content in files.items():
        if isinstance(content, bytes):
            (HERE / name).write_bytes(content)
        else:
            (HERE / name).write_text(content, "utf-8")
    print(f"wrote the examples of incident {incident} to {HERE}")


if __name__ == "__main__":
    main()
