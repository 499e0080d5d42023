"""Tweet-aware rewriting of English text before VADER scores it.

VADER reads words one by one from a lexicon written for general text.  On posts, a few
general habits of writing make it misread, and ``rewrite`` undoes them before scoring (the
complaint cues still read the text as written):

* **names**: English capitalises a common word only at the start of a sentence, so a
  Capitalised word elsewhere, or a run of them, is a name ("the Grateful Dead", "Bad Blood
  by Taylor Swift", "Black Friday", "flying United"), not an evaluation.  A run becomes
  one token VADER does not know ("Grateful_Dead"), a single word too ("Name_United").  At
  the start of a sentence the first word may be Capitalised only for that, so it stays as
  written.  Only in texts in ordinary sentence case: in Title Case (every lower-case word
  a minor one: "I Hate This", "Worst Flight of My Life") capitals say nothing about
  names, and the text is left alone;
* **mentions** ("@united", "@Delta", "@SouthwestAir") name an account, not an opinion,
  so each becomes "@user" (VADER strips the "@" and reads "united" as +1.8; a brand's
  handle is often an ordinary word);
* **hashtags** in camel case are split into their words ("#WorstAirlineEver" ->
  "#Worst Airline Ever"), so VADER sees "worst";
* **elongated words** ("baaaad", "sooo goood") are shortened to the lexicon word they
  stretch, when they stretch one: a run of three or more of a letter becomes two, then
  one;
* **"like"** is praise only as a verb (VADER: +1.5); in posts it is mostly the
  preposition or a filler ("feels like", "like 3 hours", "it's like, why"), so it counts
  only after a subject pronoun or a word that goes before a verb ("I like", "don't like",
  "really like", "to like"), and is read as "as" elsewhere; "would like" asks for
  something, it does not praise (as ``vader.REQUEST_WORDS``);
* **idioms** whose words VADER reads one by one: "a hell of a" and "one hell of a"
  intensify what follows ("one hell of a weekend"), they do not curse it, so they are
  read as "a really"; "stop by" / "stopped by" means visiting, not stopping;
* **wanting "so bad"**: "want it so bad", "never wanted to see a movie so bad", "need
  a holiday so badly" say how much, not that anything is bad, so "so bad(ly)" after a
  verb of wanting (want, wanna, need, crave) in the same clause, with no verb of being or
  "but" between (not "wanted the steak but it was so bad"), is read as "so much";
* **idioms of negation**: "nothing but X" means "only X" (VADER reads "nothing" as a
  negation of X); "couldn't be happier", "can't get any better", "couldn't be worse" say
  the adjective at its extreme (VADER flips it), so the negation is read as "extremely".

Each rule is a general fact of English or of writing on social media, not fitted to any
data set; ``tests/test_sentiment.py`` has examples of each.
"""

from __future__ import annotations

import re
from collections.abc import Container

NAME_RUN = re.compile(r"(?<!\S)[A-Z][a-z]+(?:'s)?(?:\s+[A-Z][a-z]+(?:'s)?)*\b")
"""One or more Capitalised words in a row."""

_SENTENCE_END = re.compile(r"(?:^|[.!?:;\"\u201c(\n\u2026]|(?:^|\s)[@#]\w+)\s*$")
"""The text before a sentence start: nothing, a sentence's end (a line's end, an
ellipsis), an opening quote, or leading mentions ("@acme Worst Flight Ever")."""

MINOR_WORDS = frozenset(
    {"a", "an", "the", "and", "but", "or", "nor", "for", "so", "yet", "as", "at", "by", "in"}
    | {"of", "off", "on", "per", "to", "up", "via", "vs", "with", "from", "into"}
)
"""Words that Title Case leaves in lower case."""

_LOWER_WORD = re.compile(r"(?<![\w@#'])[a-z]+\b")
_MENTION = re.compile(r"(?<![\w@])@\w+")
_HASHTAG = re.compile(r"#[A-Za-z0-9]*[a-z][A-Z][A-Za-z0-9]*")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_ELONGATED = re.compile(r"\b[A-Za-z]*([A-Za-z])\1{2,}[A-Za-z]*\b")
_RUN = re.compile(r"([A-Za-z])\1{2,}")
LIKE_VERB_BEFORE = frozenset(
    {"i", "we", "you", "u", "they", "do", "did", "does", "dont", "didnt", "doesnt"}
    | {"really", "just", "also", "to"}
)
"""Words after which "like" is the verb."""

