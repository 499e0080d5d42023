"""The rule language: validation with file and line, matching, each kind of rule, timing.

Signal rules are driven through the real pipeline with stand-in detectors (``Above``), so
that what is tested is the rule (minimum authors, a condition that must last) and not
a baseline that needs a day of warm-up.
"""

# Japanese posts use full-width punctuation, and the apostrophes are typographic, on purpose.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.factories import T0, mention
from xwatch.cli import check, main
from xwatch.detect.terms import (
    EARLY_PER_SAMPLE,
    ClosedTerms,
    TermParams,
    TermTracker,
    brand_stop_terms,
    terms_of,
)
from xwatch.errors import ConfigError
from xwatch.metrics import Metrics
from xwatch.model import AlertEvent, Author, Bucket, EventKind, Measure, Mention, Signal
from xwatch.pipeline import Pipeline
from xwatch.rules import (
    CompiledMatch,
    Condition,
    Match,
    OwnAccounts,
    QuietHours,
    RuleSet,
    TermIndex,
    normalize,
    term_pattern,
    words_of,
)
from xwatch.sentiment.router import default_router
from xwatch.settings import Settings, load_settings

# -- helpers --------------------------------------------------------------------------


def with_rules(project: Path, text: str, name: str = "test.yaml") -> Path:
    """The project with only this rule file: the shipped rules are set aside."""
    shutil.rmtree(project / "rules")
    (project / "rules").mkdir()
    path = project / "rules" / name
    path.write_text(text, "utf-8")
    return path


