"""A local fake of the Slack Web API methods the Slack notifier uses, scriptable by tests.

It answers like Slack's Web API, closely enough to catch protocol mistakes with the
real slack-sdk client:

* ``POST /api/<method>`` wants ``Authorization: Bearer <token>``: ``not_authed``
  without one, ``invalid_auth`` with a wrong one (HTTP 200, ``ok: false``, as Slack);
  arguments may come as a query string, a form or JSON (slack-sdk sends ``chat.*`` as
  JSON and ``files.*`` as query parameters), and all of them are recorded in ``calls``;
* ``chat.postMessage`` (to a known channel id or ``#name``; ``thread_ts`` must name a
  message), ``chat.update`` (channel id and ts of a message), ``auth.test``;
  messages are kept in ``messages``, so a test sees what a person would see;
* Block Kit limits are checked as Slack does (``invalid_blocks``, ``msg_too_long``):
  50 blocks, 150 characters in a header, 3,000 in a section, 2,000 in a field, a
  context element or a button value;
  a section's ``static_select`` accessory: a placeholder of at most 150 characters,
  1 to 100 options of at most 75 characters, each value at most 150;
* ``response_url``: where an interaction's answers go (an ephemeral message to the
  person who clicked), recorded in ``responses``;
* file uploads in three steps, as ``files_upload_v2`` does them:
  ``files.getUploadURLExternal`` returns an upload URL on this server, the bytes are
  POSTed there (answered ``OK - <length>`` in text/plain), then
  ``files.completeUploadExternal`` shares them in a channel or thread (``files``);
* ``fail(...)`` scripts the next answers: HTTP 429 with ``Retry-After``, HTTP 500,
  ``ok: false`` with a given error (``channel_not_found``, ``invalid_auth``...) or a
  dropped connection,
  for one method (``"upload"`` for the upload URL) or for any API method.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

TOKEN = "xoxb-fake-slack-token"
CHANNELS = {"C0ALERTS": "alerts"}
JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One request: the API method (or ``"upload"``) and every argument it carried."""

    method: str
    args: JsonObject
    data: bytes = b""  # the bytes of an upload
    at: float = field(default_factory=time.time, compare=False)  # when it arrived (Unix)


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[JsonObject]
    thread_ts: str | None = None
    metadata: JsonObject | None = None
    reply_broadcast: bool = False
    edits: int = 0


@dataclass
class File:
    id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str = ""
    channel: str | None = None
    thread_ts: str | None = None


@dataclass(frozen=True)
class Failure:
    """A scripted answer: ``status`` with ``error`` (a JSON ok=false body) or plain text."""

    method: str | None  # None: any API method (not uploads)
    status: int
    error: str | None
    retry_after: int | None = None
    drop: bool = False  # close the connection without an answer


