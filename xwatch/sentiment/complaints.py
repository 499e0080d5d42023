"""Complaint cues: the default English and Japanese scorers, dictionary scorers plus cues.

Customer complaints often carry no negative word at all ("still waiting for my bag after 3
hours", "3回目の再起動でも直らない"), so a polarity dictionary calls them neutral.  A
``ComplaintScorer`` adds a small, hand-written list of complaint cues to a dictionary
scorer's score:

* the cues live in TSV files next to this module (``en_cues.tsv``, ``ja_cues.tsv``), one
  ``PATTERN<TAB>WEIGHT<TAB>NOTE`` per line, written from general knowledge of complaints and
  not fitted to any evaluation data;
* a cue's pattern is matched on the *folded* text (lower-cased, with straight apostrophes,
  for English; NFKC-normalised and lower-cased for Japanese), so patterns are written in
  lower case;
* the rule: ``score = clip(base + sum of the weights of the distinct cues found, -1, 1)``,
  where ``base`` is the dictionary scorer's score (VADER's compound for English, the
  lexicon score for Japanese); the labels keep the usual thresholds (-0.05 / +0.05).  Each
  cue is looked for on its own (cues may overlap) and counts once however often it occurs.
  Two kinds of cue, by weight: a *complaint* cue (|weight| >= 0.05: a delay, a lost bag, "no
  reply") is evidence on its own; a *tone* cue (|weight| < 0.05: "again", "still", a
  duration) never flips a neutral text by itself, it only adds to other evidence;
* English only: a cue right after a negation ("no delay", "without any delay", "not
  stuck") does not count.  Japanese negation follows the word, so the Japanese cues spell
  their negated forms out.

Speed: searching every cue's regex over every text costs several times VADER itself, so
``CueSet.matches`` first finds which cues can match at all, from their *heads* (the literal
text every match starts with: ``\\bdelay(?:s|ed)?`` has the head "delay", ``\\b(?:lost|
missing) bag`` the heads "lost" and "missing").  A cue whose matches start at a word start
is tried only where a word starts with one of its heads (one pass of one regex finds those
places for all cues); a cue with heads elsewhere is searched when a head occurs in the
text (with many such heads, as the Japanese cues have, one Aho-Corasick pass finds which
occur); a cue without known heads is always searched.  A head is a necessary condition for
its cue, so ``matches`` gives exactly what ``scan`` (every cue searched) gives;
``tests/test_sentiment.py`` checks it on hand-written and generated texts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

import ahocorasick  # type: ignore[import-not-found]  # no type information shipped

from xwatch.model import Sentiment
from xwatch.sentiment.japanese import JapaneseLexiconScorer, nfkc, trie_pattern
from xwatch.sentiment.vader import (
    MAX_CHARS,
    NEGATIVE_THRESHOLD,
    POSITIVE_THRESHOLD,
    REQUEST_WORDS,
    VaderScorer,
    sentiment_from_score,
)

EN_CUES_FILE = "en_cues.tsv"
JA_CUES_FILE = "ja_cues.tsv"

ENGLISH_NEGATION_GUARD = re.compile(r"(?:\b(?:no|not|without|zero|never)|n't|nt)\s+(?:[\w']+\s+)?$")
"""Folded text just before an English cue that cancels it: a negation, at most one word
between."""

GUARD_WINDOW = 24
"""How many characters before a cue the guard looks at."""

AUTOMATON_HEADS = 40
"""With more loose heads than this (cues not anchored at a word start), a ``CueSet`` finds
which occur with one Aho-Corasick pass, not an "in" test per head: on posts, 13 heads
take 0.3 us by tests and 1.1 us by the automaton, 125 heads 6.2 us and 1.6 us."""

_LITERAL = re.compile(r"[^\\.^$*+?{}\[\]|()]")
"""A pattern character that stands for itself."""

_WORD_PART = re.compile(r"\w+")
"""The leading word characters of a head: its key."""


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


def literal_heads(pattern: str) -> tuple[frozenset[str], bool] | None:
    """Strings one of which every match of ``pattern`` starts with, and whether every match
    starts at a word start (each alternative opens with ``\\b``); None when unknown.

    Understands a deliberately small part of the regex syntax, which covers the usual cue:
    an optional leading ``\\b``, then literal characters (``delay``), or a group of literal
    alternatives (``(?:lost|missing)``), or top-level alternatives of such; a leading ``\\d``
    stands for the ten digits.  Anything else ends the head (``cancel+`` gives "cance"); a
    pattern that starts with anything else (``[abc]``, ``.``, ``(?=...)``) has no known heads.
    """
    branches = _split_top(pattern)
    if branches is None:
        return None
    if len(branches) > 1:
        heads: set[str] = set()
        anchored = True
        for branch in branches:
            found = literal_heads(branch)
            if found is None:
                return None
            heads |= found[0]
            anchored = anchored and found[1]
        return frozenset(heads), anchored
    anchored = pattern.startswith(r"\b")
    if anchored:
        pattern = pattern[2:]
    if pattern.startswith("(?:"):
        end = _group_end(pattern)
        if end is None or (end < len(pattern) and pattern[end] in "?*{"):
            return None
        inner = literal_heads(pattern[3 : end - 1])
        if inner is None:
            return None
        return inner[0], anchored or inner[1]
    if pattern.startswith(r"\d") and pattern[2:3] not in ("?", "*", "{"):
        return frozenset("0123456789"), anchored
    head: list[str] = []
    i = 0
    while i < len(pattern):
        char, width = pattern[i], 1
        if char == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            char, width = pattern[i + 1], 2  # an escaped punctuation character: "\\("
        elif not _LITERAL.fullmatch(char):
            break
        following = pattern[i + width : i + width + 1]
        if following and following in "?*{":
            break
        head.append(char)
        if following == "+":
            break
        i += width
    return (frozenset({"".join(head)}), anchored) if head else None


def _split_top(pattern: str) -> list[str] | None:
    """``pattern`` split at its top-level "|"; None when it cannot be read (unbalanced)."""
    branches, depth, start = [], 0, 0
    for i, char in _structure(pattern):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(pattern[start:i])
            start = i + 1
    branches.append(pattern[start:])
    return branches if depth == 0 else None


def _group_end(pattern: str) -> int | None:
    """The index just after the group that opens ``pattern``."""
    depth = 0
    for i, char in _structure(pattern):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _structure(pattern: str) -> list[tuple[int, str]]:
    """The "(", ")" and "|" of ``pattern`` that are not escaped or in a character class."""
    found: list[tuple[int, str]] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 1  # a "]" (after an optional "^") right after "[" is a member
            if pattern[i : i + 1] == "^":
                i += 1
        elif char in "()|":
            found.append((i, char))
        i += 1
    return found


class CueSet:
    """Cues, each compiled on its own; finds the distinct cues in a text and sums their weights.

    A cue counts at its earliest match that the guard does not cancel.  How ``matches``
    finds the candidates (``scan`` is the plain reference):

    * a cue whose every match starts at a word start with one of its heads is tried only
      where a word starts with the head's first word part (its *key*): one regex, a trie of
      all keys, finds those places in one pass;
    * a cue with heads that may start anywhere is searched when a head occurs in the text
      (an "in" test per head, or with more than ``AUTOMATON_HEADS`` heads one pass of an
      Aho-Corasick automaton of them all);
    * a cue without known heads is always searched.
    """

    def __init__(
        self,
        cues: Sequence[Cue],
        *,
        fold: Callable[[str], str] | None = None,
        guard: re.Pattern[str] | None = None,
    ) -> None:
        """``fold`` maps a text before the cues are looked for (``str.lower`` for English).
        ``guard``, when given, cancels a cue match whose preceding folded text (up to
        ``GUARD_WINDOW`` characters) it matches at its end."""
        if not cues:
            raise ValueError("a CueSet needs at least one cue")
        self.cues = tuple(cues)
        self._fold = fold
        self._guard = guard
        self._regexes = tuple(re.compile(cue.pattern) for cue in self.cues)
        self._weights = tuple(cue.weight for cue in self.cues)
        by_key: dict[str, set[int]] = {}
        by_head: dict[str, set[int]] = {}
        always: list[int] = []
        for i, cue in enumerate(self.cues):
            found = literal_heads(cue.pattern)
            if found is None:
                always.append(i)
                continue
            heads, anchored = found
            keys = {_WORD_PART.match(head) for head in heads}
            if anchored and all(keys):
                for key in keys:
                    assert key is not None
                    by_key.setdefault(key.group(), set()).add(i)
            else:
                for head in heads:
                    by_head.setdefault(head, set()).add(i)
        self._always = tuple(always)
        self._loose = tuple((head, tuple(sorted(by_head[head]))) for head in sorted(by_head))
        # With many loose heads, an Aho-Corasick automaton of them finds those in the text
        # in one pass, where an "in" test per head costs a pass per head (its value for a
        # head is the head's place in ``_loose``); with few, the tests are faster.
        self._heads: ahocorasick.Automaton | None = None
        if len(self._loose) > AUTOMATON_HEADS:
            self._heads = ahocorasick.Automaton()
            for rank, (head, _) in enumerate(self._loose):
                self._heads.add_word(head, rank)
            self._heads.make_automaton()
        # The key regex finds the longest key at each word start; a found key also stands
        # for the shorter keys it starts with ("missing" for "miss").
        self._by_key = {
            key: tuple(sorted(i for other, cues in by_key.items() if key.startswith(other)
                              for i in cues))
            for key in by_key
        }  # fmt: skip
        # "\\W(key)" on the text after a space finds the keys at word starts like
        # "\\b(key)" on the text, twice as fast: the regex engine skips ahead to the
        # non-word characters instead of trying every position.
        self._keys = re.compile(rf"\W({trie_pattern(by_key)})") if by_key else None

    def fold(self, text: str) -> str:
        """The text as the cues see it."""
        return self._fold(text) if self._fold is not None else text

    def matches(self, text: str) -> list[tuple[str, Cue]]:
        """The text each distinct cue matched first, with the cue, in order of position.

        The same as ``scan``, with less work (see the class's docstring).
        """
        return self._ordered(self._find(self.fold(text)))

    def _find(self, folded: str) -> dict[int, tuple[int, str]]:
        """Cue index -> (start, text) of its earliest unguarded match, for the cues found."""
        found: dict[int, tuple[int, str]] = {}
        if self._keys is not None:
            regexes, guard, by_key = self._regexes, self._guard, self._by_key
            for key in self._keys.finditer(" " + folded):
                start = key.start()  # of the key in ``folded``, one less in the padded text
                for i in by_key[key.group(1)]:
                    if i in found:
                        continue
                    match = regexes[i].match(folded, start)
                    if match is not None and not (
                        guard is not None
                        and guard.search(folded, max(0, start - GUARD_WINDOW), start)
                    ):
                        found[i] = (start, match.group())
        if self._heads is None:
            for head, indices in self._loose:
                if head in folded:
                    self._first_of(indices, folded, found)
        else:
            # The heads found, in the order of ``_loose`` as above (the order of ``found``
            # is the order ``total`` adds the weights in).
            for rank in sorted({rank for _, rank in self._heads.iter(folded)}):
                self._first_of(self._loose[rank][1], folded, found)
        for i in self._always:
            self._first(i, folded, found)
        return found

    def scan(self, text: str) -> list[tuple[str, Cue]]:
        """``matches`` the plain way: every cue searched over the whole text."""
        folded = self.fold(text)
        found: dict[int, tuple[int, str]] = {}
        for i in range(len(self.cues)):
            self._first(i, folded, found)
        return self._ordered(found)

    def total(self, text: str) -> float:
        """The summed weight of the distinct cues in ``text``."""
        weights = self._weights
        return sum([weights[i] for i in self._find(self.fold(text))])

    def _first_of(
        self, indices: Sequence[int], folded: str, found: dict[int, tuple[int, str]]
    ) -> None:
        """``_first`` for each of the cues ``indices`` not found yet."""
        for i in indices:
            if i not in found:
                self._first(i, folded, found)

    def _first(self, i: int, folded: str, found: dict[int, tuple[int, str]]) -> None:
        """Record cue ``i``'s earliest match that the guard does not cancel, if any."""
        regex, guard = self._regexes[i], self._guard
        position = 0
        while (match := regex.search(folded, position)) is not None:
            start = match.start()
            if guard is None or not guard.search(folded, max(0, start - GUARD_WINDOW), start):
                found[i] = (start, match.group())
                return
            position = start + 1

    def _ordered(self, found: dict[int, tuple[int, str]]) -> list[tuple[str, Cue]]:
        return [(text, self.cues[i]) for i, (_, text) in sorted(found.items(), key=_by_start)]


def _by_start(item: tuple[int, tuple[int, str]]) -> tuple[int, int]:
    """Order found cues by where they matched, then by their place in the file."""
    return item[1][0], item[0]


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
        positive_threshold: float = POSITIVE_THRESHOLD,
        negative_threshold: float = NEGATIVE_THRESHOLD,
        max_chars: int = MAX_CHARS,
    ) -> None:
        """Both the base scorer and the cues read the first ``max_chars`` characters."""
        if not negative_threshold < positive_threshold:
            raise ValueError("negative_threshold must be below positive_threshold")
        self.base = base
        self.cues = cues
        self._positive_threshold = positive_threshold
        self._negative_threshold = negative_threshold
        self._max_chars = max_chars

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        """One ``Sentiment`` per text, in order."""
        return [self._score_one(text) for text in texts]

    def polarity(self, text: str) -> float:
        """The base score plus the cue weights, clipped to -1..1."""
        head = text[: self._max_chars]
        score = self.base.polarity(head) + self.cues.total(head)
        return min(1.0, max(-1.0, score))

    def _score_one(self, text: str) -> Sentiment:
        return sentiment_from_score(
            self.polarity(text), self._negative_threshold, self._positive_threshold
        )


