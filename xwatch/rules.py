"""Rule files: which mentions a rule watches, when it fires, and whom it tells.

A rule file (``rules/*.yaml``) holds a list of rules::

    rules:
      - id: product-defect-wave
        title: Product defect complaints are surging
        brands: [kettlebird]            # default: every brand
        match:                          # optional: a topic within the brand
          any: [recall, overheat, burn, リコール, 火傷]
        when:
          signal: negative_share        # volume_up | volume_down | negative_share | negative_volume
          likelihood: 0.999             # calibrated: about one false alarm per 1,000 buckets
          min_count: 10                 # at least this many posts in the bucket
        severity: critical
        playbook: product-defect
        notify: [console]

A rule with ``match`` gets its own series per brand (the brand's mentions that
match), watched at every time scale; a rule without it watches the brand's series.
Terms match case- and width-insensitively (full-width ``RECALL`` matches ``recall``);
Latin words match whole words only, other scripts anywhere in the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from xwatch.config import Config, Frozen
from xwatch.errors import ConfigError, Problem
from xwatch.model import Bucket, Measure, Mention, Severity, Signal
from xwatch.playbooks import PlaybookIndex
from xwatch.yamlfile import load_yaml

_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"

SignalName = Literal["volume_up", "volume_down", "negative_share", "negative_volume"]
SIGNALS: dict[str, tuple[Measure, str]] = {
    "volume_up": (Measure.VOLUME, "up"),
    "volume_down": (Measure.VOLUME, "down"),
    "negative_share": (Measure.NEGATIVE_SHARE, "up"),
    "negative_volume": (Measure.NEGATIVE_VOLUME, "up"),
}


class Match(Frozen):
    any: tuple[str, ...] = ()  # at least one of these
    all: tuple[str, ...] = ()  # every one of these
    none: tuple[str, ...] = ()  # none of these
    langs: tuple[str, ...] = ()  # only posts in these languages (default: any)


class Condition(Frozen):
    signal: SignalName
    likelihood: Annotated[float, Field(ge=0.5, le=1.0)] = 0.999
    min_count: Annotated[int, Field(ge=0)] = 0
    min_negative: Annotated[int, Field(ge=0)] = 0
    scales_seconds: tuple[int, ...] = ()  # default: every configured scale


class Rule(Frozen):
    id: Annotated[str, Field(pattern=_ID)]
    title: str
    description: str = ""
    brands: tuple[str, ...] = ()
    match: Match | None = None
    when: Condition
    severity: Severity = Severity.WARNING
    playbook: str
    notify: tuple[str, ...] = ("console",)

    @field_validator("match")
    @classmethod
    def _match_has_terms(cls, match: Match | None) -> Match | None:
        if match is not None and not (match.any or match.all):
            raise ValueError("match needs terms in 'any' or 'all'")
        return match


class RuleFile(Frozen):
    rules: tuple[Rule, ...]


# --- matching -----------------------------------------------------------------


def normalize(text: str) -> str:
    """Case- and width-folded text: what terms are matched against."""
    return unicodedata.normalize("NFKC", text).casefold()


def term_pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    """One regex that finds any of ``terms``; Latin words only as whole words.

    Whole-word terms share one pair of lookarounds (a regex with one lookbehind per
    alternative is several times slower on every post).
    """
    folded = sorted({normalize(t) for t in terms if t.strip()}, key=len, reverse=True)
    words = [re.escape(t) for t in folded if t.isascii() and t[0].isalnum()]
    tagged = [re.escape(t) for t in folded if t.isascii() and not t[0].isalnum()]  # @x, #x
    anywhere = [re.escape(t) for t in folded if not t.isascii()]
    parts = []
    if words:
        parts.append(rf"(?<![\w@#])(?:{'|'.join(words)})(?!\w)")
    if tagged:
        parts.append(rf"(?:{'|'.join(tagged)})(?!\w)")
    parts.extend(anywhere)
    return re.compile("|".join(parts)) if parts else None


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    any: re.Pattern[str] | None
    all: tuple[re.Pattern[str], ...]
    none: re.Pattern[str] | None
    langs: frozenset[str]

    @classmethod
    def of(cls, match: Match) -> CompiledMatch:
        return cls(
            any=term_pattern(match.any),
            all=tuple(p for t in match.all if (p := term_pattern([t])) is not None),
            none=term_pattern(match.none),
            langs=frozenset(match.langs),
        )

    def matches(self, folded_text: str, lang: str | None) -> bool:
        if self.langs and lang not in self.langs:
            return False
        if self.any is not None and not self.any.search(folded_text):
            return False
        if any(not p.search(folded_text) for p in self.all):
            return False
        return not (self.none is not None and self.none.search(folded_text))


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Validated rules, ready to match mentions and evaluate signals."""

    rules: tuple[Rule, ...]
    matchers: dict[str, CompiledMatch]  # rule id -> compiled match, for topic rules
    _topics: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, rules: Sequence[Rule]) -> RuleSet:
        return cls(
            rules=tuple(rules),
            matchers={r.id: CompiledMatch.of(r.match) for r in rules if r.match is not None},
        )

    def topics(self, brand: str) -> tuple[str, ...]:
        """Ids of the topic rules that watch ``brand`` (worked out once per brand)."""
        topics = self._topics.get(brand)
        if topics is None:
            topics = tuple(r.id for r in self.rules if r.match is not None and _watches(r, brand))
            self._topics[brand] = topics
        return topics

    def topics_of(self, mention: Mention, folded_text: str, brand: str) -> list[str]:
        return [
            topic
            for topic in self.topics(brand)
            if self.matchers[topic].matches(folded_text, mention.lang)
        ]

    def fired_by(self, signal: Signal, bucket: Bucket) -> list[Rule]:
        """The rules that this signal, on this bucket, makes fire."""
        return [
            rule
            for rule in self.rules
            if signal.series.topic == (rule.id if rule.match is not None else "")
            and _watches(rule, signal.series.brand)
            and _fires(rule.when, signal, bucket)
        ]


