"""English sentiment with VADER, and the score-to-label convention every scorer shares."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    SentiText,
    normalize,
)

from xwatch.model import Sentiment
from xwatch.sentiment.english import rewrite

POSITIVE_THRESHOLD = 0.05
"""Scores at or above this are "positive" (VADER's published convention)."""

NEGATIVE_THRESHOLD = -0.05
"""Scores at or below this are "negative"."""

REQUEST_WORDS = ("please", "pls", "plz", "kindly", "help", "hope", "hoping", "wish")
"""Words of asking and wishing that VADER scores as positive (please +1.3, help +1.7, hope
+1.9): in posts to a brand they mostly ask for something that is missing ("please help, my
bag is lost", "I hope someone answers"), so the complaint-aware default scores them 0."""

MAX_CHARS = 2_000
"""Only this many leading characters are scored: VADER is linear but slow, ~0.5 ms/1k chars."""

CLAUSE_ENDS = (".", ",", ";", ":", "!", "?", "\u2026")
"""Punctuation that ends a clause when a word ends with it: with ``tweet_rules`` a
negation or a booster reaches no word past it ("can't wait! Thanks" thanks in full)."""


def sentiment_from_score(
    score: float,
    negative_threshold: float = NEGATIVE_THRESHOLD,
    positive_threshold: float = POSITIVE_THRESHOLD,
) -> Sentiment:
    """A ``Sentiment`` for a score in -1..1, labelled by the two thresholds."""
    if score >= positive_threshold:
        return Sentiment("positive", score)
    if score <= negative_threshold:
        return Sentiment("negative", score)
    return Sentiment("neutral", score)


class FastAnalyzer(SentimentIntensityAnalyzer):  # type: ignore[misc]  # untyped library
    """VADER giving the very same scores as ``SentimentIntensityAnalyzer``, faster.

    With ``tweet_rules`` (not for ``polarity_scores``), ``compound`` also ends a negation
    or a booster with its clause: VADER lets "not" reach three words ahead whatever lies
    between, so "can't wait! Thanks" negates "thanks", "no, I'm sure" negates "sure" and
    "no food? #BadService" negates "bad".  Negation scope ends at punctuation (the usual
    rule of negation detection since Pang et al. 2002, "Thumbs up?"): a word ending in one
    of ``CLAUSE_ENDS`` hides itself and everything before it from the words after it.

    ``polarity_scores`` (about 1.8x faster) replaces two hot spots of vaderSentiment 3.3 by
    equivalents: the emoji translation (a character-by-character string concatenation, now
    a set test, and for texts with emoji one regex substitution that inserts the same
    descriptions with the same spacing) and the negation and idiom checks (which lower-case
    the whole word list once per lexicon word, now once per text).  ``compound`` computes
    the compound score alone (what xwatch uses), about 3x faster than the original: it
    tokenizes and lower-cases once, looks at lexicon words only (every other word scores
    0), gives a word its lexicon valence straight away when no word around it can modify
    it (``_unmodified``), builds VADER's idiom phrases only where one could start, and
    skips the positive/negative/neutral proportions.  ``tests/test_sentiment.py`` checks both
    equivalences.
    """

    def __init__(self, unscored: Iterable[str] = (), tweet_rules: bool = False) -> None:
        """``unscored`` words are taken out of the lexicon: they score 0 and act as any
        word outside it.  ``tweet_rules`` turns on the class's rules for tweets (in
        ``compound`` only)."""
        super().__init__()
        self._tweet_rules = tweet_rules
        for word in unscored:
            self.lexicon.pop(word, None)
        singles = sorted(emoji for emoji in self.emojis if len(emoji) == 1)
        self._emoji_chars = frozenset(singles)
        # Any non-ASCII character, looked up in ``_describe``: a class of the 1,200 emoji
        # is slow (the regex engine scans a list of characters beyond the BMP one by one).
        self._emoji = re.compile(r"[^\x00-\x7f]")
        self._words: list[str] | None = None
        self._lower: list[str] = []
        self._scored = frozenset(word for word in self.lexicon if word not in BOOSTER_DICT)

    def _describe(self, match: re.Match[str]) -> str:
        start = match.start()
        description: str | None = self.emojis.get(match.group())
        if description is None:
            return match.group()
        # The original appends a space first unless at the start or just after a space.
        return description if start == 0 or match.string[start - 1] == " " else " " + description

    def _lowered(self, words: list[str]) -> list[str]:
        if words is not self._words:
            self._words = words
            self._lower = [str(word).lower() for word in words]
        return self._lower

    def polarity_scores(self, text: str) -> dict[str, float]:
        if not self._emoji_chars.isdisjoint(text):
            text = self._emoji.sub(self._describe, text)
        sentitext = SentiText(text.strip())
        words = sentitext.words_and_emoticons
        lower = self._lowered(words)
        sentiments: list[float] = []
        for i, item in enumerate(words):
            if lower[i] in BOOSTER_DICT or (
                i < len(words) - 1 and lower[i] == "kind" and lower[i + 1] == "of"
            ):
                sentiments.append(0)
                continue
            sentiments = self.sentiment_valence(0, sentitext, item, i, sentiments)
        sentiments = self._but_check(words, sentiments)
        scores: dict[str, float] = self.score_valence(sentiments, sentitext.text)
        self._words = None  # the cache is valid for this text only
        return scores

    def compound(self, text: str) -> float:
        """``polarity_scores(text)["compound"]``, computed with less work.

        Every step of vaderSentiment 3.3 that can change the compound score is kept, in
        the same order (so the float sums are the same); words outside the lexicon, and
        boosters, always score 0, so only lexicon words are looked at.
        """
        if not text.isascii() and not self._emoji_chars.isdisjoint(text):
            text = self._emoji.sub(self._describe, text)
        text = text.strip()
        lowered = text.lower()
        if len(lowered) == len(text):
            # Each character lower-cased to one (always so in ASCII): lower-casing the text
            # then splitting it gives VADER's words lower-cased.  (Which characters are
            # white space or punctuation does not change, and the one character lower-cased
            # by context, a final sigma, sees no farther than its word's letters.)
            lowered_tokens = lowered.split()
            lower = _words(lowered_tokens)
        else:  # "İ" lower-cases to two characters: VADER keeps short words whole
            lowered_tokens = None
            lower = [word.lower() for word in _tokens(text)]
        scored = self._scored
        if scored.isdisjoint(lower):
            return 0.0
        # A word is its token less some punctuation, which has no case: the tokens tell
        # which words are in capitals as well as the words would.  A text without capitals
        # is its tokens lower-cased.
        tokens = lowered_tokens if lowered_tokens is not None and lowered == text else text.split()
        capitals = sum(map(str.isupper, tokens))
        is_cap_diff = 0 < len(tokens) - capitals < len(tokens)
        last = len(lower) - 1
        valence = self._clause_valence if self._tweet_rules else self._valence
        valences = {
            i: valence(lower, tokens, i, is_cap_diff)
            for i, word in enumerate(lower)
            if word in scored and not (word == "kind" and i < last and lower[i + 1] == "of")
        }
        if "but" in lower:
            sentiments: list[float] = [valences.get(i, 0) for i in range(len(lower))]
            sentiments = self._but_check(lower, sentiments)
        else:
            sentiments = list(valences.values())
        total = float(sum(sentiments))
        if total:
            emphasis = _punctuation_emphasis(text)
            total = total + emphasis if total > 0 else total - emphasis
        return round(normalize(total), 4)  # type: ignore[no-any-return]

    def _valence(self, lower: list[str], tokens: list[str], i: int, is_cap_diff: bool) -> float:
        """vaderSentiment's ``sentiment_valence`` for the lexicon word ``lower[i]``;
        ``tokens[j]`` is word ``j`` as written (for its capitals)."""
        if _unmodified(lower, i):
            return self._lexicon_valence(lower[i], tokens[i], is_cap_diff)
        return self._context_valence(lower, tokens, i, is_cap_diff)

    def _lexicon_valence(self, word: str, token: str, is_cap_diff: bool) -> float:
        """``_valence`` of a word no other word modifies (``_unmodified``): its valence in
        the lexicon, stronger when in capitals among words that are not."""
        valence: float = self.lexicon[word]
        if is_cap_diff and token.isupper():
            valence = valence + C_INCR if valence > 0 else valence - C_INCR
        return valence

    def _context_valence(
        self, lower: list[str], tokens: list[str], i: int, is_cap_diff: bool
    ) -> float:
        """``_valence`` the long way: each of VADER's rules in turn."""
        lexicon = self.lexicon
        word = lower[i]
        valence: float = lexicon[word]
        if word == "no" and i != len(lower) - 1 and lower[i + 1] in lexicon:
            valence = 0.0
        if (
            (i > 0 and lower[i - 1] == "no")
            or (i > 1 and lower[i - 2] == "no")
            or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))
        ):
            valence = lexicon[word] * N_SCALAR
        if is_cap_diff and tokens[i].isupper():
            valence = valence + C_INCR if valence > 0 else valence - C_INCR
        # The (up to) three words before, nearest first, each unless it is a lexicon word:
        # a booster's push (weaker the farther it is), then a negation, then (three back)
        # an idiom.  VADER's ``range(3)`` with ``j >= 0`` is ``range(min(i, 3))``.
        for start_i in range(min(i, 3)):
            j = i - (start_i + 1)
            before = lower[j]
            if before in lexicon:
                continue
            scalar = 0.0  # ``_scalar`` of a word that is no booster, without the call
            if before in BOOSTER_DICT:
                scalar = _scalar(before, is_cap_diff and tokens[j].isupper(), valence)
                if start_i == 1 and scalar != 0:
                    scalar = scalar * 0.95
                if start_i == 2 and scalar != 0:
                    scalar = scalar * 0.9
            valence = valence + scalar
            valence = _negation(valence, lower, start_i, i)
            if start_i == 2:
                valence = _idioms(valence, lower, i)
        if i > 1 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            if lower[i - 2] != "at" and lower[i - 2] != "very":
                valence = valence * N_SCALAR
        elif i > 0 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            valence = valence * N_SCALAR
        return valence

    def _clause_valence(
        self, lower: list[str], tokens: list[str], i: int, is_cap_diff: bool
    ) -> float:
        """``_valence`` with the tweet rule: only the words of ``lower[i]``'s own clause
        can modify it."""
        if _unmodified(lower, i):  # then no part of its context can either
            return self._lexicon_valence(lower[i], tokens[i], is_cap_diff)
        for j in range(i - 1, max(-1, i - 4), -1):  # VADER looks three words back
            if tokens[j].endswith(CLAUSE_ENDS):
                # The words after the clause's end, as if the text started there (and,
                # as ``_valence`` looks at most two words ahead, ended two words on).
                start, end = j + 1, i + 3
                return self._valence(lower[start:end], tokens[start:end], i - start, is_cap_diff)
        return self._context_valence(lower, tokens, i, is_cap_diff)

    def _negation_check(self, valence: float, words: list[str], start_i: int, i: int) -> float:
        return _negation(valence, self._lowered(words), start_i, i)

    def _special_idioms_check(self, valence: float, words: list[str], i: int) -> float:
        return _idioms(valence, self._lowered(words), i)


