"""What every benchmark shares: the line it prints first (the machine, how fast it runs
plain Python, and how busy it was), and how it writes its figures as JSON."""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def machine() -> str:
    """The machine, how long it takes to run ``reference_loop`` (this 2-core machine has
    run the same code 1.6x slower one day than another: compare figures of different
    days through it), and how busy it was (other work on it skews the times)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"reference loop {reference_seconds() * 1000:.0f} ms, load average {load}"
    )


@functools.cache
def reference_seconds() -> float:
    """CPU seconds of ``reference_loop``, best of 5 (once per process)."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        reference_loop()
        best = min(best, time.process_time() - started)
    return best


def reference_loop(rounds: int = 200_000) -> int:
    """Plain Python of the kinds the pipeline runs (attribute and dict look-ups, string
    and float work, small allocations), always the same: its time measures the machine,
    not xwatch."""
    counts: dict[str, int] = {}
    total = 0.0
    words = ("delay", "refund", "kettle", "great", "broken")
    for i in range(rounds):
        word = words[i % 5]
        counts[word] = counts.get(word, 0) + 1
        total += (i % 7) * 0.5
        if f"{word}{i % 3}".startswith("re"):
            total -= 1.0
    return len(counts) + int(total)


def write_json(path: Path, figures: Any) -> None:
    """Write a benchmark's figures to ``path`` (its folder made if needed) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n", "utf-8")
    print(f"figures written to {path}")
