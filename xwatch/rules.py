"""Rule files: which mentions a rule watches, when it fires, and whom it tells.

A rule file (``rules/*.yaml``) holds a list of rules. Every key, with its default::

    rules:
      - id: product-defect-surge        # lower case, digits, - and _; unique across files
        title: Product defect posts are surging
        description: ""                 # optional text for people
        brands: []                      # default: every brand
        match:                          # optional: which of the brand's posts the rule watches
          any: [recall, overheat, リコール]    # at least one of these terms (or of `regex`)
          regex: ["can'?t log ?in"]     # at least one of these (or of `any`)
          all: []                       # every one of these terms
          none: []                      # none of these terms (exclusions)
          langs: []                     # only posts in these languages (default: any)
          author:                       # conditions on who posted
            min_followers: 0
            verified: null              # true: verified accounts only; false: unverified only
            own_account: false          # true: the brand's own accounts (config
                                        # `brands[].accounts`) only; false: everyone else;
                                        # null: every post, the brand's own included
          mentions_own_account: null    # true: posts that @-mention one of the brand's accounts
        when:                           # exactly one of `signal`, `mention` or `new_term`
          signal: negative_volume       # volume_up | volume_down | negative_share | negative_volume
          likelihood: 0.999             # calibrated: about one false alarm per 1,000 buckets
          min_count: 0                  # at least this many posts in the bucket
          min_negative: 0               # at least this many negative posts
          min_authors: 0                # at least this many different authors
          for_seconds: 0                # the condition holds on consecutive buckets this long
          scales_seconds: []            # default: every configured scale
        severity: warning               # info | warning | critical
        playbook: product-defect        # must exist in playbooks/
        notify: [console]               # notifier names from the config
        labels: {}                      # e.g. {team: quality}: for routes and silences
        quiet_hours: null               # e.g. {start: "22:00", end: "07:00",
                                        #       timezone: Asia/Tokyo, days: [sat, sun]}
        expires: null                   # e.g. 2026-12-31T00:00:00Z: no firing from then on

Three kinds of rule:

* **signal** (``when: {signal: ...}``): a detector's verdict on a closed bucket. A rule
  with ``match`` gets its own series per brand (the brand's posts that match), judged at
  the rule's ``scales_seconds``; a rule without it watches the brand's series.
  ``min_authors`` counts the different authors of the bucket; ``for_seconds`` waits
  until the condition has held on consecutive buckets of the series that long.
* **mention** (``when: {mention: {negative: true, min_followers: 100000, min_reach: 0}}``):
  one alert per matching post, at ingest, with no baseline. All of a rule's posts about
  one brand are one alert identity; a new post with much more reach updates it.
* **new term** (``when: {new_term: {likelihood: 0.9999, min_count: 5, min_share: 0.0,
  scale_seconds: null, warmup_seconds: 86400}}``): a word or hashtag that was rare for
  the brand is suddenly in many of its posts (``xwatch.detect.terms``): at least
  ``min_count`` posts and ``min_share`` of the brand's posts in a bucket. It watches all
  of the brand's posts (no ``match``) and fires on one term at a time per brand (the
  other surging terms show in the alert's emerging terms).

The brand's own posts (by its ``brands[].accounts``) are not mentions of it: they do
not count in its series, its topics' series or its new terms, and a rule sees them only
when it asks for them (``author: {own_account: true}``, or ``null`` for every post). A
support team's replies ("so sorry for the wait, please DM us") would otherwise swell
the negative share and the complaints they answer, top the alerts' sample posts (the
brand has the most followers) and, from a large brand, fire ``high-reach-complaint``.
A hijacked account is the case for watching them, with rules of their own.

Terms match case- and width-insensitively (full-width Latin letters match ``recall``,
half-width katakana match ``リコール``); Latin words and phrases match whole words only,
other scripts anywhere in the text. Regexes are searched in the same folded text,
ignoring case. ``match`` conditions all have to hold; ``any`` and ``regex`` together
are one "at least one of" list.

Event time decides ``expires`` (a backtest of last month still fires a rule that
expired yesterday); ``quiet_hours`` hold the notices of a rule's non-critical
incidents (``RuleSet.quiet``, fed to the incident book). In ``quiet_hours``, write
times in quotes ("22:00": YAML reads 22:00 unquoted as a number), ``start`` after
``end`` wraps past midnight, ``start`` equal to ``end`` is the 24 hours from ``start``
("00:00" to "00:00": the calendar day), and ``days`` are the days a quiet period starts
on (default: every day).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import ahocorasick  # type: ignore[import-not-found]  # no type information shipped
from pydantic import AfterValidator, Field, field_validator, model_validator

from xwatch.config import Config, Frozen, known_zone
from xwatch.errors import ConfigError, Problem
from xwatch.model import (
    Bucket,
    Measure,
    Mention,
    Severity,
    Signal,
    normalise_lang,
    utc,
)
from xwatch.playbooks import PlaybookIndex
from xwatch.yamlfile import ValueAt, YamlDocument, load_yaml

_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"

SignalName = Literal["volume_up", "volume_down", "negative_share", "negative_volume"]
SIGNALS: dict[str, tuple[Measure, str]] = {
    "volume_up": (Measure.VOLUME, "up"),
    "volume_down": (Measure.VOLUME, "down"),
    "negative_share": (Measure.NEGATIVE_SHARE, "up"),
    "negative_volume": (Measure.NEGATIVE_VOLUME, "up"),
}
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Kind = Literal["signal", "mention", "new_term"]
DEFAULT_TERM_SCALE = 300  # new-term rules count at 5 minutes when that scale is configured


def normalize(text: str) -> str:
    """Case- and width-folded text: what terms are matched against. (A Turkish dotted
    capital İ folds to "i" and a combining dot; the dot is dropped: "KETTLEBİRD" is
    "kettlebird".)"""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return folded.replace("i\u0307", "i") if "\u0307" in folded else folded


NO_LANGUAGE = frozenset({"und", "zxx", "mis", "mul"})
"""Language tags that name no language (ISO); X's own such tags all start with "q"."""

