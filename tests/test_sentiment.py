"""Tests for xwatch.sentiment: language guess, routing, the VADER and Japanese scorers."""

# ruff: noqa: RUF001  (full-width letters are what some tests are about)

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from xwatch.model import Sentiment
from xwatch.sentiment import (
    JapaneseLexiconScorer,
    LanguageRouter,
    Scorer,
    VaderScorer,
    default_router,
    guess_lang,
    normalise_lang,
    sentiment_from_score,
)
from xwatch.sentiment.japanese import _lexicon_text, load_lexicon

ONE_MB = "Terrible service, I hate this airline. " * 27_000  # ~1 MB, all of it negative words

AWKWARD_TEXTS = [
    "",
    " \n\t ",
    "😀🎉🔥",
    "🤬",
    "\x00\x01\x07\x1b[31m\x7f",
    "line\rbreak\u2028sep\u200b\ufeff",
    "\ud800 lone surrogate \udfff",
    "最悪\ud83d",
    "ｶﾀｶﾅ ＦＵＬＬＷＩＤＴＨ ！！",
    "!!!???...",
    "no not never nope",
    "ない ない ない",
    ONE_MB,
    "美味しくない" * 200_000,
]


@pytest.fixture(scope="module")
def vader() -> VaderScorer:
    return VaderScorer()


@pytest.fixture(scope="module")
def japanese() -> JapaneseLexiconScorer:
    return JapaneseLexiconScorer()


def assert_valid(sentiment: Sentiment) -> None:
    """A Sentiment whose score is in -1..1 and whose label agrees with the default thresholds."""
    assert isinstance(sentiment, Sentiment)
    assert math.isfinite(sentiment.score)
    assert -1.0 <= sentiment.score <= 1.0
    assert sentiment.label == sentiment_from_score(sentiment.score).label


def label_of(scorer: Scorer, text: str) -> str:
    [sentiment] = scorer.score([text])
    return sentiment.label


# --- language guess -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("This airline lost my bag again", "en"),
        ("Café très sympa", "en"),  # Latin script: the English scorer is the best we have
        ("このラーメン美味しい", "ja"),
        ("リコール", "ja"),  # katakana alone
        ("ｶﾀｶﾅ", "ja"),  # half-width katakana
        ("東京駅で購入しました", "ja"),  # mostly Han, with kana
        ("정말 좋아요", "ko"),
        ("这个产品很好用", "zh"),
        ("😀🎉🔥", "und"),
        ("", "und"),
        ("12345 !!! 678", "und"),
        ("Привет мир", "und"),
        ("新しいiPhoneが最高", "ja"),  # Japanese naming an English product
        ("I love ramen from ラーメン屋 near my office downtown", "en"),  # English quoting Japanese
        ("新款iPhone太贵了", "zh"),
        ("iPhone 새로 샀어요", "ko"),
        # a link's, a handle's and a hashtag's letters are not the post's language
        ("Kettlebird Aeroが壊れた。最悪 https://t.co/OP7YKXNbdn", "ja"),
        ("@kettlebird_support #kettlebirdaero 壊れた", "ja"),
        ("ＫＥＴＴＬＥＢＩＲＤ rocks", "en"),  # full-width Latin is Latin
        # Latin words, not letters, weigh against CJK characters: a long brand name is one word
        ("kettlebirdまた壊れた", "ja"),
        ("kettlebird最悪", "ja"),  # Han alone, but 悪 is only Japanese (Chinese: 恶, 惡)
        ("返金対応", "ja"),
        ("這個產品很好用", "zh"),  # traditional Chinese
        ("最差的服务", "zh"),
        ("Kettlebird Aero Proが最悪", "ja"),
        ("the new kettle is 最高", "en"),
    ],
)
def test_guess_lang(text: str, expected: str) -> None:
    assert guess_lang(text) == expected


def test_guess_lang_reads_only_the_head_of_long_texts() -> None:
    assert guess_lang("😀" * 500 + "これは日本語") == "und"
    assert guess_lang("これは日本語です" * 25 + "a" * 1_000_000) == "ja"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("ja-JP", "ja"), ("EN", "en"), ("en-GB", "en"), ("zh_Hant", "zh"), (" ja ", "ja"), (None, "")],
)
def test_normalise_lang(tag: str | None, expected: str) -> None:
    assert normalise_lang(tag) == expected


# --- routing ------------------------------------------------------------------------------


class RecordingScorer:
    """A fake scorer that answers a fixed sentiment and records every batch it is given."""

    def __init__(self, answer: Sentiment) -> None:
        self.answer = answer
        self.batches: list[list[str]] = []

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        self.batches.append(list(texts))
        return [self.answer for _ in texts]


EN_ANSWER = Sentiment("negative", -0.5)
JA_ANSWER = Sentiment("positive", 0.5)


@pytest.fixture
def en() -> RecordingScorer:
    return RecordingScorer(EN_ANSWER)


@pytest.fixture
def ja() -> RecordingScorer:
    return RecordingScorer(JA_ANSWER)


@pytest.fixture
def router(en: RecordingScorer, ja: RecordingScorer) -> LanguageRouter:
    return LanguageRouter({"en": en, "ja": ja}, fallback="en")


