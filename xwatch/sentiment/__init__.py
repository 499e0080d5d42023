"""Sentiment scoring: one ``Scorer`` per language, chosen per post by a ``LanguageRouter``.

Routing: a post's own language tag (X's ``lang``) is used when it names a language
("ja-JP" counts as "ja"); when it is missing or names none ("und", X's "qme", ...) the
language is guessed from the script (``guess_lang``).  A language with no scorer of its own
goes to the fallback scorer, VADER by default.  ``default_router()`` builds the usual setup:
``VaderScorer`` for "en", ``JapaneseLexiconScorer`` for "ja".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from xwatch.model import Sentiment, normalise_lang
from xwatch.sentiment.japanese import JapaneseLexiconScorer
from xwatch.sentiment.lang import guess_lang
from xwatch.sentiment.router import LanguageRouter, default_router
from xwatch.sentiment.vader import VaderScorer, sentiment_from_score

__all__ = [
    "JapaneseLexiconScorer",
    "LanguageRouter",
    "Scorer",
    "VaderScorer",
    "default_router",
    "guess_lang",
    "normalise_lang",
    "sentiment_from_score",
]


class Scorer(Protocol):
    """Scores a batch of texts of one language.

    Returns one ``Sentiment`` per text, in the same order.  Pure CPU with no I/O after
    construction, and never raises for any ``str`` (empty, emoji-only, megabytes long,
    control characters, lone surrogates).
    """

    def score(self, texts: Sequence[str]) -> list[Sentiment]: ...
