"""The email notifier against a real SMTP server (aiosmtpd): plain, STARTTLS and TLS.

Every test reads back what the server received: the envelope, the headers, the
text and HTML parts, the inline chart, and how it arrived (TLS, AUTH).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests import factories
from tests.ports import free_port
from tests.smtp_server import Server, self_signed_cert, server_context, smtp_server
from xwatch.alerting import PermanentFailure, TemporaryFailure
from xwatch.alerting.email import EmailNotifier
from xwatch.alerting.incidents import IncidentBook, Notice, NoticeKind, Policy
from xwatch.config import EmailNotifierConfig
from xwatch.errors import ConfigError
from xwatch.model import AlertEvent, EventKind

SENDER = "xwatch <alerts@acme.example>"
TO = ("pr@acme.example", "oncall@acme.example")
BASE = "https://xwatch.acme.example/incidents/"
HEADLINE = "[CRITICAL] kettlebird: negative share 41% (usual 9%)"
PNG = b"\x89PNG\r\n\x1a\n"
USER, PASSWORD = "xwatch", "correct horse battery staple"
ENV = {"SMTP_USER": USER, "SMTP_PASSWORD": PASSWORD}


def config(port: int, **changes: Any) -> EmailNotifierConfig:
    values: dict[str, Any] = {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": SENDER,
        "recipients": TO,
        "timeout_seconds": 10.0,
    }
    return EmailNotifierConfig(**(values | changes))


def notifier(port: int, **changes: Any) -> EmailNotifier:
    return EmailNotifier(config(port, **changes), "pr", None, None, BASE)


def hostile_notice(kind: NoticeKind = NoticeKind.OPENED) -> Notice:
    end = factories.T0 + timedelta(hours=13)
    linked = factories._post("<img src=x onerror=alert(1)> @kettlebird", end, 50_000, "b")
    posts = (
        factories._post("<script>alert(1)</script> my kettlebird caught fire", end, 90_000, "a"),
        dataclasses.replace(linked, url="javascript:alert(1)"),
        factories._post("<!channel> kettlebird\r\nBcc: victim@evil.example", end, 700, "c"),
    )
    return factories.notice(
        kind, channel="pr", alert_=factories.alert(posts=posts, channels=("pr",))
    )


def updated_notice(*, rising: bool) -> Notice:
    """An update from the incident book: a second rule joins a warning incident."""
    book = IncidentBook(Policy())
    first = factories.alert(
        rule="volume-up", severity="warning", measure="volume", channels=("pr",)
    )
    at = first.signal.end
    book.observe([AlertEvent(EventKind.FIRING, first, at)], at)
    later = at + timedelta(minutes=5)
    second = factories.alert(
        rule="share-up", severity="critical" if rising else "warning", channels=("pr",), at=later
    )
    changes = book.observe([AlertEvent(EventKind.FIRING, second, later)], later)
    [made] = [n for c in changes for n in c.notices if n.channel == "pr"]
    assert made.kind is NoticeKind.UPDATED
    return made


def parts(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


def html_of(message: EmailMessage) -> str:
    body = message.get_body(("html",))
    assert isinstance(body, EmailMessage)
    content = body.get_content()
    assert isinstance(content, str)
    return content


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    content = body.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def subject_of(message: EmailMessage) -> str:
    """The Subject as a mail client shows it (unfolded, without the space after the colon:
    Python's parser keeps it when the header was folded right after ``Subject:``)."""
    return str(message["Subject"]).strip()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts the test certificate (and nothing else)."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest_asyncio.fixture
async def plain() -> AsyncIterator[Server]:
    async with smtp_server() as server:
        yield server


@pytest.mark.asyncio
async def test_an_opened_incident_is_one_message_with_text_html_and_the_chart(
    plain: Server,
) -> None:
    notice = hostile_notice()
    await notifier(plain.port).send(notice)

    [received] = plain.received
    assert received.sender == "alerts@acme.example"
    assert received.recipients == list(TO)
    assert not received.tls and not received.authenticated
    message = received.message
    assert subject_of(message) == HEADLINE
    assert message["To"] == ", ".join(TO)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == "<xwatch.kettlebird-20261116-130000.pr@acme.example>"
    assert message["In-Reply-To"] is None
    # related [alternative [text, html], chart], as mail clients expect
    assert parts(message) == [
        "multipart/related",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "image/png",
    ]
    assert message.get_param("type") == "multipart/alternative"

    text = text_of(message)
    assert text.startswith("Opened: Negative share spike\n" + HEADLINE + "\n")
    assert '"<script>alert(1)</script> my kettlebird caught fire"' in text
    assert "Negative share: 41% now, usually 9%" in text
    assert "Emerging terms: exploded, refund" in text
    assert "http://127.0.0.1:9464/playbooks/complaint-wave" in text
    assert BASE + "kettlebird-20261116-130000" in text

    html = html_of(message)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; my kettlebird caught fire" in html
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<!channel>" not in html
    assert "&lt;!channel&gt; kettlebird Bcc: victim@evil.example" in html
    assert "javascript:" not in html  # a post link that is not http(s) is dropped
    assert '<a href="https://x.com/user_a/status/a"' in html
    assert f'<a href="{BASE}kettlebird-20261116-130000"' in html

    [image] = [p for p in message.walk() if p.get_content_type() == "image/png"]
    content_id = image["Content-ID"]
    assert content_id.startswith("<") and content_id.endswith(">")
    assert f'<img src="cid:{content_id[1:-1]}"' in html
    assert image.get_content_disposition() == "inline"
    assert image.get_content().startswith(PNG)

    # the CR/LF in a post never made a header
    assert message["Bcc"] is None
    assert "victim" not in str(message.get_all("Bcc"))


@pytest.mark.asyncio
async def test_a_brand_with_a_line_break_cannot_inject_a_header(plain: Server) -> None:
    hostile = factories.alert(brand="acme\r\nBcc: victim@evil.example", channels=("pr",))
    await notifier(plain.port).send(factories.notice(channel="pr", alert_=hostile))

    [received] = plain.received
    message = received.message
    assert received.recipients == list(TO)
    assert message["Bcc"] is None
    assert subject_of(message) == (
        "[CRITICAL] acme Bcc: victim@evil.example: negative share 41% (usual 9%)"
    )
    assert "\n" not in message["Message-ID"] and "\n" not in message["X-Xwatch-Incident"]


@pytest.mark.asyncio
async def test_follow_ups_thread_under_the_opening_message(plain: Server) -> None:
    email = notifier(plain.port)
    await email.send(hostile_notice(NoticeKind.OPENED))
    await email.send(hostile_notice(NoticeKind.RESOLVED))

    opened, resolved = (r.message for r in plain.received)
    root = opened["Message-ID"]
    assert resolved["In-Reply-To"] == root
    assert resolved["References"] == root
    assert resolved["Message-ID"] not in (None, root)
    assert subject_of(resolved) == f"{HEADLINE} | Resolved: resolved by @maria"
    assert text_of(resolved).startswith("Resolved: resolved by @maria\n")
    # a notice sent again (after a crash) has the same Message-ID: receivers can drop it
    again = email.message(hostile_notice(NoticeKind.RESOLVED), None)
    assert again["Message-ID"] == resolved["Message-ID"]


@pytest.mark.asyncio
async def test_email_sends_what_calls_for_action_and_skips_the_chatter(plain: Server) -> None:
    email = notifier(plain.port)
    cases = [
        (factories.notice(NoticeKind.ESCALATED, channel="pr"), True),
        (factories.notice(NoticeKind.ACKNOWLEDGED, channel="pr"), True),
        (factories.notice(NoticeKind.SILENCED, channel="pr"), False),
        (updated_notice(rising=True), True),
        (updated_notice(rising=False), False),
    ]
    for notice, sent in cases:
        before = len(plain.received)
        await email.send(notice)
        assert len(plain.received) == before + sent, (notice.kind, notice.text)
    subjects = [subject_of(r.message) for r in plain.received]
    assert subjects[0].endswith("| Escalated: escalated by @maria")
    assert subjects[1].endswith("| Acknowledged: acknowledged by @maria")
    assert subjects[2].startswith("[CRITICAL] kettlebird: ")
    assert subjects[2].endswith("| Updated: severity now critical")


@pytest.mark.asyncio
async def test_without_the_chart_the_message_is_text_and_html(plain: Server) -> None:
    await notifier(plain.port, chart=False).send(hostile_notice())

    message = plain.received[0].message
    assert parts(message) == ["multipart/alternative", "text/plain", "text/html"]
    assert "cid:" not in html_of(message)


@pytest.mark.asyncio
async def test_a_post_url_that_is_no_url_is_shown_as_text(plain: Server) -> None:
    """A post's url is anyone's text: one that does not parse ("https://[kettlebird")
    made the message impossible to build, and the channel retried it for a day."""
    [sample] = hostile_notice().incident.parts[0].latest.bucket.samples[:1]
    post = dataclasses.replace(sample, url="https://[kettlebird")
    alert = factories.alert(posts=(post,), channels=("pr",))
    await notifier(plain.port, chart=False).send(factories.notice(channel="pr", alert_=alert))

    html = html_of(plain.received[0].message)
    assert "https://[kettlebird" not in html  # not a link: its text only
    assert "caught fire" in html


@pytest.mark.asyncio
async def test_starttls_with_credentials_from_the_environment(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the system trust store, extended the way operators do it for a private CA
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    tls = server_context(*certificate)
    async with smtp_server(tls=tls, credentials=(USER, PASSWORD)) as server:
        secured = config(
            server.port,
            security="starttls",
            username_env="SMTP_USER",
            password_env="SMTP_PASSWORD",
        )
        email = EmailNotifier.from_config("pr", secured, incident_url_base=BASE, env=ENV)
        await email.send(hostile_notice())

    [received] = server.received
    assert received.tls and received.authenticated
    assert subject_of(received.message) == HEADLINE
    assert PASSWORD not in repr(email)


@pytest.mark.asyncio
async def test_implicit_tls(certificate: tuple[Path, Path], trusting: ssl.SSLContext) -> None:
    async with smtp_server(implicit_tls=server_context(*certificate)) as server:
        secured = config(server.port, security="tls")
        await EmailNotifier(secured, "pr", None, None, BASE, tls_context=trusting).send(
            hostile_notice()
        )

    [received] = server.received
    assert received.tls
    assert subject_of(received.message) == HEADLINE


@pytest.mark.asyncio
async def test_an_untrusted_certificate_is_not_accepted(certificate: tuple[Path, Path]) -> None:
    untrusting = ssl.create_default_context()  # the system store: not our self-signed cert
    async with smtp_server(implicit_tls=server_context(*certificate)) as server:
        secured = config(server.port, security="tls")
        email = EmailNotifier(secured, "pr", None, None, BASE, tls_context=untrusting)
        with pytest.raises(TemporaryFailure, match="CERTIFICATE_VERIFY_FAILED"):
            await email.send(hostile_notice())
    assert server.received == []


@pytest.mark.asyncio
async def test_starttls_missing_on_the_server_is_permanent(plain: Server) -> None:
    with pytest.raises(PermanentFailure, match="STARTTLS"):
        await notifier(plain.port, security="starttls").send(hostile_notice())
    assert plain.received == []


@pytest.mark.asyncio
async def test_bad_credentials_are_permanent() -> None:
    async with smtp_server(credentials=(USER, PASSWORD)) as server:
        wrong = {"SMTP_USER": USER, "SMTP_PASSWORD": "hunter2-wrong"}
        with_auth = config(server.port, username_env="SMTP_USER", password_env="SMTP_PASSWORD")
        email = EmailNotifier.from_config("pr", with_auth, incident_url_base=BASE, env=wrong)
        with pytest.raises(PermanentFailure, match="535") as failure:
            await email.send(hostile_notice())
    assert "hunter2-wrong" not in str(failure.value)
    assert server.received == []


@pytest.mark.asyncio
async def test_a_refused_connection_is_temporary() -> None:
    with pytest.raises(TemporaryFailure, match=r"SMTP 127\.0\.0\.1"):
        await notifier(free_port()).send(hostile_notice())


@pytest_asyncio.fixture
async def mute_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word."""
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    done.set()
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_a_server_that_does_not_answer_times_out_temporarily(mute_server: int) -> None:
    with pytest.raises(TemporaryFailure, match="Timeout"):
        await notifier(mute_server, timeout_seconds=0.2).send(hostile_notice())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("reply", "failure"),
    [("550 5.1.1 no such user", PermanentFailure), ("451 4.3.0 try later", TemporaryFailure)],
)
async def test_every_recipient_refused(reply: str, failure: type[Exception]) -> None:
    async with smtp_server(refuse=dict.fromkeys(TO, reply)) as server:
        with pytest.raises(failure, match=reply.split()[0]):
            await notifier(server.port).send(hostile_notice())
    assert server.received == []


@pytest.mark.asyncio
async def test_some_recipients_refused_the_others_get_it(caplog: pytest.LogCaptureFixture) -> None:
    async with smtp_server(refuse={TO[1]: "550 5.1.1 no such user"}) as server:
        with caplog.at_level(logging.WARNING, logger="xwatch.alerting.email"):
            await notifier(server.port).send(hostile_notice())

    [received] = server.received
    assert received.recipients == [TO[0]]
    assert f"{TO[1]}: 550" in caplog.text


def test_secrets_come_from_the_variables_the_config_names() -> None:
    named = config(25, username_env="SMTP_USER", password_env="SMTP_PASSWORD")
    with pytest.raises(ConfigError, match="SMTP_PASSWORD is not set"):
        EmailNotifier.from_config("pr", named, incident_url_base=BASE, env={"SMTP_USER": USER})
    half = config(25, username_env="SMTP_USER")
    with pytest.raises(ConfigError, match="both username_env and password_env"):
        EmailNotifier.from_config("pr", half, incident_url_base=BASE, env=ENV)
    anonymous = EmailNotifier.from_config("pr", config(25), incident_url_base=BASE, env={})
    assert anonymous.name == "pr"