def test_untagged_japanese_goes_to_the_japanese_scorer(
    router: LanguageRouter, en: RecordingScorer, ja: RecordingScorer
) -> None:
    assert router.score(["配送が遅い"], [None]) == [JA_ANSWER]
    assert ja.batches == [["配送が遅い"]]
    assert en.batches == []


@pytest.mark.parametrize("tag", ["und", "", "qme", "zxx"])
def test_undetermined_tags_are_guessed(tag: str, router: LanguageRouter) -> None:
    assert router.score(["配送が遅い"], [tag]) == [JA_ANSWER]


def test_explicit_lang_wins_over_the_script(
    router: LanguageRouter, en: RecordingScorer, ja: RecordingScorer
) -> None:
    assert router.score(["plain ascii text", "日本語です"], ["ja-JP", "EN"]) == [
        JA_ANSWER,
        EN_ANSWER,
    ]
    assert ja.batches == [["plain ascii text"]]
    assert en.batches == [["日本語です"]]


def test_languages_without_a_scorer_fall_back(en: RecordingScorer, ja: RecordingScorer) -> None:
    router = LanguageRouter({"en": en, "ja": ja}, fallback="ja")
    texts = ["Bonjour", "정말 좋아요", "这个产品很好用", "😀", "hello"]
    assert router.score(texts, ["fr", None, None, None, "en"]) == [JA_ANSWER] * 4 + [EN_ANSWER]
    assert ja.batches == [texts[:4]]


def test_mixed_batch_keeps_input_order_with_one_call_per_scorer(
    router: LanguageRouter, en: RecordingScorer, ja: RecordingScorer
) -> None:
    texts = ["a", "あ", "b", "い", "c", "う"]
    langs: list[str | None] = [None, None, "en", "ja", None, None]
    assert router.score(texts, langs) == [EN_ANSWER, JA_ANSWER] * 3
    assert en.batches == [["a", "b", "c"]]
    assert ja.batches == [["あ", "い", "う"]]


def test_empty_batch_calls_no_scorer(
    router: LanguageRouter, en: RecordingScorer, ja: RecordingScorer
) -> None:
    assert router.score([], []) == []
    assert en.batches == ja.batches == []


def test_router_rejects_a_fallback_without_scorer(en: RecordingScorer) -> None:
    with pytest.raises(ValueError, match="fallback"):
        LanguageRouter({"en": en}, fallback="ja")


def test_router_rejects_mismatched_lengths(router: LanguageRouter) -> None:
    with pytest.raises(ValueError, match="2 texts but 1"):
        router.score(["a", "b"], [None])


def test_default_router_scores_english_and_japanese() -> None:
    texts = ["This is the worst airline, they lost my luggage!", "最高に美味しい、おすすめです"]
    results = default_router().score(texts, [None, None])
    assert [s.label for s in results] == ["negative", "positive"]


# --- VADER --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I love this airline, the crew was wonderful!", "positive"),
        ("Great service, thank you so much :)", "positive"),
        ("This is the worst airline ever. Terrible service.", "negative"),
        ("My phone is broken and support is useless, I hate it", "negative"),
        ("The flight leaves at 5pm from gate 12.", "neutral"),
        ("", "neutral"),
    ],
)
def test_vader_labels_clear_cases(vader: VaderScorer, text: str, expected: str) -> None:
    assert label_of(vader, text) == expected


def test_vader_thresholds_are_configurable() -> None:
    text = "it is ok I guess, kind of nice"
    assert label_of(VaderScorer(), text) == "positive"
    assert label_of(VaderScorer(positive_threshold=0.99), text) == "neutral"
    with pytest.raises(ValueError, match="threshold"):
        VaderScorer(positive_threshold=-0.1, negative_threshold=0.1)


def test_vader_only_reads_max_chars() -> None:
    assert label_of(
        VaderScorer(max_chars=20), "The flight is at 5. Terrible, awful, I hate it"
    ) == ("neutral")


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.05, "positive"), (1.0, "positive"), (0.049, "neutral"), (0.0, "neutral"),
     (-0.049, "neutral"), (-0.05, "negative"), (-1.0, "negative")],
)  # fmt: skip
def test_sentiment_from_score_thresholds(score: float, expected: str) -> None:
    assert sentiment_from_score(score) == Sentiment(expected, score)  # type: ignore[arg-type]


# --- Japanese lexicon ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "このラーメン最高!!",
        "めっちゃ便利で助かる",
        "新しいカフェ、美味しかった",
        "届いて嬉しい",
        "店員さんが親切で好きになった",
        "これはおすすめです",
        "ｵｽｽﾒ",  # half-width katakana, read through NFKC
        "問題ないです、ありがとう",
    ],
)
def test_japanese_positives(japanese: JapaneseLexiconScorer, text: str) -> None:
    assert label_of(japanese, text) == "positive"