@dataclass
class FakeSlack:
    token: str = TOKEN
    channels: dict[str, str] = field(default_factory=lambda: dict(CHANNELS))
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)  # by ts
    files: dict[str, File] = field(default_factory=dict)  # by id
    failures: list[Failure] = field(default_factory=list)
    responses: list[JsonObject] = field(default_factory=list)  # posted to response_url
    root: str = ""  # http://127.0.0.1:<port>
    _runner: web.AppRunner | None = None

    @property
    def api_url(self) -> str:
        return f"{self.root}/api/"

    @property
    def response_url(self) -> str:
        """An interaction's ``response_url`` (one for every click, here)."""
        return f"{self.root}/actions/T1/1763298000/response"

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/actions/{team}/{id}/{token}", self._response)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.root = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting and reading ------------------------------------------------------------

    def fail(
        self,
        *,
        method: str | None = None,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
        drop: bool = False,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``method`` (None: any API method) answer this,
        or (``drop``) get their connection closed without an answer."""
        failure = Failure(method, status, error, retry_after, drop)
        self.failures.extend(failure for _ in range(times))

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def top_level(self) -> list[Message]:
        """The channel's messages (not thread replies), oldest first."""
        return [m for m in self.messages.values() if m.thread_ts is None]

    def replies(self, ts: str) -> list[Message]:
        return [m for m in self.messages.values() if m.thread_ts == ts]

    # -- the API --------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        arrived = time.time()
        args: JsonObject = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.content_type == "application/x-www-form-urlencoded":
            args.update(await request.post())
        self.calls.append(Call(method, args, at=arrived))
        scripted = self._scripted(request, method)
        if scripted is not None:
            return scripted
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return _error("not_authed")
        if auth.removeprefix("Bearer ") != self.token:
            return _error("invalid_auth")
        handlers = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }
        handler = handlers.get(method)
        if handler is None:
            return _error("unknown_method", status=404)
        return handler(args)

    async def _response(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return _ok({})

    def _scripted(self, request: web.Request, method: str) -> web.Response | None:
        for i, failure in enumerate(self.failures):
            if failure.method == method or (failure.method is None and method != "upload"):
                del self.failures[i]
                if failure.drop and request.transport is not None:
                    request.transport.close()  # the client sees the server disconnect
                    return web.Response()
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(failure.retry_after)
                if failure.error is None:
                    return web.Response(status=failure.status, text="oops", headers=headers)
                return _error(failure.error, status=failure.status, headers=headers)
        return None

    def _auth_test(self, args: JsonObject) -> web.Response:
        return _ok({"url": "https://fake.slack.com/", "team_id": "T1", "user_id": "UBOT"})

    def _channel(self, name: object) -> str | None:
        text = str(name or "").removeprefix("#")
        if text in self.channels:
            return text
        return next((id_ for id_, n in self.channels.items() if n == text), None)

    def _post_message(self, args: JsonObject) -> web.Response:
        channel = self._channel(args.get("channel"))
        if channel is None:
            return _error("channel_not_found")
        thread_ts = args.get("thread_ts")
        if thread_ts is not None and thread_ts not in self.messages:
            return _error("thread_not_found")
        problem = _check_message(args)
        if problem:
            return _error(problem)
        ts = f"1763298000.{len(self.messages) + 1:06d}"
        message = Message(
            channel=channel,
            ts=ts,
            text=str(args.get("text", "")),
            blocks=list(args.get("blocks") or []),
            thread_ts=thread_ts,
            metadata=args.get("metadata"),
            reply_broadcast=bool(args.get("reply_broadcast")),
        )
        self.messages[ts] = message
        return _ok({"channel": channel, "ts": ts, "message": {"text": message.text}})

    def _update(self, args: JsonObject) -> web.Response:
        channel = args.get("channel")
        if channel not in self.channels:
            return _error("channel_not_found")
        message = self.messages.get(str(args.get("ts")))
        if message is None or message.channel != channel:
            return _error("message_not_found")
        problem = _check_message(args)
        if problem:
            return _error(problem)
        message.text = str(args.get("text", ""))
        message.blocks = list(args.get("blocks") or [])
        message.metadata = args.get("metadata", message.metadata)
        message.edits += 1
        return _ok({"channel": channel, "ts": message.ts, "text": message.text})

    def _upload_url(self, args: JsonObject) -> web.Response:
        filename, length = args.get("filename"), str(args.get("length", ""))
        if not filename or not length.isdigit():
            return _error("invalid_arguments")
        file_id = f"F{len(self.files) + 1:08d}"
        self.files[file_id] = File(file_id, str(filename), int(length))
        return _ok({"upload_url": f"{self.root}/upload/{file_id}", "file_id": file_id})

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        data = await request.read()
        file_id = request.match_info["file_id"]
        self.calls.append(Call("upload", {"file_id": file_id}, data))
        scripted = self._scripted(request, "upload")
        if scripted is not None:
            return scripted
        file = self.files.get(file_id)
        if file is None or len(data) != file.length:
            return web.Response(status=400, text="bad upload")
        file.data = data
        return web.Response(text=f"OK - {len(data)}")

    def _complete_upload(self, args: JsonObject) -> web.Response:
        try:
            wanted = json.loads(str(args.get("files", "")))
        except json.JSONDecodeError:
            return _error("invalid_arguments")
        channel = args.get("channel_id")
        if channel is not None and channel not in self.channels:
            return _error("channel_not_found")
        done = []
        for item in wanted:
            file = self.files.get(item.get("id", ""))
            if file is None or file.data is None:
                return _error("file_not_found")
            file.title = str(item.get("title") or file.filename)
            file.channel, file.thread_ts = channel, args.get("thread_ts")
            done.append({"id": file.id, "name": file.filename, "title": file.title})
        return _ok({"files": done})


def _check_message(args: JsonObject) -> str | None:
    """What Slack would refuse in a message: its error code, or None."""
    blocks = args.get("blocks") or []
    if not blocks and not args.get("text"):
        return "no_text"
    if len(str(args.get("text", ""))) > 40_000:
        return "msg_too_long"
    if len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        texts: list[tuple[str, int]] = []
        if block["type"] == "header":
            texts.append((block["text"]["text"], 150))
        elif block["type"] == "section":
            if "text" in block:
                texts.append((block["text"]["text"], 3000))
            if len(block.get("fields", [])) > 10:
                return "invalid_blocks"
            texts.extend((f["text"], 2000) for f in block.get("fields", []))
            accessory = block.get("accessory")
            if accessory is not None:
                if (
                    accessory["type"] != "static_select"
                    or not 1 <= len(accessory["options"]) <= 100
                ):
                    return "invalid_blocks"
                texts.append((accessory["placeholder"]["text"], 150))
                texts.append((accessory["action_id"], 255))
                for option in accessory["options"]:
                    texts.extend([(option["text"]["text"], 75), (option["value"], 150)])
        elif block["type"] == "context":
            if len(block["elements"]) > 10:
                return "invalid_blocks"
            texts.extend((e["text"], 2000) for e in block["elements"])
        elif block["type"] == "actions":
            for button in block["elements"]:
                texts.append((button["text"]["text"], 75))
                texts.append((button.get("value", ""), 2000))
        if any(not isinstance(t, str) or len(t) > limit for t, limit in texts):
            return "invalid_blocks"
    return None


def _ok(body: JsonObject) -> web.Response:
    return web.json_response({"ok": True, **body})


def _error(error: str, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"ok": False, "error": error}, status=status, headers=headers)
