"""The README's rendered examples are what the code renders today.

``docs/examples/generate.py`` (``make examples``) renders the demo's first incident with
each notifier's own code; the README quotes its console text and its Slack message. A
detector change once moved "expected 0.037" to 0.009 in every rendering while the
committed files and the README kept the old number.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("examples_generate", EXAMPLES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered() -> dict[str, str | bytes]:
    _, files = _generator().render()
    return dict(files)


def test_the_committed_examples_are_what_the_code_renders(
    rendered: dict[str, str | bytes],
) -> None:
    texts = {name: content for name, content in rendered.items() if isinstance(content, str)}
    assert set(texts) >= {"console.txt", "slack-message.md", "email.txt", "incident-page.html"}
    stale = [name for name, text in texts.items() if (EXAMPLES / name).read_text("utf-8") != text]
    assert stale == [], f"run `make examples`: {stale} differ from what the code renders"


def test_the_readme_quotes_the_examples(rendered: dict[str, str | bytes]) -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    console = rendered["console.txt"]
    slack = rendered["slack-message.md"]
    assert isinstance(console, str) and isinstance(slack, str)
    for line in console.splitlines()[:6]:  # the quickstart's excerpt
        assert line in readme, f"the README's console excerpt lacks: {line}"
    for line in slack.splitlines()[:7]:  # the Slack message drawn in Markdown
        assert line in readme, f"the README's Slack excerpt lacks: {line}"