@pytest.mark.parametrize(
    "text",
    [
        "不具合が多すぎる",
        "買って一週間で故障した",
        "届いた時点で壊れた状態だった",
        "返金してほしい",
        "注文したのに届かない",
        "配送が遅い",
        "最悪の対応",
        "ひどい商品でした",
        "また炎上してる",
        "フライパンで火傷した",
        "すぐ焦げる",
        "リコール対象らしい",
        "これ危ないよ",
        "怖い",
        "サポートの対応が悪い",
        "もう二度と買わない",
        "二度と買わなかった",  # i-adjective-like inflection of a ない phrase
        "ﾘｺｰﾙ",  # half-width katakana
        "店員さんが不親切",  # longest match: not 親切
    ],
)
def test_japanese_negatives(japanese: JapaneseLexiconScorer, text: str) -> None:
    assert label_of(japanese, text) == "negative"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("美味しくない", "negative"),
        ("美味しくなかった", "negative"),
        ("好きじゃない", "negative"),
        ("便利ではない", "negative"),
        ("良くない", "negative"),
        ("問題ない", "positive"),
        ("問題ありません", "positive"),
        ("壊れてない", "positive"),
        ("悪くない", "positive"),
        ("嬉しくて思わず笑った", "positive"),  # ず after a kanji is not a negation of 嬉しく
    ],
)
def test_japanese_negation_flips_polarity(
    japanese: JapaneseLexiconScorer, text: str, expected: str
) -> None:
    assert label_of(japanese, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("悪いことじゃない", "positive"),  # a nominaliser between the term and the negation
        ("嫌なわけではない", "positive"),
        ("面白くねえ", "negative"),  # colloquial ねえ
        ("泣くしかない", "negative"),  # しかない ("nothing but") is no negation
        ("最高じゃないか", "positive"),  # the rhetorical "isn't it"
        ("最高じゃない?", "positive"),
        ("最高じゃないですか", "positive"),
        ("最高じゃない", "negative"),
        ("買わなければよかった", "negative"),  # regret: the よかった of "if only"
        ("行けばよかった", "negative"),
        ("行ってよかった", "positive"),
    ],
)
def test_japanese_negation_forms(japanese: JapaneseLexiconScorer, text: str, expected: str) -> None:
    assert label_of(japanese, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("便利だけど高すぎる", "negative"),  # the clause after the contrast weighs more
        ("高すぎるけど便利", "positive"),
        ("美味しいのに高すぎる", "negative"),
        ("嬉しいが、高すぎる", "negative"),
        ("でも高すぎる。嬉しい", "positive"),  # only the last contrast counts
        ("今でも嬉しい", "positive"),  # でも inside a clause ("even") is no contrast
    ],
)
def test_japanese_contrast_weighs_the_last_clause(
    japanese: JapaneseLexiconScorer, text: str, expected: str
) -> None:
    assert label_of(japanese, text) == expected


def test_japanese_contrast_weights(japanese: JapaneseLexiconScorer) -> None:
    assert japanese.matches("便利だけど高すぎる") == [("便利", 0.75), ("高すぎ", -1.5)]
    assert japanese.matches("便利、高すぎる") == [("便利", 1.5), ("高すぎ", -1.0)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("また来てね(^^)", "positive"),
        ("また来てね(＾＿＾)", "positive"),
        ("ライブ♪", "positive"),
        ("また来てね(^^;", "neutral"),  # the sweating smile is awkward, not glad
        ("雨だ :(", "negative"),
    ],
)
def test_japanese_emoticons(japanese: JapaneseLexiconScorer, text: str, expected: str) -> None:
    assert label_of(japanese, text) == expected


def test_japanese_neutral_and_shielded(japanese: JapaneseLexiconScorer) -> None:
    assert label_of(japanese, "今日は東京に行きます") == "neutral"
    assert label_of(japanese, "今日は機嫌がいい") != "negative"  # 機嫌 shields 嫌


def test_japanese_score_grows_with_evidence(japanese: JapaneseLexiconScorer) -> None:
    one, two, negated = japanese.score(["最悪", "最悪、不具合で返金", "最悪じゃない"])
    assert -1.0 < two.score < one.score < 0.0 < negated.score


def test_japanese_matches_report_terms_and_weights(japanese: JapaneseLexiconScorer) -> None:
    assert japanese.matches("美味しくない") == [("美味しく", -0.75)]
    assert japanese.matches("不親切") == [("不親切", -1.5)]


def test_load_lexicon_parses_inflects_and_normalises() -> None:
    lexicon = load_lexicon("# comment\n\n怖い\t-1.5\nｵｽｽﾒ\t1\nいい\t1\n")
    assert lexicon["怖い"] == lexicon["怖く"] == lexicon["怖かっ"] == lexicon["怖さ"] == -1.5
    assert lexicon["オススメ"] == 1.0
    assert "いく" not in lexicon  # one-kana stems are not inflected (いい -> いく would be 行く)


@pytest.mark.parametrize("line", ["no-tab-here", "term\t1\textra", "term\tnot-a-number", "x\tnan"])
def test_load_lexicon_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(ValueError, match=r"ja_lexicon\.tsv:1:"):
        load_lexicon(line)


COMPLAINTS = [
    "不具合",
    "故障",
    "壊れた",
    "返金",
    "届かない",
    "遅い",
    "最悪",
    "ひどい",
    "炎上",
    "火傷",
    "焦げ",
    "リコール",
    "危ない",
    "怖い",
    "対応が悪い",
    "二度と買わない",
]
PRAISE = ["最高", "便利", "好き", "嬉しい", "おすすめ", "美味しい", "助かる"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [(word, "negative") for word in COMPLAINTS] + [(word, "positive") for word in PRAISE],
)
def test_core_vocabulary(japanese: JapaneseLexiconScorer, word: str, expected: str) -> None:
    assert label_of(japanese, word) == expected


