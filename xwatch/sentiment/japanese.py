"""Japanese sentiment from polarity lexicons (hand-written, and ML-Ask's), no tokenizer.

Japanese is written without spaces, so instead of splitting into words the scorer scans the
NFKC-normalised text for lexicon terms, leftmost and then longest first, without overlaps
(an Aho-Corasick automaton of the terms, ``pyahocorasick``: one pass over the text whatever
the lexicon size; it finds what ``re.finditer`` of ``trie_pattern(terms)`` finds, about ten
times faster for its five thousand terms).  A term followed, after at most a
few hiragana, by a negation (ない, なかった, なし, ません, ず, じゃない, 無い, ...) counts for
the opposite polarity at reduced strength: 美味しくない is negative, 問題ない mildly positive.
A contrast turns the weight to the clause after it, as VADER's rule for "but" does: with a
contrastive conjunction in the text (けど, けれど, だけど, しかし, のに, ものの, "が、", a
clause-initial でも), the terms before its last occurrence count ``BEFORE_CONTRAST`` times
their weight, the terms after it ``AFTER_CONTRAST`` times: in 便利だけど高すぎる the
complaint wins.  The weights are summed and squashed into -1..1 like VADER's compound score.

The lexicon is the hand-written ``ja_lexicon.tsv`` and, for the terms it lacks, the emotion
words of ML-Ask (``ja_mlask.tsv``, BSD-3-Clause, see its header) at ``MLASK_WEIGHT`` for
the negative emotions (dislike, sadness, anger, fear) and the positive ones (joy, liking,
relief), as ML-Ask itself gives them valence; ``load_mlask`` turns its lemmas into terms.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import TypeAlias

import ahocorasick  # type: ignore[import-not-found]  # no type information shipped

from xwatch.model import Sentiment
from xwatch.sentiment.vader import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD, sentiment_from_score

LEXICON_FILE = "ja_lexicon.tsv"
MLASK_FILE = "ja_mlask.tsv"
MLASK_VALENCE = {
    "iya": -1.0,
    "aware": -1.0,
    "ikari": -1.0,
    "kowa": -1.0,
    "yorokobi": 1.0,
    "suki": 1.0,
    "yasu": 1.0,
}
"""ML-Ask's categories with a valence (its own ``RE_VALANCE_POS``/``_NEG``): dislike,
sadness, anger and fear negative; joy, liking and relief positive."""
MLASK_WEIGHT = 1.0
"""The weight of an ML-Ask word: an ordinary evaluative word of the hand-written lexicon."""
MAX_CHARS = 2_000
"""Only this many leading characters are scored."""

NEGATED_WEIGHT = -0.5
"""A negated term counts as its weight times this: flipped and weakened."""

ALPHA = 4.0
"""Squashing constant: score = total / sqrt(total**2 + ALPHA), so one ±1 term scores ±0.45."""

I_ADJECTIVE_ENDINGS = ("く", "かっ", "さ", "そう", "すぎ", "過ぎ")
"""Added to the stem of a term ending in い: 美味しい -> 美味しく, 美味しかった, 美味しさ, ...
(すぎ also in kanji: 高過ぎ)."""

_NEGATION = re.compile(
    r"(?!しか)(?:[ぁ-ゖ]{0,3}?|[なの]?(?:こと|事|もの|物|わけ|訳)(?:じゃ|では|でも|は|も)?)"
    r"(?:[な無](?:い|かっ|く|さ|し)|ねえ|ねぇ|ません|ず(?!っ))"
    r"(?<!じゃない(?=[か?]|ですか))(?<!ではない(?=[か?]|ですか))"
)
"""A negation just after a term: a few hiragana allowed between (美味しく|ない, 好き|じゃ|ない),
or a nominaliser (悪い|ことじゃ|ない, 嫌|なわけでは|ない); colloquial ねえ counts (見えねえ), and
ない written in kanji (悔いは|無い, 問題|無し).
Not negations: しかない ("nothing but": 泣くしかない is crying), and the rhetorical
じゃないか / じゃない? / じゃないですか ("isn't it": 最高じゃないか praises)."""

_CONTRAST = re.compile(r"けど|けれど|しかし|のに|ものの|が[、,]|(?:^|[\s、,。!?…])でも")
"""Contrastive conjunctions: the clause after the last one carries the text's evaluation."""

BEFORE_CONTRAST = 0.5
AFTER_CONTRAST = 1.5
"""VADER's weights of the words before and after "but"."""

_Trie: TypeAlias = dict[str, "_Trie"]


def load_lexicon(text: str) -> dict[str, float]:
    """Term -> weight from the TSV ``text``, terms NFKC-normalised and i-adjectives inflected.

    A term written out in the file wins over the same form inflected from another line
    (重すぎ's own weight, not 重い's), wherever the two lines are."""
    written: dict[str, float] = {}
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
        written.setdefault(unicodedata.normalize("NFKC", fields[0].strip()), weight)
    lexicon = dict(written)
    for term, weight in written.items():
        for form in _inflections(term):
            lexicon.setdefault(form, weight)  # a form written out in the file wins
    return lexicon


