"""Japanese sentiment from a hand-written polarity lexicon, with no tokenizer.

Japanese is written without spaces, so instead of splitting into words the scorer scans the
NFKC-normalised text for lexicon terms, longest first (one regex built as a trie of the terms,
so a scan costs about the same whatever the lexicon size).  A term followed, after at most a
few hiragana, by a negation (ない, なかった, なし, ません, ず, じゃない, ...) counts for the
opposite polarity at reduced strength: 美味しくない is negative, 問題ない mildly positive.
The weights are summed and squashed into -1..1 like VADER's compound score.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import TypeAlias

from xwatch.model import Sentiment
from xwatch.sentiment.vader import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD, sentiment_from_score

LEXICON_FILE = "ja_lexicon.tsv"
MAX_CHARS = 2_000
"""Only this many leading characters are scored."""

NEGATED_WEIGHT = -0.5
"""A negated term counts as its weight times this: flipped and weakened."""

ALPHA = 4.0
"""Squashing constant: score = total / sqrt(total**2 + ALPHA), so one ±1 term scores ±0.45."""

I_ADJECTIVE_ENDINGS = ("く", "かっ", "さ", "そう", "すぎ")
"""Added to the stem of a term ending in い: 美味しい -> 美味しく, 美味しかった, 美味しさ, ..."""

_NEGATION = re.compile(r"[ぁ-ゖ]{0,3}?(?:な(?:い|かっ|く|さ|し)|ません|ず(?!っ))")
"""A negation just after a term, a few hiragana allowed between: 美味しく|ない, 好き|じゃ|ない."""

_Trie: TypeAlias = dict[str, "_Trie"]


def load_lexicon(text: str) -> dict[str, float]:
    """Term -> weight from the TSV ``text``, terms NFKC-normalised and i-adjectives inflected."""
    lexicon: dict[str, float] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip():
            raise ValueError(f"{LEXICON_FILE}:{number}: expected TERM<TAB>WEIGHT, got {line!r}")
        try:
            weight = float(fields[1])
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight):
            raise ValueError(f"{LEXICON_FILE}:{number}: weight must be a number, got {fields[1]!r}")
        for form in _inflections(unicodedata.normalize("NFKC", fields[0].strip())):
            lexicon.setdefault(form, weight)  # a form written out in the file wins
    return lexicon


def _inflections(term: str) -> tuple[str, ...]:
    """The term, plus its i-adjective forms if it ends in い after a stem longer than one kana."""
    stem = term[:-1]
    if not term.endswith("い") or not stem or (len(stem) == 1 and _is_kana(stem)):
        return (term,)
    return (term, *(stem + ending for ending in I_ADJECTIVE_ENDINGS))


def _is_kana(char: str) -> bool:
    return "\u3040" <= char <= "\u30ff"


def trie_pattern(terms: Iterable[str]) -> str:
    """A regex matching any of ``terms``, the longest one where several start at a position
    (a trie of the terms, so its cost hardly grows with their number)."""
    trie: _Trie = {}
    for term in terms:
        node = trie
        for char in term:
            node = node.setdefault(char, {})
        node[""] = {}  # a term ends here
    return _trie_node_pattern(trie)


def _trie_node_pattern(node: _Trie) -> str:
    branches = [re.escape(char) + _trie_node_pattern(child) for char, child in node.items() if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    # Children start with distinct characters, so greedy "?" means "longest term first".
    return f"(?:{body})?" if "" in node else body


def _lexicon_text() -> str:
    return resources.files("xwatch.sentiment").joinpath(LEXICON_FILE).read_text(encoding="utf-8")


class JapaneseLexiconScorer:
    """Scores Japanese text by the summed weights of the lexicon terms found in it."""

    def __init__(
        self,
        lexicon: Mapping[str, float] | None = None,
        positive_threshold: float = POSITIVE_THRESHOLD,
        negative_threshold: float = NEGATIVE_THRESHOLD,
        max_chars: int = MAX_CHARS,
    ) -> None:
        """``lexicon`` (term -> weight, already inflected) defaults to the packaged TSV."""
        if not negative_threshold < positive_threshold:
            raise ValueError("negative_threshold must be below positive_threshold")
        self._lexicon = dict(lexicon) if lexicon is not None else load_lexicon(_lexicon_text())
        if not self._lexicon or "" in self._lexicon:
            raise ValueError("the lexicon must be non-empty and hold no empty term")
        self._terms = re.compile(trie_pattern(self._lexicon))
        self._positive_threshold = positive_threshold
        self._negative_threshold = negative_threshold
        self._max_chars = max_chars

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        """One ``Sentiment`` per text, in order."""
        return [self._score_one(text) for text in texts]

    def matches(self, text: str) -> list[tuple[str, float]]:
        """The terms found in ``text`` with the weight each contributes (negation applied)."""
        normalised = unicodedata.normalize("NFKC", text[: self._max_chars])
        found: list[tuple[str, float]] = []
        for match in self._terms.finditer(normalised):
            weight = self._lexicon[match.group()]
            if _NEGATION.match(normalised, match.end()):
                weight *= NEGATED_WEIGHT
            found.append((match.group(), weight))
        return found

    def polarity(self, text: str) -> float:
        """The squashed sum of the weights of the terms found (-1..1)."""
        total = sum(weight for _, weight in self.matches(text))
        return total / math.sqrt(total * total + ALPHA)

    def _score_one(self, text: str) -> Sentiment:
        score = self.polarity(text)
        return sentiment_from_score(score, self._negative_threshold, self._positive_threshold)