def test_custom_lexicon() -> None:
    scorer = JapaneseLexiconScorer({"ぴえん": -1.0})
    assert label_of(scorer, "ぴえん") == "negative"
    assert label_of(scorer, "最悪") == "neutral"
    with pytest.raises(ValueError, match="empty"):
        JapaneseLexiconScorer({})


# --- robustness ---------------------------------------------------------------------------

SCORERS = ["vader", "japanese"]


@pytest.mark.parametrize("name", SCORERS)
def test_scorers_survive_awkward_texts(name: str, request: pytest.FixtureRequest) -> None:
    scorer: Scorer = request.getfixturevalue(name)
    started = time.perf_counter()
    results = scorer.score(AWKWARD_TEXTS)
    assert time.perf_counter() - started < 2.0  # the length caps work: no stall on 1 MB texts
    assert len(results) == len(AWKWARD_TEXTS)
    for sentiment in results:
        assert_valid(sentiment)


def test_empty_and_emoji_only_are_neutral(
    vader: VaderScorer, japanese: JapaneseLexiconScorer
) -> None:
    assert [s.label for s in japanese.score(["", "🚃🚃"])] == ["neutral", "neutral"]
    assert label_of(vader, "") == "neutral"


def test_one_megabyte_text_is_scored_from_its_head(
    vader: VaderScorer, japanese: JapaneseLexiconScorer
) -> None:
    assert label_of(vader, ONE_MB) == "negative"
    assert label_of(japanese, "最高" + "あ" * 1_000_000) == "positive"
    assert label_of(japanese, "あ" * 1_000_000 + "最悪") == "neutral"  # beyond MAX_CHARS


def test_router_survives_awkward_texts() -> None:
    results = default_router().score(AWKWARD_TEXTS, [None] * len(AWKWARD_TEXTS))
    assert len(results) == len(AWKWARD_TEXTS)
    for sentiment in results:
        assert_valid(sentiment)


ANY_TEXT = st.lists(
    st.one_of(
        st.characters(categories=("L", "M", "N", "P", "S", "Z", "C")),  # incl. lone surrogates
        st.sampled_from(["ない", "美味しく", "じゃ", "not", "good", " but ", "!!!", "😡", "ｶ"]),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=ANY_TEXT, tag=st.sampled_from([None, "", "und", "ja", "en-US", "xx"]))
def test_anything_gets_a_valid_sentiment(
    vader: VaderScorer, japanese: JapaneseLexiconScorer, text: str, tag: str | None
) -> None:
    assert guess_lang(text) in {"en", "ja", "ko", "zh", "und"}
    router = LanguageRouter({"en": vader, "ja": japanese}, fallback="en")
    for sentiment in [*router.score([text], [tag]), *vader.score([text]), *japanese.score([text])]:
        assert_valid(sentiment)


# --- complaint cues (xwatch.sentiment.complaints) -----------------------------------------

from xwatch.sentiment.complaints import (  # noqa: E402 - this section's own imports
    ENGLISH_NEGATION_GUARD,
    ComplaintScorer,
    CueSet,
    english_cues,
    english_default,
    japanese_cues,
    japanese_default,
    literal_heads,
    load_cues,
)
from xwatch.sentiment.vader import FastAnalyzer  # noqa: E402


@pytest.fixture(scope="module")
def english() -> ComplaintScorer:
    return english_default()


@pytest.fixture(scope="module")
def japanese_cued() -> ComplaintScorer:
    return japanese_default()


@pytest.mark.parametrize(
    "text",
    [
        "still waiting for my bag after 3 hours",  # still waiting + duration
        "been on hold for 40 minutes",  # on hold
        "the app doesn't work",  # doesn't work
        "my order never arrived",  # never arrived
        "where is my refund",  # question to support, refund
        "how long do I have to wait",  # how long
        "WHY DOES THIS KEEP HAPPENING",  # all caps + why
    ],
)
def test_english_cues_catch_complaints_raw_vader_misses(
    vader: VaderScorer, english: ComplaintScorer, text: str
) -> None:
    assert label_of(vader, text) != "negative"
    assert label_of(english, text) == "negative"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no delay at all, great flight", "positive"),
        ("fast refund, thanks!", "positive"),
        ("The flight leaves at 5pm from gate 12.", "neutral"),
        ("Flying to Boston for 3 days", "neutral"),  # a duration alone is a weak cue
        ("I love this airline, the crew was wonderful!", "positive"),
    ],
)
def test_english_cues_that_must_not_fire(
    english: ComplaintScorer, text: str, expected: str
) -> None:
    assert label_of(english, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "3回目の再起動でも直らない",  # repetition + not fixed
        "いつまで待てばいいの",  # until when
        "ログインできません",  # cannot log in
        "返事が来ない",  # no reply
        "なんでこうなるの",  # why
        "電車が運休してる",  # service cancelled
        "何度も電話した",  # again and again
        "早く直してほしい",  # a request that something change
        "ちゃんと説明すべきだ",  # what should be done
        "待つしかない",  # resignation
        "また延期らしい…",  # trailing off
    ],
)
def test_japanese_cues_catch_complaints_the_lexicon_misses(
    japanese: JapaneseLexiconScorer, japanese_cued: ComplaintScorer, text: str
) -> None:
    assert label_of(japanese, text) != "negative"
    assert label_of(japanese_cued, text) == "negative"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("今日は東京に行きます", "neutral"),
        ("まだ朝です", "neutral"),  # まだ alone is a weak cue
        ("問題ないです、ありがとう", "positive"),
        ("このラーメン最高!!", "positive"),
        ("また来てほしいなぁ", "neutral"),  # a hopeful wish
        ("最高すぎる…", "positive"),  # trailing off is weak: a positive term outweighs it
    ],
)
def test_japanese_cues_that_must_not_fire(
    japanese_cued: ComplaintScorer, text: str, expected: str
) -> None:
    assert label_of(japanese_cued, text) == expected