def problems_of(project: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(project / "config.yaml")
    return [str(p) for p in caught.value.problems]


def loaded(project: Path, text: str) -> Settings:
    with_rules(project, text)
    return load_settings(project / "config.yaml")


def pipeline_of(settings: Settings) -> Pipeline:
    return Pipeline(
        settings.config,
        settings.rules,
        settings.playbooks,
        default_router("en"),
        Metrics(CollectorRegistry()),
    )


def by(post: Mention, author: str, followers: int = 100, verified: bool = False) -> Mention:
    return dataclasses.replace(post, author=Author(author, author, followers, verified))


def firings(events: list[AlertEvent], rule: str) -> list[AlertEvent]:
    return [e for e in events if e.kind is EventKind.FIRING and e.alert.rule_id == rule]


RULE = """\
rules:
  - id: r
    title: t
{body}    playbook: mention-spike
"""


def rule(body: str) -> str:
    return RULE.format(body=body)


# -- validation: every problem with its file and line ----------------------------------


def test_a_bad_regex_names_the_pattern_its_line_and_re_s_message(project: Path) -> None:
    path = with_rules(
        project,
        rule(
            "    match:\n"
            "      regex:\n"
            "        - 'hack(ed|s)?'\n"
            "        - '(unclosed'\n"
            "    when: {signal: volume_up}\n"
        ),
    )
    assert problems_of(project) == [
        f"{path}:7: rules[0].match.regex[1]: Value error, not a valid regular expression: "
        "missing ), unterminated subpattern at position 0 (found '(unclosed')"
    ]


def test_a_wrong_type_names_the_key_what_was_expected_and_found(project: Path) -> None:
    path = with_rules(
        project,
        rule("    when:\n      signal: volume_up\n      min_authors: several\n"),
    )
    assert problems_of(project) == [
        f"{path}:6: rules[0].when.min_authors: Input should be a valid integer, unable to parse "
        "string as an integer (found 'several')"
    ]


@pytest.mark.parametrize(
    ("body", "line", "expected"),
    [
        (
            "    when: {signal: volume_up, mention: {}}\n",
            4,
            "rules[0].when: Value error, when needs exactly one of signal, mention or "
            "new_term (signal and mention)",
        ),
        (
            "    when: {likelihood: 0.99}\n",
            4,
            "rules[0].when: Value error, when needs exactly one of signal, mention or "
            "new_term (none of them)",
        ),
        (
            "    when:\n      mention: {negative: true}\n      min_count: 3\n",
            4,
            "rules[0].when: Value error, min_count: only for a signal rule; a mention rule "
            "takes its settings under 'mention:'",
        ),
        (
            "    when: {mention: {min_followers: -1}}\n",
            4,
            "rules[0].when.mention.min_followers: Input should be greater than or equal to 0",
        ),
        (
            "    match: {any: [x]}\n    when: {new_term: {}}\n",
            2,
            "rules[0]: Value error, a new_term rule watches all of a brand's posts",
        ),
        (
            "    when: {new_term: {scale_seconds: 120}}\n",
            4,
            "rules[0].when.new_term.scale_seconds: 120 is not a configured scale "
            "(detect.scales_seconds: 60, 300, 900)",
        ),
        (
            "    match: {any: []}\n    when: {signal: volume_up}\n",
            4,
            "rules[0].match: Value error, match needs at least one of any, regex, all, none, "
            "langs, author or mentions_own_account",
        ),
        (
            "    when: {signal: volume_up}\n    quiet_hours: {start: 22:00, end: '07:00'}\n",
            5,
            'rules[0].quiet_hours.start: Value error, write the time in quotes, like "22:00" '
            "(YAML reads 22:00 unquoted as a number)",
        ),
        (
            "    when: {signal: volume_up}\n"
            "    quiet_hours: {start: '22:00', end: '07:00', timezone: Asia/Tokio}\n",
            5,
            "rules[0].quiet_hours.timezone: Value error, unknown time zone 'Asia/Tokio' "
            "(an IANA name, like Asia/Tokyo or UTC)",
        ),
        (
            "    when: {signal: volume_up}\n    quiet_hours: {start: '25:00', end: '07:00'}\n",
            5,
            'rules[0].quiet_hours.start: Value error, expected a time of day as "HH:MM"',
        ),
        (
            "    when: {signal: volume_up}\n    expires: next week\n",
            5,
            "rules[0].expires: Input should be a valid datetime",
        ),
        (  # blank: it would match nothing, or everything
            "    match: {any: [outage], all: ['']}\n    when: {signal: volume_up}\n",
            4,
            "rules[0].match.all[0]: Value error, a term must not be blank",
        ),
        (  # after year 9999 once in UTC
            "    when: {signal: volume_up}\n    expires: 9999-12-31T23:00:00-05:00\n",
            5,
            "rules[0].expires: Value error, 9999-12-31T23:00:00-05:00 is out of the range of dates",
        ),
        (  # a scale nothing is bucketed at: the rule would load and never fire
            "    when:\n      signal: volume_up\n      scales_seconds: [60, 123]\n",
            6,
            "rules[0].when.scales_seconds: 123 is not a configured scale "
            "(detect.scales_seconds: 60, 300, 900)",
        ),
    ],
)
def test_what_a_rule_cannot_say_is_reported_where_it_is(
    project: Path, body: str, line: int, expected: str
) -> None:
    path = with_rules(project, rule(body))
    found = problems_of(project)
    assert any(p.startswith(f"{path}:{line}: {expected}") for p in found), found


def test_a_rules_folder_that_is_not_there_is_an_error(project: Path) -> None:
    """A wrong ``rules_dir`` loaded no rules at all, and xwatch ran watching nothing."""
    shutil.rmtree(project / "rules")
    assert problems_of(project) == [f"{project / 'rules'}:1: rules folder not found"]


def test_a_rule_watches_the_brands_it_names_and_an_unknown_one_is_an_error(
    project: Path,
) -> None:
    """A rule with ``brands:`` judges only their series; a misspelt brand would watch
    nothing and never fire, so it is named where it is written."""
    settings = loaded(project, rule("    brands: [kettlebird]\n    when: {signal: volume_up}\n"))
    [found] = settings.rules.rules
    assert found.brands == ("kettlebird",)
    assert settings.rules.signal_rules("kettlebird", "") == (found,)
    assert settings.rules.signal_rules("kettlebirb", "") == ()
    path = with_rules(
        project, rule("    brands: [kettlebird, nope]\n    when: {signal: volume_up}\n")
    )
    assert problems_of(project) == [
        f"{path}:4: rules[0].brands: unknown brand 'nope' (known: kettlebird)"
    ]


def test_check_names_an_unknown_playbook_a_bad_regex_and_a_wrong_type(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = with_rules(
        project,
        "rules:\n"
        "  - id: orphan\n"
        "    title: x\n"
        "    when: {signal: volume_up}\n"
        "    playbook: recal\n"
        "  - id: typo\n"
        "    title: x\n"
        "    match: {regex: ['[a-']}\n"
        "    when: {signal: volume_up, likelihood: sure}\n"
        "    playbook: product-defect\n",
    )
    assert main(["check", "-c", str(project / "config.yaml")]) == 1
    err = capsys.readouterr().err.splitlines()
    # the file does not validate, so the playbook is not cross-checked yet: fix, then check
    assert err == [
        f"{path}:8: rules[1].match.regex[0]: Value error, not a valid regular expression: "
        "unterminated character set at position 0 (found '[a-')",
        f"{path}:9: rules[1].when.likelihood: Input should be a valid number, unable to parse "
        "string as a number (found 'sure')",
    ]
    path.write_text(path.read_text("utf-8").replace("'[a-'", "'[a-z]'").replace("sure", "0.99"))
    assert main(["check", "-c", str(project / "config.yaml")]) == 1
    [problem] = capsys.readouterr().err.splitlines()
    assert problem.startswith(f"{path}:5: rules[0].playbook: no playbook with id 'recal' in ")


def test_check_warns_about_an_expired_rule_and_still_passes(project: Path) -> None:
    path = with_rules(
        project,
        rule("    when: {signal: volume_up}\n    expires: 2026-12-01T00:00:00Z\n"),
    )
    out = io.StringIO()
    assert check(project / "config.yaml", out, now=datetime(2026, 11, 30, tzinfo=UTC)) == 0
    assert "warning" not in out.getvalue()
    out = io.StringIO()
    assert check(project / "config.yaml", out, now=datetime(2026, 12, 2, tzinfo=UTC)) == 0
    assert out.getvalue().splitlines()[0] == (
        f"{path}:5: rules[0].expires: warning: 'r' expired on 2026-12-01 00:00 UTC and no "
        "longer fires"
    )


def test_only_a_rule_that_looks_for_the_brand_s_own_accounts_warns_that_it_has_none(
    project: Path,
) -> None:
    """A brand without ``accounts``: the rule that watches its own posts can never fire and
    is worth a warning; the other rules, with a match or none, are fine: a warning on
    every one would bury it."""
    config = project / "config.yaml"
    accounts = '    accounts: ["kettlebird", "kettlebird_jp"]\n'
    assert accounts in config.read_text("utf-8")
    config.write_text(config.read_text("utf-8").replace(accounts, ""), "utf-8")
    path = with_rules(
        project,
        "rules:\n"
        "  - id: plain\n"
        "    title: t\n"
        "    match: {any: [outage]}\n"
        "    when: {signal: volume_up}\n"
        "    playbook: service-outage\n"
        "  - id: hijack\n"
        "    title: t\n"
        "    match: {author: {own_account: true}, any: [airdrop]}\n"
        "    when: {mention: {}}\n"
        "    playbook: account-takeover\n"
        "  - id: drop\n"
        "    title: t\n"
        "    when: {signal: volume_down}\n"
        "    playbook: mention-spike\n",
    )
    settings = load_settings(config)
    assert [str(w) for w in settings.rules.warnings(T0)] == [
        f"{path}:9: rules[1].match: warning: 'hijack' looks for the brand's own accounts, "
        "but kettlebird has none in the config (brands[].accounts)"
    ]


def test_a_date_expires_at_midnight_utc(project: Path) -> None:
    settings = loaded(project, rule("    when: {signal: volume_up}\n    expires: 2026-12-01\n"))
    [found] = settings.rules.rules
    assert found.expires == datetime(2026, 12, 1, tzinfo=UTC)
    assert found.live_at(datetime(2026, 11, 30, 23, 59, tzinfo=UTC))
    assert not found.live_at(datetime(2026, 12, 1, tzinfo=UTC))


# -- matching ----------------------------------------------------------------------------

OWN = OwnAccounts.of(["kettlebird", "@Kettlebird_JP"])


def matches(match: Match, text: str, **kwargs: object) -> bool:
    post = mention(text, lang=str(kwargs.get("lang", "en")))
    post = by(
        post,
        str(kwargs.get("author", "someone")),
        int(str(kwargs.get("followers", 100))),
        bool(kwargs.get("verified", False)),
    )
    return CompiledMatch.of(match).matches(post, normalize(text), OWN)


def test_terms_match_whatever_the_case_and_width() -> None:
    recall = Match(any=("recall", "リコール"))
    assert matches(recall, "Is there a RECALL?")
    assert matches(recall, "ＲＥＣＡＬＬ now")  # full-width Latin
    assert matches(recall, "ｹﾄﾙﾊﾞｰﾄﾞのｴｱﾛ、ﾘｺｰﾙですか")  # half-width katakana
    assert matches(recall, "エアロはリコール対象？")
    assert not matches(recall, "recalled my childhood")  # Latin: whole words only
    assert not matches(recall, "#recallgate")


def test_a_latin_term_next_to_an_unspaced_script_is_a_word_of_its_own() -> None:
    """Japanese, Chinese, Korean and Thai write no space before or after a Latin word:
    "kettlebirdの", "@kettlebird_jpさん" name the brand, and were never matched."""
    brand = Match(any=("kettlebird", "@kettlebird_jp"))
    for text in [
        "Kettlebirdのケトル、壊れた",
        "ＫＥＴＴＬＥＢＩＲＤの新製品いいね",
        "kettlebird最悪",
        "@kettlebird_jpさん返信ください",
        "kettlebird가 고장났어요",
        "我的kettlebird坏了",
        "ซื้อkettlebirdมาแล้วพัง",
        "KETTLEBİRD is great",  # a Turkish capital dotted I
    ]:
        assert matches(brand, text), text
    for text in ["kettlebirds", "notkettlebird", "kettlebirdy", "kettlebird_fan"]:
        assert not matches(brand, text), text
    accented = Match(any=("brûlé", "löwe"))  # whole words too, as ASCII ones are
    assert matches(accented, "un brûlé, merci") and matches(accented, "der Löwe")
    assert not matches(accented, "la crème brûlée") and not matches(accented, "Löwenzahn")
    own = OwnAccounts.of(["kettlebird_jp"])
    assert own.mentioned is not None
    assert own.mentioned.search(normalize("@kettlebird_jpさん 返信ください"))


def test_a_regex_takes_its_full_width_punctuation_as_written() -> None:
    """NFKC of the whole pattern made "？" and "（）" regex syntax: "返金は？" matched
    "返金しました" ("は" optional), "（笑）" matched any "笑"; and "ß" matched nothing (the
    text folds it to "ss")."""
    assert not matches(Match(regex=("返金は？",)), "ケトルバードの返金しました")
    assert matches(Match(regex=("返金は？",)), "ケトルバードの返金は?")  # either width
    assert not matches(Match(regex=("（笑）",)), "ケトルバード笑")
    assert matches(Match(regex=("（笑）",)), "ケトルバード(笑)")
    assert matches(Match(regex=("straße",)), "Kettlebird auf der Straße")
    assert matches(Match(regex=("[０-９]+個",)), "ケトル3個")  # full-width in a class


def test_phrases_match_as_whole_words() -> None:
    outage = Match(any=("not working", "is down"))
    assert matches(outage, "the app is NOT  working".replace("  ", " "))
    assert matches(outage, "kettlebird is down?")
    assert not matches(outage, "kettlebird is downloading")
    assert not matches(outage, "it's notworking")


def test_regexes_match_the_folded_text_and_count_as_any() -> None:
    login = Match(any=("outage",), regex=(r"\bcan[’']?t log ?in", r"(?i)0x[0-9a-f]{40}"))
    assert matches(login, "I CAN'T LOGIN to kettlebird")
    assert matches(login, "i can’t log in")  # the typographic apostrophe
    assert matches(login, "ｃａｎｔ ｌｏｇｉｎ")  # full width
    assert matches(login, "huge outage today")  # any of the terms or of the regexes
    assert not matches(login, "cant logout")
    # a regex that refers to its own group still works (searched on its own)
    doubled = Match(regex=(r"\b(\w+) \1\b", "zzz"))
    assert matches(doubled, "it is is broken")
    assert not matches(doubled, "it is broken")


def test_all_none_and_langs() -> None:
    match = Match(any=("burn",), all=("aero",), none=("burn rate", "cd"), langs=("en",))
    assert matches(match, "my aero burned me".replace("burned", "burn"))
    assert not matches(match, "my mini burn")  # "aero" is missing
    assert not matches(match, "aero burn rate is fine")  # excluded
    assert not matches(match, "aero burn", lang="ja")
    assert not matches(Match(none=("spam",)), "spam spam")
    assert matches(Match(none=("spam",)), "ham")


def test_author_conditions() -> None:
    big = Match(author={"min_followers": 10_000, "verified": True})
    assert matches(big, "x", followers=10_000, verified=True)
    assert not matches(big, "x", followers=9_999, verified=True)
    assert not matches(big, "x", followers=50_000, verified=False)
    own = Match(author={"own_account": True})
    assert matches(own, "x", author="Kettlebird_jp")  # handles compare folded
    assert not matches(own, "x", author="kettlebird_fan")
    others = Match(author={"own_account": False}, any=("hacked",))
    assert matches(others, "was kettlebird hacked?", author="worried")
    assert not matches(others, "we were not hacked", author="kettlebird")


def test_the_brand_s_own_posts_are_seen_only_by_rules_that_ask_for_them() -> None:
    terms = Match(any=("sorry",))
    assert matches(terms, "so sorry for the wait", author="customer")
    assert not matches(terms, "so sorry for the wait", author="kettlebird")  # the default
    big = Match(author={"min_followers": 1_000})  # an author condition without own_account
    assert not matches(big, "so sorry", author="Kettlebird_JP", followers=50_000)
    everyone = Match(any=("sorry",), author={"own_account": None})
    assert matches(everyone, "so sorry for the wait", author="kettlebird")
    assert matches(everyone, "so sorry for the wait", author="customer")
    # the caller may say whose post it is (the pipeline works it out once per post)
    post = mention("so sorry for the wait")
    compiled = CompiledMatch.of(terms)
    assert not compiled.matches(post, normalize(post.text), OWN, own_post=True)
    assert compiled.matches(post, normalize(post.text), OWN, own_post=False)


def test_posts_addressed_to_the_brand_s_own_accounts() -> None:
    addressed = Match(mentions_own_account=True)
    assert matches(addressed, "@Kettlebird_JP 削除して")
    assert matches(addressed, "hey @kettlebird, delete this")
    assert not matches(addressed, "@kettlebird_fans delete this")
    assert not matches(addressed, "kettlebird ad is offensive")
    nobody = CompiledMatch.of(addressed)
    post = mention("@kettlebird hi")
    assert not nobody.matches(post, normalize(post.text), OwnAccounts.of([]))


# -- quiet hours ----------------------------------------------------------------------------


def jst(day: int, hour: int, minute: int = 0) -> datetime:
    """November 2026 in Tokyo (UTC+9); the 20th is a Friday."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=9)


def test_quiet_hours_in_their_time_zone_wrap_past_midnight() -> None:
    night = QuietHours.model_validate({"start": "22:00", "end": "07:00", "timezone": "Asia/Tokyo"})
    assert night.covers(jst(20, 22, 0))
    assert night.covers(jst(21, 6, 59))
    assert not night.covers(jst(21, 7, 0))
    assert not night.covers(jst(20, 21, 59))
    assert not night.covers(datetime(2026, 11, 20, 22, 30, tzinfo=UTC))  # 07:30 in Tokyo


def test_quiet_days_are_the_days_a_quiet_period_starts() -> None:
    friday_night = QuietHours.model_validate(
        {"start": "22:00", "end": "07:00", "timezone": "Asia/Tokyo", "days": ["fri"]}
    )
    assert friday_night.covers(jst(20, 23))  # Friday night
    assert friday_night.covers(jst(21, 3))  # Saturday small hours: it started on Friday
    assert not friday_night.covers(jst(21, 23))  # Saturday night
    assert not friday_night.covers(jst(20, 3))  # Friday small hours: started on Thursday
    weekend = QuietHours.model_validate({"start": "00:00", "end": "00:00", "days": ["sat", "sun"]})
    assert weekend.covers(datetime(2026, 11, 21, 12, tzinfo=UTC))  # the whole Saturday
    assert weekend.covers(datetime(2026, 11, 22, 23, 59, tzinfo=UTC))
    assert not weekend.covers(datetime(2026, 11, 23, 0, 0, tzinfo=UTC))
    office = QuietHours.model_validate({"start": "09:00", "end": "17:30"})
    assert office.covers(datetime(2026, 11, 23, 17, 29, tzinfo=UTC))
    assert not office.covers(datetime(2026, 11, 23, 17, 30, tzinfo=UTC))


def test_quiet_hours_from_a_time_to_the_same_time_are_the_24_hours_from_it() -> None:
    """start == end was read as the calendar day whatever the time: "22:00" to "22:00"
    on Saturdays silenced Saturday morning, and let Saturday night through."""
    saturday_night = QuietHours.model_validate({"start": "22:00", "end": "22:00", "days": ["sat"]})
    assert not saturday_night.covers(datetime(2026, 11, 21, 10, tzinfo=UTC))  # Saturday morning
    assert saturday_night.covers(datetime(2026, 11, 21, 22, tzinfo=UTC))
    assert saturday_night.covers(datetime(2026, 11, 22, 21, 59, tzinfo=UTC))  # Sunday evening
    assert not saturday_night.covers(datetime(2026, 11, 22, 22, tzinfo=UTC))
    always = QuietHours.model_validate({"start": "22:00", "end": "22:00"})
    assert always.covers(datetime(2026, 11, 21, 10, tzinfo=UTC))


def test_quiet_hours_begin_at_their_start_to_the_second() -> None:
    """A window that began at 09:00:00 let a 09:00:00 notice through."""
    office = QuietHours.model_validate({"start": "09:00", "end": "17:30"})
    assert office.covers(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    assert not office.covers(datetime(2026, 11, 23, 8, 59, 59, tzinfo=UTC))


def test_the_rule_set_says_which_rule_is_quiet(project: Path) -> None:
    settings = loaded(
        project,
        "rules:\n"
        "  - id: night\n"
        "    title: t\n"
        "    when: {signal: volume_up}\n"
        "    playbook: mention-spike\n"
        "    quiet_hours: {start: '22:00', end: '07:00', timezone: Asia/Tokyo}\n"
        "  - id: always\n"
        "    title: t\n"
        "    when: {signal: volume_up}\n"
        "    playbook: mention-spike\n",
    )
    at = jst(20, 23)
    assert settings.rules.quiet("night", at)
    assert not settings.rules.quiet("night", at + timedelta(hours=9))
    assert not settings.rules.quiet("always", at)
    assert not settings.rules.quiet("gone", at)  # a rule removed by a reload


# -- signal rules: minimum authors, a condition that must last --------------------------


@dataclass
class Above:
    """A stand-in detector: "up", likelihood 1, when the bucket has at least ``count`` posts."""

    measure: Measure
    count: int = 5

    def score_one(self, bucket: Bucket) -> Signal:
        surging = bucket.count >= self.count
        return Signal(
            bucket.series,
            self.measure,
            bucket.start,
            bucket.end,
            float(bucket.count),
            1.0,
            0.0,
            2.0,
            1.0 if surging else 0.5,
            "up",
        )

    def learn_one(self, bucket: Bucket) -> None:
        return None

    def skip_hole(self, seconds: float) -> None:
        pass


def stubbed(settings: Settings) -> Pipeline:
    pipeline = pipeline_of(settings)
    for key in pipeline.aggregator.series:
        pipeline.detectors[key] = [
            Above(Measure.VOLUME),
            Above(Measure.NEGATIVE_SHARE),
            Above(Measure.NEGATIVE_VOLUME),
        ]
    return pipeline


def minute(
    index: int, authors: int, posts: int = 6, text: str = "kettlebird is down"
) -> list[Mention]:
    """``posts`` posts in minute ``index`` by ``authors`` different people."""
    return [
        by(mention(text, at=index * 60 + 1 + i, id=f"{index}-{i}"), f"user{i % authors}")
        for i in range(posts)
    ]


def run(pipeline: Pipeline, posts: list[Mention]) -> list[AlertEvent]:
    events = pipeline.ingest(sorted(posts, key=lambda m: m.created_at))
    return events + pipeline.flush()


OUTAGE = """\
rules:
  - id: outage
    title: Outage
    match: {any: [is down]}
    when:
      signal: volume_up
      likelihood: 0.999
      min_authors: 4
      scales_seconds: [60]
EXTRA    playbook: service-outage
"""


def test_min_authors_counts_different_people(project: Path) -> None:
    settings = loaded(project, OUTAGE.replace("EXTRA", ""))
    one_person = run(stubbed(settings), minute(2, authors=1, posts=8))
    assert firings(one_person, "outage") == []
    three = run(stubbed(settings), minute(2, authors=3, posts=8))
    assert firings(three, "outage") == []
    four = run(stubbed(settings), minute(2, authors=4, posts=8))
    [fired] = firings(four, "outage")
    assert fired.alert.series.topic == "outage" and fired.alert.bucket.count == 8
    assert fired.at == T0 + timedelta(minutes=3)


def test_for_seconds_waits_for_consecutive_buckets(project: Path) -> None:
    settings = loaded(project, OUTAGE.replace("EXTRA", "      for_seconds: 180\n"))
    two = run(stubbed(settings), [*minute(2, 5), *minute(3, 5)])
    assert firings(two, "outage") == []
    interrupted = run(stubbed(settings), [*minute(2, 5), *minute(3, 5), *minute(5, 5)])
    assert firings(interrupted, "outage") == []  # minute 4 was calm: the streak restarts
    three = run(stubbed(settings), [*minute(2, 5), *minute(3, 5), *minute(4, 5)])
    [fired] = firings(three, "outage")
    assert fired.at == T0 + timedelta(minutes=5)  # the end of the third minute
    assert fired.alert.signal.start == T0 + timedelta(minutes=4)


def test_an_expired_rule_stops_firing_in_event_time(project: Path) -> None:
    text = OUTAGE.replace("EXTRA", "").replace(
        "    playbook:", f"    expires: {(T0 + timedelta(minutes=4)).isoformat()}\n    playbook:"
    )
    settings = loaded(project, text)
    events = run(stubbed(settings), [*minute(2, 5), *minute(6, 5)])
    assert [e.alert.signal.start for e in firings(events, "outage")] == [T0 + timedelta(minutes=2)]


def test_a_rule_fires_at_exactly_its_likelihood(project: Path) -> None:
    """``likelihood: 1.0`` is allowed: it asks for the most certain signal, and must fire
    on one (the stand-in's are 1.0), not be a rule that can never fire."""
    strict = OUTAGE.replace("EXTRA", "").replace("likelihood: 0.999", "likelihood: 1.0")
    assert "likelihood: 1.0" in strict
    [fired] = firings(run(stubbed(loaded(project, strict)), minute(2, 5)), "outage")
    assert fired.alert.signal.likelihood == 1.0


def test_alerts_carry_the_rule_s_labels(project: Path) -> None:
    settings = loaded(project, OUTAGE.replace("EXTRA", "    labels: {team: ops, region: jp}\n"))
    [fired] = firings(run(stubbed(settings), minute(2, 5)), "outage")
    assert fired.alert.labels == (("region", "jp"), ("team", "ops"))


# -- mention rules ----------------------------------------------------------------------------

TAKEOVER = """\
rules:
  - id: scam-post
    title: Our account posted a scam
    match:
      author: {own_account: true}
      any: [airdrop, 仮想通貨]
      regex: ['\\b0x[0-9a-f]{40}\\b']
    when:
      mention: {}
    severity: critical
    playbook: account-takeover
  - id: big-complaint
    title: A big account complains
    when:
      mention: {negative: true, min_followers: 100000, min_reach: 150000}
    playbook: complaint-wave
"""


def test_a_mention_rule_fires_on_each_matching_post(project: Path) -> None:
    pipeline = pipeline_of(loaded(project, TAKEOVER))
    events = pipeline.ingest(
        [
            by(mention("kettlebird airdrop: claim now", at=10), "kettlebird"),
            by(mention("an airdrop? kettlebird is hacked", at=20), "someone"),  # not ours
            by(mention("Kettlebird: 仮想通貨プレゼント", at=30, lang="ja"), "kettlebird_jp"),
            by(mention("kettlebird send to 0x" + "ab" * 20, at=40), "kettlebird"),
            by(mention("kettlebird new colour drop", at=50), "kettlebird"),
        ]
    )
    assert [(e.kind, e.at) for e in events] == [(EventKind.FIRING, T0 + timedelta(seconds=10))]
    assert pipeline.book.active[events[0].alert.identity].firings == 3  # one alert, 3 posts


def test_mention_conditions_on_sentiment_followers_and_reach(project: Path) -> None:
    pipeline = pipeline_of(loaded(project, TAKEOVER))

    def fires(text: str, followers: int) -> bool:
        post = by(mention(f"kettlebird {text}", at=pipeline_seconds.pop()), "celeb", followers)
        return any(e.alert.rule_id == "big-complaint" for e in pipeline.ingest([post]))

    pipeline_seconds = [500, 400, 300, 200, 100]
    assert not fires("is lovely, best kettle", 200_000)  # not negative
    assert not fires("is awful, broken, worst", 99_000)  # too few followers
    assert not fires("is awful, broken, worst", 120_000)  # enough followers, not enough reach
    assert fires("is awful, broken, worst", 160_000)


def test_a_mention_rule_fires_at_exactly_its_minimum_followers_and_reach(project: Path) -> None:
    """``min_followers: 100000``: an author with 100,000 followers is big enough."""
    pipeline = pipeline_of(loaded(project, TAKEOVER))
    post = by(mention("kettlebird is awful, broken, worst", at=100), "celeb", 100_000)
    post = dataclasses.replace(post, reposts=500)  # reach: 100,000 + 500 x 100 = 150,000
    assert post.reach == 150_000
    assert [e.alert.rule_id for e in pipeline.ingest([post])] == ["big-complaint"]


# -- new terms ---------------------------------------------------------------------------------


def test_terms_are_words_hashtags_cashtags_and_japanese_runs() -> None:
    text = normalize(
        "RT @kettlebird: The Aero's base MELTED!! #MeltGate $KTB https://t.co/abc 2 of 3 "
        "ケトルバードの底が焦げて発煙、リコール対象"
    )
    assert terms_of(text) == {
        "aero",
        "base",
        "melted",
        "#meltgate",
        "$ktb",
        "ケトルバード",
        "発煙",
        "リコール",
        "対象",
    }
    stop = brand_stop_terms(normalize(t) for t in ("Kettlebird", "@kettlebird", "ケトルバード"))
    assert {"kettlebird", "#kettlebird", "ケトルバード", "#ケトルバード"} <= stop
    # the long-vowel mark stretches a word ("ーーー"), it is no term, nor are small kana
    # alone; a word that ends in one mark keeps it ("コーヒー")
    stretched = normalize("ケトルバードーー壊れたーーー まじかーーー ｧｧｧ コーヒー")
    assert terms_of(stretched) == {"ケトルバード", "コーヒー"}


def calm_then(tracker: TermTracker, burst: list[set[str]], *, hours: int = 30) -> list[ClosedTerms]:
    """Feed 10 everyday posts per 5 minutes for ``hours``, then one bucket with ``burst``."""
    everyday = [{"kettle", "tea", "morning"}, {"kettle", "love"}, {"tea", "green"}]
    post = mention("x")
    buckets = hours * 12
    for b in range(buckets):
        for i in range(10):
            tracker.add(post, everyday[i % 3], b * 300 + i)
        tracker.close_until((b + 1) * 300)
    for i, terms in enumerate(burst):
        tracker.add(post, terms, buckets * 300 + i)
    return tracker.close_until((buckets + 1) * 300)


def test_a_rare_term_in_many_posts_surges_a_common_one_does_not() -> None:
    tracker = TermTracker(300)
    burst = [{"kettle", "#meltgate"}] * 8 + [{"kettle", "tea"}] * 4
    [closed] = calm_then(tracker, burst)
    assert closed.posts == 12
    surges = {s.term: s for s in closed.surges}
    assert surges["#meltgate"].likelihood > 0.9999 and surges["#meltgate"].count == 8
    assert surges["kettle"].likelihood < 0.9  # in every post: two in three, as usual
    assert [t.term for t in tracker.emerging] == ["#meltgate"]


def test_no_emerging_terms_while_warming_up() -> None:
    tracker = TermTracker(300)
    [closed] = calm_then(tracker, [{"#meltgate"}] * 8, hours=2)
    assert closed.history_seconds < TermParams().warmup_seconds
    assert tracker.emerging == ()


def test_the_vocabulary_is_bounded_and_evicted_terms_stay_rare() -> None:
    tracker = TermTracker(300, params=TermParams(capacity=100))
    post = mention("x")
    for b in range(50):
        for i in range(40):
            tracker.add(post, {f"w{b}-{i}", "tea"}, b * 300 + i)  # 40 new words each bucket
        tracker.close_until((b + 1) * 300)
    model = tracker.model
    assert len(model.counts) <= 125 and "tea" in model.counts
    assert model.unseen > 0  # the strongest evicted term sets the floor for unknown ones
    assert model.usual("never-seen") == pytest.approx(max(model.unseen, 1.0) / model.posts)


NEW_TERM = """\
rules:
  - id: new-term
    title: New term
    when:
      new_term: {likelihood: 0.9999, min_count: 5, min_share: 0.2, warmup_seconds: 3600}
    playbook: mention-spike
  - id: volume
    title: Volume
    when: {signal: volume_up, min_count: 10, scales_seconds: [300]}
    playbook: mention-spike
"""


def everyday(hours: int) -> list[Mention]:
    texts = ("kettlebird tea time", "kettlebird morning kettle", "love my kettlebird kettle")
    return [
        by(mention(texts[i % 3], at=i * 60.0, id=f"e{i}"), f"u{i % 40}") for i in range(hours * 60)
    ]


def test_a_new_term_rule_fires_on_the_surging_term_one_story_at_a_time(project: Path) -> None:
    pipeline = stubbed(loaded(project, NEW_TERM))
    start = 2 * 3600  # after two hours of everyday posts
    burst = [
        by(mention(text, at=start + 10 + i, id=f"b{i}"), f"w{i}")
        for i, text in enumerate(
            ["kettlebird #meltgate is real"] * 6 + ["kettlebird base smoking, #meltgate"] * 6
        )
    ]
    again = [  # the next bucket: #meltgate again, and "smoking" surges more
        by(mention("kettlebird smoking base #meltgate", at=start + 310 + i, id=f"c{i}"), f"x{i}")
        for i in range(12)
    ]
    events = run(pipeline, [*everyday(2), *burst, *again])
    terms = [e for e in events if e.alert.rule_id == "new-term"]
    assert [(e.kind, e.alert.term) for e in terms] == [
        (EventKind.FIRING, "#meltgate"),  # "smoking" surged too: shown, not a second alert
    ]
    alert = terms[0].alert
    assert alert.signal.measure is Measure.TERM_VOLUME and alert.signal.observed == 12
    assert alert.bucket.count == 12 and len(alert.bucket.samples) == 5
    assert all("#meltgate" in m.text for m in alert.bucket.samples)
    assert {"#meltgate", "smoking", "base"} <= {t.term for t in alert.terms}
    # the other alerts of the brand, from that bucket on, show the emerging terms too
    [volume] = firings(events, "volume")
    assert volume.alert.signal.end == alert.signal.end
    assert "#meltgate" in {t.term for t in volume.alert.terms}


def test_new_terms_are_tracked_only_for_brands_a_new_term_rule_watches(project: Path) -> None:
    pipeline = stubbed(loaded(project, NEW_TERM.split("  - id: volume")[0]))
    assert set(pipeline.terms) == {("kettlebird", 300)}
    pipeline = stubbed(
        loaded(project, "rules:\n  - id: volume" + NEW_TERM.split("- id: volume")[1])
    )
    assert pipeline.terms == {}
    events = run(pipeline, minute(2, 5, posts=12))
    assert events and all(e.alert.terms == () for e in events)


# -- xwatch check --diff ---------------------------------------------------------------------


@pytest.mark.parametrize("piped", [False, True])
def test_check_diff_shows_what_a_rule_change_does_on_recent_data(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piped: bool
) -> None:
    """Piped (``--data -``), the data is read twice as a file is: the old rules' replay
    used the pipe up, and every alert read as removed."""
    old = tmp_path / "old-rules"
    old.mkdir()
    (old / "rules.yaml").write_text(
        "rules:\n"
        "  - id: big-complaint\n"
        "    title: Big complaint\n"
        "    when: {mention: {negative: true, min_followers: 100000}}\n"
        "    playbook: complaint-wave\n",
        "utf-8",
    )
    with_rules(
        project,
        "rules:\n"
        "  - id: big-complaint\n"
        "    title: Big complaint\n"
        "    when: {mention: {negative: true, min_followers: 500000}}\n"
        "    playbook: complaint-wave\n"
        "  - id: hacked\n"
        "    title: Hacked\n"
        "    match: {any: [hacked, 乗っ取り]}\n"
        "    when: {mention: {}}\n"
        "    playbook: account-takeover\n",
    )
    data = tmp_path / "mentions.jsonl.gz"
    lines = [
        {"id": "1", "text": "kettlebird is awful, broken, the worst", "followers": 200_000},
        {"id": "2", "text": "ケトルバードのアカウント乗っ取り？", "followers": 50},
    ]
    with gzip.open(data, "wt", encoding="utf-8") as handle:
        for i, line in enumerate(lines):
            post = {
                "id": line["id"],
                "text": line["text"],
                "created_at": f"2026-11-16T09:0{i}:00Z",
                "author": {"id": f"a{i}", "handle": f"who{i}", "followers": line["followers"]},
            }
            handle.write(json.dumps(post, ensure_ascii=False) + "\n")
    out = io.StringIO()
    if piped:  # gzip'd on stdin: found by its first bytes
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.read_bytes())))
        data = Path("-")
    assert check(project / "config.yaml", out, diff=old, data=data) == 0
    report = out.getvalue().splitlines()
    assert report[1] == (
        f"rules {old} -> {project / 'rules'} on {data}: 1 alerts added, 1 removed, "
        "0 of another severity, 0 unchanged"
    )
    assert report[2:] == [
        "  big-complaint: +0 -1",
        "    - 2026-11-16 09:00 UTC kettlebird@1m [warning] single post matched at "
        "2026-11-16 09:00:00 UTC, @who0: 'kettlebird is awful, broken, the worst'",
        "  hacked: +1 -0",
        "    + 2026-11-16 09:01 UTC kettlebird@1m [warning] single post matched at "
        "2026-11-16 09:01:00 UTC, @who1: 'ケトルバードのアカウント乗っ取り？'",
    ]


