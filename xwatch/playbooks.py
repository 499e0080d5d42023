"""The playbook index: ``playbooks/*.md``, Markdown with YAML front matter.

A playbook starts with::

    ---
    id: product-defect
    title: Product defect or recall
    crisis_type: product_defect
    severity: critical
    owner: Head of Communications
    first_response_minutes: 15
    ---
    # Product defect or recall
    ...

Rules name a playbook by ``id``; alerts link to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from xwatch.config import Frozen
from xwatch.errors import ConfigError, Problem
from xwatch.model import PlaybookRef, Severity
from xwatch.yamlfile import YamlDocument

_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class FrontMatter(Frozen):
    id: Annotated[str, Field(pattern=_ID)]
    title: str
    crisis_type: str
    severity: Severity
    owner: str
    first_response_minutes: Annotated[int, Field(ge=1)]
    related_rules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Playbook:
    meta: FrontMatter
    body: str  # Markdown
    path: Path

    @property
    def id(self) -> str:
        return self.meta.id

    def ref(self, base_url: str) -> PlaybookRef:
        return PlaybookRef(
            id=self.id,
            title=self.meta.title,
            url=f"{base_url}{self.id}",
            first_response_minutes=self.meta.first_response_minutes,
        )


@dataclass(frozen=True, slots=True)
class PlaybookIndex:
    playbooks: dict[str, Playbook]

    def get(self, playbook_id: str) -> Playbook | None:
        return self.playbooks.get(playbook_id)

    def __contains__(self, playbook_id: str) -> bool:
        return playbook_id in self.playbooks


def load_playbooks(directory: Path) -> PlaybookIndex:
    """Read every ``*.md`` in ``directory``; raise ``ConfigError`` with all problems."""
    if not directory.is_dir():
        raise ConfigError([Problem(str(directory), 1, "playbooks folder not found")])
    playbooks: dict[str, Playbook] = {}
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.md")):
        try:
            playbook = parse_playbook(path.read_text("utf-8"), path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), 1, f"cannot read: {exc}"))
            continue
        if playbook.id in playbooks:
            other = playbooks[playbook.id].path
            problems.append(Problem(str(path), 2, f"id: {playbook.id!r} is also used by {other}"))
            continue
        playbooks[playbook.id] = playbook
    if problems:
        raise ConfigError(problems)
    return PlaybookIndex(playbooks)


def parse_playbook(text: str, path: Path) -> Playbook:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise ConfigError([Problem(str(path), 1, "expected front matter starting with '---'")])
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise ConfigError(
            [Problem(str(path), 1, "front matter is not closed by a '---' line")]
        ) from None
    # One blank line per line of the opening '---' keeps YAML line numbers true to the file.
    document = YamlDocument("\n" + "\n".join(lines[1:end]), str(path))
    meta = document.validate(FrontMatter)
    return Playbook(meta=meta, body="\n".join(lines[end + 1 :]).strip() + "\n", path=path)
