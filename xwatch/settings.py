"""Everything the daemon runs on, validated together: config, playbooks, rules.

``load_settings`` reads all three and reports every problem at once (each as
``file:line: message``), so ``xwatch check`` shows the whole list in one go.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xwatch.config import Config, load_config
from xwatch.errors import ConfigError, Problem
from xwatch.playbooks import PlaybookIndex, load_playbooks
from xwatch.rules import RuleSet, load_rules


@dataclass(frozen=True, slots=True)
class Settings:
    config: Config
    config_file: str  # the name used in messages
    playbooks: PlaybookIndex
    rules: RuleSet


def load_settings(
    config_path: Path | None = None, *, default_base: Path | None = None, files: bool = False
) -> Settings:
    """``files``: also check that the files the config names are there (``load_config``),
    before the rules and playbooks are read."""
    config, config_file = load_config(config_path, default_base=default_base, files=files)
    problems: list[Problem] = []
    try:
        playbooks = load_playbooks(config.playbooks_dir)
    except ConfigError as exc:
        problems.extend(exc.problems)
        playbooks = PlaybookIndex({})
    try:
        rules = load_rules(config.rules_dir, config, playbooks)
    except ConfigError as exc:
        # A rule naming a playbook that failed to load is a consequence, not news.
        problems.extend(p for p in exc.problems if not (problems and "no playbook" in p.message))
        rules = RuleSet.of([])
    if problems:
        raise ConfigError(problems)
    return Settings(config, config_file, playbooks, rules)