@pytest.mark.parametrize(
    "text", ["not happy with the service today", "no help from the desk", "not impressed"]
)
def test_negated_positives_are_negative(english: ComplaintScorer, text: str) -> None:
    assert label_of(english, text) == "negative"
    assert english.polarity(text) < english.base.polarity(text)  # the cue adds to VADER


def test_negated_cue_does_not_count(english: ComplaintScorer) -> None:
    text = "without any delay, lovely crew"
    assert english.cues.matches(text) == []
    assert english.polarity(text) == english.base.polarity(text)


def test_cue_rule_is_base_plus_distinct_weights_clipped() -> None:
    cues = CueSet(load_cues("late\t-0.3\tlate\nlost\t-0.9\tlost\n"))

    class Fixed:
        def polarity(self, text: str) -> float:
            return 0.2

    scorer = ComplaintScorer(Fixed(), cues)
    assert scorer.polarity("fine") == pytest.approx(0.2)
    assert scorer.polarity("late late late") == pytest.approx(-0.1)  # a cue counts once
    assert scorer.polarity("late and lost") == -1.0  # clipped
    assert [cue.note for _, cue in cues.matches("lost, late")] == ["lost", "late"]


def test_cues_overlap_and_each_counts_once() -> None:
    cues = CueSet(load_cues("still waiting\t-0.4\tstill waiting\nwaiting for\t-0.2\twait\n"))
    assert [cue.note for _, cue in cues.matches("still waiting for a reply")] == [
        "still waiting",
        "wait",
    ]
    assert cues.total("still waiting for it, still waiting for it") == pytest.approx(-0.6)


def test_a_guarded_match_does_not_hide_a_later_one() -> None:
    cues = CueSet(load_cues(r"\bdelay\b	-0.3	delay"), guard=ENGLISH_NEGATION_GUARD)
    assert cues.matches("no delay today") == []
    assert [text for text, _ in cues.matches("no delay yesterday, a delay today")] == ["delay"]


@pytest.mark.parametrize(
    ("pattern", "heads", "anchored"),
    [
        (r"\bdelay(?:s|ed)?\b", {"delay"}, True),
        (r"\bcancel+(?:ed)?", {"cancel"}, True),
        (r"\bcance?l", {"canc"}, True),
        (r"\b(?:lost|missing)\s+bag", {"lost", "missing"}, True),
        (r"\bwhat a joke\b|\bjoke of an?\b", {"what a joke", "joke of a"}, True),
        (r"\#(?:epic)?fail\b", {"#"}, False),
        (r"\b\d+\s*hours", set("0123456789"), True),
        (r"まだ(?:届|来)", {"まだ"}, False),
        (r"(?:\(t_t\)|orz)", {"(t_t)", "orz"}, False),
        (r"foo|\bbar", {"foo", "bar"}, False),
    ],
)
def test_literal_heads(pattern: str, heads: set[str], anchored: bool) -> None:
    assert literal_heads(pattern) == (frozenset(heads), anchored)


@pytest.mark.parametrize(
    "pattern", [r"[abc]x", r".x", r"(?=x)y", r"(?:ab)?c", r"a*b", r"\b(?:\w+|x)", r"(?:x|[y]z|w)"]
)
def test_literal_heads_unknown(pattern: str) -> None:
    assert literal_heads(pattern) is None


CUE_TEXTS = [
    "@airline still waiting for my bag after 3 hours!!! #fail",
    "Flight delayed, then Cancelled Flightled. No help, no reply. Why is my refund missing?",
    "no delay at all, great crew", "not stuck, not delayed, never again? never again.",
    "The app doesn\u2019t work and I can\u2019t log in", "WHY DOES THIS KEEP HAPPENING",
    "where's my order?? been waiting 2 weeks", "any update on my claim? please help",
    "hung up on me twice... thanks for nothing", "Missing bags, damaged luggage; lost my suitcase",
    "overbooked & stranded; sat on the tarmac for 2hrs", "#epicfail #FAIL fail", "it's not a joke",
    "what a joke of a company", "delay-delay/delay", "refund refunds refunded", "", "   ",
    "😡😡 delayed 😡", "İstanbul flight delayed", "ß still waiting", "nothing wrong here",
    "3回目の再起動でも直らない", "いつまで待てばいいの(T_T)", "ﾛｸﾞｲﾝできません、返事が来ない。はぁ…",
    "また障害かよ", "問題ないです、ありがとう", "まだ朝です", "待たされた挙句に金返せ", "ORZ",
]  # fmt: skip
"""Varied complaint and non-complaint texts, English and Japanese, for the fast cue path."""


