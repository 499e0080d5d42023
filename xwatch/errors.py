"""The exceptions xwatch raises, as one small tree.

XwatchError
├── ConfigError      a config, rule or playbook file is wrong (carries every Problem)
└── PayloadError     one incoming payload cannot become a Mention (carries a reason)
"""

from __future__ import annotations

from dataclasses import dataclass


class XwatchError(Exception):
    """Base of every error xwatch raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in one file, printed as ``file:line: message``."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class ConfigError(XwatchError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PayloadError(XwatchError):
    """A payload that cannot become a Mention; ``reason`` is a short bounded label for metrics."""

    REASONS = (
        "empty",
        "too_large",
        "invalid_utf8",
        "not_json",
        "wrong_type",
        "missing_field",
        "bad_timestamp",
        "unreadable",  # the parser failed on it: a bug, logged with its traceback
    )

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in self.REASONS, reason
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")