def test_check_diff_needs_both_options(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(project / "config.yaml"), "--diff", str(project)]) == 2
    assert "--diff OLD_RULES_DIR and --data MENTIONS go together" in capsys.readouterr().err


# -- the term index: a cheap first look that never misses --------------------------------

TERM_ALPHABET = "ab _#@-'ケトé가ก"  # spaced and unspaced scripts, an accent


@examples(max_examples=300, deadline=None)
@given(
    terms=st.dictionaries(
        st.sampled_from(["x", "y", "z"]),
        st.lists(st.text(TERM_ALPHABET, min_size=1, max_size=5), min_size=1, max_size=3),
        min_size=1,
    ),
    text=st.text(TERM_ALPHABET + "c.", max_size=30),
)
def test_the_term_index_finds_every_term_list_whose_pattern_matches(
    terms: dict[str, list[str]], text: str
) -> None:
    index = TermIndex.of(dict(terms.items()))
    folded = normalize(text)
    candidates = index.candidates(folded, words_of(folded))
    for key, found in terms.items():
        pattern = term_pattern(found)
        if pattern is not None and pattern.search(folded):
            assert key in candidates, (key, found, text)


def test_brands_are_found_by_their_terms_even_when_one_contains_another(project: Path) -> None:
    config = project / "config.yaml"
    accounts = '    accounts: ["kettlebird", "kettlebird_jp"]\n'
    another = "  - {id: kettle, name: Kettle, terms: [kettle, ケトル, '#kettle']}\n"
    config.write_text(config.read_text("utf-8").replace(accounts, accounts + another), "utf-8")
    pipeline = pipeline_of(load_settings(config))
    assert pipeline._brands_of("ケトルバード買った") == ("kettlebird", "kettle")
    assert pipeline._brands_of("my kettlebird kettle") == ("kettlebird", "kettle")
    assert pipeline._brands_of("#kettle time") == ("kettle",)
    assert pipeline._brands_of("@kettlebird hi") == ("kettlebird",)
    assert pipeline._brands_of("kettles and birds") == ()
    assert pipeline._brands_of("Kettlebirdのエアロ壊れた") == ("kettlebird",)  # no space


