"""Waiting for what gives no event to wait on: a broker, a subprocess, another thread's
counters. Poll with a deadline, and fail saying what did not happen."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(
    done: Callable[[], bool], what: str, seconds: float = 10.0, step: float = 0.01
) -> None:
    """Return once ``done()`` is true; fail after ``seconds`` naming ``what``."""
    for _ in range(max(1, round(seconds / step))):
        if done():
            return
        await asyncio.sleep(step)
    if not done():
        raise AssertionError(f"{what}: not within {seconds:g} s")