def _negation(valence: float, lower: list[str], start_i: int, i: int) -> float:
    """vaderSentiment's ``_negation_check`` on lower-cased words."""
    if start_i == 0:
        if _negated(lower[i - 1]):
            valence *= N_SCALAR
    elif start_i == 1:
        if lower[i - 2] == "never" and lower[i - 1] in ("so", "this"):
            valence *= 1.25
        elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
            pass
        elif _negated(lower[i - 2]):
            valence *= N_SCALAR
    elif start_i == 2:
        if (lower[i - 3] == "never" and lower[i - 2] in ("so", "this")) or lower[i - 1] in (
            "so",
            "this",
        ):
            valence *= 1.25
        elif lower[i - 3] == "without" and "doubt" in (lower[i - 2], lower[i - 1]):
            pass
        elif _negated(lower[i - 3]):
            valence *= N_SCALAR
    return valence


def _idioms(valence: float, lower: list[str], i: int) -> float:
    """vaderSentiment's ``_special_idioms_check`` on lower-cased words (``i`` >= 3).

    Every phrase it looks for starts with one of ``lower[i - 3 : i + 1]``; when none of
    them starts a phrase, nothing can change and the phrases are not built.
    """
    if _IDIOM_STARTS.isdisjoint(lower[i - 3 : i + 1]):
        return valence
    onezero = f"{lower[i - 1]} {lower[i]}"
    twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
    twoone = f"{lower[i - 2]} {lower[i - 1]}"
    threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
    threetwo = f"{lower[i - 3]} {lower[i - 2]}"
    for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
        if seq in SPECIAL_CASES:
            valence = SPECIAL_CASES[seq]
            break
    if len(lower) - 1 > i:
        zeroone = f"{lower[i]} {lower[i + 1]}"
        if zeroone in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroone]
    if len(lower) - 1 > i + 1:
        zeroonetwo = f"{lower[i]} {lower[i + 1]} {lower[i + 2]}"
        if zeroonetwo in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroonetwo]
    for n_gram in (threetwoone, threetwo, twoone):
        if n_gram in BOOSTER_DICT:
            valence = valence + BOOSTER_DICT[n_gram]
    return valence


