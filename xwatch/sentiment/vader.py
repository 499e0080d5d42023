"""English sentiment with VADER, and the score-to-label convention every scorer shares."""

from __future__ import annotations

from collections.abc import Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from xwatch.model import Sentiment

POSITIVE_THRESHOLD = 0.05
"""Scores at or above this are "positive" (VADER's published convention)."""

NEGATIVE_THRESHOLD = -0.05
"""Scores at or below this are "negative"."""

MAX_CHARS = 2_000
"""Only this many leading characters are scored: VADER is linear but slow, ~0.5 ms/1k chars."""


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


class VaderScorer:
    """Scores English (and, as a fallback, any) text by VADER's compound score."""

    def __init__(
        self,
        positive_threshold: float = POSITIVE_THRESHOLD,
        negative_threshold: float = NEGATIVE_THRESHOLD,
        max_chars: int = MAX_CHARS,
    ) -> None:
        if not negative_threshold < positive_threshold:
            raise ValueError("negative_threshold must be below positive_threshold")
        self._analyzer = SentimentIntensityAnalyzer()  # reads its lexicons from disk, once
        self._positive_threshold = positive_threshold
        self._negative_threshold = negative_threshold
        self._max_chars = max_chars

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        """One ``Sentiment`` per text, in order."""
        return [self._score_one(text) for text in texts]

    def _score_one(self, text: str) -> Sentiment:
        compound = float(self._analyzer.polarity_scores(text[: self._max_chars])["compound"])
        return sentiment_from_score(compound, self._negative_threshold, self._positive_threshold)