@pytest.mark.parametrize("text", CUE_TEXTS)
def test_fast_cue_path_equals_the_plain_scan(text: str) -> None:
    for cues in (english_cues(), japanese_cues()):
        assert cues.matches(text) == cues.scan(text)
        assert cues.total(text) == pytest.approx(sum(cue.weight for _, cue in cues.scan(text)))
    assert english_cues().matches(CUE_TEXTS[0])  # the set does hold complaints


EN_CUES = english_cues()
JA_CUES = japanese_cues()
SEPARATORS = [" ", "  ", ", ", "!", "\n", "-", "", "…", "\u2019"]

CUE_WORDS = [
    "still", "waiting", "wait", "for", "no", "not", "never", "help", "reply", "delay", "delayed",
    "cancel", "cancelled", "why", "is", "my", "where's", "can't", "can\u2019t", "log", "in",
    "doesn't", "work", "3", "hours", "an", "hour", "#fail", "fail", "on", "hold", "again",
    "what", "a", "joke", "of", "lost", "bag", "refund", "late", "so", "too", "happy",
    "まだ", "届かない", "何度も", "3回目", "返事が", "来ない", "はぁ", "のに", "かよ",
    "(T_T)", "orz", "エラー",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(st.sampled_from(CUE_WORDS), max_size=25),
    separators=st.lists(st.sampled_from(SEPARATORS), min_size=1),
)
def test_fast_cue_path_equals_the_plain_scan_on_any_mix(
    words: list[str], separators: list[str]
) -> None:
    text = "".join(word + separators[i % len(separators)] for i, word in enumerate(words))
    for cues in (EN_CUES, JA_CUES):
        assert cues.matches(text) == cues.scan(text)


@pytest.mark.parametrize(
    "text",
    [
        "still no reply from support",
        "waited forever at the gate",
        "my flight is running late",
        "they won't let me check in",
        "The app doesn\u2019t work",  # a typographic apostrophe
        "what happened to my reservation",
    ],
)
def test_more_english_complaints_raw_vader_misses(
    vader: VaderScorer, english: ComplaintScorer, text: str
) -> None:
    assert label_of(vader, text) != "negative"
    assert label_of(english, text) == "negative"


@pytest.mark.parametrize(
    "text",
    [
        "See her again this Saturday",  # "again" is a tone cue
        "We sat at the diner for three hours",  # a duration is a tone cue
        "Why is the sky blue",  # a question about anything
        "The fees are listed on the site",  # "fees" is a tone cue
        "Nobody expected that goal",
    ],
)
def test_tone_cues_alone_do_not_make_a_complaint(english: ComplaintScorer, text: str) -> None:
    assert label_of(english, text) == "neutral"


def test_words_of_asking_do_not_count_as_praise(
    vader: VaderScorer, english: ComplaintScorer
) -> None:
    text = "please help, I hope someone answers"
    assert label_of(vader, text) == "positive"  # VADER: please +1.3, help +1.7, hope +1.9
    assert english.base.polarity(text) == 0.0
    assert label_of(english, "thank you, great help") == "positive"


def test_typographic_apostrophes_negate_like_straight_ones(english: ComplaintScorer) -> None:
    assert english.polarity("I don\u2019t like it") == english.polarity("I don't like it") < 0


@pytest.mark.parametrize(
    "text",
    ["悲しい", "つらい", "怖い", "嫌だ", "最悪", "疲れた", "寂しい", "不安", "イライラする",
     "泣いた", "もう無理", "楽しくない", "会えなくて寂しい", "頭痛がひどい", "ストレスで眠れない",
     "行きたくない", "理不尽すぎる", "心が折れた", "(T_T)", "😭"],
)  # fmt: skip
def test_japanese_emotion_words_are_negative(japanese: JapaneseLexiconScorer, text: str) -> None:
    assert label_of(japanese, text) == "negative"


@pytest.mark.parametrize(
    "text",
    ["泣ける映画だった", "無理しないでね", "楽しかった!", "笑った www", "落ち着いた", "いい天気"],
)
def test_japanese_emotive_but_not_negative(japanese: JapaneseLexiconScorer, text: str) -> None:
    assert label_of(japanese, text) != "negative"


def test_default_router_on_mixed_emoji_and_empty_texts() -> None:
    texts = ["このアプリ最悪、app crashed again", "😀🎉", "", "the app crashed again, 最悪"]
    results = default_router().score(texts, [None] * len(texts))
    assert [s.label for s in results] == ["negative", "positive", "neutral", "negative"]
    assert guess_lang(texts[0]) == "ja" and guess_lang(texts[3]) == "en"


@pytest.mark.parametrize(
    "line", ["no-tabs", "a\t1", "a\tx\tnote", "a\tinf\tnote", "(a)\t-1\tcapturing", "(\t-1\tbad"]
)
def test_load_cues_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(ValueError, match=r"cues:1:"):
        load_cues(line)


