"""Sends each text to the scorer for its language, in one batch per scorer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from xwatch.model import Sentiment, normalise_lang
from xwatch.sentiment.complaints import english_default, japanese_default
from xwatch.sentiment.lang import guess_lang

if TYPE_CHECKING:
    from xwatch.sentiment import Scorer

UNDETERMINED = frozenset({"", "und", "zxx", "qam", "qct", "qht", "qme", "qst"})
"""Tags that name no language: ISO "und"/"zxx" and X's own "q..." codes (media-, mention-,
hashtag-, cashtag-only or too-short posts).  Texts tagged so get a guessed language."""


class LanguageRouter:
    """A ``Scorer`` per language code, and the one to use for languages without their own."""

    def __init__(self, scorers: Mapping[str, Scorer], fallback: str) -> None:
        self._scorers = {normalise_lang(lang): scorer for lang, scorer in scorers.items()}
        self._fallback = normalise_lang(fallback)
        if self._fallback not in self._scorers:
            raise ValueError(f"fallback {fallback!r} has no scorer among {sorted(self._scorers)}")

    @property
    def scorers(self) -> Mapping[str, Scorer]:
        """The scorer of each language that has one (a read-only view)."""
        return MappingProxyType(self._scorers)

    @property
    def fallback(self) -> str:
        return self._fallback

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages that have a scorer of their own."""
        return tuple(sorted(self._scorers))

    @staticmethod
    def detect(text: str, lang: str | None) -> str:
        """A text's language: the one its tag names, or if it names none the one guessed
        from its script."""
        code = normalise_lang(lang)
        return guess_lang(text) if code in UNDETERMINED else code

    def language_of(self, text: str, lang: str | None) -> str:
        """The scorer key for a text: its language (``detect``), or the fallback when that
        language has no scorer."""
        code = self.detect(text, lang)
        return code if code in self._scorers else self._fallback

    def score(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        """One ``Sentiment`` per text, in input order; ``langs[i]`` is the tag of ``texts[i]``.

        Each scorer is called once, with all the texts routed to it.
        """
        if len(texts) != len(langs):
            raise ValueError(f"{len(texts)} texts but {len(langs)} language tags")
        positions: dict[str, list[int]] = {}
        for i, (text, lang) in enumerate(zip(texts, langs, strict=True)):
            positions.setdefault(self.language_of(text, lang), []).append(i)
        results: dict[int, Sentiment] = {}
        for code, indices in positions.items():
            scored = self._scorers[code].score([texts[i] for i in indices])
            results.update(zip(indices, scored, strict=True))
        return [results[i] for i in range(len(texts))]


def default_router(fallback: str = "en") -> LanguageRouter:
    """The complaint-aware defaults: VADER plus complaint cues for English, the lexicon plus
    complaint cues for Japanese (``xwatch.sentiment.complaints``), and ``fallback``'s scorer
    for the rest."""
    return LanguageRouter({"en": english_default(), "ja": japanese_default()}, fallback)
