"""The shipped rules (rules/*.yaml): each against posts that should and should not match.

The posts are the kind each crisis brings, in English and in Japanese. A topic rule is
checked on its match (which posts feed its series); a mention rule on its match and its
conditions (which single posts fire it); the brand-wide rules and the new-term rule on
what they fire on through the pipeline.
"""

# Japanese posts use full-width punctuation, and some apostrophes are typographic, on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.factories import mention
from xwatch.metrics import Metrics
from xwatch.model import Author, EventKind, Mention, Sentiment
from xwatch.pipeline import Pipeline
from xwatch.rules import normalize
from xwatch.sentiment.router import default_router
from xwatch.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(None, default_base=ROOT)


def post(
    text: str,
    author: str = "someone",
    *,
    followers: int = 300,
    negative: bool | None = None,
) -> Mention:
    lang = "en" if text.isascii() else "ja"
    found = mention(text, lang=lang, negative=negative, brands=("kettlebird",))
    return dataclasses.replace(found, author=Author(author, author, followers))


# rule id -> (posts that should match, posts that should not)
EXAMPLES: dict[str, tuple[list[Mention], list[Mention]]] = {
    "product-defect-surge": (
        [
            post("My Kettlebird Aero overheated and melted its own base"),
            post("the kettlebird caught fire on the counter"),
            post("Is there a ＲＥＣＡＬＬ on the Aero? @kettlebird"),
            post("ケトルバードのケトルから煙が出た。怖い"),
            post("エアロが発火した…ケトルバードどうなってるの"),
            post("ｹﾄﾙﾊﾞｰﾄﾞのｴｱﾛ、ﾘｺｰﾙ対象らしい"),
        ],
        [
            post("just got the kettlebird aero, love it"),
            post("burning question: what temp for oolong on the kettlebird?"),
            post("kettlebird smoky lapsang at 95 degrees, perfect"),  # not "smoke"
            post("ケトルバードでほうじ茶を淹れた"),
        ],
    ),
    "service-outage-surge": (
        [
            post("is kettlebird down? the app is not working"),
            post("Kettlebird app won't connect to my kettle"),
            post("can’t log in to kettlebird since this morning"),
            post("unable to check out on the kettlebird site"),
            post("ケトルバードのアプリ、ログインできない"),
            post("ケトルバードのサイトに繋がらない"),
            post("ケトルバードのアプリ落ちてる？"),
        ],
        [
            post("the kettlebird team is so down to earth"),
            post("on hold with kettlebird for an hour, their app won't connect either"),
            post("ケトルバードのサポートが繋がらない。電話もチャットもダメ"),
            post("downloading the kettlebird app now"),
        ],
    ),
    "account-takeover-post": (
        [
            post("Kettlebird airdrop! Connect your wallet to claim", "kettlebird"),
            post("ケトルバード限定の仮想通貨プレゼント企画", "kettlebird_jp"),
            post("Send ETH to 0x" + "3f" * 20 + " and get double back", "Kettlebird"),
        ],
        [
            post("New colour drop: the Kettlebird Aero in sage green", "kettlebird"),
            post("Win a Kettlebird Mini! Our giveaway ends Friday", "kettlebird"),
            post("a kettlebird airdrop scam is going around, careful", "worried_fan"),
        ],
    ),
    "own-account-anomaly": (
        [
            post("Tea o'clock! What's brewing in your Kettlebird?", "kettlebird"),
            post("今日の一杯は何にしますか？", "kettlebird_jp"),
        ],
        [post("kettlebird is the best", "kettlebird_fan")],
    ),
    "account-takeover-report": (
        [
            post("was @kettlebird hacked? weird crypto posts"),
            post("ケトルバードの公式アカウント乗っ取られてる？"),
            post("got a phishing email pretending to be kettlebird"),
        ],
        [
            post("we were not hacked, all is well ~Team Kettlebird", "kettlebird"),
            post("my kettlebird hack: descale with lemon juice"),
        ],
    ),
    "data-leak-surge": (
        [
            post("kettlebird data breach? just got a warning email"),
            post("I can see someone else's order in the Kettlebird app"),
            post("ケトルバードから個人情報が流出したらしい"),
            post("kettlebird leaked my card details?"),
        ],
        [
            post("my kettlebird kettle is leaking water"),
            post("ケトルバードのケトルが水漏れする"),
        ],
    ),
    "misconduct-surge": (
        [
            post("Kettlebird CEO accused of harassment"),
            post("kettlebird store staff were racist to my mum"),
            post("ケトルバードの社長がパワハラで訴えられてる"),
        ],
        [
            post("kettlebird staff were lovely today"),
            post("ケトルバードの店員さん親切だった"),
        ],
    ),
    "misinformation-surge": (
        [
            post("is it true kettlebird is going bankrupt?"),
            post("that kettlebird recall screenshot is a hoax"),
            post("ケトルバードのリコールの話、デマらしい"),
            post("ケトルバードの偽アカウントに注意"),
        ],
        [
            post("ケトルバード、沸くの早すぎて嘘みたい"),
            post("kettlebird makes the best tea, that's the truth"),
        ],
    ),
    "compliance-legal-surge": (
        [
            post("those kettlebird influencer posts are stealth marketing"),
            post("class action against kettlebird over the Aero"),
            post("kettlebird stole my photo for their ad"),
            post("ケトルバードのPR投稿ってステマじゃない？"),
            post("ケトルバードのキャンペーン、景品表示法違反では"),
        ],
        [
            post("the new kettlebird ad is cute"),
            post("ケトルバードの広告かわいい"),
        ],
    ),
    "own-post-backlash": (
        [
            post("@kettlebird delete this, it's so tone deaf"),
            post("@kettlebird_jp この投稿は不謹慎です"),
        ],
        [
            post("kettlebird's new post is tone deaf"),  # about it, not to it
            post("@kettlebird love this post"),
            post("@kettlebird_fans the kettlebird post was so tone deaf"),  # not the brand
        ],
    ),
}