VADER_CASES = [
    "😀abc", "a😀😀 b 😀", "no good at all", "I'm not very happy", "never so good",
    "without a doubt great", "kind of bad", "the bomb", "AWFUL service!!!", "hi 😡🤬 you",
    "not the worst, but not good", "", "   ", "good but good but bad good", "no no",
    "KIND of GOOD but BAD", "at least good", "very least good", "least good", "yeah right",
    "this is the shit", "it was kiss of death", "a cake to die for", "sort of nice", "İİ! good",
    "So GOOD, really VERY good", "not bad at all", "the flight is delayed :( again",
    "no, nor good", "I don't hate it", "Great!!!!! ??", "great ???", "NOT GOOD",
    "\uff47\uff4f\uff4f\uff44",
    "never this good", "never so bad", "without doubt awful", "café terrible", "good 💔 day",
    "ΑΣ' good", "good Σ.Σ. ΟΔΟΣ!", "the good bomb", "kiss good of death", "to die good for",
]  # fmt: skip
"""Texts that exercise each of VADER's rules: negation, boosters, capitals, "but", "least",
idioms, punctuation emphasis, emoji, non-ASCII lower-casing."""


@pytest.fixture(scope="module")
def reference_vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


@pytest.fixture(scope="module")
def fast_vader() -> FastAnalyzer:
    return FastAnalyzer()


def test_fast_analyzer_equals_vader(
    reference_vader: SentimentIntensityAnalyzer, fast_vader: FastAnalyzer
) -> None:
    for text in VADER_CASES:
        expected = reference_vader.polarity_scores(text)
        assert fast_vader.polarity_scores(text) == expected, text
        assert fast_vader.compound(text) == expected["compound"], text


VADER_WORDS = [
    "good", "bad", "not", "but", "very", "kind", "of", "no", "least", "at", "the", "bomb",
    "GREAT", "never", "so", "this", "without", "doubt", ":)", "!!", "?", "😀", "💔", " ", ",",
    "isn't", "LOVE", "shit", "to", "die", "for", "kiss", "death", "yeah", "right", "sort",
    "just", "enough", "bad", "ass", "heart", "or", "nor", "Σ", "İ",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(
        st.one_of(
            st.sampled_from(VADER_WORDS), st.characters(categories=("L", "N", "P", "Z", "So"))
        ),
        max_size=30,
    ).map(" ".join)
)
def test_compound_equals_vader_on_any_text(
    reference_vader: SentimentIntensityAnalyzer, fast_vader: FastAnalyzer, text: str
) -> None:
    assert fast_vader.compound(text) == reference_vader.polarity_scores(text)["compound"]


def test_defaults_survive_awkward_texts(
    english: ComplaintScorer, japanese_cued: ComplaintScorer
) -> None:
    for scorer in (english, japanese_cued):
        started = time.perf_counter()
        results = scorer.score(AWKWARD_TEXTS)
        assert time.perf_counter() - started < 3.0
        assert len(results) == len(AWKWARD_TEXTS)
        for sentiment in results:
            assert_valid(sentiment)
    assert label_of(english, "") == label_of(japanese_cued, "") == "neutral"
    assert label_of(english, "😀🎉🔥") == "positive"
    assert label_of(english, ONE_MB) == "negative"


# -- tweet rules (xwatch.sentiment.english) and emoji/kaomoji cues ----------------------------

from xwatch.sentiment.english import rewrite  # noqa: E402

VADER_LEXICON = SentimentIntensityAnalyzer().lexicon


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seeing the Grateful Dead tonight", "seeing the Grateful_Dead tonight"),
        ("I love Foo Fighters", "I love Foo_Fighters"),
        # at a sentence start the first word stays out of the run
        ("Great show. Bad Blood Returns tonight", "Great show. Bad Blood_Returns tonight"),
        ("Bad Service today", "Bad Name_Service today"),
        ("Bad service today", "Bad service today"),
        ("late again\nBad Service as usual", "late again\nBad Name_Service as usual"),
        ("flying United again", "flying Name_United again"),  # one word: a name too
        ("I Hate This Airline", "I Hate This Airline"),  # Title Case: left alone
        ("@united lost my bag, @Delta too", "@user lost my bag, @user too"),
        ("#WorstAirlineEver again", "#Worst Airline Ever again"),
        ("sooo baaaad", "sooo bad"),  # "sooo" stretches no lexicon word: kept
        ("wish you nothing but the best", "wish you only the best"),
        ("I couldn't be happier", "I extremely happier"),
        ("it can not get any worse", "it extremely worse"),
        ("one hell of a weekend", "one really weekend"),
        ("feels like 3 hours, like, why", "feels as 3 hours, as, why"),
        ("I like it, don't like that", "I like it, don't like that"),
        ("I would like a refund", "I would as a refund"),
        ("please stop by the booth", "please visit the booth"),
        ("I want it so bad", "I want it so much"),
        ("I need a holiday so badly", "I need a holiday so much"),
        ("wanted the steak but it was so bad", "wanted the steak but it was so bad"),
        ("waited 3 hours, so bad", "waited 3 hours, so bad"),
        ("an ordinary sentence, unchanged", "an ordinary sentence, unchanged"),
    ],
)
def test_rewrite(text: str, expected: str) -> None:
    assert rewrite(text, VADER_LEXICON) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("EVENT: bluegrass brunch with the Grateful Dead tribute band", "neutral"),  # "dead"
        ("@united flight 123 boards at gate 4", "neutral"),  # VADER reads "united" as +1.8
        ("flying United to Denver tomorrow", "neutral"),
        ("it feels like we have been here for hours", "neutral"),  # VADER: "like" +1.5
        ("I would like to change my seat", "neutral"),
        ("I couldn't be happier with the crew", "positive"),  # VADER flips "happier"
        ("it couldn't be worse", "negative"),  # VADER flips "worse"
        ("wish you nothing but the best", "positive"),  # VADER negates "best"
        ("#WorstAirlineEver", "negative"),
        ("one hell of a birthday weekend", "neutral"),  # VADER: "hell" -3.6
        ("stop by our open house on Friday", "neutral"),  # VADER: "stop" -1.2
        ("that was baaaad", "negative"),
        ("I want to see that movie so bad", "positive"),  # VADER: "bad" -2.5
    ],
)
def test_tweet_rules_fix_what_raw_vader_misreads(
    vader: VaderScorer, english: ComplaintScorer, text: str, expected: str
) -> None:
    assert label_of(vader, text) != expected
    assert label_of(english, text) == expected