_IDIOM_STARTS = frozenset(
    phrase.split()[0] for phrase in (*SPECIAL_CASES, *BOOSTER_DICT) if " " in phrase
)
"""The first words of VADER's phrases ("the bomb", "kind of", ...)."""


_IDIOM_SECONDS = frozenset(
    phrase.split()[1] for phrase in (*SPECIAL_CASES, *BOOSTER_DICT) if " " in phrase
)
"""The second words of VADER's phrases ("bomb", "of", ...)."""

_MODIFIERS = frozenset((*NEGATE, *BOOSTER_DICT, "no", "so", "this", "least"))
"""Words that can change the valence of a word up to three after them, or their own:
negations (with "never" and "without"), boosters, "no" (also as the word itself), "so" and
"this" (VADER's rule for "never so" also applies to "so" and "this" alone), "least"."""


def _unmodified(lower: list[str], i: int) -> bool:
    """Whether none of VADER's rules but capitals can change the valence of ``lower[i]``.

    So when neither it nor any of the three words before it is one of ``_MODIFIERS`` or
    has "n't" (a negation, as ``_negated`` says): each rule of
    ``FastAnalyzer._context_valence`` then adds 0.0 or nothing to the (non-zero) valence;
    and when ``_idioms`` can find no phrase: none of those four words starts one, or none
    of the words where a phrase's second word would be (``lower[i - 2 : i + 2]``) is one.
    """
    context = lower[max(0, i - 3) : i + 1]
    # "n't" found in the words joined by spaces is "n't" in one of them: it has no space.
    if not _MODIFIERS.isdisjoint(context) or "n't" in " ".join(context):
        return False
    return _IDIOM_STARTS.isdisjoint(context) or _IDIOM_SECONDS.isdisjoint(
        lower[max(0, i - 2) : i + 2]
    )


