"""The incident page and the incident list, as self-contained HTML (no JavaScript at all).

``/incidents/<id>`` shows, side by side, what the on-call manager needs to act:

* the live context: the headline and state, what fired with its numbers, the negative
  share now against its usual level, the emerging terms, the chart, the posts with the
  most reach, the timeline (every state change, and who made it) and the deliveries
  (which notifier was told, and whether it worked);
* the incident's playbook, rendered from its Markdown;
* the same actions as the Slack buttons (Acknowledge, Silence 1h, Resolve, Escalate):
  one plain POST form with a "your name" field and the page's CSRF token; each button
  posts to its own action (``formaction``). A resolved incident has no buttons.

Everything here is a pure function from records to a string; ``xwatch.web_incidents``
serves it. The page shows text written by strangers (posts, terms), so:

* every data string goes through ``html.escape`` (after ``render.clean`` drops control
  and bidi characters, which could make a post read as something else);
* links from data (post URLs) are made only for http(s) URLs, with
  ``rel="noopener noreferrer nofollow"``; anything else is shown as text or not at all;
* the playbook's Markdown is rendered with raw HTML disabled (markdown-it's
  ``html: False``, which also refuses ``javascript:`` links), so neither a playbook nor
  a post can add markup;
* the page is served with ``CONTENT_SECURITY_POLICY``, which forbids scripts altogether:
  a mistake in the escaping still could not run code.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from urllib.parse import quote, urlsplit

from markdown_it import MarkdownIt

from xwatch.alerting.incidents import Entry, Incident, State
from xwatch.alerting.render import clean
from xwatch.alerting.service import Delivery, IncidentRecord
from xwatch.alerting.summary import Summary, share_when, summarize
from xwatch.model import utc
from xwatch.playbooks import Playbook

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
POST_CHARS = 1000  # a post's text is cut after this many characters
URL_CHARS = 2000  # longer URLs are not linked

# Raw HTML off: "<script>" in a playbook is shown as text. Tables on: playbooks use them.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")

_STYLE = """
body{font-family:system-ui,Arial,sans-serif;font-size:15px;color:#101828;margin:0 auto;
max-width:1400px;padding:16px 24px;line-height:1.45}
a{color:#175cd3}
h1{font-size:22px;margin:4px 0}
h2{font-size:17px;margin:20px 0 6px;border-bottom:1px solid #eaecf0;padding-bottom:4px}
table{border-collapse:collapse;width:100%;margin:4px 0 8px}
th,td{text-align:left;vertical-align:top;padding:4px 8px;border-bottom:1px solid #eaecf0}
th{background:#f9fafb;font-weight:600}
.muted{color:#475467}
.sev-critical{color:#b42318}.sev-warning{color:#b54708}.sev-info{color:#175cd3}
.state{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;
background:#eaecf0}
.state-firing{background:#fee4e2;color:#b42318}
.state-acknowledged{background:#fef0c7;color:#93370d}
.state-silenced{background:#eaecf0;color:#344054}
.state-resolved{background:#d1fadf;color:#05603a}
.columns{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:32px}
@media (max-width:1000px){.columns{grid-template-columns:minmax(0,1fr)}}
form.actions{background:#f9fafb;border:1px solid #eaecf0;border-radius:6px;padding:10px;
margin:12px 0}
form.actions input[type=text]{padding:4px 6px;margin-right:8px}
form.actions button{padding:5px 12px;margin-right:6px;cursor:pointer}
blockquote{margin:4px 0 0;padding:4px 10px;border-left:3px solid #d0d5dd;
white-space:pre-wrap;overflow-wrap:anywhere}
ul.posts{padding-left:18px}ul.posts li{margin-bottom:10px}
img.chart{max-width:100%;height:auto;border:1px solid #eaecf0}
.playbook{overflow-wrap:anywhere}
"""


def render_incident(
    record: IncidentRecord, playbook: Playbook | None, *, incident_url: str, action_token: str
) -> str:
    """The whole page of one incident (``incident_url``: its address, shown as a permalink;
    ``action_token``: the CSRF token its forms carry)."""
    incident = record.incident
    summary = summarize(incident, incident_url)
    body = [
        '<p class="muted"><a href="/incidents/">All incidents</a></p>',
        _header(summary, incident),
        _actions(incident, action_token),
        '<div class="columns"><main>',
        _numbers(summary),
        _chart(incident),
        _posts(summary),
        _timeline(record.timeline),
        _deliveries(record.deliveries),
        "</main><aside>",
        _playbook(playbook, summary),
        "</aside></div>",
    ]
    return _page(f"{summary.headline} · xwatch", "\n".join(body))


def render_incident_list(incidents: Iterable[Incident], *, older_open: str | None = None) -> str:
    """The incident list: open incidents first, then the others; newest first in each.
    ``older_open``: the last open incident listed when more are open (a link to them)."""
    ordered = sorted(incidents, key=lambda i: (not i.is_open, -utc(i.opened_at).timestamp()))
    rows = "".join(
        "<tr>"
        f"<td>{_state(i.state)}</td>"
        f'<td class="sev-{_e(i.severity.value)}">{_e(i.severity.value)}</td>'
        f"<td>{_e(i.brand)}</td>"
        f'<td><a href="{_incident_path(i.id)}">{_e(i.title)}</a><br>'
        f'<span class="muted">{_e(i.id)}</span></td>'
        f"<td>{_time(i.opened_at)}</td>"
        f"<td>{_time(i.resolved_at) if i.resolved_at else ''}</td>"
        "</tr>"
        for i in ordered
    )
    if not rows:
        table = '<p class="muted">No incidents yet.</p>'
    else:
        table = (
            "<table><tr><th>State</th><th>Severity</th><th>Brand</th><th>Incident</th>"
            f"<th>Opened</th><th>Resolved</th></tr>{rows}</table>"
        )
    if older_open is not None:
        older = f"/incidents/?before={quote(older_open, safe='')}"
        table += f'\n<p><a href="{_e(older)}">More open incidents, older ones</a></p>'
    return _page("Incidents · xwatch", f"<h1>Incidents</h1>\n{table}")


def render_message(title: str, text: str, *, incident_id: str = "") -> str:
    """A short page that explains a refusal (unknown incident, wrong token, ...)."""
    back = (
        f'<p><a href="{_incident_path(incident_id)}">Back to the incident</a></p>'
        if incident_id
        else ""
    )
    return _page(
        f"{title} · xwatch",
        f"<h1>{_e(title)}</h1>\n<p>{_e(text, POST_CHARS)}</p>\n{back}"
        '<p><a href="/incidents/">All incidents</a></p>',
    )


# -- the parts of the incident page -------------------------------------------------------


def _header(summary: Summary, incident: Incident) -> str:
    facts = [_state(incident.state)]
    if incident.state is not State.FIRING:  # "firing since" would repeat "opened"
        facts.append(_e(summary.status_line))
    facts += [
        f"incident {_e(incident.id)}",
        f"opened {_time(incident.opened_at)}",
        f"updated {_time(incident.updated_at)}",
    ]
    if incident.escalated_at is not None:
        facts.append(f"escalated {_time(incident.escalated_at)}")
    return (
        f'<h1 class="sev-{_e(summary.severity)}">{_e(summary.headline, POST_CHARS)}</h1>\n'
        f"<p><b>{_e(summary.title)}</b></p>\n"
        f"<p>{' · '.join(facts)} · {_link(summary.incident_url, 'permalink')}</p>"
    )


def _actions(incident: Incident, token: str) -> str:
    if not incident.is_open:
        return '<p class="muted">This incident is resolved: there is nothing left to do.</p>'
    path = _incident_path(incident.id)
    # The first button is what Enter in the name field does: Acknowledge, or nothing once
    # acknowledged (a disabled default button submits nothing).
    if incident.state is State.ACKNOWLEDGED or incident.acknowledged_by:
        acknowledge = '<button type="submit" disabled>Acknowledged</button>'
    else:
        acknowledge = f'<button type="submit" formaction="{path}/acknowledge">Acknowledge</button>'
    buttons = [
        acknowledge,
        f'<button type="submit" formaction="{path}/silence">Silence 1h</button>',
        f'<button type="submit" formaction="{path}/resolve">Resolve</button>',
        f'<button type="submit" formaction="{path}/escalate">Escalate</button>',
    ]
    return (
        f'<form class="actions" method="post" action="{path}/acknowledge">'
        f'<input type="hidden" name="token" value="{_e(token)}">'
        '<label>Your name <input type="text" name="who" required maxlength="80" '
        'autocomplete="name"></label>' + "".join(buttons) + "</form>"
    )


def _numbers(summary: Summary) -> str:
    rows = "".join(
        "<tr>"
        f'<td class="sev-{_e(p.severity)}">{_e(p.severity)}</td>'
        f'<td>{_e(p.title)}<br><span class="muted">{_e(p.rule_id)}</span></td>'
        f"<td>{_e(p.what, POST_CHARS)}</td>"
        f"<td>{p.likelihood:.5f}</td>"
        f"<td>{_time(p.since)}</td>"
        f"<td>{_e(p.status)}</td>"
        "</tr>"
        for p in summary.parts
    )
    out = [
        "<h2>What fired</h2>",
        "<table><tr><th>Severity</th><th>Alert</th><th>Numbers</th><th>Likelihood</th>"
        f"<th>Since</th><th>Status</th></tr>{rows}</table>",
    ]
    if summary.negative_share is not None and summary.usual_share is not None:
        out.append(
            f"<p>Negative share: <b>{summary.negative_share:.0%}</b> {share_when(summary)}, "
            f"usually {summary.usual_share:.0%}</p>"
        )
    if summary.terms:
        terms = ", ".join(f"<b>{_e(t, 60)}</b>" for t in summary.terms)
        out.append(f"<p>Emerging terms: {terms}</p>")
    return "\n".join(out)


def _chart(incident: Incident) -> str:
    if not incident.lead.latest.history:  # no history: the chart would be a 404
        return ""
    return (
        f'<img class="chart" src="{_incident_path(incident.id)}/chart.png" width="800" '
        'height="420" alt="Mentions and negative share over the last hours">'
    )


def _posts(summary: Summary) -> str:
    if not summary.posts:
        return ""
    items = []
    for post in summary.posts:
        about = [f"{post.followers:,} followers"]
        if post.sentiment:
            about.append(_e(post.sentiment))
        about.append(_time(post.created_at))
        link = f" · {_link(post.url, 'open the post')}" if post.url and _is_web(post.url) else ""
        items.append(
            f"<li><b>@{_e(post.handle, 60)}</b> "
            f'<span class="muted">({", ".join(about)}){link}</span>'
            f"<blockquote>{_e(post.text, POST_CHARS)}</blockquote></li>"
        )
    return '<h2>Posts with the most reach</h2>\n<ul class="posts">' + "".join(items) + "</ul>"


def _timeline(entries: Sequence[Entry]) -> str:
    rows = "".join(
        f"<tr><td>{_time(e.at)}</td><td>{_e(e.kind)}</td><td>{_e(e.text, POST_CHARS)}</td>"
        f"<td>{_e(e.who)}</td></tr>"
        for e in entries
    )
    if not rows:
        return '<h2>Timeline</h2>\n<p class="muted">Nothing recorded yet.</p>'
    return (
        "<h2>Timeline</h2>\n<table><tr><th>When</th><th>What</th><th>Detail</th><th>Who</th>"
        f"</tr>{rows}</table>"
    )


def _deliveries(deliveries: Sequence[Delivery]) -> str:
    rows = "".join(
        f"<tr><td>{_e(d.channel)}</td><td>{_e(d.kind)}</td><td>{_e(d.state)}</td>"
        f"<td>{d.attempts}</td><td>{_e(d.last_error, 300)}</td><td>{_time(d.created_at)}</td>"
        f"<td>{_time(d.delivered_at) if d.delivered_at else ''}</td></tr>"
        for d in deliveries
    )
    if not rows:
        return '<h2>Notifications</h2>\n<p class="muted">No notification sent yet.</p>'
    return (
        "<h2>Notifications</h2>\n<table><tr><th>Notifier</th><th>Notice</th><th>State</th>"
        "<th>Attempts</th><th>Last error</th><th>Created</th><th>Delivered</th></tr>"
        f"{rows}</table>"
    )


def _playbook(playbook: Playbook | None, summary: Summary) -> str:
    if playbook is None:
        return (
            "<h2>Playbook</h2>\n"
            f"<p>{_link(summary.playbook_url, summary.playbook_title)} "
            '<span class="muted">(not loaded in this daemon)</span></p>'
        )
    meta = playbook.meta
    return (
        f"<h2>Playbook: {_e(meta.title)}</h2>\n"
        f'<p class="muted">Owner: {_e(meta.owner)} · first response within '
        f"{meta.first_response_minutes} min · "
        f'<a href="/playbooks/{quote(meta.id, safe="")}">Markdown</a></p>\n'
        f'<div class="playbook">{_MARKDOWN.render(playbook.body)}</div>'
    )


# -- helpers -----------------------------------------------------------------------------


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(title, 300)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _state(state: State) -> str:
    return f'<span class="state state-{_e(state.value)}">{_e(state.value)}</span>'


def _incident_path(incident_id: str) -> str:
    """The page's path, quoted for a URL and escaped for an attribute."""
    return html.escape("/incidents/" + quote(incident_id, safe=""), quote=True)


def _time(at: datetime) -> str:
    return f"{utc(at):%Y-%m-%d %H:%M} UTC"


def _e(text: str, limit: int = 200) -> str:
    """Untrusted text as one line of escaped HTML."""
    return html.escape(clean(text, limit), quote=True)


def _is_web(url: str) -> bool:
    if len(url) > URL_CHARS:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _link(url: str | None, text: str) -> str:
    """A link when ``url`` is http(s); otherwise only the (escaped) text."""
    if url is None or not _is_web(url):
        return _e(text)
    return (
        f'<a href="{html.escape(url, quote=True)}" rel="noopener noreferrer nofollow">'
        f"{_e(text)}</a>"
    )
