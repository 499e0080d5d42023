"""The console notifier: alerts as readable text on a stream (stdout by default)."""

from __future__ import annotations

import sys
from typing import TextIO

from xwatch.alerting.render import render_text
from xwatch.model import AlertEvent


class ConsoleNotifier:
    def __init__(self, name: str = "console", stream: TextIO | None = None) -> None:
        self.name = name
        self.stream = stream

    async def send(self, event: AlertEvent) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(render_text(event) + "\n")
        stream.flush()
