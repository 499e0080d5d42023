"""Tests for the Japanese default scorer's rules: the lexicon's word classes and shields,
negation and inflection, and the complaint cues (``xwatch.sentiment.japanese``,
``ja_lexicon.tsv``, ``ja_cues.tsv``).

Every sentence here is made up.  A sentence that tests a rule scored otherwise before the
rule existed; the others are controls, what a rule must leave alone (さすが still praises,
a negation without a trailing off is no cue).
"""

from __future__ import annotations

import math
import time

import pytest

from xwatch.model import Sentiment
from xwatch.sentiment import JapaneseLexiconScorer, Scorer
from xwatch.sentiment.complaints import ComplaintScorer, japanese_cues, japanese_default
from xwatch.sentiment.japanese import load_lexicon


@pytest.fixture(scope="module")
def lexicon() -> JapaneseLexiconScorer:
    return JapaneseLexiconScorer()


@pytest.fixture(scope="module")
def default() -> ComplaintScorer:
    return japanese_default()


def label_of(scorer: Scorer, text: str) -> str:
    return scorer.score([text])[0].label


# --- the lexicon's word classes -------------------------------------------------------------

WORD_CLASSES = [
    # illness, injury and bodily trouble
    ("朝から貧血でふらふらする", "negative"),
    ("昨日の揚げ物で胃もたれがする", "negative"),
    ("バレーで突き指した", "negative"),
    ("季節の変わり目で体調を崩した", "negative"),
    # tiredness
    ("一日中歩いてクタクタ", "negative"),
    ("夏バテ気味です", "negative"),
    # death and condolence
    ("心よりご冥福をお祈りします", "negative"),
    ("恩師が急逝したと聞いた", "negative"),
    # insults
    ("あの店員はクズだ", "negative"),
    ("あのアホな上司", "negative"),
    # regret: an unfulfilled wish, the colloquial 〜てしまった, forgetting, a past apology
    ("あのライブ、行きたかった", "negative"),
    ("限定版が欲しかった", "negative"),
    ("傘を電車に置いてきちゃった", "negative"),
    ("また宿題を忘れた", "negative"),
    ("先日は本当にすみませんでした", "negative"),
    # interjections of dismay and onomatopoeia of fright, anger, sadness
    ("とほほ、また雨だ", "negative"),
    ("あーあ、終わった", "negative"),
    ("一瞬ヒヤッとした", "negative"),
    ("あの一言にカチンときた", "negative"),
    ("ガーン、雨だ", "negative"),
    # emoji of sickness and sighing
    ("今日は休みます🤒", "negative"),
    ("月曜日か😮\u200d💨", "negative"),
]


@pytest.mark.parametrize(("text", "expected"), WORD_CLASSES)
def test_word_classes(lexicon: JapaneseLexiconScorer, text: str, expected: str) -> None:
    assert label_of(lexicon, text) == expected


SHIELDS = [
    # the adverb さすがに ("admittedly", "really") is not the praise さすが
    ("さすがにこれは無理", "negative"),
    ("流石に疲れた", "negative"),
    ("さすが、仕事が早い", "positive"),
    # 晴れ is the weather; 気が晴れる (the mood clears) stays glad
    ("明日は晴れの予報", "neutral"),
    ("話を聞いてもらって気が晴れた", "positive"),
    # modal いい: advice and permission are not praise; いい alone still is
    ("早く寝たほうがいい", "neutral"),
    ("明日は休んでもいい", "neutral"),
    ("この曲いいね", "positive"),
    # polite formulas: a greeting, a request, consideration
    ("今日もお疲れ様でした", "neutral"),
    ("恐れ入りますが、ご確認ください", "neutral"),
    ("細やかな心配り", "neutral"),
    # a degree adverb from a fear adjective
    ("恐ろしく速いパソコン", "neutral"),
    ("恐ろしい事件", "negative"),
    # words that hold an insult or a regret inside them
    ("カスタマーサポートに電話した", "neutral"),
    ("夏のバカンスの予定", "neutral"),
    ("段差でつまずいた", "neutral"),  # つまずいた (stumbled) holds まずい (tastes bad)
    ("無事に退院できてめでたかった", "positive"),
    # 忘れ negated is memorable
    ("あの景色は一生忘れない", "positive"),
]


@pytest.mark.parametrize(("text", "expected"), SHIELDS)
def test_shields_and_non_evaluative_uses(
    lexicon: JapaneseLexiconScorer, text: str, expected: str
) -> None:
    assert label_of(lexicon, text) == expected