def matched(settings: Settings, rule_id: str, found: Mention) -> bool:
    """Whether a post feeds a topic rule's series, or fires a mention rule."""
    rule = settings.rules.get(rule_id)
    assert rule is not None, rule_id
    when = rule.when.mention
    if when is not None and not when.admits(found):
        return False
    matcher = settings.rules.matchers[rule_id]
    return matcher.matches(found, normalize(found.text), settings.rules.own("kettlebird"))


@pytest.mark.parametrize("rule_id", sorted(EXAMPLES))
def test_a_rule_matches_the_posts_of_its_crisis_and_not_the_others(
    settings: Settings, rule_id: str
) -> None:
    should, should_not = EXAMPLES[rule_id]
    assert [p.text for p in should if not matched(settings, rule_id, p)] == []
    assert [p.text for p in should_not if matched(settings, rule_id, p)] == []


def test_every_rule_with_a_match_has_examples(settings: Settings) -> None:
    assert set(settings.rules.matchers) == set(EXAMPLES)


# rule id -> playbook: the contract with playbooks/*.md (their related_rules)
PLAYBOOKS = {
    "product-defect-surge": "product-defect",
    "service-outage-surge": "service-outage",
    "account-takeover-post": "account-takeover",
    "own-account-anomaly": "account-takeover",
    "account-takeover-report": "account-takeover",
    "data-leak-surge": "data-leak",
    "misconduct-surge": "misconduct",
    "misinformation-surge": "misinformation",
    "negative-share-spike": "complaint-wave",
    "high-reach-complaint": "complaint-wave",
    "compliance-legal-surge": "compliance-legal",
    "own-post-backlash": "own-post-backlash",
    "mention-volume-spike": "mention-spike",
    "mention-volume-drop": "mention-spike",
    "new-term-surge": "mention-spike",
}


def test_the_rules_the_playbooks_name_exist_and_link_back(settings: Settings) -> None:
    assert {r.id: r.playbook for r in settings.rules.rules} == PLAYBOOKS
    for rule in settings.rules.rules:
        assert rule.playbook in settings.playbooks
        assert rule.description or rule.when.signal, f"{rule.id}: say what it is for"