UNSPACED = (
    "\u0e00-\u0e7f\u1100-\u11ff\u3040-\u30ff\u3100-\u318f\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
)
"""Scripts that write no space between a word and the next (Thai; Japanese kana and
kanji; Chinese; Korean Hangul, whose particles join the word before them): a Latin word
next to them is a word of its own ("kettlebirdの", "@kettlebird_jpさん", "kettlebird가"),
and a term in them matches anywhere."""
_WORD_CHAR = rf"(?:(?![{UNSPACED}])\w)"
"""A character that would go on a (Latin, Cyrillic, ...) word: a word character of a
script written with spaces."""


def _regex(pattern: str) -> str:
    """A regex that compiles (checked at load, so that a typo is a file:line error)."""
    try:
        compile_regex(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


def compile_regex(pattern: str) -> re.Pattern[str]:
    """A rule's regex as it is searched, ignoring case: each run of characters that are
    not ASCII is folded as the text is (``normalize``) and taken as written. So a
    full-width question mark or parenthesis means that character, as a Japanese user means
    it (NFKC of the whole pattern made them "?" and "(", regex syntax: a rule for
    "返金は" and a full-width "?" matched "返金しました"),
    and "ß" matches the "ss" the text folds it to. Regex syntax is ASCII."""
    return re.compile(
        _NOT_ASCII.sub(lambda run: re.escape(normalize(run.group())), pattern), re.IGNORECASE
    )


_NOT_ASCII = re.compile(r"[^\x00-\x7f]+")


Regex = Annotated[str, AfterValidator(_regex)]
NonNegative = Annotated[int, Field(ge=0)]


def _term(term: str) -> str:
    if not term.strip():  # it matches nothing, or everything: say which was meant
        raise ValueError("a term must not be blank")
    return term


Term = Annotated[str, AfterValidator(_term)]


class AuthorMatch(Frozen):
    min_followers: NonNegative = 0
    verified: bool | None = None  # None: either
    own_account: bool | None = False  # True: the brand's own handles only; None: everyone


class Match(Frozen):
    any: tuple[Term, ...] = ()  # at least one of these (or of ``regex``)
    regex: tuple[Regex, ...] = ()  # at least one of these (or of ``any``)
    all: tuple[Term, ...] = ()  # every one of these
    none: tuple[Term, ...] = ()  # none of these
    langs: tuple[str, ...] = ()  # only posts in these languages (default: any)
    author: AuthorMatch | None = None
    mentions_own_account: bool | None = None  # the post @-mentions one of the brand's handles

    @field_validator("langs")
    @classmethod
    def _primary_languages(cls, langs: tuple[str, ...]) -> tuple[str, ...]:
        """Each as a post's language is compared with it: its primary subtag, lower-cased
        ("ja-JP" is "ja", as the sentiment router reads the posts' tags; "ja-JP" never
        matched). X's tags for no language ("und", "qme", ...) are refused: such a post
        is given the language its script says."""
        primary = []
        for j, lang in enumerate(langs):
            code = normalise_lang(lang)
            if not re.fullmatch(r"[a-z]{2,3}", code) or code in NO_LANGUAGE or code[0] == "q":
                raise ValueAt(
                    (j,),
                    "expected a language code like 'ja' or 'en' (a post tagged with none, "
                    "'und' or X's 'q...', gets the language its script says)",
                )
            primary.append(code)
        return tuple(dict.fromkeys(primary))

    @model_validator(mode="after")
    def _says_something(self) -> Match:
        author = self.author is not None and bool(self.author.model_fields_set)
        lists = self.any or self.regex or self.all or self.none or self.langs
        if not (lists or author or self.mentions_own_account is not None):
            raise ValueError(
                "match needs at least one of any, regex, all, none, langs, author or "
                "mentions_own_account"
            )
        return self


class MentionWhen(Frozen):
    """A mention rule: which single posts fire it."""

    negative: bool | None = None  # True: negative posts only; False: the others only
    min_followers: NonNegative = 0
    min_reach: NonNegative = 0  # followers plus engagement (``Mention.reach``)

    def admits(self, mention: Mention) -> bool:
        """The cheap checks, before any text is looked at."""
        return (
            mention.author.followers >= self.min_followers
            and (self.min_reach == 0 or mention.reach >= self.min_reach)
            and (self.negative is None or mention.is_negative == self.negative)
        )


class NewTermWhen(Frozen):
    """A new-term rule: how surprising and how big a term's surge must be."""

    likelihood: Annotated[float, Field(ge=0.5, le=1.0)] = 0.9999
    min_count: Annotated[int, Field(ge=1)] = 5  # posts using the term in the bucket
    min_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # of the brand's posts in it
    scale_seconds: int | None = None  # default: 300 if configured, else the nearest scale
    warmup_seconds: NonNegative = 86400  # no alert before the brand has this much history


_SIGNAL_ONLY = frozenset(
    {"likelihood", "min_count", "min_negative", "min_authors", "for_seconds", "scales_seconds"}
)


class Condition(Frozen):
    """``when``: a signal (the flat keys), a single ``mention`` or a ``new_term``."""

    signal: SignalName | None = None
    likelihood: Annotated[float, Field(ge=0.5, le=1.0)] = 0.999
    min_count: NonNegative = 0
    min_negative: NonNegative = 0
    min_authors: NonNegative = 0
    for_seconds: NonNegative = 0
    scales_seconds: tuple[int, ...] = ()  # default: every configured scale
    mention: MentionWhen | None = None
    new_term: NewTermWhen | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        kinds = [k for k in ("signal", "mention", "new_term") if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = " and ".join(kinds) or "none of them"
            raise ValueError(f"when needs exactly one of signal, mention or new_term ({found})")
        extra = sorted(self.model_fields_set & _SIGNAL_ONLY)
        if kinds[0] != "signal" and extra:
            raise ValueError(
                f"{', '.join(extra)}: only for a signal rule; a {kinds[0]} rule "
                f"takes its settings under '{kinds[0]}:'"
            )
        return self

    @property
    def kind(self) -> Kind:
        if self.mention is not None:
            return "mention"
        if self.new_term is not None:
            return "new_term"
        return "signal"

    @property
    def measure(self) -> Measure:
        """The measure a signal rule judges."""
        assert self.signal is not None
        return SIGNALS[self.signal][0]

    @property
    def may_hold_when_empty(self) -> bool:
        """Whether a signal rule may fire on a bucket without posts: only on a drop in
        volume (an empty bucket is below any expected count, never above it, and has no
        negative share), and only without a minimum of posts, negatives or authors."""
        return (
            self.signal == "volume_down"
            and not self.min_count
            and not self.min_negative
            and not self.min_authors
        )

    def holds(self, signal: Signal, bucket: Bucket, authors: int) -> bool:
        """A signal rule's condition on one bucket (``signal`` is of ``self.measure``)."""
        assert self.signal is not None
        return (
            signal.direction == SIGNALS[self.signal][1]
            and not signal.warming_up
            and signal.likelihood >= self.likelihood
            and bucket.count >= self.min_count
            and bucket.negative >= self.min_negative
            and authors >= self.min_authors
            and (not self.scales_seconds or bucket.series.scale_seconds in self.scales_seconds)
        )


class QuietHours(Frozen):
    """When a rule's non-critical incidents are not announced (held until the end)."""

    start: time
    end: time
    timezone: str = "UTC"
    days: tuple[Weekday, ...] = ()  # the days a quiet period starts on (default: every day)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock_time(cls, value: Any) -> Any:
        if isinstance(value, int | float):  # YAML 1.1 reads 22:00 unquoted as 1320
            raise ValueError(
                'write the time in quotes, like "22:00" (YAML reads 22:00 unquoted as a number)'
            )
        found = (
            re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value) if isinstance(value, str) else None
        )
        if found is None:
            raise ValueError('expected a time of day as "HH:MM", like "22:00"')
        return time(int(found[1]), int(found[2]))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    def covers(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone))
        now, weekday = local.time(), WEEKDAYS[local.weekday()]
        yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
        days = self.days or WEEKDAYS
        # start == end: 24 hours from the start (00:00: the calendar day) on each of ``days``
        if self.start < self.end:
            return self.start <= now < self.end and weekday in days
        return (now >= self.start and weekday in days) or (now < self.end and yesterday in days)


