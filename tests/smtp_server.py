"""A real SMTP server for tests (aiosmtpd), in the test's own event loop, on a free port.

``smtp_server()`` serves plain SMTP, STARTTLS (with ``tls=``) or implicit TLS (with
``implicit_tls=``), optionally with AUTH (``credentials=``), and records every
message it accepts with how it arrived (TLS or not, authenticated or not). A
recipient listed in ``refuse`` is answered with its reply (``"550 5.1.1 no such
user"``). ``self_signed_cert`` makes a certificate for 127.0.0.1 with ``openssl``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    tls: bool
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    """The aiosmtpd handler: refuses what it is told to, records the rest."""

    refuse: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content
        assert isinstance(content, bytes) and envelope.mail_from is not None
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                content,
                tls=server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 2.0.0 accepted"


@dataclass
class Server:
    port: int
    recorder: Recorder

    @property
    def received(self) -> list[Received]:
        return self.recorder.received


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 and localhost, valid for a day."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "these tests need the openssl command to make a certificate"
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@asynccontextmanager
async def smtp_server(
    *,
    tls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    credentials: tuple[str, str] | None = None,
    refuse: dict[str, str] | None = None,
) -> AsyncIterator[Server]:
    """``tls``: offer (and require) STARTTLS; ``implicit_tls``: TLS from the first byte;
    ``credentials``: require AUTH with this login and password (over TLS when there is
    TLS, over plain text otherwise)."""
    recorder = Recorder(refuse=dict(refuse or {}))

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            credentials is not None
            and isinstance(data, LoginPassword)
            and (data.login.decode(), data.password.decode()) == credentials
        )
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535 on failure

    secure = tls is not None or implicit_tls is not None

    def protocol() -> SMTP:
        return SMTP(
            recorder,
            hostname="localhost",
            tls_context=tls,
            require_starttls=tls is not None,
            authenticator=authenticator if credentials is not None else None,
            # required over TLS; over plain text, offered but not required (aiosmtpd
            # warns about requiring AUTH without TLS, and a client that logs in is enough)
            auth_required=credentials is not None and secure,
            auth_require_tls=secure,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", 0, ssl=implicit_tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Server(port, recorder)
    finally:
        server.close()
        await server.wait_closed()