_MLASK_LEMMA = re.compile(r"[うくぐすつぬぶむる](?:ない|れる|せる|なる)$|い(?:さ|なる|がる)$")
"""A lemma sequence of ML-Ask's MeCab step that no text spells ("あてになるない",
"悲しいさ", "気持ちが悪いなる")."""
_HIRAGANA = re.compile(r"[ぁ-ゖー]+")
_VERB_ENDING = "うくぐすつぬぶむる"


def load_mlask(text: str) -> dict[str, float]:
    """Term -> weight from ML-Ask's word list ``text`` (``WORD<TAB>CATEGORY`` lines).

    Each word, NFKC-normalised, becomes terms as the hand-written lexicon's do: an
    i-adjective also its inflections; a verb ending in a kana of the u-row after at least
    two characters also its stem (呆れる -> 呆れ, 苛立つ -> 苛立, matching 呆れた,
    苛立って).  Left out: lemma sequences no text spells (``_MLASK_LEMMA``), words of one
    character, and hiragana-only words of up to three (いや, つんと: they occur inside
    other words), and words ML-Ask files under both valences.
    """
    valences: dict[str, set[float]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or fields[1] not in MLASK_VALENCE:
            raise ValueError(f"{MLASK_FILE}:{number}: expected WORD<TAB>CATEGORY, got {line!r}")
        word = unicodedata.normalize("NFKC", fields[0].strip())
        if len(word) < 2 or _MLASK_LEMMA.search(word):
            continue
        hiragana = _HIRAGANA.fullmatch(word) is not None
        if hiragana and len(word) <= 3:
            continue
        terms = [word]
        if word[-1] in _VERB_ENDING and len(word) >= 3 and not hiragana:
            terms.append(word[:-1])
        for term in terms:
            for form in _inflections(term):
                valences.setdefault(form, set()).add(MLASK_VALENCE[fields[1]])
    return {term: MLASK_WEIGHT * signs.pop() for term, signs in valences.items() if len(signs) == 1}


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


@functools.lru_cache(maxsize=1)
def nfkc(text: str) -> str:
    """``text`` NFKC-normalised.  The last text's form is kept: the default Japanese scorer
    normalises each text twice in a row, for its lexicon and for its cues, and a text that
    is not already normalised costs microseconds."""
    return unicodedata.normalize("NFKC", text)


def _packaged(name: str) -> str:
    return resources.files("xwatch.sentiment").joinpath(name).read_text(encoding="utf-8")


def _lexicon_text() -> str:
    return _packaged(LEXICON_FILE)


def default_lexicon() -> dict[str, float]:
    """The hand-written lexicon, and ML-Ask's words for the terms it lacks."""
    return {**load_mlask(_packaged(MLASK_FILE)), **load_lexicon(_lexicon_text())}


class JapaneseLexiconScorer:
    """Scores Japanese text by the summed weights of the lexicon terms found in it."""

    def __init__(
        self,
        lexicon: Mapping[str, float] | None = None,
        positive_threshold: float = POSITIVE_THRESHOLD,
        negative_threshold: float = NEGATIVE_THRESHOLD,
        max_chars: int = MAX_CHARS,
    ) -> None:
        """``lexicon`` (term -> weight, already inflected) defaults to ``default_lexicon()``."""
        if not negative_threshold < positive_threshold:
            raise ValueError("negative_threshold must be below positive_threshold")
        self._lexicon = dict(lexicon) if lexicon is not None else default_lexicon()
        if not self._lexicon or "" in self._lexicon:
            raise ValueError("the lexicon must be non-empty and hold no empty term")
        self._terms = ahocorasick.Automaton()
        for term in self._lexicon:
            self._terms.add_word(term, term)
        self._terms.make_automaton()
        self._positive_threshold = positive_threshold
        self._negative_threshold = negative_threshold
        self._max_chars = max_chars

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        """One ``Sentiment`` per text, in order."""
        return [self._score_one(text) for text in texts]

    def matches(self, text: str) -> list[tuple[str, float]]:
        """The terms found in ``text`` with the weight each contributes (negation applied)."""
        normalised = nfkc(text[: self._max_chars])
        found: list[tuple[str, float]] = []
        contrast = -1
        for contrast_match in _CONTRAST.finditer(normalised):
            contrast = contrast_match.start()
        for end, term in self._terms.iter_long(normalised):
            weight = self._lexicon[term]
            if _NEGATION.match(normalised, end + 1):
                weight *= NEGATED_WEIGHT
            if contrast >= 0:
                weight *= BEFORE_CONTRAST if end < contrast else AFTER_CONTRAST
            found.append((term, weight))
        return found

    def polarity(self, text: str) -> float:
        """The squashed sum of the weights of the terms found (-1..1)."""
        total = sum(weight for _, weight in self.matches(text))
        return total / math.sqrt(total * total + ALPHA)

    def _score_one(self, text: str) -> Sentiment:
        score = self.polarity(text)
        return sentiment_from_score(score, self._negative_threshold, self._positive_threshold)
