"""A language guess from the writing system, for posts that arrive without a usable lang tag.

Only the scripts matter here, not the words: kana means Japanese, Hangul means Korean, Han
characters without kana mean Chinese, and Latin letters mean English (the only Latin-script
language with a scorer; VADER is also the fallback for everything else).  The scan is limited
to the first ``SCAN_CHARS`` characters and done by precompiled regexes, so a guess costs a few
microseconds whatever the length of the post.
"""

from __future__ import annotations

import re

SCAN_CHARS = 200
"""How many leading characters of a text are looked at."""

CJK_WEIGHT = 3
"""One CJK character counts as this many Latin letters (a word is 1-2 of them, not 4-6)."""

_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\uff21-\uff3a\uff41-\uff5a]")  # full-width too
_NOT_WORDS = re.compile(r"https?://\S+|www\.\S+|[@#]\w+")
"""Links, @handles and hashtags: their letters say nothing of the language the post is
written in (a Japanese post with a link had more Latin letters than kana)."""
_KANA = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9d]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")


def guess_lang(text: str) -> str:
    """The language of ``text`` as "ja", "ko", "zh", "en" or "und", guessed from its scripts.

    CJK wins over Latin unless Latin letters outnumber CJK characters ``CJK_WEIGHT`` to one,
    so a Japanese post naming "iPhone" stays Japanese and an English post quoting one Japanese
    word stays English.  Within CJK any kana means Japanese (Japanese mixes kana into Han text
    almost always), else any Hangul means Korean, else Chinese.  Texts with no letters of these
    scripts (emoji, digits, URLs' punctuation, Cyrillic, ...) are "und".  Links, @handles and
    hashtags of a text that is not all ASCII are not counted (a Japanese complaint with a
    link went to the English scorer); full-width Latin letters count as Latin.
    """
    head = text[:SCAN_CHARS]
    if head.isascii():
        return "en" if _LATIN.search(head) else "und"
    head = _NOT_WORDS.sub(" ", head)
    kana = len(_KANA.findall(head))
    hangul = len(_HANGUL.findall(head))
    han = len(_HAN.findall(head))
    cjk = kana + hangul + han
    latin = len(_LATIN.findall(head))
    if latin > CJK_WEIGHT * cjk:
        return "en"
    if kana:
        return "ja"
    if hangul:
        return "ko"
    if han:
        return "zh"
    return "und"
