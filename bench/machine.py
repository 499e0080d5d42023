"""What every benchmark shares: the line it prints first (the machine, and how busy it
was), and how it writes its figures as JSON."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> str:
    """The machine, and how busy it was (other work on it skews the times)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"load average {load}"
    )


def write_json(path: Path, figures: Any) -> None:
    """Write a benchmark's figures to ``path`` (its folder made if needed) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n", "utf-8")
    print(f"figures written to {path}")