# -- the hot path: what an empty topic bucket costs, what a bucket keeps -------------------

DROP = """\
rules:
  - id: outage
    title: Outage
    match: {any: [is down]}
    when: {signal: SIGNAL, likelihood: 0.999, scales_seconds: [60]}
    playbook: service-outage
"""


@dataclass
class Empty:
    """A stand-in detector: "down", likelihood 1, on an empty bucket; it notes what it sees."""

    measure: Measure
    scored: list[int]
    learned: list[int]

    def score_one(self, bucket: Bucket) -> Signal:
        self.scored.append(bucket.count)
        likelihood = 0.0 if bucket.count else 1.0
        return Signal(
            bucket.series, self.measure, bucket.start, bucket.end, 0.0, 1.0, 0.5, 2.0,
            likelihood, "down",
        )  # fmt: skip

    def learn_one(self, bucket: Bucket) -> None:
        self.learned.append(bucket.count)

    def skip_hole(self, seconds: float) -> None:
        pass


def test_an_empty_topic_bucket_is_learned_and_judged_only_where_a_rule_may_fire(
    project: Path,
) -> None:
    posts = [*minute(2, 3), *minute(5, 3)]  # the topic's minutes 3 and 4 are empty
    seen: dict[str, tuple[list[int], list[int]]] = {}
    fired: dict[str, list[AlertEvent]] = {}
    for signal in ("volume_up", "volume_down"):
        pipeline = stubbed(loaded(project, DROP.replace("SIGNAL", signal)))
        scored: list[int] = []
        learned: list[int] = []
        for key in pipeline.aggregator.series:
            if key.topic == "outage" and key.scale_seconds == 60:
                pipeline.detectors[key] = [Empty(Measure.VOLUME, scored, learned)]
        fired[signal] = firings(run(pipeline, posts), "outage")
        seen[signal] = (scored, learned)
    # every bucket is learned, the empty ones too, whatever the rule
    learned = seen["volume_up"][1]
    assert learned[:4] == [6, 0, 0, 6] and set(learned[4:]) == {0}  # the flush: empties
    assert seen["volume_down"][1] == learned
    assert seen["volume_up"][0] == [6, 6]  # nothing rises in an empty bucket: not scored
    assert seen["volume_down"][0] == learned  # a drop may: scored
    assert fired["volume_down"][0].alert.signal.start == T0 + timedelta(minutes=3)
    assert fired["volume_up"] == []


