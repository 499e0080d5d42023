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
  the adjective at its extreme (VADER flips it), so the negation is read as "extremely";
* **negative words as intensifiers**: English turns words of fear, anger and excess into
  degree adverbs ("terribly nice", "crazy good", "insanely talented", "damn fine",
  "freaking awesome", "wicked smart"; VADER itself lists "fucking", "frickin" and
  "awfully" as boosters); before a word VADER scores positive, such a word
  (``NEGATIVE_INTENSIFIERS``) is read as "really", so it strengthens the praise instead
  of outweighing it.  Before anything else it keeps its own meaning ("terribly late");
* **profanity as emphasis**: "cute as hell", "funny as fuck", "tired af" grade the word
  before them (read as "really cute", "really tired"); "hell yeah", "fuck yes" are
  enthusiastic yeses (read as "really yeah"); "kicks ass" and "you killed it" are slang
  praise (read as "cool", VADER +1.3, next to its own "badass" +1.5);
* **"ill" for "I'll"**: posts drop apostrophes, and "ill be there", "ill never go back"
  mean "I'll" (VADER reads "ill" as sick, -1.8); before a verb or an adverb that follows
  "I'll" (``ILL_FOLLOWERS``), where the adjective "ill" cannot stand, it is read as "I'll".

Each rule is a general fact of English or of writing on social media, not fitted to any
data set; ``tests/test_sentiment.py`` and ``tests/test_english_scorer.py`` have examples
of each.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

NAME_RUN = re.compile(r"[A-Z](?<!\S[A-Z])[a-z]+(?:'s)?(?:\s+[A-Z][a-z]+(?:'s)?)*\b")
"""One or more Capitalised words in a row, the first not right after a non-space.

Written ``[A-Z](?<!\\S[A-Z])...`` rather than ``(?<!\\S)[A-Z]...`` (the same matches):
a pattern that opens with a character class lets the regex engine skip to the next
capital, while one that opens with a look-behind is tried at every position (twice as
slow; the same holds for ``_LOWER_WORD`` and ``_MENTION``)."""

SENTENCE_END = re.compile(r"(?:^|[.!?:;\"\u201c(\n\u2026]|(?:^|\s)[@#]\w+)\s*$")
"""The text before a sentence start: nothing, a sentence's end (a line's end, an
ellipsis), an opening quote, or leading mentions ("@acme Worst Flight Ever").
``_starts_sentence`` says the same without the regex, which is slow to search."""

SENTENCE_END_WINDOW = 40
"""How many characters before a name ``_starts_sentence`` looks at."""

_SENTENCE_END_CHARS = frozenset('.!?:;"\u201c(\n\u2026')
_WORD = re.compile(r"\w+")

MINOR_WORDS = frozenset(
    {"a", "an", "the", "and", "but", "or", "nor", "for", "so", "yet", "as", "at", "by", "in"}
    | {"of", "off", "on", "per", "to", "up", "via", "vs", "with", "from", "into"}
)
"""Words that Title Case leaves in lower case."""

_LOWER_WORD = re.compile(r"[a-z](?<![\w@#'][a-z])[a-z]*\b")
"""A word in lower case, not inside a word, a mention, a hashtag or after an apostrophe."""
_MENTION = re.compile(r"@(?<![\w@]@)\w+")
"""A mention: "@" and a word, the "@" not inside a word or after another "@"."""
_HASHTAG = re.compile(r"#[A-Za-z0-9]*[a-z][A-Z][A-Za-z0-9]*")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_ELONGATED = re.compile(r"\b[A-Za-z]*([A-Za-z])\1{2,}[A-Za-z]*\b")
_RUN = re.compile(r"([A-Za-z])\1{2,}")
_TRIPLE = re.compile(r"([a-z])\1\1")
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
NEGATIVE_INTENSIFIERS = frozenset(
    {"damn", "damned", "dang", "darn", "freaking", "freakin", "bloody", "crazy", "insanely"}
    | {"wicked", "mad", "stupid", "stupidly", "terribly", "horribly", "ridiculously"}
    | {"seriously", "dangerously", "scary", "scarily", "disgustingly", "obscenely", "absurdly"}
)
"""Negative words that English also uses as degree adverbs ("crazy good", "terribly
nice")."""

_INTENSIFIER = re.compile(
    rf"\b(?:{'|'.join(sorted(NEGATIVE_INTENSIFIERS))})(?=\s+([a-z]+)\b)", re.IGNORECASE
)
_AS_HELL = re.compile(r"\b([a-z]+)\s+(?:as\s+(?:hell|heck|fuck|f\*+k?|shit)|af)\b", re.IGNORECASE)
_HELL_YEAH = re.compile(r"\b(?:hell|heck|fuck|fuckin[g']?)\s+(?=(?:yeah|yes)\b)", re.IGNORECASE)
_KICKS_ASS = re.compile(r"\bkick(?:s|ed|ing)?\s+ass\b", re.IGNORECASE)
_KILLED_IT = re.compile(
    r"\b((?:i|you|u|we|they|he|she)(?:'s|'re|'m|\s+(?:is|are|am|was|were))?"
    r"(?:\s+(?:totally|absolutely|really|just|so))?\s+)kill(?:s|ed|ing)?\s+it\b",
    re.IGNORECASE,
)
ILL_FOLLOWERS = frozenset(
    {"be", "go", "have", "get", "see", "do", "try", "take", "make", "call", "let", "tell"}
    | {"send", "keep", "bring", "give", "come", "wait", "post", "check", "text", "buy"}
    | {"never", "probably", "prob", "definitely", "def"}
)
"""Words that follow "I'll" and not the adjective "ill"."""