@pytest.mark.parametrize("text", ["😡", "the update 👎", "the new update 🙄", "my order 💔"])
def test_english_emoji_cues(vader: VaderScorer, english: ComplaintScorer, text: str) -> None:
    assert label_of(vader, text) != "negative"
    assert label_of(english, text) == "negative"


@pytest.mark.parametrize(
    "text",
    [
        "また会議(´・×・｀)",
        "明日も仕事(´-ω-`)",
        "終わらない( ；∀；)",
        "今日も会議＿|￣|○",
        "テスト(ToT)",
        "朝から会議(;´Д`)",
    ],
)
def test_japanese_sad_kaomoji(
    japanese: JapaneseLexiconScorer, japanese_cued: ComplaintScorer, text: str
) -> None:
    assert label_of(japanese, text) != "negative"
    assert label_of(japanese_cued, text) == "negative"


@pytest.mark.parametrize(
    "text",
    ["今日は晴れ(*´▽`*)", "ご飯できた(´∀`)", "テスト(test)です"],
)
def test_happy_or_no_kaomoji_are_not_sad(japanese_cued: ComplaintScorer, text: str) -> None:
    assert japanese_cued.cues.matches(text) == []


# -- ML-Ask's words and the Aho-Corasick scan -------------------------------------------------

import re  # noqa: E402

from xwatch.sentiment.japanese import (  # noqa: E402
    MLASK_WEIGHT,
    default_lexicon,
    load_mlask,
    trie_pattern,
)


def test_load_mlask_turns_lemmas_into_terms() -> None:
    lexicon = load_mlask(
        "# comment\n"
        "呆れる\tiya\n"  # a verb: also its stem, 呆れた / 呆れて
        "憤慨\tikari\n"
        "嬉しい\tyorokobi\n"  # an i-adjective: also 嬉しく, 嬉しかっ, ...
        "あてになるない\tiya\n"  # a lemma sequence no text spells
        "悲しいさ\taware\n"
        "いや\tiya\n"  # short hiragana: inside other words
        "酔う\tsuki\n"  # two characters: no stem
        "微妙\tiya\n微妙\tsuki\n"  # both valences: left out
    )
    assert lexicon["呆れる"] == lexicon["呆れ"] == lexicon["憤慨"] == -MLASK_WEIGHT
    assert lexicon["嬉しい"] == lexicon["嬉しく"] == lexicon["嬉しかっ"] == MLASK_WEIGHT
    assert lexicon["酔う"] == MLASK_WEIGHT and "酔" not in lexicon
    for absent in ("あてになるない", "悲しいさ", "いや", "微妙"):
        assert absent not in lexicon


@pytest.mark.parametrize("line", ["no-tab-here", "語\tunknown", "語\tiya\textra"])
def test_load_mlask_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(ValueError, match=r"ja_mlask\.tsv:1:"):
        load_mlask(line)


def test_the_hand_written_lexicon_wins_over_mlask() -> None:
    lexicon = default_lexicon()
    assert lexicon["機嫌"] == 0.0  # a shield of the hand-written file, whatever ML-Ask says
    assert lexicon["憤慨"] == -MLASK_WEIGHT  # ML-Ask only


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("あまりの対応に呆れた", "negative"),
        ("罪悪感でいっぱい", "negative"),
        ("のんびりした休日", "positive"),
    ],
)
def test_mlask_words_the_hand_written_lexicon_lacks(
    japanese: JapaneseLexiconScorer, text: str, expected: str
) -> None:
    hand_written = JapaneseLexiconScorer(load_lexicon(_lexicon_text()))
    assert label_of(hand_written, text) == "neutral"
    assert label_of(japanese, text) == expected


SCAN_TERMS = ["最悪", "最", "悪い", "悪", "不具合", "具合", "合う", "ない", "美味しい", "美味"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="".join(set("".join(SCAN_TERMS))) + "はがのx。", max_size=40))
def test_the_scan_finds_what_the_trie_regex_finds(text: str) -> None:
    """Leftmost, then longest, without overlaps: the automaton as ``re.finditer`` of the
    trie of the terms."""
    scorer = JapaneseLexiconScorer(dict.fromkeys(SCAN_TERMS, -1.0))
    trie = re.compile(trie_pattern(SCAN_TERMS))
    assert [term for term, _ in scorer.matches(text)] == trie.findall(text)