def test_a_drop_without_minimums_is_the_only_rule_an_empty_bucket_may_fire() -> None:
    def when(**keys: object) -> bool:
        return Condition.model_validate(keys).may_hold_when_empty

    assert when(signal="volume_down")
    assert not when(signal="volume_down", min_count=1)
    assert not when(signal="volume_down", min_authors=2)
    assert not when(signal="volume_up")
    assert not when(signal="negative_share")
    assert not when(signal="negative_volume")


def test_a_bucket_counts_authors_only_up_to_what_its_rules_ask(project: Path) -> None:
    settings = loaded(project, OUTAGE.replace("EXTRA", ""))  # min_authors: 4
    pipeline = stubbed(settings)
    pipeline.ingest(minute(2, authors=50, posts=50))
    [authors] = pipeline._authors.values()
    assert [len(names) for names in authors.open.values()] == [4]  # not 50
    [fired] = firings(pipeline.flush(), "outage")  # and the rule still sees enough
    assert fired.alert.bucket.count == 50


def test_a_term_s_samples_are_its_posts_with_the_most_reach() -> None:
    tracker = TermTracker(300, samples=3)
    posts = [
        mention(f"post {i}", at=i, id=f"p{i:02}", followers=follows)
        for i, follows in enumerate([900, 10, 20, 30, 800, 40, 50, 700, 5, 1])
    ]
    for post in posts:
        tracker.add(
            post, {"#meltgate", f"once{post.id}"}, post.created_at.timestamp() - T0.timestamp()
        )
    [closed] = tracker.close_until(300)
    [surge] = [s for s in closed.surges if s.term == "#meltgate"]
    # the first posts too (before the term could surge), the most reach first
    assert [m.id for m in surge.samples] == ["p00", "p04", "p07"]