def fold_japanese(text: str) -> str:
    """NFKC (half-width katakana and full-width digits and letters folded), lower-cased."""
    return nfkc(text).lower()


def fold_english(text: str) -> str:
    """Lower-cased, with typographic apostrophes (U+2019) made straight: "don't"."""
    return text.lower().replace("\u2019", "'")


def english_cues() -> CueSet:
    """The packaged English cues, on folded text, cancelled right after a negation."""
    return CueSet(packaged_cues(EN_CUES_FILE), fold=fold_english, guard=ENGLISH_NEGATION_GUARD)


def japanese_cues() -> CueSet:
    """The packaged Japanese cues, matched on NFKC-normalised, lower-cased text."""
    return CueSet(packaged_cues(JA_CUES_FILE), fold=fold_japanese)


def english_default() -> ComplaintScorer:
    """The default English scorer: VADER's compound, with the words of asking
    (``REQUEST_WORDS``) scoring 0, typographic apostrophes read as "'" and the tweet rules
    of ``xwatch.sentiment.english``, plus the English complaint cues."""
    base = VaderScorer(unscored=REQUEST_WORDS, straight_apostrophes=True, tweet_rules=True)
    return ComplaintScorer(base, english_cues())


def japanese_default() -> ComplaintScorer:
    """The default Japanese scorer: the polarity lexicon plus the Japanese complaint cues."""
    return ComplaintScorer(JapaneseLexiconScorer(), japanese_cues())
