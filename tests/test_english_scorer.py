"""Tests for the English default scorer's rules for tweets (issue #5).

Every sentence here is made up.  Each rule has a text that raw VADER (or the scorer
without the rule) misreads and the English default reads right, and a text the rule
must leave alone.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from xwatch.sentiment import Scorer, VaderScorer
from xwatch.sentiment.complaints import ComplaintScorer, english_default
from xwatch.sentiment.english import SENTENCE_END, SENTENCE_END_WINDOW, _starts_sentence, rewrite
from xwatch.sentiment.vader import FastAnalyzer

LEXICON = SentimentIntensityAnalyzer().lexicon

SENTENCE_CHARS = 'ab_1 \n\t.#@!?:"(\u2026\u201c\u00a0\u00e9x'
"""Characters that matter to ``SENTENCE_END``: words, white space, sentence ends, signs."""


@pytest.fixture(scope="module")
def english() -> ComplaintScorer:
    return english_default()


@pytest.fixture(scope="module")
def raw_vader() -> VaderScorer:
    return VaderScorer()


@pytest.fixture(scope="module")
def plain_analyzer() -> FastAnalyzer:
    return FastAnalyzer()


@pytest.fixture(scope="module")
def tweet_analyzer() -> FastAnalyzer:
    return FastAnalyzer(tweet_rules=True)


def label_of(scorer: Scorer, text: str) -> str:
    [sentiment] = scorer.score([text])
    return sentiment.label


# -- a negation ends with its clause (FastAnalyzer's tweet rule) -------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I can't wait! Thanks for the tickets",  # VADER negates "thanks" past the "!"
        "nope, really happy with it",  # ... "happy" past the ","
        "didn't sleep. happy anyway",
    ],
)
def test_negation_stops_at_the_end_of_its_clause(
    plain_analyzer: FastAnalyzer, tweet_analyzer: FastAnalyzer, english: ComplaintScorer, text: str
) -> None:
    assert plain_analyzer.compound(text) < 0
    assert tweet_analyzer.compound(text) > 0
    assert label_of(english, text) == "positive"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the soup was not good", "negative"),  # a negation inside its clause still counts
        ("I don't really love it", "negative"),
        ("not bad at all", "positive"),
        ("Great, just great.", "positive"),
    ],
)
def test_negation_inside_a_clause_is_unchanged(
    plain_analyzer: FastAnalyzer,
    tweet_analyzer: FastAnalyzer,
    english: ComplaintScorer,
    text: str,
    expected: str,
) -> None:
    assert tweet_analyzer.compound(text) == plain_analyzer.compound(text)
    assert label_of(english, text) == expected


WORDS = ["good", "bad", "not", "no", "never", "very", "but", "the", "bomb", "kind", "of", "x"]


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.sampled_from(WORDS), max_size=20))
def test_clause_rule_changes_nothing_without_punctuation(
    plain_analyzer: FastAnalyzer, tweet_analyzer: FastAnalyzer, words: list[str]
) -> None:
    text = " ".join(words)
    assert tweet_analyzer.compound(text) == plain_analyzer.compound(text)


MODIFIERS = ["not", "never", "very", "without", "least", "x"]
"""Words that modify what follows them and score nothing themselves."""


@settings(max_examples=300, deadline=None)
@given(
    head=st.lists(st.sampled_from(MODIFIERS), max_size=6),
    tail=st.lists(st.sampled_from([w for w in WORDS if w != "but"]), min_size=1, max_size=10),
)
def test_nothing_reaches_past_a_clause_end(
    tweet_analyzer: FastAnalyzer, head: list[str], tail: list[str]
) -> None:
    """Negations and boosters in a clause that has ended change nothing after it."""
    text = " ".join([*head, "x,", *tail])
    assert tweet_analyzer.compound(text) == tweet_analyzer.compound(" ".join(tail))


def test_clause_rule_is_off_by_default(plain_analyzer: FastAnalyzer) -> None:
    reference = SentimentIntensityAnalyzer()
    text = "I can't wait! Thanks for the tickets"
    assert plain_analyzer.compound(text) == reference.polarity_scores(text)["compound"]


# -- negative words as intensifiers, profanity as emphasis (english.rewrite) -------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the coffee here is damn fine", "the coffee here is really fine"),
        ("Crazy good tacos on 5th street", "really good tacos on 5th street"),
        ("she is freaking awesome", "she is really awesome"),
        ("that puppy is cute as hell", "that puppy is really cute"),
        ("this cake is good af", "this cake is really good"),
        ("hell yeah, see you there", "really yeah, see you there"),
        ("the new drummer kicks ass", "the new drummer cool"),
        ("you killed it tonight", "you cool tonight"),
        # left alone: before a word that is not praise, or not the idiom
        ("the bus was terribly late", "the bus was terribly late"),
        ("so damn tired", "so damn tired"),
        ("this room looks like hell", "this room looks as hell"),
        ("hell no", "hell no"),
        ("I will kick your ass", "I will kick your ass"),
        ("the update killed it", "the update killed it"),
    ],
)
def test_rewrite_reads_intensifiers_and_emphasis(text: str, expected: str) -> None:
    assert rewrite(text, LEXICON) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the coffee here is damn fine",
        "that puppy is cute as hell",
        "hell yeah, see you there",
        "the new drummer kicks ass",
        "you killed it tonight",
    ],
)
def test_intensifiers_and_slang_praise_are_not_negative(
    raw_vader: VaderScorer, english: ComplaintScorer, text: str
) -> None:
    assert label_of(raw_vader, text) == "negative"
    assert label_of(english, text) == "positive"


@pytest.mark.parametrize(
    "text",
    [
        "the bus was terribly late",
        "I'm tired as hell",
        "this room looks like hell",
        "hell no",
        "I will kick your ass",
        "the update killed it",
    ],
)
def test_negative_uses_stay_negative(english: ComplaintScorer, text: str) -> None:
    assert label_of(english, text) == "negative"


# -- "ill" for "I'll" (english.rewrite) ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ill be there at 5, save me a seat", "I'll be there at 5, save me a seat"),
        ("Ill never forget this trip", "I'll never forget this trip"),
        ("my dog is ill today", "my dog is ill today"),  # the adjective: left alone
        ("mentally ill people need care", "mentally ill people need care"),
    ],
)
def test_ill_before_a_verb_is_i_will(text: str, expected: str) -> None:
    assert rewrite(text, LEXICON) == expected


def test_ill_for_i_will_is_not_negative(raw_vader: VaderScorer, english: ComplaintScorer) -> None:
    text = "ill be at the show tomorrow"
    assert label_of(raw_vader, text) == "negative"
    assert label_of(english, text) == "neutral"


# -- complaint cue: "never ... again" with the deal in between ---------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I will never fly with them again",
        "never ever ordering from this shop again",
        "we will never book that hotel again",
    ],
)
def test_never_do_business_again_is_a_complaint(
    raw_vader: VaderScorer, english: ComplaintScorer, text: str
) -> None:
    assert label_of(raw_vader, text) != "negative"
    assert label_of(english, text) == "negative"


def test_never_again_needs_a_deal_in_between(english: ComplaintScorer) -> None:
    found = english.cues.matches("I never thought I would see them again")
    assert [cue.note for _, cue in found] == ['"delayed again", "down again"']  # tone only


# -- speed-ups that must not change behaviour ---------------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from('ab_1 \n\t.#@!?:"(\u2026\u201c\u00a0\u00e9x'), max_size=60
    ),
    data=st.data(),
)
def test_starts_sentence_agrees_with_the_regex(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text)))
    window = max(0, start - SENTENCE_END_WINDOW)
    expected = SENTENCE_END.search(text, window, start) is not None
    assert _starts_sentence(text, start) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sooo baaaad", "sooo bad"),
        ("SOOO GOOOD", "SOOO GOOD"),
        ("aAa plain text", "aAa plain text"),  # mixed case is no elongation
    ],
)
def test_elongation_rule_after_the_faster_guard(text: str, expected: str) -> None:
    assert rewrite(text, LEXICON) == expected