def test_an_open_bucket_keeps_a_bounded_number_of_posts() -> None:
    tracker = TermTracker(300, samples=5)
    tracker.sample_share = 0.05  # as a rule with min_share: 0.05 asks
    for i in range(2000):  # a word of its own, one of 500 used 4 times each, a common one
        terms = {f"word{i}", f"often{i % 500}", "tea"}
        tracker.add(mention(f"post {i}", at=i / 10, id=f"p{i}"), terms, i / 10)
    [bucket] = tracker.open.values()
    kept = {m.id for samples in bucket.samples.values() for _, _, m in samples}
    kept |= {entry[1] for entry in bucket.early}
    assert len(kept) <= 5 + 5 * EARLY_PER_SAMPLE  # not 2,000


def test_the_term_index_leaves_the_regexes_to_be_searched(project: Path) -> None:
    rules = load_settings(project / "config.yaml").rules  # the shipped rules
    texts = [
        "kettlebird won't connect to my kettle",  # service outage: a regex only
        "kettlebird outage again",  # ... a term
        "kettlebird stole my design",  # compliance: a regex only
        "kettlebird is lovely",
        "ケトルバードのアプリ、ログインできない",
    ]
    own = rules.own("kettlebird")
    for text in texts:
        post, folded = mention(text), normalize(text)
        every = [
            t for t in rules.topics("kettlebird") if rules.matchers[t].matches(post, folded, own)
        ]
        assert rules.topics_of(post, folded, "kettlebird") == every, text
    post = mention(texts[0])
    assert "service-outage-surge" not in rules.candidates(normalize(texts[0]), "kettlebird")
    assert "service-outage-surge" in rules.topics_of(post, normalize(texts[0]), "kettlebird")


