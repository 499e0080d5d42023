"""The email notifier: one mail thread per incident, as text and HTML with the chart inline.

Each notice becomes one message (aiosmtplib) to the notifier's ``recipients``; routes
pick notifiers, so per-route recipients are one email notifier per audience (``pr``,
``execs``...). It says what Slack says (``xwatch.alerting.summary``): the headline,
what fired, the negative share now against usual, the emerging terms, the posts with
the most reach, the playbook and the incident page.

Which notices
-------------
Email is not a chat: people read it later and act on it, so it gets the notices that
change what someone should do, and not the running commentary:

* ``opened``, ``escalated``, ``reminder``: someone has to act;
* ``updated`` only when the incident's severity rose (a warning became critical):
  its new parts and new peaks are in the Slack thread and on the incident page;
* ``acknowledged``: someone owns it, the others can stop scrambling;
* ``resolved``: it is over, which closes the thread;
* not ``silenced``: a silence is a deliberate "stop telling us"; the resolution still
  comes.

The other notices are accepted and dropped (``send`` returns: there is nothing to retry).

The message
-----------
``multipart/related`` holding ``multipart/alternative`` (text/plain, then text/html)
and the chart as an inline PNG that the HTML shows by ``cid:``: the layout mail
clients expect. The HTML has inline CSS only, no scripts, and every text that came
from a post or a rule is escaped (``html.escape``); links are kept only when they are
http(s). The subject starts with the headline so that an inbox sorts by severity then
brand (``[CRITICAL] acme: negative share 41% (usual 9%)``); follow-ups add what happened
(``... | Resolved: back to normal``). Header values are reduced to one line without
control characters, so a CR/LF in a post or a term can never add a header.

Threading: the ``opened`` message's Message-ID is derived from the incident id and
this notifier's name (``<xwatch.acme-20261116-130500.pr@example.com>``, the domain
taken from ``sender``); every later message has its own id derived from the notice id
and points at that one with ``In-Reply-To`` and ``References``, so clients that thread
by references show one thread per incident (clients that also compare subjects, such
as Gmail, show follow-ups on their own: we keep the informative subject). The ids are
deterministic: a notice retried after a crash carries the same Message-ID, and
receivers that drop duplicate ids drop it. ``Date`` is the notice's time;
``Auto-Submitted: auto-generated`` keeps out-of-office replies away.

Delivery
--------
``security``: ``starttls`` (required, never opportunistic), ``tls`` (implicit TLS,
usually port 465) or ``none`` (a local relay only: credentials would travel in clear).
Certificates are verified against the system's trust store (``SSL_CERT_FILE`` points
it at another bundle, e.g. one with a private CA). The username and password come
from the environment variables ``username_env`` and ``password_env`` name.

A refused connection, a timeout, a dropped connection, a TLS error (an expired or
untrusted certificate can be fixed while the outbox retries) or a 4xx answer is a
``TemporaryFailure``; a 5xx answer (535 bad credentials, 550 unknown recipient, 554
refused) or a server without the STARTTLS or AUTH the config asks for is a
``PermanentFailure``. When only some recipients are refused the others got it: the
refusals are logged and the notice counts as delivered (a retry would mail the others
twice).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape
from urllib.parse import quote, urlsplit

import aiosmtplib

from xwatch.alerting import PermanentFailure, TemporaryFailure, env_secret
from xwatch.alerting.chart import incident_chart
from xwatch.alerting.incidents import SEVERITY_ROSE, Notice, NoticeKind
from xwatch.alerting.render import clean
from xwatch.alerting.summary import Summary, notice_line, share_when, summarize
from xwatch.config import EmailNotifierConfig
from xwatch.errors import ConfigError, Problem

log = logging.getLogger("xwatch.alerting.email")

ALWAYS_SENT = frozenset(
    {
        NoticeKind.OPENED,
        NoticeKind.ESCALATED,
        NoticeKind.REMINDER,
        NoticeKind.ACKNOWLEDGED,
        NoticeKind.RESOLVED,
    }
)
SUBJECT_CHARS = 250
POST_CHARS = 500
SEVERITY_COLOURS = {"critical": "#b42318", "warning": "#b54708", "info": "#175cd3"}

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def emails(notice: Notice) -> bool:
    """Whether email tells people about this notice (see the module's docstring)."""
    if notice.kind in ALWAYS_SENT:
        return True
    return notice.kind is NoticeKind.UPDATED and notice.text.startswith(SEVERITY_ROSE)


class EmailNotifier:
    def __init__(
        self,
        config: EmailNotifierConfig,
        name: str,
        username: str | None,
        password: str | None,
        incident_url_base: str,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """``tls_context``: how to verify the server (default: the system's trust store)."""
        self.name = name
        self.config = config
        self.incident_url_base = incident_url_base
        self._username = username
        self._password = password
        self._tls_context = tls_context
        self._domain = _domain(config.sender)

    @classmethod
    def from_config(
        cls,
        name: str,
        config: EmailNotifierConfig,
        *,
        incident_url_base: str,
        env: Mapping[str, str] = os.environ,
    ) -> EmailNotifier:
        if (config.username_env is None) != (config.password_env is None):
            raise ConfigError(
                [Problem("config", 0, f"notifiers.{name}: set both username_env and password_env")]
            )
        username = _secret(env, name, config.username_env, "SMTP username")
        password = _secret(env, name, config.password_env, "SMTP password")
        return cls(config, name, username, password, incident_url_base)

    def __repr__(self) -> str:  # never show the credentials
        return f"EmailNotifier(name={self.name!r}, host={self.config.host!r})"

    async def send(self, notice: Notice) -> None:
        if not emails(notice):
            log.debug("%s: %s notices are not emailed", self.name, notice.kind.value)
            return
        chart = await self._chart(notice)
        message = self.message(notice, chart)
        config = self.config
        where = f"SMTP {config.host}:{config.port}"
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                username=self._username,
                password=self._password,
                use_tls=config.security == "tls",
                start_tls=config.security == "starttls",
                tls_context=self._tls_context,
                timeout=config.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if all(400 <= r.code < 500 for r in exc.recipients):
                raise TemporaryFailure(f"{where}: every recipient deferred: {detail}") from None
            raise PermanentFailure(f"{where}: every recipient refused: {detail}") from None
        except aiosmtplib.SMTPResponseException as exc:  # auth, sender, data, greeting
            text = f"{where}: {exc.code} {exc.message}"
            if 500 <= exc.code < 600:
                raise PermanentFailure(text) from None
            raise TemporaryFailure(text) from None
        except (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPTimeoutError,
            OSError,  # TLS errors too: a certificate can be renewed, the outbox retries
            TimeoutError,
        ) as exc:
            raise TemporaryFailure(f"{where}: {type(exc).__name__}: {exc}") from None
        except aiosmtplib.SMTPException as exc:  # no STARTTLS, no AUTH: the config's fault
            raise PermanentFailure(f"{where}: {exc.message}") from None
        if refused:
            log.warning(
                "%s: %s refused some recipients: %s",
                self.name,
                where,
                "; ".join(f"{to}: {r.code} {r.message}" for to, r in refused.items()),
                extra={"event": "email_recipients_refused", "notifier": self.name},
            )

    async def _chart(self, notice: Notice) -> bytes | None:
        if not self.config.chart:
            return None
        try:
            return await asyncio.to_thread(incident_chart, notice.incident)
        except Exception:  # an alert without its chart beats no alert
            log.exception("%s: the chart of %s failed", self.name, notice.incident.id)
            return None

    def message(self, notice: Notice, chart: bytes | None) -> EmailMessage:
        """The message for ``notice`` (with ``chart``, a PNG, inline when given)."""
        incident = notice.incident
        summary = summarize(incident, self.incident_url_base + quote(incident.id, safe=""))
        root = self._message_id(f"{incident.id}.{self.name}")
        message = EmailMessage()
        message["Subject"] = subject(notice, summary)
        message["From"] = self.config.sender
        message["To"] = ", ".join(self.config.recipients)
        message["Date"] = format_datetime(notice.at)
        if notice.kind is NoticeKind.OPENED:
            message["Message-ID"] = root
        else:
            message["Message-ID"] = self._message_id(notice.id)
            message["In-Reply-To"] = root
            message["References"] = root
        message["Auto-Submitted"] = "auto-generated"
        message["X-Xwatch-Incident"] = _header_safe(incident.id)
        message["X-Xwatch-Notice"] = _header_safe(notice.id)
        message.set_content(text_body(notice, summary))
        if chart is None:
            message.add_alternative(html_body(notice, summary, None), subtype="html")
            return message
        # multipart/related [multipart/alternative [text, html], the chart]: the stdlib
        # will not turn an alternative into a related, so the text goes in first
        cid = self._message_id(f"chart.{notice.id}")
        message.make_related()
        message.set_param("type", "multipart/alternative")  # RFC 2387: the root part's type
        [first] = message.iter_parts()
        first.add_alternative(html_body(notice, summary, cid), subtype="html")
        message.add_related(
            chart, "image", "png", cid=cid, disposition="inline", filename="chart.png"
        )
        return message

    def _message_id(self, local: str) -> str:
        return f"<xwatch.{_ID_UNSAFE.sub('-', local.replace('/', '.'))}@{self._domain}>"


def subject(notice: Notice, summary: Summary) -> str:
    """The headline (sorts by severity, then brand), then what happened for follow-ups."""
    text = summary.headline
    if notice.kind is not NoticeKind.OPENED:
        text = f"{text} | {notice_line(notice)}"
    return clean(text, SUBJECT_CHARS)


def text_body(notice: Notice, summary: Summary) -> str:
    lines = [
        clean(notice_line(notice), POST_CHARS),
        clean(summary.headline, POST_CHARS),
        clean(summary.status_line, POST_CHARS),
        "",
        "What fired:",
    ]
    for part in summary.parts:
        lines.append(
            f"  - [{part.severity}] {clean(part.title)} ({part.status}): {clean(part.what)}, "
            f"likelihood {part.likelihood:.5f}"
        )
    share = _share(summary)
    if share:
        lines += ["", share]
    if summary.terms:
        lines += ["", "Emerging terms: " + ", ".join(clean(t, 60) for t in summary.terms)]
    if summary.posts:
        lines += ["", "Posts with the most reach:"]
        for post in summary.posts:
            about = f"{post.followers:,} followers" + (
                f", {post.sentiment}" if post.sentiment else ""
            )
            lines.append(
                f'  - @{clean(post.handle, 60)} ({about}): "{clean(post.text, POST_CHARS)}"'
            )
            if post.url:
                lines.append(f"    {clean(post.url)}")
    lines += [
        "",
        f"Playbook: {clean(summary.playbook_title)}",
        f"  {clean(summary.playbook_url)}",
        f"Incident: {clean(summary.incident_url)}",
        "",
        f"-- xwatch, incident {summary.incident_id}",
    ]
    return "\n".join(lines) + "\n"


def html_body(notice: Notice, summary: Summary, chart_cid: str | None) -> str:
    """The same as ``text_body`` in HTML: inline CSS, every text escaped, no scripts."""
    colour = SEVERITY_COLOURS.get(summary.severity, "#344054")
    cell = "padding:4px 8px;border-bottom:1px solid #eaecf0;vertical-align:top"
    parts = "".join(
        f'<tr><td style="{cell}"><b>{_e(p.severity)}</b></td>'
        f'<td style="{cell}">{_e(p.title)}<br><span style="color:#475467">{_e(p.what)}, '
        f"likelihood {p.likelihood:.5f}</span></td>"
        f'<td style="{cell}">{_e(p.status)}</td></tr>'
        for p in summary.parts
    )
    html = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>',
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#101828">',
        f'<p style="margin:0 0 4px;color:#475467">{_e(notice_line(notice), POST_CHARS)}</p>',
        f'<h2 style="margin:0 0 4px;font-size:18px;color:{colour}">'
        f"{_e(summary.headline, POST_CHARS)}</h2>",
        f'<p style="margin:0 0 12px">{_e(summary.status_line)}</p>',
        '<table style="border-collapse:collapse;margin-bottom:12px">',
        parts,
        "</table>",
    ]
    share = _share(summary)
    if share:
        html.append(f'<p style="margin:0 0 8px">{_e(share)}</p>')
    if summary.terms:
        terms = ", ".join(f"<b>{_e(t, 60)}</b>" for t in summary.terms)
        html.append(f'<p style="margin:0 0 8px">Emerging terms: {terms}</p>')
    if chart_cid is not None:
        html.append(
            f'<p><img src="cid:{_e(chart_cid.strip("<>"))}" width="640" '
            'alt="Mentions and negative share over the last hours" '
            'style="max-width:100%;border:1px solid #eaecf0"></p>'
        )
    if summary.posts:
        html.append('<h3 style="margin:12px 0 4px;font-size:15px">Posts with the most reach</h3>')
        html.append('<ul style="margin:0 0 12px;padding-left:20px">')
        for post in summary.posts:
            about = f"{post.followers:,} followers" + (
                f", {post.sentiment}" if post.sentiment else ""
            )
            link = f" {_link(post.url, 'open')}" if post.url else ""
            html.append(
                f'<li style="margin-bottom:6px"><b>@{_e(post.handle, 60)}</b> ({_e(about)})'
                f"{link}<br>&ldquo;{_e(post.text, POST_CHARS)}&rdquo;</li>"
            )
        html.append("</ul>")
    html += [
        f'<p style="margin:0 0 4px">Playbook: '
        f"{_link(summary.playbook_url, summary.playbook_title)}</p>",
        f'<p style="margin:0 0 4px">Incident: {_link(summary.incident_url, summary.incident_id)}'
        "</p>",
        "</body></html>",
    ]
    return "\n".join(html) + "\n"


def _share(summary: Summary) -> str:
    if summary.negative_share is None or summary.usual_share is None:
        return ""
    share, usual, when = summary.negative_share, summary.usual_share, share_when(summary)
    return f"Negative share: {share:.0%} {when}, usually {usual:.0%}"


def _e(text: str, limit: int = 200) -> str:
    """Untrusted text as one line of escaped HTML."""
    return escape(clean(text, limit), quote=True)


def _link(url: str, text: str) -> str:
    """A link when ``url`` is http(s); otherwise only the (escaped) text."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # "https://[kettlebird": no URL, whatever a post said
        return _e(text)
    if scheme not in ("http", "https"):
        return _e(text)
    return f'<a href="{_e(url, 2000)}" style="color:#175cd3">{_e(text)}</a>'


def _header_safe(value: str) -> str:
    return clean(value, SUBJECT_CHARS)


def _domain(sender: str) -> str:
    domain = _ID_UNSAFE.sub("-", sender.rpartition("@")[2].strip(" >"))
    return domain or "xwatch.invalid"


def _secret(env: Mapping[str, str], name: str, variable: str | None, what: str) -> str | None:
    if variable is None:
        return None
    return env_secret(env, variable, f" (or empty); the email notifier {name!r} needs its {what}")