def _utc_datetime(value: Any) -> Any:
    """``expires``: a date is its midnight UTC; a time without a zone is UTC."""
    if isinstance(value, datetime):
        try:
            return utc(value)
        except OverflowError:  # 9999-12-31T23:00:00-05:00 is after year 9999 in UTC
            raise ValueError(f"{value.isoformat()} is out of the range of dates") from None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value


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
    labels: dict[str, str] = Field(default_factory=dict)  # for routing and silences
    quiet_hours: QuietHours | None = None
    expires: datetime | None = None

    @field_validator("expires", mode="before")
    @classmethod
    def _expires_utc(cls, value: Any) -> Any:
        return _utc_datetime(value)

    @field_validator("expires")
    @classmethod
    def _expires_aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc(value)

    @model_validator(mode="after")
    def _new_term_watches_every_post(self) -> Rule:
        if self.when.new_term is not None and self.match is not None:
            raise ValueError(
                "a new_term rule watches all of a brand's posts: remove 'match' "
                "(or make it a signal rule)"
            )
        return self

    @property
    def kind(self) -> Kind:
        return self.when.kind

    def live_at(self, at: datetime) -> bool:
        """Not expired at event time ``at``."""
        return self.expires is None or at < self.expires


class RuleFile(Frozen):
    rules: tuple[Rule, ...]