_NEGATE = frozenset(NEGATE)
_PUNCTUATION = string.punctuation


def _scalar(word: str, emphasised: bool, valence: float) -> float:
    """vaderSentiment's ``scalar_inc_dec`` for a lower-cased word: a booster's push away
    from 0 (a dampener's towards it), stronger when the booster is ``emphasised`` (in
    capitals among words that are not)."""
    scalar: float = BOOSTER_DICT.get(word, 0.0)
    if not scalar:
        return 0.0
    if valence < 0:
        scalar *= -1
    if emphasised:
        scalar = scalar + C_INCR if valence > 0 else scalar - C_INCR
    return scalar


def _tokens(text: str) -> list[str]:
    """vaderSentiment's words: split on white space, each stripped of leading and trailing
    punctuation unless that leaves two characters or fewer (then it is kept whole: ":)")."""
    return _words(text.split())


def _words(tokens: list[str]) -> list[str]:
    """``_tokens`` of the text that splits into ``tokens``."""
    return [s if len(s := token.strip(_PUNCTUATION)) > 2 else token for token in tokens]


def _punctuation_emphasis(text: str) -> float:
    """vaderSentiment's emphasis from "!" (up to 4) and "?" (2 or more)."""
    exclamations = min(text.count("!"), 4) * 0.292
    questions = text.count("?")
    if questions <= 1:
        return exclamations
    return exclamations + (questions * 0.18 if questions <= 3 else 0.96)


def _negated(word: str) -> bool:
    """vaderSentiment's ``negated([word])`` for one lower-cased word."""
    return word in _NEGATE or "n't" in word


class VaderScorer:
    """Scores English (and, as a fallback, any) text by VADER's compound score."""

    def __init__(
        self,
        positive_threshold: float = POSITIVE_THRESHOLD,
        negative_threshold: float = NEGATIVE_THRESHOLD,
        max_chars: int = MAX_CHARS,
        unscored: Iterable[str] = (),
        straight_apostrophes: bool = False,
        tweet_rules: bool = False,
    ) -> None:
        """``unscored`` words are left out of VADER's lexicon (``REQUEST_WORDS``, say).
        ``straight_apostrophes`` reads a typographic apostrophe (U+2019) as "'", so VADER
        sees the negation in "don\u2019t" as it does in "don't".  ``tweet_rules``
        rewrites the text first as ``xwatch.sentiment.english.rewrite`` says (names,
        camel-case hashtags, elongated words, idioms of negation) and scores it with
        ``FastAnalyzer``'s tweet rule (a negation ends with its clause)."""
        if not negative_threshold < positive_threshold:
            raise ValueError("negative_threshold must be below positive_threshold")
        self._analyzer = FastAnalyzer(unscored, tweet_rules)  # reads its lexicons, once
        self._positive_threshold = positive_threshold
        self._negative_threshold = negative_threshold
        self._max_chars = max_chars
        self._straight_apostrophes = straight_apostrophes
        self._tweet_rules = tweet_rules

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        """One ``Sentiment`` per text, in order."""
        return [self._score_one(text) for text in texts]

    def polarity(self, text: str) -> float:
        """VADER's compound score (-1..1) of the first ``max_chars`` characters."""
        head = text[: self._max_chars]
        if self._straight_apostrophes:
            head = head.replace("\u2019", "'")
        if self._tweet_rules:
            head = rewrite(head, self._analyzer.lexicon)
        return self._analyzer.compound(head)

    def _score_one(self, text: str) -> Sentiment:
        compound = self.polarity(text)
        return sentiment_from_score(compound, self._negative_threshold, self._positive_threshold)