def test_a_shield_wins_as_the_leftmost_term(lexicon: JapaneseLexiconScorer) -> None:
    assert [term for term, _ in lexicon.matches("雰囲気楽しむ")] == ["雰囲気", "楽しむ"]  # not 気楽


# --- negation and inflection ----------------------------------------------------------------

NEGATION_AND_INFLECTION = [
    ("もう悔いは無い", "positive"),  # ない in kanji negates as ない does
    ("動作に問題無し", "positive"),
    ("配送が遅過ぎる", "negative"),  # すぎ in kanji inflects as すぎ does
]


@pytest.mark.parametrize(("text", "expected"), NEGATION_AND_INFLECTION)
def test_negation_and_inflection(lexicon: JapaneseLexiconScorer, text: str, expected: str) -> None:
    assert label_of(lexicon, text) == expected


def test_a_written_form_wins_over_an_inflected_one_wherever_it_stands() -> None:
    assert load_lexicon("重い\t-0.5\n重すぎ\t-1\n")["重すぎ"] == -1.0
    assert load_lexicon("重すぎ\t-1\n重い\t-0.5\n")["重すぎ"] == -1.0
    assert load_lexicon("重い\t-0.5\n")["重過ぎ"] == -0.5


# --- complaint cues ---------------------------------------------------------------------------

CUES = [
    # a negated predicate that trails off; not without the trailing off
    ("今日も勝てない…", "negative"),
    ("今日も勝てない", "neutral"),
    ("あの人から連絡が全然こない。。", "negative"),
    # のに / かよ at the end, also before "…" (NFKC folds it to "...")
    ("せっかく早起きしたのに…", "negative"),
    ("また雨かよ…", "negative"),
    # いつまでも is "forever", どうしても "no matter what": not "until when", "why"
    ("いつまでも応援してます", "positive"),
    ("どうしても行きたい", "neutral"),
    # the particle は before ある is no sigh
    ("彼には実力はある", "neutral"),
    ("はぁ…", "negative"),
    # an appliance that will not do its job, with no word of feeling; a customer lost
    ("ケトルバード、電源が入らない", "negative"),
    ("スイッチ入れても沸かない", "negative"),
    ("蓋が閉まらない", "negative"),
    ("ケトルバードやばすぎ、もう使わない", "negative"),
    ("このケトルが気に入った", "positive"),
]


@pytest.mark.parametrize(("text", "expected"), CUES)
def test_complaint_cues(default: ComplaintScorer, text: str, expected: str) -> None:
    assert label_of(default, text) == expected


def test_deki_nai_is_not_a_no_show() -> None:
    notes = [cue.note for _, cue in japanese_cues().matches("宿題が出来ない")]
    assert not any("来ない" in note for note in notes)
    notes = [cue.note for _, cue in japanese_cues().matches("バスが来ない")]
    assert any("来ない" in note for note in notes)


# --- robustness -------------------------------------------------------------------------------

AWKWARD = {
    "": "neutral",
    "   \n": "neutral",
    "🚃🚃🚃": "neutral",  # emoji only, none of them evaluative
    "🤒😮\u200d💨": "negative",  # emoji only, negative ones
    "😀🎉": "positive",
    "(´;ω;`)": "negative",  # noqa: RUF001 - the kaomoji as typed
    "Kettlebird の配送、really slow で遅過ぎる": "negative",  # mixed languages
    "The kettle is great, 最高!": "positive",
    "最悪" * 100_000: "negative",  # huge: scored from its head
    "笑" * 100_000 + "最悪": "positive",  # the complaint lies beyond the scored head
    "ない…" * 50_000: "negative",
    "\ud800無い\udfff": "neutral",  # lone surrogates
}


@pytest.mark.parametrize("name", ["lexicon", "default"])
def test_awkward_texts_get_valid_sentiments(name: str, request: pytest.FixtureRequest) -> None:
    scorer: Scorer = request.getfixturevalue(name)
    texts = list(AWKWARD)
    started = time.perf_counter()
    results = scorer.score(texts)
    assert time.perf_counter() - started < 2.0  # the length caps hold on huge texts
    assert len(results) == len(texts)
    for sentiment in results:
        assert isinstance(sentiment, Sentiment)
        assert math.isfinite(sentiment.score)
        assert -1.0 <= sentiment.score <= 1.0
    expected = dict(AWKWARD)
    if name == "lexicon":
        expected["ない…" * 50_000] = "neutral"  # the trailing-off cue is the default's
    assert {text: s.label for text, s in zip(texts, results, strict=True)} == expected
