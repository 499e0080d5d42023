"""Bad input, fuzzed with hypothesis, end to end: signed requests to a running daemon's
``POST /ingest`` over real HTTP.

Each example sends one hostile body (random bytes, deep or huge JSON, wrong types,
invalid UTF-8, control characters, a 1 MB text, timestamps from year 1 to 9999) and
then one good post. What must hold for every example: the daemon answers (never a
500, never a dropped connection) and keeps running; a refusal is counted under the
reason it names; and the good post behind it reaches its brand's series on time.

The daemon runs on its own event loop in a thread, for the whole module, so that
hypothesis can drive it from a plain (synchronous) test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from xwatch.daemon import Daemon
from xwatch.errors import PayloadError
from xwatch.settings import load_settings
from xwatch.sources.webhook import sign

SECRET = "fuzz-secret"
BRAND = "kettlebird"
DAY_LESS = timedelta(hours=23, minutes=59)  # the widest UTC offset a datetime takes


class DaemonThread:
    """A daemon on its own event loop in a thread; ``error`` is what ended it, if anything."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="daemon", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.daemon.run()

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> DaemonThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.daemon.web_url is None:
            assert self.thread.is_alive(), f"the daemon did not start: {self.error!r}"
            assert time.monotonic() < deadline, "the daemon did not serve in time"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.daemon.stop.set)
        self.thread.join(10)

    def sample(self, name: str, **labels: str) -> float:
        value = self.daemon.registry.get_sample_value(name, labels)
        return value if value is not None else 0.0


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonThread]:
    folder = tmp_path_factory.mktemp("fuzz")
    config = folder / "fuzz.yaml"
    config.write_text(
        f"brands:\n  - id: {BRAND}\n    name: Kettlebird\n    terms: [{BRAND}]\n"
        "sources:\n  - type: webhook\n"
        "server:\n  host: 127.0.0.1\n  port: 0\n"
        "store:\n  enabled: false\n"
        f"rules_dir: {ROOT / 'rules'}\n"
        f"playbooks_dir: {ROOT / 'playbooks'}\n"
        "notifiers:\n  console: {type: console}\n",
        "utf-8",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XWATCH_WEBHOOK_SECRET", SECRET)
        daemon = Daemon(load_settings(config))
    with DaemonThread(daemon) as thread:
        # a daemon that has seen live data: its event time is now. (A post from year 1
        # as a fresh daemon's first would have started every series there: it is refused,
        # see test_a_post_from_the_far_past_is_refused_and_counted.)
        first = json.dumps({"id": "first", "text": f"{BRAND} hello", "created_at": now_iso()})
        assert post(first.encode(), daemon.web_url or "")[0] == 202
        yield thread
    assert thread.error is None, f"the daemon died: {thread.error!r}"


def post(body: bytes, url: str) -> tuple[int, dict[str, Any]]:
    now = int(time.time())
    request = urllib.request.Request(
        f"{url}/ingest",
        data=body,
        headers={
            "X-Xwatch-Timestamp": str(now),
            "X-Xwatch-Signature": sign(SECRET.encode(), now, body),
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


GOOD_IDS = (f"good-{i}" for i in itertools.count())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
control_text = st.text(
    st.characters(codec="utf-8", categories=("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Lo", "So")),
    max_size=40,
)


@st.composite
def mentions_with_wrong_types(draw: st.DrawFn) -> bytes:
    fields: dict[str, Any] = {"id": "m1", "text": f"{BRAND} text", "created_at": now_iso()}
    field = draw(st.sampled_from([*fields, "author", "metrics", "brands", "lang", "url"]))
    fields[field] = draw(json_values)
    return json.dumps(fields).encode()


@st.composite
def mentions_with_odd_text_or_time(draw: st.DrawFn) -> bytes:
    when = draw(
        st.datetimes(
            min_value=datetime(1, 1, 1),
            max_value=datetime(9999, 12, 31),
            # offsets too: "0001-01-01T00:00:00+05:00" is before year 1 once in UTC
            timezones=st.just(UTC) | st.builds(timezone, st.timedeltas(-DAY_LESS, DAY_LESS)),
        )
        | st.just(datetime.now(UTC))
    )
    text = draw(control_text)
    return json.dumps(
        {
            "id": draw(st.text(min_size=1, max_size=10)),
            "text": f"{BRAND} {text}",
            "created_at": when.isoformat(),
        }
    ).encode()


def _invalid_utf8(raw: bytes) -> bytes:
    return (
        b'{"id": "u1", "text": "'
        + BRAND.encode()
        + b" "
        + raw
        + b'", "created_at": "'
        + now_iso().encode()
        + b'"}'
    )


hostile_bodies = st.one_of(
    st.binary(max_size=300),
    st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 100_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    json_values.map(lambda v: json.dumps(v).encode()),
    mentions_with_wrong_types(),
    mentions_with_odd_text_or_time(),
    st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]).map(
        _invalid_utf8
    ),
    st.just(
        json.dumps(
            {"id": "big", "text": BRAND + " " + "a" * 1_000_000, "created_at": now_iso()}
        ).encode()
    ),
)


def until(running: DaemonThread, done: Callable[[], bool]) -> None:
    """Wait (10 s at most) for ``done``, while the daemon lives."""
    deadline = time.monotonic() + 10
    while not done():
        assert running.thread.is_alive(), f"the daemon died: {running.error!r}"
        assert time.monotonic() < deadline, "the daemon did not get there in time"
        time.sleep(0.002)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=hostile_bodies)
