"""A language guess from the writing system, for posts that arrive without a usable lang tag.

Only the scripts matter here, not the words: kana means Japanese, Hangul means Korean, Han
characters without kana mean Chinese unless one of them is a kanji only Japanese writes
(最悪, 対応: ``_JAPANESE_HAN``), and Latin letters mean English (the only Latin-script
language with a scorer; VADER is also the fallback for everything else).  The scan is limited
to the first ``SCAN_CHARS`` characters and done by precompiled regexes, so a guess costs a few
microseconds whatever the length of the post.
"""

from __future__ import annotations

import re

SCAN_CHARS = 200
"""How many leading characters of a text are looked at."""

_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\uff21-\uff3a\uff41-\uff5a]")  # full-width too
_LATIN_WORD = re.compile(_LATIN.pattern + "+")
_NOT_WORDS = re.compile(r"https?://\S+|www\.\S+|[@#]\w+")
"""Links, @handles and hashtags: their letters say nothing of the language the post is
written in (a Japanese post with a link had more Latin letters than kana)."""
_KANA = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9d]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_JAPANESE_HAN = re.compile(
    "[悪気円売読変対応発壊転済続険様駅広楽薬関鉄県経験帰図歳戦価単営両伝労込払従厳拡焼緑"
    "聴覚観訳軽辺遅隠雑頼黒桜歩毎涙満沢児帯弾悩戻検権畑枠匂峠]"
)
"""Common kanji that only Japanese writes: its simplified forms (新字体: 悪, 気, 対応, 遅)
and its own characters (込, 畑), neither simplified nor traditional Chinese. Han text
without kana that holds one is Japanese ("最悪", "返金対応遅すぎ" without its okurigana)."""


def guess_lang(text: str) -> str:
    """The language of ``text`` as "ja", "ko", "zh", "en" or "und", guessed from its scripts.

    CJK wins over Latin unless Latin words outnumber CJK characters (a CJK word is one or
    two characters; counting letters instead, a long Latin name outweighed a whole Japanese
    phrase: "Kettlebird Aero Proが最悪" went to the English scorer), so a Japanese post
    naming "iPhone" or the brand stays Japanese and an English post quoting one Japanese
    word stays English.  Within CJK any kana means Japanese (Japanese mixes kana into Han
    text almost always), else any Hangul means Korean, else Chinese unless a kanji only
    Japanese writes is there.  Texts with no letters
    of these scripts (emoji, digits, URLs' punctuation, Cyrillic, ...) are "und".  Links,
    @handles and hashtags of a text that is not all ASCII are not counted (a Japanese
    complaint with a link went to the English scorer); full-width Latin letters count as
    Latin.
    """
    head = text[:SCAN_CHARS]
    if head.isascii():
        return "en" if _LATIN.search(head) else "und"
    head = _NOT_WORDS.sub(" ", head)
    kana = len(_KANA.findall(head))
    hangul = len(_HANGUL.findall(head))
    han = len(_HAN.findall(head))
    cjk = kana + hangul + han
    latin_words = len(_LATIN_WORD.findall(head))
    if latin_words > cjk:
        return "en"
    if kana:
        return "ja"
    if hangul:
        return "ko"
    if han:
        return "ja" if _JAPANESE_HAN.search(head) else "zh"
    return "und"
