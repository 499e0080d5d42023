"""Structured logs: one event per line, as JSON or logfmt, with secrets redacted.

Every record goes out as one line on stderr with its time (RFC 3339, UTC), level,
logger and message, plus the structured fields the call passed in ``extra``::

    log.info("alert firing: ...", extra={"event": "alert_firing", "brand": "kettlebird"})

``json``  {"ts":"2026-11-20T13:05:00.123Z","level":"info","logger":"xwatch.daemon",
           "msg":"alert firing: ...","event":"alert_firing","brand":"kettlebird"}
``text``  ts=2026-11-20T13:05:00.123Z level=info logger=xwatch.daemon msg="alert firing: ..."
          event=alert_firing brand=kettlebird

(``text`` is logfmt: values with spaces, quotes, ``=`` or control characters are quoted,
and quotes, backslashes and newlines escaped, so an event never spans two lines.)

Secrets never reach the output: the values of secret-looking environment variables
(``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ...) and of the variables the config names
(``add_secret_env``) are replaced by ``[REDACTED]`` wherever they appear (message,
fields, tracebacks), and so are ``Authorization:`` header values and ``Bearer <token>``
credentials, as a safety net. Post texts are logged at debug level only, cut short
with ``excerpt``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
LEVEL_ENV = "XWATCH_LOG_LEVEL"
FORMAT_ENV = "XWATCH_LOG_FORMAT"
REDACTED = "[REDACTED]"

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.IGNORECASE
)
"""Environment variables whose values are secrets, by name."""
MIN_SECRET_CHARS = 6
"""Shorter values of secret-looking variables are not redacted (they would mangle the logs)."""
MIN_NAMED_SECRET_CHARS = 4
"""The same for the variables the config names explicitly."""
EXCERPT_CHARS = 80

# The attributes every LogRecord has; whatever else is on a record came from ``extra``.
_RECORD_ATTRS = frozenset(
    {*vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)), "message", "asctime"}
) | {"taskName"}
_OWN_KEYS = ("ts", "level", "logger", "msg")
_PATTERNS = (
    # an Authorization header's value, whatever its scheme: "Authorization: Basic abc=="
    (
        re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,;}]+"),
        r"\1" + REDACTED,
    ),
    # a bearer credential anywhere ("bearer token" as words is left alone)
    (
        re.compile(r"(?i)\b(bearer)\s+(?!tokens?\b)[A-Za-z0-9\-._~+/%=]+"),
        r"\1 " + REDACTED,
    ),
    # credentials in a URL's query string or user info
    (
        re.compile(r"(?i)([?&](?:access_token|token|password|secret|api_key|key)=)[^&\s\"']+"),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+(@)"), r"\1" + REDACTED + r"\2"),
)


class Redactor:
    """Replaces known secret values and credential-looking patterns in a string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *values: str) -> None:
        new = {v for v in values if v and v not in self._secrets}
        if not new:
            return
        self._secrets |= new
        ordered = sorted(self._secrets, key=len, reverse=True)  # the longest first
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def add_from_env(self, environ: Mapping[str, str], names: Iterable[str] | None = None) -> None:
        """Secrets from the environment: the variables ``names`` (when given) or, without
        them, every variable whose name looks like a secret's."""
        if names is None:
            found = [
                value.strip()
                for name, value in environ.items()
                if SECRET_NAME.search(name) and len(value.strip()) >= MIN_SECRET_CHARS
            ]
        else:
            found = [
                value.strip()
                for name in names
                if len(value := environ.get(name, "").strip()) >= MIN_NAMED_SECRET_CHARS
            ]
        self.add(*found)

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


REDACTOR = Redactor()
"""The one the formatters use unless given another; ``configure`` and ``add_secret_env``
fill it."""


def add_secret_env(*names: str, environ: Mapping[str, str] | None = None) -> None:
    """Redact the values of these environment variables (e.g. the config's
    ``bearer_token_env``) from every log line from now on."""
    REDACTOR.add_from_env(os.environ if environ is None else environ, names)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A post text for a debug line: one line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a call passed in ``extra``, in the order it gave them."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and k[:1] != "_"}


def _timestamp(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Structured(logging.Formatter):
    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor if redactor is not None else REDACTOR

    def items(self, record: logging.LogRecord) -> list[tuple[str, Any]]:
        """Everything one line says, in order, with every string redacted."""
        redact = self.redactor
        items: list[tuple[str, Any]] = [
            ("ts", _timestamp(record)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", redact(record.getMessage())),
        ]
        for key, value in fields_of(record).items():
            if key in _OWN_KEYS:
                key = f"field_{key}"
            items.append((key, _plain(value, redact)))
        if record.exc_info:
            items.append(("exc", redact(self.formatException(record.exc_info))))
        elif record.exc_text:
            items.append(("exc", redact(record.exc_text)))
        if record.stack_info:
            items.append(("stack", redact(self.formatStack(record.stack_info))))
        return items


def _plain(value: Any, redact: Redactor) -> Any:
    """A field's value as JSON can carry it: numbers, booleans and None as they are."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, redact) for v in value]
    return redact(str(value))


class JsonFormatter(_Structured):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            dict(self.items(record)), ensure_ascii=False, separators=(",", ":"), default=str
        )


_BARE = re.compile(r"[^\s\"=\\\x00-\x1f\x7f]+")
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(r"[\\\"\x00-\x1f\x7f]")


def logfmt_value(value: Any) -> str:
    """A value as logfmt writes it: bare when it can be, else quoted and escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    escaped = _NEEDS_ESCAPE.sub(lambda m: _ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), text)
    return f'"{escaped}"'


class LogfmtFormatter(_Structured):
    """``key=value`` pairs, one event per line (the ``text`` format)."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            f"{_KEY_CHARS.sub('_', key) or '_'}={logfmt_value(value)}"
            for key, value in self.items(record)
        )


def formatter(fmt: str, redactor: Redactor | None = None) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(redactor)
    if fmt in ("text", "logfmt"):
        return LogfmtFormatter(redactor)
    raise ValueError(f"log format must be one of {', '.join(FORMATS)} (found {fmt!r})")


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class LogSettingsError(ValueError):
    """A log level or format that does not exist."""


def resolve(
    level: str | None, fmt: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """The level and format to use: the command line's, else the environment's, else
    ``info`` and ``text``. Raises ``LogSettingsError`` naming the variable for a bad value."""
    env = os.environ if environ is None else environ
    level = (level or env.get(LEVEL_ENV, "").strip() or "info").lower()
    fmt = (fmt or env.get(FORMAT_ENV, "").strip() or "text").lower()
    if level not in LEVELS:
        raise LogSettingsError(
            f"{LEVEL_ENV}: the log level must be one of {', '.join(LEVELS)} (found {level!r})"
        )
    if fmt == "logfmt":
        fmt = "text"
    if fmt not in FORMATS:
        raise LogSettingsError(
            f"{FORMAT_ENV}: the log format must be one of {', '.join(FORMATS)} (found {fmt!r})"
        )
    return level, fmt


def configure(
    level: str = "info",
    fmt: str = "text",
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send every log record (xwatch's and its libraries') to stderr, or ``stream``, in
    ``fmt`` from ``level`` up; learn the secrets to redact from the environment.

    Replaces the handler a previous call installed and leaves any other alone.
    """
    REDACTOR.add_from_env(os.environ if environ is None else environ)
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt))
    handler.set_name("xwatch")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "xwatch"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