# ISO 8601 times that are before year 1 or after 9999 once in UTC
@example(body=b'{"id": "o1", "text": "x", "created_at": "0001-01-01T00:00:00+05:00"}')
@example(body=b'{"id": "o2", "text": "x", "created_at": "9999-12-31T23:59:59-05:00"}')
def test_bad_input_is_refused_and_counted_and_good_input_still_arrives(
    running: DaemonThread, body: bytes
) -> None:
    url = running.daemon.web_url
    assert url is not None
    before = {
        r: running.sample("xwatch_mentions_rejected_total", source="webhook", reason=r)
        for r in PayloadError.REASONS
    }
    ingested = running.daemon.ingested
    status, answer = post(body, url)
    assert status in (202, 400, 413), (status, answer)
    after = {
        r: running.sample("xwatch_mentions_rejected_total", source="webhook", reason=r)
        for r in PayloadError.REASONS
    }
    if status == 202:
        assert after == before
        until(running, lambda: running.daemon.ingested >= ingested + answer["accepted"])
    else:
        assert answer["error"] in PayloadError.REASONS
        counted = {r: after[r] - before[r] for r in PayloadError.REASONS if after[r] != before[r]}
        assert counted == {answer["error"]: 1}

    processed = running.sample("xwatch_mentions_processed_total", brand=BRAND)
    late = running.sample("xwatch_mentions_late_total")
    good = json.dumps({"id": next(GOOD_IDS), "text": f"{BRAND} works", "created_at": now_iso()})
    assert post(good.encode(), url)[0] == 202
    until(
        running, lambda: running.sample("xwatch_mentions_processed_total", brand=BRAND) > processed
    )
    assert running.sample("xwatch_mentions_late_total") == late  # on time: counted in its bucket


@pytest.mark.parametrize("created_at", ["9999-12-31T23:59:59Z", "2100-01-01T00:00:00Z"])
def test_a_post_from_the_far_future_is_refused_and_counted(
    running: DaemonThread, created_at: str
) -> None:
    """Accepted, it would move event time past every real post (from year 9999, the
    daemon would close a bucket for every minute until then, and hang)."""
    url = running.daemon.web_url
    assert url is not None
    before = running.sample(
        "xwatch_mentions_rejected_total", source="webhook", reason="bad_timestamp"
    )
    body = json.dumps(
        {"id": "future", "text": f"{BRAND} from the future", "created_at": created_at}
    )
    status, answer = post(body.encode(), url)
    assert (status, answer["error"]) == (400, "bad_timestamp")
    assert "from the future" in answer["detail"]
    after = running.sample(
        "xwatch_mentions_rejected_total", source="webhook", reason="bad_timestamp"
    )
    assert after == before + 1


@pytest.mark.parametrize("created_at", ["0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z"])
def test_a_post_from_the_far_past_is_refused_and_counted(
    running: DaemonThread, created_at: str
) -> None:
    """Older than MAX_PAST_AGE, a live post is refused: as a fresh daemon's first post it
    would start every series there, and the next post would close a bucket per minute."""
    url = running.daemon.web_url
    assert url is not None
    before = running.sample(
        "xwatch_mentions_rejected_total", source="webhook", reason="bad_timestamp"
    )
    body = json.dumps({"id": "ancient", "text": f"{BRAND} of old", "created_at": created_at})
    status, answer = post(body.encode(), url)
    assert (status, answer["error"]) == (400, "bad_timestamp")
    assert "too old" in answer["detail"]
    after = running.sample(
        "xwatch_mentions_rejected_total", source="webhook", reason="bad_timestamp"
    )
    assert after == before + 1


def test_a_post_from_days_ago_is_counted_late_and_the_daemon_goes_on(
    running: DaemonThread,
) -> None:
    url = running.daemon.web_url
    assert url is not None
    late = running.sample("xwatch_mentions_late_total")
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = json.dumps({"id": "days-old", "text": f"{BRAND} of late", "created_at": two_days_ago})
    assert post(body.encode(), url)[0] == 202
    until(running, lambda: running.sample("xwatch_mentions_late_total") == late + 1)