# --- matching -----------------------------------------------------------------


def term_pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    """One regex that finds any of ``terms``: a term in a script written with spaces
    (Latin, accents included, Cyrillic, ...) only as whole words, which an unspaced
    script's character bounds as a space does; a term with a character of an unspaced
    script (``UNSPACED``) anywhere.

    Whole-word terms share one pair of lookarounds (a regex with one lookbehind per
    alternative is several times slower on every post).
    """
    folded = sorted({normalize(t) for t in terms if t.strip()}, key=len, reverse=True)
    spaced = [t for t in folded if not _UNSPACED.search(t)]
    words = [re.escape(t) for t in spaced if t[0].isalnum()]
    tagged = [re.escape(t) for t in spaced if not t[0].isalnum()]  # @x, #x
    anywhere = [re.escape(t) for t in folded if _UNSPACED.search(t)]
    parts = []
    if words:
        parts.append(rf"(?<![@#])(?<!{_WORD_CHAR})(?:{'|'.join(words)})(?!{_WORD_CHAR})")
    if tagged:
        parts.append(rf"(?:{'|'.join(tagged)})(?!{_WORD_CHAR})")
    parts.extend(anywhere)
    return re.compile("|".join(parts)) if parts else None


@dataclass(frozen=True, slots=True)
class OwnAccounts:
    """A brand's own handles (``brands[].accounts``), folded, and a finder for @-mentions."""

    handles: frozenset[str]
    mentioned: re.Pattern[str] | None  # "@handle" of any of them, in folded text

    @classmethod
    def of(cls, accounts: Iterable[str]) -> OwnAccounts:
        handles = frozenset(normalize(a).strip().lstrip("@") for a in accounts if a.strip())
        alternatives = "|".join(re.escape(h) for h in sorted(handles))
        pattern = rf"@(?:{alternatives})(?!{_WORD_CHAR})"  # "@kettlebird_jpさん" too
        return cls(handles, re.compile(pattern) if handles else None)

    def wrote(self, mention: Mention) -> bool:
        """Whether the post is by one of the brand's own accounts."""
        return bool(self.handles) and normalize(mention.author.handle).lstrip("@") in self.handles