def _regex_rules(project: Path, regexes_by_rule: dict[str, list[str]]) -> RuleSet:
    with_rules(
        project,
        "rules:\n"
        + "".join(
            f"  - id: {rule_id}\n    title: t\n    playbook: mention-spike\n"
            f"    match: {{regex: {json.dumps(regexes)}}}\n    when: {{signal: volume_up}}\n"
            for rule_id, regexes in regexes_by_rule.items()
        ),
    )
    return load_settings(project / "config.yaml").rules


def test_one_search_for_every_regex_says_when_no_rule_s_regex_can_match(project: Path) -> None:
    login_and_wallet = {"login": [r"\bcan[’']?t log ?in"], "wallet": [r"\b0x[0-9a-f]{4}\b"]}
    rules = _regex_rules(project, login_and_wallet)
    assert not rules.regexes_may(normalize("kettlebird is lovely"), "kettlebird")
    assert rules.regexes_may(normalize("kettlebird: I CAN'T LOGIN"), "kettlebird")
    # a regex that refers to its own group cannot be joined with others: the one search
    # says "maybe" to every text, and each rule searches its own
    rules = _regex_rules(project, {**login_and_wallet, "stutter": [r"\b(\w+) \1\b", "zzz"]})
    assert rules.regexes_may(normalize("kettlebird is lovely"), "kettlebird")
    expected = {
        "kettlebird is lovely": [],
        "kettlebird: I CAN'T LOGIN": ["login"],
        "send to 0xBEEF kettlebird": ["wallet"],
        "kettlebird is is broken": ["stutter"],
    }
    for text, topics in expected.items():
        post, folded = mention(text), normalize(text)
        assert rules.topics_of(post, folded, "kettlebird") == topics, text