def _watches(rule: Rule, brand: str) -> bool:
    return not rule.brands or brand in rule.brands


def _fires(when: Condition, signal: Signal, bucket: Bucket) -> bool:
    measure, direction = SIGNALS[when.signal]
    return (
        signal.measure == measure
        and signal.direction == direction
        and not signal.warming_up
        and signal.likelihood >= when.likelihood
        and bucket.count >= when.min_count
        and bucket.negative >= when.min_negative
        and (not when.scales_seconds or signal.series.scale_seconds in when.scales_seconds)
    )


# --- loading ------------------------------------------------------------------


def load_rules(directory: Path, config: Config, playbooks: PlaybookIndex) -> RuleSet:
    """Read and cross-check every ``*.yaml``/``*.yml`` in ``directory``.

    Raises ``ConfigError`` with every problem found, each with its file and line.
    """
    if not directory.is_dir():
        raise ConfigError([Problem(str(directory), 1, "rules folder not found")])
    rules: list[Rule] = []
    defined_in: dict[str, str] = {}
    problems: list[Problem] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            document = load_yaml(path)
            rule_file = document.validate(RuleFile)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        for index, rule in enumerate(rule_file.rules):
            for key, message in _cross_check(rule, config, playbooks, defined_in):
                line = document.line_of(("rules", index, key))
                problems.append(Problem(document.file, line, f"rules[{index}].{key}: {message}"))
            defined_in.setdefault(rule.id, document.file)
            rules.append(rule)
    if problems:
        raise ConfigError(problems)
    return RuleSet.of(rules)


def _cross_check(
    rule: Rule, config: Config, playbooks: PlaybookIndex, defined_in: dict[str, str]
) -> list[tuple[str, str]]:
    """What a rule names that does not exist: (key, message) pairs."""
    problems = []
    brands = sorted(b.id for b in config.brands)
    scales = config.detect.scales_seconds
    if rule.id in defined_in:
        problems.append(("id", f"{rule.id!r} is already defined in {defined_in[rule.id]}"))
    for brand in rule.brands:
        if brand not in brands:
            problems.append(("brands", f"unknown brand {brand!r} (known: {', '.join(brands)})"))
    if rule.playbook not in playbooks:
        known = ", ".join(sorted(playbooks.playbooks)) or "none"
        problems.append(
            (
                "playbook",
                f"no playbook with id {rule.playbook!r} in {config.playbooks_dir} (known: {known})",
            )
        )
    for channel in rule.notify:
        if channel not in config.notifiers:
            problems.append(
                (
                    "notify",
                    f"unknown notifier {channel!r} "
                    f"(configured: {', '.join(sorted(config.notifiers))})",
                )
            )
    for scale in rule.when.scales_seconds:
        if scale not in scales:
            problems.append(
                (
                    "when",
                    f"scales_seconds: {scale} is not a configured scale "
                    f"({', '.join(str(s) for s in scales)})",
                )
            )
    return problems