NO_ACCOUNTS = OwnAccounts(frozenset(), None)


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    """A rule's ``match``, compiled once: the cheap checks first, then the text.

    The terms of ``any`` and the regexes are searched apart: a ``TermIndex`` tells
    from a post's words whether the terms may be there (most posts: no, no search),
    while the regexes have to be searched in every post.
    """

    terms: re.Pattern[str] | None  # the terms of ``any`` as one pattern
    regexes: tuple[re.Pattern[str], ...]  # the regexes (as one where that means the same)
    all: tuple[re.Pattern[str], ...]
    none: re.Pattern[str] | None
    langs: frozenset[str]
    author: AuthorMatch | None
    mentions_own_account: bool | None

    @classmethod
    def of(cls, match: Match) -> CompiledMatch:
        return cls(
            terms=term_pattern(match.any),
            regexes=_one_search([compile_regex(r) for r in match.regex]),
            all=tuple(p for t in match.all if (p := term_pattern([t])) is not None),
            none=term_pattern(match.none),
            langs=frozenset(match.langs),
            author=match.author,
            mentions_own_account=match.mentions_own_account,
        )

    def matches(
        self,
        mention: Mention,
        folded_text: str,
        own: OwnAccounts,
        terms_may: bool = True,
        regexes_may: bool = True,
        own_post: bool | None = None,
    ) -> bool:
        """Whether the post matches; ``terms_may=False``: the ``TermIndex`` says that
        none of the terms of ``any`` is in the text (only the regexes are searched);
        ``regexes_may=False``: ``BrandRules.regexes`` found none of the regexes in it;
        ``own_post``: ``own.wrote(mention)``, if the caller knows it."""
        if self.langs and mention.lang not in self.langs:
            return False
        author = self.author
        wants_own = author.own_account if author is not None else False
        if wants_own is not None and wants_own != (
            own.wrote(mention) if own_post is None else own_post
        ):
            return False
        if author is not None:
            if mention.author.followers < author.min_followers:
                return False
            if author.verified is not None and mention.author.verified != author.verified:
                return False
        if self.mentions_own_account is not None:
            found = own.mentioned is not None and own.mentioned.search(folded_text) is not None
            if found != self.mentions_own_account:
                return False
        terms = self.terms
        if (terms is not None or self.regexes) and not (  # at least one of them
            (terms_may and terms is not None and terms.search(folded_text))
            or (regexes_may and any(pattern.search(folded_text) for pattern in self.regexes))
        ):
            return False
        for pattern in self.all:
            if not pattern.search(folded_text):
                return False
        return self.none is None or not self.none.search(folded_text)


_EVERYWHERE = re.compile("")  # matches every text