def test_check_diff_shows_an_alert_that_changed_severity(project: Path, tmp_path: Path) -> None:
    """A change from warning to critical pages other people: it read as 'unchanged'."""
    rule = (
        "rules:\n"
        "  - id: big-complaint\n"
        "    title: Big complaint\n"
        "    when: {mention: {negative: true, min_followers: 100000}}\n"
        "    severity: SEVERITY\n"
        "    playbook: complaint-wave\n"
    )
    old = tmp_path / "old-rules"
    old.mkdir()
    (old / "rules.yaml").write_text(rule.replace("SEVERITY", "warning"), "utf-8")
    with_rules(project, rule.replace("SEVERITY", "critical"))
    data = tmp_path / "mentions.jsonl"
    data.write_text(
        json.dumps(
            {
                "id": "1",
                "text": "kettlebird is awful, broken, the worst",
                "created_at": "2026-11-16T09:00:00Z",
                "author": {"id": "a", "handle": "who", "followers": 200_000},
            }
        )
        + "\n",
        "utf-8",
    )
    out = io.StringIO()
    assert check(project / "config.yaml", out, diff=old, data=data) == 0
    report = out.getvalue().splitlines()
    assert report[1].endswith("0 alerts added, 0 removed, 1 of another severity, 0 unchanged")
    assert report[2] == "  big-complaint: +0 -0 ~1"
    assert report[3].startswith("    ~ 2026-11-16 09:00 UTC kettlebird@1m [warning -> critical]")


def test_a_rule_s_languages_are_read_as_the_posts_tags_are(project: Path) -> None:
    """``langs: [ja-JP]`` never matched: a post's tag is read as its primary language
    ("ja-JP" is "ja"); X's tags for no language are refused on their line."""
    rule = (
        "rules:\n"
        "  - id: ja-only\n"
        "    title: Japanese posts\n"
        "    match: {any: [ケトルバード], langs: [ja-JP, JA]}\n"
        "    when: {mention: {}}\n"
        "    playbook: mention-spike\n"
    )
    path = with_rules(project, rule)
    settings = load_settings(project / "config.yaml")
    assert settings.rules.rules[0].match is not None
    assert settings.rules.rules[0].match.langs == ("ja",)
    pipeline = pipeline_of(settings)
    post = mention("ケトルバードのエアロから煙が出た", at=1, lang="ja-JP")
    assert [e.alert.rule_id for e in pipeline.ingest([post])] == ["ja-only"]
    path.write_text(rule.replace("[ja-JP, JA]", "[ja, und]"), "utf-8")
    assert problems_of(project) == [
        f"{path}:4: rules[0].match.langs[1]: Value error, expected a language code like 'ja' "
        "or 'en' (a post tagged with none, 'und' or X's 'q...', gets the language its script "
        "says) (found 'und')"
    ]
