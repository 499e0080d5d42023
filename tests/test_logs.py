"""Structured logs: JSON lines and logfmt, one event per line, no secrets, no post texts."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from xwatch import logs
from xwatch.alerting.incidents import Notice
from xwatch.cli import build_parser
from xwatch.daemon import Daemon
from xwatch.settings import load_settings

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LOGFMT_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


def parse_logfmt(line: str) -> dict[str, str]:
    """A logfmt line back into its pairs (quoted values unescaped)."""
    pairs: dict[str, str] = {}
    pos = 0
    for found in LOGFMT_PAIR.finditer(line):
        assert line[pos : found.start()].strip() == "", f"junk in {line!r} at {pos}"
        key, value = found.groups()
        if value.startswith('"'):
            value = json.loads(value)  # logfmt's escapes are JSON's
        pairs[key] = value
        pos = found.end()
    assert line[pos:].strip() == ""
    return pairs


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of its own whose records go to a buffer (the formatter is the test's)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger = logging.getLogger("xwatch.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, buffer, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


@pytest.fixture
def root_handler() -> Iterator[io.StringIO]:
    """``logs.configure`` on the root logger into a buffer; the root is put back after."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    try:
        yield buffer
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def test_json_lines_carry_time_level_logger_message_and_fields(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, buffer, handler = capture
    handler.setFormatter(logs.JsonFormatter(logs.Redactor()))
    logger.info(
        "alert %s: %s",
        "firing",
        "product-defect-surge",
        extra={
            "event": "alert_firing",
            "brand": "kettlebird",
            "rule": "product-defect-surge",
            "alert": "product-defect-surge:kettlebird/:up",
            "likelihood": 0.9999,
            "observed": 7,
            "warming_up": False,
        },
    )
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logger.exception("checkpoint failed", extra={"event": "checkpoint_failed"})

    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2  # one event per line, a traceback included
    first, second = (json.loads(line) for line in lines)
    assert RFC3339_UTC.fullmatch(first["ts"])
    assert first["level"] == "info"
    assert first["logger"] == "xwatch.test_logs"
    assert first["msg"] == "alert firing: product-defect-surge"
    assert first["event"] == "alert_firing"
    assert (first["brand"], first["rule"]) == ("kettlebird", "product-defect-surge")
    assert first["alert"] == "product-defect-surge:kettlebird/:up"
    assert (first["likelihood"], first["observed"], first["warming_up"]) == (0.9999, 7, False)
    assert second["level"] == "error"
    assert "Traceback" in second["exc"] and "RuntimeError: boom\nsecond line" in second["exc"]


def test_logfmt_quotes_and_escapes_so_that_an_event_stays_on_one_line(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, buffer, handler = capture
    handler.setFormatter(logs.LogfmtFormatter(logs.Redactor()))
    message = 'she said "it smokes"\nthen\tleft \\ now'
    logger.warning(
        message,
        extra={
            "brand": "kettlebird",
            "detail": "a=b c",
            "empty": "",
            "ctrl": "bell\x07",
            "none": None,
            "flag": True,
        },
    )

    (line,) = buffer.getvalue().splitlines()
    assert line.startswith("ts=")
    assert " level=warning logger=xwatch.test_logs msg=" in line
    assert "brand=kettlebird" in line  # bare when nothing needs quoting
    pairs = parse_logfmt(line)
    assert RFC3339_UTC.fullmatch(pairs["ts"])
    assert pairs["msg"] == message
    assert pairs["detail"] == "a=b c"
    assert pairs["empty"] == ""
    assert pairs["ctrl"] == "bell\x07"
    assert (pairs["none"], pairs["flag"]) == ("null", "true")


def test_logfmt_values() -> None:
    assert logs.logfmt_value("kettlebird") == "kettlebird"
    assert logs.logfmt_value('say "hi"') == r'"say \"hi\""'
    assert logs.logfmt_value("two\nlines") == r'"two\nlines"'
    assert logs.logfmt_value("") == '""'
    assert logs.logfmt_value(0.5) == "0.5"


def test_secrets_are_redacted_from_messages_fields_and_tracebacks(
    root_handler: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "AAAAx7Fq-secret-bearer-token-3fa9c1"
    hook = "hook-secret-71c2"
    monkeypatch.setenv("XWATCH_X_BEARER_TOKEN", token)  # found by its name
    monkeypatch.setenv("XWATCH_HOOK", hook)  # named by the config
    logs.configure("debug", "json", stream=root_handler)
    logs.add_secret_env("XWATCH_HOOK")
    log = logging.getLogger("xwatch.test_logs.secrets")

    log.info("connecting with %s", token, extra={"detail": f"token={token}", "hook": hook})
    log.warning("request headers: {'Authorization': 'Bearer xyz', 'User-Agent': 'xwatch'}")
    log.warning("curl -H 'Authorization: Basic dXNlcjpwYXNz' https://api.example")
    log.warning("retrying with Bearer xyz")
    log.warning("HTTP 401 Unauthorized; check the bearer token in $XWATCH_X_BEARER_TOKEN")
    try:
        raise ValueError(f"bad signature for secret {hook}")
    except ValueError:
        log.exception("webhook failed")

    output = root_handler.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) == 6
    assert token not in output and hook not in output
    assert "Bearer xyz" not in output and "dXNlcjpwYXNz" not in output
    assert lines[0]["msg"] == "connecting with [REDACTED]"
    assert lines[0]["hook"] == "[REDACTED]"
    assert "Authorization': '[REDACTED]'" in lines[1]["msg"]
    assert "'User-Agent': 'xwatch'" in lines[1]["msg"]  # only the credential goes
    assert lines[3]["msg"] == "retrying with Bearer [REDACTED]"
    # words about tokens are not credentials
    assert lines[4]["msg"].endswith("check the bearer token in $XWATCH_X_BEARER_TOKEN")
    assert "bad signature for secret [REDACTED]" in lines[5]["exc"]


def test_short_values_of_secret_looking_variables_are_left_alone() -> None:
    redactor = logs.Redactor()
    redactor.add_from_env({"SOME_TOKEN_COUNT": "3", "XWATCH_LOG_FORMAT": "json"})
    assert redactor("3 posts, json") == "3 posts, json"


def test_excerpt_is_one_short_line() -> None:
    text = "my kettle\nmelted " + "very " * 40 + "badly"
    cut = logs.excerpt(text)
    assert "\n" not in cut and len(cut) == logs.EXCERPT_CHARS and cut.endswith("…")
    assert logs.excerpt("short") == "short"


def test_level_and_format_come_from_the_command_line_then_the_environment() -> None:
    assert logs.resolve(None, None, {}) == ("info", "text")
    env = {logs.LEVEL_ENV: "DEBUG", logs.FORMAT_ENV: "json"}
    assert logs.resolve(None, None, env) == ("debug", "json")
    assert logs.resolve("warning", "text", env) == ("warning", "text")
    assert logs.resolve(None, "logfmt", {}) == ("info", "text")
    with pytest.raises(logs.LogSettingsError, match="XWATCH_LOG_FORMAT"):
        logs.resolve(None, None, {logs.FORMAT_ENV: "xml"})
    with pytest.raises(logs.LogSettingsError, match="XWATCH_LOG_LEVEL"):
        logs.resolve(None, None, {logs.LEVEL_ENV: "loud"})


def test_log_options_go_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--log-format", "json", "--log-level", "debug", "run"])
    assert (before.log_format, before.log_level) == ("json", "debug")
    after = parser.parse_args(["check", "--log-format", "JSON"])
    assert after.log_format == "json"
    absent = parser.parse_args(["run"])
    assert (absent.log_format, absent.log_level) == (None, None)


class RecordingNotifier:
    def __init__(self) -> None:
        self.name = "console"
        self.notices: list[Notice] = []

    async def send(self, notice: Notice) -> None:
        self.notices.append(notice)


@pytest.mark.asyncio
async def test_alerts_are_logged_with_their_ids_and_post_texts_only_at_debug(
    project: Path, root_handler: io.StringIO
) -> None:
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace("port: 9464", "port: 0")
    text = re.sub(r"speed: 30000.*", "speed: 0", text)
    config.write_text(text, "utf-8")
    logs.configure("debug", "json", stream=root_handler)
    notifier = RecordingNotifier()
    daemon = Daemon(load_settings(config), notifiers={"console": notifier}, exit_when_done=True)
    await asyncio.wait_for(daemon.run(), 60)

    records = [json.loads(line) for line in root_handler.getvalue().splitlines()]
    firing = [p.first for n in notifier.notices for p in n.incident.parts]
    assert firing, "the demo's crisis fired nothing"
    logged = {r["alert"]: r for r in records if r.get("event") == "alert_firing"}
    for alert in firing:
        record = logged[alert.identity]
        assert record["level"] == "info"
        assert record["rule"] == alert.rule_id
        assert record["brand"] == alert.series.brand
        assert record["severity"] == alert.severity.value
    assert any(r.get("event") == "alert_resolved" for r in records)

    texts = {post.text for a in firing for post in a.bucket.samples if len(post.text) > 20}
    assert texts
    above_debug = "\n".join(
        json.dumps(r, ensure_ascii=False) for r in records if r["level"] != "debug"
    )
    for post_text in texts:
        assert logs.excerpt(post_text, 30)[:-1] not in above_debug
    evidence = [r for r in records if r.get("event") == "alert_evidence"]
    assert evidence and all(r["level"] == "debug" for r in evidence)
    assert all(len(r["msg"].rsplit(": ", 1)[1]) <= logs.EXCERPT_CHARS for r in evidence)


def test_xwatch_logs_json_lines_when_the_environment_says_so(project: Path, tmp_path: Path) -> None:
    replay = tmp_path / "tiny.jsonl"
    replay.write_text(
        '{"id": "1", "text": "kettlebird", "created_at": "2026-11-16T09:00:00Z"}\n{broken\n',
        "utf-8",
    )
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace("port: 9464", "port: 0")
    text = re.sub(r"- type: demo\n\s+speed: 30000.*", f"- type: replay\n    path: {replay}", text)
    config.write_text(text, "utf-8")
    env = {**os.environ, logs.FORMAT_ENV: "json", logs.LEVEL_ENV: "info"}
    command = [sys.executable, "-m", "xwatch", "run", "-c", str(config), "--exit-when-done"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    events = {r.get("event") for r in records}
    assert {"serving", "source_ended", "stopped"} <= events
    rejected = next(r for r in records if r.get("event") == "payload_rejected")
    assert (rejected["source"], rejected["reason"], rejected["level"]) == (
        "replay",
        "not_json",
        "warning",
    )

    bad = {**env, logs.FORMAT_ENV: "xml"}
    refused = subprocess.run(command, capture_output=True, text=True, env=bad, timeout=60)
    assert refused.returncode == 2
    assert "XWATCH_LOG_FORMAT" in refused.stderr
