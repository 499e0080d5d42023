"""The shipped response playbooks: the ids the rules link to, and the same shape in each.

An on-call manager opens a playbook in the middle of a crisis. Every playbook therefore has
the same eight sections in the same order, a holding statement ready to post in English and
in Japanese, and a first-response target that the text states as plainly as the front matter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xwatch.model import Severity
from xwatch.playbooks import Playbook, PlaybookIndex, load_playbooks

# id -> (severity, the rules that link to it): the contract with rules/*.yaml
EXPECTED: dict[str, tuple[Severity, tuple[str, ...]]] = {
    "product-defect": (Severity.CRITICAL, ("product-defect-surge",)),
    "service-outage": (Severity.CRITICAL, ("service-outage-surge",)),
    "account-takeover": (
        Severity.CRITICAL,
        ("account-takeover-post", "own-account-anomaly", "account-takeover-report"),
    ),
    "data-leak": (Severity.CRITICAL, ("data-leak-surge",)),
    "misconduct": (Severity.WARNING, ("misconduct-surge",)),
    "misinformation": (Severity.WARNING, ("misinformation-surge",)),
    "complaint-wave": (Severity.WARNING, ("negative-share-spike", "high-reach-complaint")),
    "compliance-legal": (Severity.WARNING, ("compliance-legal-surge",)),
    "own-post-backlash": (Severity.CRITICAL, ("own-post-backlash",)),
    "mention-spike": (
        Severity.WARNING,
        ("mention-volume-spike", "mention-volume-drop", "new-term-surge"),
    ),
}

SECTIONS = (
    "Who is notified",
    "The first 15 minutes",
    "Holding statement",
    "Approval",
    "What to monitor",
    "When to escalate",
    "When it is over",
    "Post-incident review",
)

KANA = re.compile(r"[\u3040-\u309f\u30a0-\u30ff]")
JAPANESE = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u4e00-\u9fff]")
ENGLISH_WORDS = re.compile(r"\b[A-Za-z]{2,}\b")
PLACEHOLDER = re.compile(r"\{[^{}\n]+\}")


@pytest.fixture
def index(in_repo_root: Path) -> PlaybookIndex:
    return load_playbooks(Path("playbooks"))


def playbook(index: PlaybookIndex, playbook_id: str) -> Playbook:
    found = index.get(playbook_id)
    assert found is not None, f"no playbook {playbook_id!r}"
    return found


def sections(body: str) -> list[tuple[str, str]]:
    """The body's second-level sections as (heading, text up to the next one)."""
    parts = re.split(r"^## +(.+)$", body, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def section(body: str, name: str) -> str:
    found = [text for heading, text in sections(body) if name.lower() in heading.lower()]
    assert len(found) == 1, f"expected one section {name!r}, found {len(found)}"
    return found[0]


def quotes(text: str) -> list[str]:
    """The templates: each Markdown block quote as one line of text, without the '>'."""
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(">"):
            blocks[-1].append(line[1:].strip())
        elif blocks[-1]:
            blocks.append([])
    return [" ".join(part for part in block if part) for block in blocks if block]


def test_every_rule_linked_playbook_is_shipped(index: PlaybookIndex) -> None:
    missing = sorted(set(EXPECTED) - set(index.playbooks))
    assert not missing, f"missing playbooks: {missing}"


def test_file_names_match_the_ids(index: PlaybookIndex) -> None:
    for found in index.playbooks.values():
        assert found.path.name == f"{found.id}.md"


def test_crisis_types_are_distinct(index: PlaybookIndex) -> None:
    types = [found.meta.crisis_type for found in index.playbooks.values()]
    assert len(types) == len(set(types)), sorted(types)


@pytest.mark.parametrize("playbook_id", sorted(EXPECTED))
def test_front_matter_matches_the_rules(index: PlaybookIndex, playbook_id: str) -> None:
    meta = playbook(index, playbook_id).meta
    severity, related_rules = EXPECTED[playbook_id]
    assert meta.severity is severity
    assert set(meta.related_rules) == set(related_rules)
    assert meta.owner.strip() and meta.title.strip()


@pytest.mark.parametrize("playbook_id", sorted(EXPECTED))
def test_the_eight_sections_come_in_order(index: PlaybookIndex, playbook_id: str) -> None:
    headings = [heading.lower() for heading, _ in sections(playbook(index, playbook_id).body)]
    positions = []
    for name in SECTIONS:
        where = [i for i, heading in enumerate(headings) if name.lower() in heading]
        assert where, f"{playbook_id}: no '## {name}' section in {headings}"
        positions.append(where[0])
    assert positions == sorted(positions), f"{playbook_id}: sections out of order: {headings}"


@pytest.mark.parametrize("playbook_id", sorted(EXPECTED))
def test_holding_statement_in_english_and_japanese(index: PlaybookIndex, playbook_id: str) -> None:
    text = section(playbook(index, playbook_id).body, "Holding statement")
    templates = quotes(text)
    japanese = [quote for quote in templates if KANA.search(quote)]
    english = [quote for quote in templates if not KANA.search(quote)]
    assert japanese, f"{playbook_id}: no Japanese template (a '>' quote with kana)"
    assert english, f"{playbook_id}: no English template (a '>' quote without kana)"
    assert max(len(ENGLISH_WORDS.findall(quote)) for quote in english) >= 20
    assert max(len(JAPANESE.findall(quote)) for quote in japanese) >= 60
    # Each template is ready to fill in: placeholders in {braces}, not [brackets].
    for quote in templates:
        assert PLACEHOLDER.search(quote), f"{playbook_id}: no {{placeholder}} in {quote!r}"
        assert not re.search(r"\[[^\]]+\](?!\()", quote), f"{playbook_id}: [..] in {quote!r}"


@pytest.mark.parametrize("playbook_id", sorted(EXPECTED))
def test_first_response_target_is_stated_in_the_text(
    index: PlaybookIndex, playbook_id: str
) -> None:
    found = playbook(index, playbook_id)
    minutes = found.meta.first_response_minutes
    intro = found.body.split("\n## ", 1)[0]
    assert re.search(rf"\*\*{minutes} minutes\*\*", intro), (
        f"{playbook_id}: the introduction should state the target as '**{minutes} minutes**'"
    )
    assert minutes <= 60


@pytest.mark.parametrize("playbook_id", sorted(EXPECTED))
def test_the_rules_that_link_here_are_named(index: PlaybookIndex, playbook_id: str) -> None:
    found = playbook(index, playbook_id)
    for rule_id in found.meta.related_rules:
        assert f"`{rule_id}`" in found.body, f"{playbook_id}: rule `{rule_id}` not mentioned"


@pytest.mark.parametrize("playbook_id", sorted(EXPECTED))
def test_no_phone_numbers_or_unfilled_brackets(index: PlaybookIndex, playbook_id: str) -> None:
    body = playbook(index, playbook_id).body
    assert not re.search(r"\+?\d[\d -]{7,}\d", body), f"{playbook_id}: looks like a phone number"
    assert body.count("{") == body.count("}"), f"{playbook_id}: unbalanced braces"