def test_a_high_reach_complaint_is_negative_and_from_a_big_account(settings: Settings) -> None:
    rule = settings.rules.get("high-reach-complaint")
    assert rule is not None and rule.match is None and rule.when.mention is not None
    when = rule.when.mention
    assert when.admits(post("kettlebird broke again", followers=250_000, negative=True))
    assert not when.admits(post("kettlebird broke again", followers=50_000, negative=True))
    assert not when.admits(post("kettlebird is lovely", followers=250_000, negative=False))


def test_the_brand_wide_rules_watch_every_post(settings: Settings) -> None:
    brand_wide = {r.id for r in settings.rules.signal_rules("kettlebird", "")}
    assert brand_wide == {"negative-share-spike", "mention-volume-spike", "mention-volume-drop"}


def day_and_a_half(rng: random.Random) -> list[Mention]:
    """36 hours of everyday posts about the brand, about one a minute."""
    texts = (
        "kettlebird green tea this morning",
        "my kettlebird aero is so quiet",
        "ケトルバードでほうじ茶",
        "kettlebird app says 80 degrees",
        "love my kettlebird mini",
    )
    posts = []
    for i in range(36 * 60):
        text = rng.choice(texts)
        found = mention(text, at=i * 60.0 + rng.random() * 50, id=f"e{i}", lang=None)
        posts.append(dataclasses.replace(found, author=Author(f"u{i % 300}", f"u{i % 300}")))
    return posts


def burst(texts: list[str], at: float, prefix: str) -> list[Mention]:
    return [
        dataclasses.replace(
            mention(text, at=at + i * 10, id=f"{prefix}{i}", lang=None),
            author=Author(f"{prefix}{i}", f"{prefix}{i}"),
        )
        for i, text in enumerate(texts)
    ]


def term_firings(settings: Settings, posts: list[Mention]) -> list[str]:
    pipeline = Pipeline(
        settings.config,
        settings.rules,
        settings.playbooks,
        default_router("en"),
        Metrics(CollectorRegistry()),
    )
    posts = sorted(posts, key=lambda m: m.created_at)
    events = pipeline.ingest(posts) + pipeline.flush()
    return [
        e.alert.term
        for e in events
        if e.kind is EventKind.FIRING and e.alert.rule_id == "new-term-surge"
    ]


def test_the_new_term_rule_fires_on_a_new_hashtag_not_on_a_busier_day(
    settings: Settings,
) -> None:
    calm = day_and_a_half(random.Random(5))
    at = 30 * 3600.0  # past the first day: the vocabulary is learned
    hashtag = burst(["kettlebird aero base cracked #crackgate"] * 8, at, "h")
    assert term_firings(settings, calm + hashtag) == ["#crackgate"]
    busier = burst(["kettlebird green tea this morning", "love my kettlebird mini"] * 10, at, "b")
    assert term_firings(settings, calm + busier) == []  # everyday words, just more of them
    early = burst(["kettlebird aero base cracked #crackgate"] * 8, 3 * 3600.0, "e")
    assert term_firings(settings, calm + early) == []  # in the first day: still learning


def test_every_shipped_example_is_about_the_brand(settings: Settings) -> None:
    """So that each example would reach the rules at all (found by the brand's terms)."""
    pattern = Pipeline(
        settings.config,
        settings.rules,
        settings.playbooks,
        default_router("en"),
        Metrics(CollectorRegistry()),
    ).brand_patterns["kettlebird"]
    for should, should_not in EXAMPLES.values():
        for found in should + should_not:
            if found.author.handle.casefold() in {"kettlebird", "kettlebird_jp"}:
                continue  # the brand's own posts come from its accounts
            assert pattern.search(normalize(found.text)), found.text


def test_sentiment_is_not_what_the_topic_match_looks_at(settings: Settings) -> None:
    """The negative condition of a topic rule is in its signal, not in its match: a neutral
    outage report still counts for the outage series."""
    neutral = dataclasses.replace(
        post("kettlebird app not working?"), sentiment=Sentiment("neutral", 0.0)
    )
    assert matched(settings, "service-outage-surge", neutral)