_ILL = re.compile(rf"\bill(?=\s+(?:{'|'.join(sorted(ILL_FOLLOWERS))})\b)", re.IGNORECASE)
_EXTREME = re.compile(
    r"\b(?:could|can)(?:n't|not|\s+not|nt)\s+(?:be|get)\s+(?:any\s+)?"
    r"(?=(?:[a-z]+er|better|worse|more|less)\b)",
    re.IGNORECASE,
)


def rewrite(text: str, lexicon: Mapping[str, float]) -> str:
    """``text`` as VADER should read it (see the module's docstring); ``lexicon`` holds
    VADER's words, lower-cased, and their valences."""
    if "@" in text:
        text = _MENTION.sub("@user", text)
    if NAME_RUN.search(text) and not _title_case(text):
        text = NAME_RUN.sub(_join, text)
    if "#" in text:
        text = _HASHTAG.sub(_split_camel, text)
    lower = text.lower()
    if _TRIPLE.search(lower):  # faster than _RUN.search(text), and never misses one
        text = _ELONGATED.sub(lambda match: _shorten(match.group(), lexicon), text)
        lower = text.lower()
    text = _profanity_as_emphasis(text, lower)  # before "like": "looks like hell" is no "as hell"
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
    if "ill " in lower:
        text = _ILL.sub("I'll", text)
    if not NEGATIVE_INTENSIFIERS.isdisjoint(lower.split()):
        text = _INTENSIFIER.sub(lambda match: _intensifier(match, lexicon), text)
    return text


def _profanity_as_emphasis(text: str, lower: str) -> str:
    """``text`` with "ADJ as hell", "hell yeah", "kicks ass" and "killed it" read as
    emphasis or praise (see the module's docstring)."""
    profane = "hell" in lower or "heck" in lower or "fuck" in lower or "f*" in lower
    profane = profane or "shit" in lower
    if (profane and " as " in lower) or " af" in lower:
        text = _AS_HELL.sub(r"really \1", text)
    if profane and ("yeah" in lower or "yes" in lower):
        text = _HELL_YEAH.sub("really ", text)
    if "kick" in lower:
        text = _KICKS_ASS.sub("cool", text)
    if "kill" in lower:
        text = _KILLED_IT.sub(r"\1cool", text)
    return text


def _intensifier(match: re.Match[str], lexicon: Mapping[str, float]) -> str:
    """The intensifier as "really" when VADER scores the next word positive, else as
    written."""
    return "really" if lexicon.get(match.group(1).lower(), 0.0) > 0 else match.group()


def _title_case(text: str) -> bool:
    """Whether the text is in Title Case: every word in lower case is a minor word (an
    article, a conjunction, a short preposition), which Title Case leaves in lower case."""
    # Word by word: in ordinary text the first lower-case word already answers.
    match = _LOWER_WORD.search(text)
    while match is not None:
        if match.group() not in MINOR_WORDS:
            return False
        match = _LOWER_WORD.search(text, match.end())
    return True


def _join(match: re.Match[str]) -> str:
    """The name as one token; at a sentence start the first word stays as written (it may
    be Capitalised only for starting the sentence)."""
    words = match.group().split()
    if _starts_sentence(match.string, match.start()):
        return " ".join([words[0], _name(words[1:])]) if len(words) > 1 else match.group()
    return _name(words)


def _starts_sentence(text: str, start: int) -> bool:
    """Whether ``SENTENCE_END`` is found in the ``SENTENCE_END_WINDOW`` characters before
    ``start``: the window, less its trailing white space, ends the text before a sentence
    (``tests/test_english_scorer.py`` checks that both agree)."""
    window_start = start - SENTENCE_END_WINDOW if start > SENTENCE_END_WINDOW else 0
    before = text[window_start:start]
    stripped = before.rstrip()
    if "\n" in before and "\n" in before[len(stripped) :]:
        return True  # a line's end, then white space
    if not stripped:
        return window_start == 0  # nothing but white space since the text's start
    if stripped[-1] in _SENTENCE_END_CHARS:
        return True
    # A mention or hashtag, at the text's start or after white space: "@acme Worst ...".
    # Its sign is the last "@" or "#", and only word characters follow it.
    sign = max(stripped.rfind("@"), stripped.rfind("#"))
    if sign < 0 or _WORD.fullmatch(stripped, sign + 1) is None:
        return False
    return stripped[sign - 1].isspace() if sign > 0 else window_start == 0


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


def _shorten(word: str, lexicon: Mapping[str, float]) -> str:
    """The lexicon word ``word`` stretches, trying runs of two then of one; else ``word``."""
    for kept in (r"\1\1", r"\1"):
        shorter = _RUN.sub(kept, word)
        if shorter.lower() in lexicon:
            return shorter
    return word
