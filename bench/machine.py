"""The line every benchmark prints first: the machine, and how busy it was."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    """The machine, and how busy it was (other work on it skews the times)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"load average {load}"
    )