def _any_of(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One pattern that matches a text if any of ``patterns`` does (None: there are none).
    Where they cannot be joined (a regex that refers to its own groups, group names used
    twice), one that matches every text: each rule then searches its own."""
    if len(patterns) < 2:
        return patterns[0] if patterns else None
    if any(re.search(r"\\[1-9]|\(\?P=", p.pattern) for p in patterns):
        return _EVERYWHERE
    try:
        return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), re.IGNORECASE)
    except re.error:
        return _EVERYWHERE


def _one_search(patterns: list[re.Pattern[str]]) -> tuple[re.Pattern[str], ...]:
    """The "at least one of" patterns as one where that means the same: one search per
    post instead of one per pattern. Not when a regex refers to its own groups (``\\1``,
    ``(?P=name)``): their numbers and names would clash."""
    if len(patterns) < 2 or any(re.search(r"\\[1-9]|\(\?P=", p.pattern) for p in patterns):
        return tuple(patterns)
    try:
        return (re.compile("|".join(f"(?:{p.pattern})" for p in patterns), re.IGNORECASE),)
    except re.error:
        return tuple(patterns)


_WORDS = re.compile(rf"[^\W{UNSPACED}]+")  # runs of word characters of spaced scripts
_UNSPACED = re.compile(f"[{UNSPACED}]")


def words_of(folded_text: str) -> set[str]:
    """The words of a folded text (runs of word characters of spaced scripts: "kettlebirdの"
    holds "kettlebird"), for ``TermIndex.candidates``."""
    return set(_WORDS.findall(folded_text))


@dataclass(frozen=True, slots=True)
class TermIndex:
    """Which of many term lists may match a text, from the text's words: a few dictionary
    look-ups per post instead of one regex search per list.

    Exact for what ``term_pattern`` finds: a term of spaced scripts (Latin, ...) matches
    only where its first word is a whole word of the text (``words_of``: an unspaced
    script's character ends a word), and a term with a character of an unspaced script
    only where it is a substring. A key is a candidate when that holds for one of its terms; its own
    pattern decides. A key without a term list (None) is always a candidate. The terms
    in unspaced scripts are found in one pass over the text (an Aho-Corasick automaton,
    ``pyahocorasick``), not one substring search per term: with the shipped rules, 99
    of them, in every post that is not ASCII (emoji included).
    """

    by_word: dict[str, frozenset[str]]  # the first word of a Latin term -> keys
    by_substring: tuple[tuple[str, str], ...]  # (a term in another script, its key)
    always: frozenset[str]
    # the terms of ``by_substring`` -> their keys (None: there are none)
    substrings: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, terms_by_key: dict[str, Sequence[str] | None]) -> TermIndex:
        by_word: dict[str, set[str]] = {}
        by_substring = []
        always = set()
        for key, terms in terms_by_key.items():
            folded = [t for t in map(normalize, terms or ()) if t.strip()]
            if not folded:
                always.add(key)
            for term in folded:
                first = _WORDS.search(term)
                if _UNSPACED.search(term):
                    by_substring.append((term, key))
                elif first is None or term[0] == "_":
                    always.add(key)  # no word to look up, or one that joins what precedes it
                else:
                    by_word.setdefault(first.group(), set()).add(key)
        frozen = {word: frozenset(keys) for word, keys in by_word.items()}
        return cls(frozen, tuple(by_substring), frozenset(always), _automaton(by_substring))

    def candidates(self, folded_text: str, words: set[str]) -> set[str]:
        found = set(self.always)
        by_word = self.by_word
        for word in by_word.keys() & words:  # in C, over the smaller of the two
            found |= by_word[word]
        if folded_text.isascii() or self.substrings is None:
            return found  # the unspaced scripts' terms are not ASCII
        for _, keys in self.substrings.iter(folded_text):
            found |= keys
        return found


def _automaton(terms: Sequence[tuple[str, str]]) -> Any:
    """An Aho-Corasick automaton of ``terms``: each term -> the keys it belongs to."""
    if not terms:
        return None
    keys_of: dict[str, set[str]] = {}
    for term, key in terms:
        keys_of.setdefault(term, set()).add(key)
    automaton = ahocorasick.Automaton()
    for term, keys in keys_of.items():
        automaton.add_word(term, frozenset(keys))
    automaton.make_automaton()
    return automaton


@dataclass(frozen=True, slots=True)
class BrandRules:
    """The rules that watch one brand, by kind (worked out once per brand)."""

    topics: tuple[str, ...]  # ids of the signal rules with ``match``: each has its own series
    mention: tuple[Rule, ...]
    new_term: tuple[Rule, ...]
    index: TermIndex  # which topic and mention rules a post's words may match
    # every regex of those rules as one pattern: where it finds nothing (most posts), no
    # rule's regex can match, and one search has replaced one per rule
    regexes: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class RuleOrigin:
    """Where a rule is written: its file and the line of each of its keys."""

    file: str
    index: int
    lines: dict[str, int]  # top-level key of the rule -> line ("" for the rule itself)

    def line(self, key: str = "") -> int:
        return self.lines.get(key, self.lines.get("", 1))


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Validated rules, compiled, ready to match mentions and evaluate signals."""

    rules: tuple[Rule, ...]
    matchers: dict[str, CompiledMatch]  # rule id -> compiled match
    accounts: dict[str, OwnAccounts] = field(default_factory=dict)  # brand -> its handles
    origins: dict[str, RuleOrigin] = field(default_factory=dict)  # rule id -> where written
    _by_id: dict[str, Rule] = field(default_factory=dict, compare=False, repr=False)
    _brands: dict[str, BrandRules] = field(default_factory=dict, compare=False, repr=False)
    _series: dict[tuple[str, str], tuple[Rule, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(
        cls,
        rules: Sequence[Rule],
        accounts: dict[str, OwnAccounts] | None = None,
        origins: dict[str, RuleOrigin] | None = None,
    ) -> RuleSet:
        return cls(
            rules=tuple(rules),
            matchers={r.id: CompiledMatch.of(r.match) for r in rules if r.match is not None},
            accounts=accounts or {},
            origins=origins or {},
            _by_id={r.id: r for r in rules},
        )

    def get(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    def for_brand(self, brand: str) -> BrandRules:
        """The rules that watch ``brand``, by kind."""
        found = self._brands.get(brand)
        if found is None:
            watching = [r for r in self.rules if not r.brands or brand in r.brands]
            matched = [r for r in watching if r.match is not None and r.kind != "new_term"]
            found = BrandRules(
                topics=tuple(r.id for r in matched if r.kind == "signal"),
                mention=tuple(r for r in watching if r.kind == "mention"),
                new_term=tuple(r for r in watching if r.kind == "new_term"),
                index=TermIndex.of({r.id: _index_terms(r) for r in matched}),
                regexes=_any_of([p for r in matched for p in self.matchers[r.id].regexes]),
            )
            self._brands[brand] = found
        return found

    def topics(self, brand: str) -> tuple[str, ...]:
        """Ids of the topic rules that watch ``brand`` (each has a series of its own)."""
        return self.for_brand(brand).topics

    def own(self, brand: str) -> OwnAccounts:
        return self.accounts.get(brand, NO_ACCOUNTS)

    def candidates(self, folded_text: str, brand: str, words: set[str] | None = None) -> set[str]:
        """The ids of the topic and mention rules of ``brand`` whose terms the text may hold
        (the others' are not in it: only their regexes can match it, if they have any);
        ``words``: ``words_of`` the text, if the caller has them."""
        words = words_of(folded_text) if words is None else words
        return self.for_brand(brand).index.candidates(folded_text, words)

    def regexes_may(self, folded_text: str, brand: str) -> bool:
        """Whether a regex of the topic and mention rules of ``brand`` may match the text
        (False: none does)."""
        regexes = self.for_brand(brand).regexes
        return regexes is not None and regexes.search(folded_text) is not None

    def topics_of(
        self,
        mention: Mention,
        folded_text: str,
        brand: str,
        may: set[str] | None = None,
        regexes_may: bool | None = None,
        own_post: bool | None = None,
    ) -> list[str]:
        """The topic rules of ``brand`` that the post matches (``may``: ``candidates``;
        ``regexes_may``: ``regexes_may``; ``own_post``: whether one of the brand's own
        accounts wrote it; each worked out here if None)."""
        may = self.candidates(folded_text, brand) if may is None else may
        if regexes_may is None:
            regexes_may = self.regexes_may(folded_text, brand)
        own = self.own(brand)
        if own_post is None:
            own_post = own.wrote(mention)
        matchers = self.matchers
        return [
            topic
            for topic in self.topics(brand)
            if (topic in may or (regexes_may and matchers[topic].regexes))
            and matchers[topic].matches(
                mention, folded_text, own, topic in may, regexes_may, own_post
            )
        ]

    def signal_rules(self, brand: str, topic: str) -> tuple[Rule, ...]:
        """The signal rules that judge the series of ``brand`` (and ``topic``)."""
        found = self._series.get((brand, topic))
        if found is None:
            found = tuple(
                r
                for r in self.rules
                if r.kind == "signal"
                and (not r.brands or brand in r.brands)
                and (r.id if r.match is not None else "") == topic
            )
            self._series[(brand, topic)] = found
        return found

    def needs_authors(self, brand: str, topic: str) -> bool:
        """Whether a rule on this series counts the different authors of a bucket."""
        return any(r.when.min_authors for r in self.signal_rules(brand, topic))

    def judged_scales(self, brand: str, topic: str, scales: Sequence[int]) -> tuple[int, ...]:
        """The scales at which some signal rule judges this series (of ``scales``)."""
        wanted: set[int] = set()
        for rule in self.signal_rules(brand, topic):
            wanted.update(rule.when.scales_seconds or scales)
        return tuple(s for s in scales if s in wanted)

    def quiet(self, rule_id: str, at: datetime) -> bool:
        """Is ``rule_id`` in its quiet hours at ``at``? (``Policy.quiet`` in the incident book.)"""
        rule = self._by_id.get(rule_id)
        return rule is not None and rule.quiet_hours is not None and rule.quiet_hours.covers(at)

    def warnings(self, now: datetime) -> list[Problem]:
        """What is valid but probably not meant: expired rules, own-account conditions on a
        brand without accounts."""
        found = []
        for rule in self.rules:
            origin = self.origins.get(rule.id, RuleOrigin("<rules>", 0, {}))
            where = f"rules[{origin.index}]"
            if rule.expires is not None and rule.expires <= now:
                found.append(
                    Problem(
                        origin.file,
                        origin.line("expires"),
                        f"{where}.expires: warning: {rule.id!r} expired on "
                        f"{rule.expires:%Y-%m-%d %H:%M} UTC and no longer fires",
                    )
                )
            match = rule.match
            if match is None or not (
                match.mentions_own_account or (match.author and match.author.own_account)
            ):
                continue
            brands = rule.brands or tuple(self.accounts)
            without = sorted(b for b in brands if not self.own(b).handles)
            if without:
                found.append(
                    Problem(
                        origin.file,
                        origin.line("match"),
                        f"{where}.match: warning: {rule.id!r} looks for the brand's own "
                        f"accounts, but {_some(without)} {'has' if len(without) == 1 else 'have'} "
                        "none in the config (brands[].accounts)",
                    )
                )
        return found


SHOWN_NAMES = 10  # names a warning lists before it says how many more


def _some(names: Sequence[str]) -> str:
    """``names`` for a message: all of a few, else the first ``SHOWN_NAMES`` and how many
    more (1,000 brands without accounts made warnings of 10,000 characters)."""
    if len(names) <= SHOWN_NAMES:
        return ", ".join(names)
    return f"{', '.join(names[:SHOWN_NAMES])} and {len(names) - SHOWN_NAMES:,} more"


def _index_terms(rule: Rule) -> tuple[str, ...] | None:
    """The terms of ``rule``'s ``any`` (None: it has none). A rule with regexes too may
    match without one of them: ``CompiledMatch.matches`` searches its regexes anyway."""
    match = rule.match
    if match is None or not match.any:
        return None
    return match.any


def term_scale(when: NewTermWhen, scales: Sequence[int]) -> int:
    """The scale a new-term rule counts at: its own, else 5 minutes or the nearest scale."""
    if when.scale_seconds is not None:
        return when.scale_seconds
    return min(scales, key=lambda s: (abs(s - DEFAULT_TERM_SCALE), s))


# --- loading ------------------------------------------------------------------


def load_rules(directory: Path, config: Config, playbooks: PlaybookIndex) -> RuleSet:
    """Read and cross-check every ``*.yaml``/``*.yml`` in ``directory``.

    Raises ``ConfigError`` with every problem found, each with its file and line.
    """
    if not directory.is_dir():
        raise ConfigError([Problem(str(directory), 1, "rules folder not found")])
    rules: list[Rule] = []
    origins: dict[str, RuleOrigin] = {}
    problems: list[Problem] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            document = load_yaml(path)
            rule_file = document.validate(RuleFile)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        for index, rule in enumerate(rule_file.rules):
            for key, message in _cross_check(rule, config, playbooks, origins):
                line = document.line_of(("rules", index, *key.split(".")))
                problems.append(Problem(document.file, line, f"rules[{index}].{key}: {message}"))
            origins.setdefault(rule.id, _origin(document, index))
            rules.append(rule)
    if problems:
        raise ConfigError(problems)
    accounts = {brand.id: OwnAccounts.of(brand.accounts) for brand in config.brands}
    return RuleSet.of(rules, accounts, origins)


def _origin(document: YamlDocument, index: int) -> RuleOrigin:
    item = document.data["rules"][index]
    keys = item if isinstance(item, dict) else {}
    lines = {str(key): document.line_of(("rules", index, str(key))) for key in keys}
    lines[""] = document.line_of(("rules", index))
    return RuleOrigin(document.file, index, lines)


def _cross_check(
    rule: Rule, config: Config, playbooks: PlaybookIndex, origins: dict[str, RuleOrigin]
) -> list[tuple[str, str]]:
    """What a rule names that does not exist: (dotted key, message) pairs."""
    problems = []
    brands = sorted(b.id for b in config.brands)
    scales = config.detect.scales_seconds
    known_scales = ", ".join(str(s) for s in scales)
    if rule.id in origins:
        problems.append(("id", f"{rule.id!r} is already defined in {origins[rule.id].file}"))
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
                    "when.scales_seconds",
                    f"{scale} is not a configured scale (detect.scales_seconds: {known_scales})",
                )
            )
    new_term = rule.when.new_term
    if new_term is not None and new_term.scale_seconds not in (None, *scales):
        problems.append(
            (
                "when.new_term.scale_seconds",
                f"{new_term.scale_seconds} is not a configured scale "
                f"(detect.scales_seconds: {known_scales})",
            )
        )
    return problems
