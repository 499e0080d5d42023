"""Complaint cues: the default English and Japanese scorers, dictionary scorers plus cues.

Customer complaints often carry no negative word at all ("still waiting for my bag after 3
hours", "3回目の再起動でも直らない"), so a polarity dictionary calls them neutral.  A
``ComplaintScorer`` adds a small, hand-written list of complaint cues to a dictionary
scorer's score:

* the cues live in TSV files next to this module (``en_cues.tsv``, ``ja_cues.tsv``), one
  ``PATTERN<TAB>WEIGHT<TAB>NOTE`` per line, written from general knowledge of complaints and
  not fitted to any evaluation data;
* the patterns are compiled once into one regex (an alternation with one capturing group
  per cue, so ``match.lastindex`` names the cue), scanned once per text;
* the rule: ``score = clip(base + sum of the weights of the distinct cues found, -1, 1)``,
  where ``base`` is the dictionary scorer's score (VADER's compound for English, the
  lexicon score for Japanese); the labels keep the usual thresholds (-0.05 / +0.05).  A cue
  counts once however often it occurs; cues weaker than 0.05 never flip a neutral text on
  their own;
* English only: a cue right after a negation ("no delay", "without any delay", "not
  stuck") does not count.  Japanese negation follows the word, so the Japanese cues spell
  their negated forms out.

``english_default()`` and ``japanese_default()`` build the scorers ``default_router`` uses.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from xwatch.model import Sentiment
from xwatch.sentiment.japanese import JapaneseLexiconScorer
from xwatch.sentiment.vader import (
    MAX_CHARS,
    NEGATIVE_THRESHOLD,
    POSITIVE_THRESHOLD,
    VaderScorer,
    sentiment_from_score,
)

EN_CUES_FILE = "en_cues.tsv"
JA_CUES_FILE = "ja_cues.tsv"

ENGLISH_NEGATION_GUARD = re.compile(
    r"(?:\b(?:no|not|without|zero|never)|n't|nt)\s+(?:[\w']+\s+)?$", re.IGNORECASE
)
"""Text just before an English cue that cancels it: a negation, at most one word between."""

GUARD_WINDOW = 24
"""How many characters before a cue the guard looks at."""


@dataclass(frozen=True)
class Cue:
    """One complaint cue: a regex, the weight it adds to the score, and what it stands for."""

    pattern: str
    weight: float
    note: str


def load_cues(text: str, source: str = "cues") -> tuple[Cue, ...]:
    """The cues in the TSV ``text`` (``source`` names it in errors)."""
    cues: list[Cue] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0]:
            raise ValueError(f"{source}:{number}: expected PATTERN<TAB>WEIGHT<TAB>NOTE")
        try:
            weight = float(fields[1])
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight):
            raise ValueError(f"{source}:{number}: weight must be a number, got {fields[1]!r}")
        try:
            groups = re.compile(fields[0]).groups
        except re.error as error:
            raise ValueError(f"{source}:{number}: bad pattern: {error}") from None
        if groups:
            raise ValueError(f"{source}:{number}: use only non-capturing groups (?:...)")
        cues.append(Cue(fields[0], weight, fields[2].strip()))
    return tuple(cues)


def packaged_cues(name: str) -> tuple[Cue, ...]:
    """The cues of a TSV file shipped in ``xwatch.sentiment``."""
    text = resources.files("xwatch.sentiment").joinpath(name).read_text(encoding="utf-8")
    return load_cues(text, name)


class CueSet:
    """Cues compiled into one regex; finds the distinct cues in a text and sums their weights."""

    def __init__(
        self,
        cues: Sequence[Cue],
        *,
        ignore_case: bool = False,
        guard: re.Pattern[str] | None = None,
        word_starts: bool = False,
    ) -> None:
        """``guard``, when given, cancels a cue whose preceding text (up to ``GUARD_WINDOW``
        characters) it matches at its end.  ``word_starts`` tries the cues only where a word
        or a "#" starts (2-3x faster; for cues that all start so, like the English ones)."""
        if not cues:
            raise ValueError("a CueSet needs at least one cue")
        self.cues = tuple(cues)
        body = "|".join(f"({cue.pattern})" for cue in self.cues)
        if word_starts:
            body = rf"(?:(?=\w)\b|(?=#))(?:{body})"
        self._regex = re.compile(body, re.IGNORECASE if ignore_case else 0)
        self._guard = guard

    def matches(self, text: str) -> list[tuple[str, Cue]]:
        """The text each distinct cue matched first, with the cue, in order of position."""
        found: list[tuple[str, Cue]] = []
        seen: set[int] = set()
        guard = self._guard
        for match in self._regex.finditer(text):
            index = match.lastindex
            if index is None or index in seen:
                continue
            start = match.start()
            if guard is not None and guard.search(text, max(0, start - GUARD_WINDOW), start):
                continue
            seen.add(index)
            found.append((match.group(), self.cues[index - 1]))
        return found

    def total(self, text: str) -> float:
        """The summed weight of the distinct cues in ``text``."""
        return sum(cue.weight for _, cue in self.matches(text))


class PolarityScorer(Protocol):
    """A scorer that gives a raw score in -1..1 for one text."""

    def polarity(self, text: str) -> float: ...


class ComplaintScorer:
    """A dictionary scorer's score plus the weights of the complaint cues found, clipped."""

    def __init__(
        self,
        base: PolarityScorer,
        cues: CueSet,
        *,
        normalise: Callable[[str], str] | None = None,
        positive_threshold: float = POSITIVE_THRESHOLD,
        negative_threshold: float = NEGATIVE_THRESHOLD,
        max_chars: int = MAX_CHARS,
    ) -> None:
        """``normalise`` maps the text (its first ``max_chars`` characters) before the cues
        are looked for (NFKC for Japanese)."""
        if not negative_threshold < positive_threshold:
            raise ValueError("negative_threshold must be below positive_threshold")
        self.base = base
        self.cues = cues
        self._normalise = normalise
        self._positive_threshold = positive_threshold
        self._negative_threshold = negative_threshold
        self._max_chars = max_chars

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        """One ``Sentiment`` per text, in order."""
        return [self._score_one(text) for text in texts]

    def polarity(self, text: str) -> float:
        """The base score plus the cue weights, clipped to -1..1."""
        head = text[: self._max_chars]
        cue_text = self._normalise(head) if self._normalise is not None else head
        score = self.base.polarity(head) + self.cues.total(cue_text)
        return min(1.0, max(-1.0, score))

    def _score_one(self, text: str) -> Sentiment:
        return sentiment_from_score(
            self.polarity(text), self._negative_threshold, self._positive_threshold
        )


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def english_cues() -> CueSet:
    """The packaged English cues, case-insensitive, cancelled right after a negation."""
    return CueSet(
        packaged_cues(EN_CUES_FILE),
        ignore_case=True,
        guard=ENGLISH_NEGATION_GUARD,
        word_starts=True,
    )


def japanese_cues() -> CueSet:
    """The packaged Japanese cues, matched on NFKC-normalised text."""
    return CueSet(packaged_cues(JA_CUES_FILE))


def english_default() -> ComplaintScorer:
    """The default English scorer: VADER's compound plus the English complaint cues."""
    return ComplaintScorer(VaderScorer(), english_cues())


def japanese_default() -> ComplaintScorer:
    """The default Japanese scorer: the polarity lexicon plus the Japanese complaint cues."""
    return ComplaintScorer(JapaneseLexiconScorer(), japanese_cues(), normalise=_nfkc)