_LIKE = re.compile(r"(?<![\w'])(?:([\w']+)\s+)?like\b", re.IGNORECASE)
_HELL_OF_A = re.compile(r"\b(a|one)\s+hell\s+of\s+a\b", re.IGNORECASE)
_STOP_BY = re.compile(r"\bstop(?:s|ped|ping)?\s+by\b", re.IGNORECASE)
_SO_BAD_WANTING = re.compile(
    r"\b((?:want|wanna|need|crav)\w*\b(?:(?!\b(?:but|though|was|is|were)\b)[^.,!?;\n]){0,40}?"
    r"\bso\s+)bad(?:ly)?\b",
    re.IGNORECASE,
)
_NOTHING_BUT = re.compile(r"\bnothing\s+but\b", re.IGNORECASE)
_EXTREME = re.compile(
    r"\b(?:could|can)(?:n't|not|\s+not|nt)\s+(?:be|get)\s+(?:any\s+)?"
    r"(?=(?:[a-z]+er|better|worse|more|less)\b)",
    re.IGNORECASE,
)


def rewrite(text: str, lexicon: Container[str]) -> str:
    """``text`` as VADER should read it (see the module's docstring); ``lexicon`` holds
    VADER's words, lower-cased, for the elongation rule."""
    if "@" in text:
        text = _MENTION.sub("@user", text)
    if NAME_RUN.search(text) and not _title_case(text):
        text = NAME_RUN.sub(_join, text)
    if "#" in text:
        text = _HASHTAG.sub(_split_camel, text)
    if _RUN.search(text):
        text = _ELONGATED.sub(lambda match: _shorten(match.group(), lexicon), text)
    lower = text.lower()
    if "like" in lower:
        text = _LIKE.sub(_like, text)
    if "hell of a" in lower:
        text = _HELL_OF_A.sub(r"\1 really", text)
    if "by" in lower and "stop" in lower:
        text = _STOP_BY.sub("visit", text)
    if "so bad" in lower:
        text = _SO_BAD_WANTING.sub(r"\1much", text)
    if "nothing" in lower:
        text = _NOTHING_BUT.sub("only", text)
    if ("be " in lower or "get " in lower) and ("n't" in lower or "nt" in lower or "not" in lower):
        text = _EXTREME.sub("extremely ", text)
    return text


def _title_case(text: str) -> bool:
    """Whether the text is in Title Case: every word in lower case is a minor word (an
    article, a conjunction, a short preposition), which Title Case leaves in lower case."""
    return all(word in MINOR_WORDS for word in _LOWER_WORD.findall(text))


def _join(match: re.Match[str]) -> str:
    """The name as one token; at a sentence start the first word stays as written (it may
    be Capitalised only for starting the sentence)."""
    words = match.group().split()
    if _SENTENCE_END.search(match.string, max(0, match.start() - 40), match.start()):
        return " ".join([words[0], _name(words[1:])]) if len(words) > 1 else match.group()
    return _name(words)


def _name(words: list[str]) -> str:
    """Words of a name as one token VADER does not know."""
    return "_".join(words) if len(words) > 1 else f"Name_{words[0]}"


def _like(match: re.Match[str]) -> str:
    """The match as written when "like" is the verb there, else with "like" read "as"."""
    before = (match.group(1) or "").lower()
    if before in LIKE_VERB_BEFORE or before.endswith("n't"):
        return match.group()
    return match.group()[:-4] + "as"


def _split_camel(match: re.Match[str]) -> str:
    return _CAMEL.sub(" ", match.group())


def _shorten(word: str, lexicon: Container[str]) -> str:
    """The lexicon word ``word`` stretches, trying runs of two then of one; else ``word``."""
    for kept in (r"\1\1", r"\1"):
        shorter = _RUN.sub(kept, word)
        if shorter.lower() in lexicon:
            return shorter
    return word
