"""Synthetic mentions for the benchmarks: the demo's posts, re-stamped for many brands.

The texts, languages, authors and engagement come from the bundled demo stream (a week
of a fictional kettle brand, English and Japanese), so sentiment and term matching do
the same work as on the demo. Each post's brand terms ("kettlebird", "ケトルバード", any
case, inside "@kettlebird" and "#kettlebird" too) become one synthetic brand's term, and
its id and time are set when the post is made:

* ``Corpus.load()`` reads the demo once into JSON templates: ``calm`` (the posts before
  the crisis) and ``crisis`` (the crisis posts that name the defect: overheating,
  smoke, recall...); ``Corpus.fill`` makes one payload from a template.
* ``brand_ids(n)`` names n brands (``brand000`` ...): the id is also the only term.
* ``write_history`` writes a file of mentions for many brands over days, in event time,
  with a daily rhythm; ``config_yaml`` writes a config that watches those brands.

Nothing depends on the clock or the hash seed: the same arguments give the same bytes.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from xwatch.demo.generate import CRISIS_KEYWORDS, CRISIS_ONSET, bundled_demo_path

ID = b"{{ID}}"
TS = b"{{TS}}"
BRAND = b"{{BRAND}}"
_BRAND_TERM = re.compile(r"kettlebird|ケトルバード", re.IGNORECASE)
DAILY_SWING = 0.6  # the daily rhythm: rate x (1 + swing x sin), low at 03:00, high at 15:00
DEMO_POSTS_PER_DAY = 3674  # the demo brand's mean (25,718 posts in its week, crisis included)


@dataclass(frozen=True, slots=True)
class Corpus:
    """Payload templates made from the demo's posts (UTF-8 JSON with placeholders)."""

    calm: tuple[bytes, ...]
    crisis: tuple[bytes, ...]

    @classmethod
    def load(cls) -> Corpus:
        onset = CRISIS_ONSET.strftime("%Y-%m-%dT%H:%M:%SZ")
        calm: list[bytes] = []
        crisis: list[bytes] = []
        with gzip.open(bundled_demo_path(), "rt", encoding="utf-8") as lines:
            for line in lines:
                post = json.loads(line)
                if post["created_at"] < onset:
                    calm.append(_template(post))
                elif any(k in post["text"].lower() for k in CRISIS_KEYWORDS):
                    crisis.append(_template(post))
        return cls(tuple(calm), tuple(crisis))

    @staticmethod
    def fill(template: bytes, post_id: bytes, created_at: bytes, brand: bytes) -> bytes:
        """One payload: the template with its id, ISO time and brand term."""
        return template.replace(ID, post_id).replace(TS, created_at).replace(BRAND, brand)


def _template(post: dict[str, Any]) -> bytes:
    author = post["author"]
    document = {
        "id": ID.decode(),
        "text": _BRAND_TERM.sub(BRAND.decode(), post["text"]),
        "created_at": TS.decode(),
        "lang": post["lang"],
        "author": author,
        "url": f"https://x.com/{author['handle']}/status/{ID.decode()}",
        "metrics": post["metrics"],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def brand_ids(count: int) -> list[str]:
    """``brand000``, ``brand001``...: equal widths, so no term is a prefix of another."""
    width = max(3, len(str(count - 1)))
    return [f"brand{i:0{width}d}" for i in range(count)]


def iso(timestamp: float) -> bytes:
    """An ISO 8601 UTC time with microseconds, as the payloads carry it."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat().encode()


def daily_rhythm(timestamp: float) -> float:
    """The relative rate at a time of day (mean 1 over a day)."""
    day_fraction = (timestamp % 86400.0) / 86400.0
    return 1.0 + DAILY_SWING * math.sin(2 * math.pi * (day_fraction - 0.375))


def history(
    corpus: Corpus,
    brands: Sequence[str],
    start: datetime,
    seconds: float,
    per_brand_per_day: float,
    *,
    seed: int = 7,
    with_brands: bool = False,
) -> Iterator[bytes]:
    """Mentions of ``brands`` from ``start`` for ``seconds``, in event-time order.

    Each minute has a Poisson number of posts around ``per_brand_per_day`` per brand,
    following ``daily_rhythm``; each post is about one brand drawn uniformly. With
    ``with_brands`` the payload names its brand (as an MQTT topic would); without, the
    pipeline finds it by its terms, as for posts from X.
    """
    rng = random.Random(seed)
    first = start.timestamp()
    per_second = per_brand_per_day * len(brands) / 86400.0
    encoded = [b.encode() for b in brands]
    serial = 0
    for minute in range(math.ceil(seconds / 60.0)):
        base = first + 60.0 * minute
        width = min(60.0, seconds - 60.0 * minute)  # the last minute may be cut short
        count = _poisson(rng, per_second * width * daily_rhythm(base + width / 2))
        for offset in sorted(rng.random() * width for _ in range(count)):
            serial += 1
            brand = rng.choice(encoded)
            payload = corpus.fill(
                rng.choice(corpus.calm), b"%d" % serial, iso(base + offset), brand
            )
            if with_brands:
                payload = payload[:-1] + b',"brands":["' + brand + b'"]}'
            yield payload


def write_history(path: Path, lines: Iterable[bytes]) -> int:
    """Write JSON lines (gzip'd when the name ends in .gz, fast level); return the count."""
    count = 0
    with path.open("wb") as raw:
        gz = path.suffix == ".gz"
        out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) if gz else raw
        for line in lines:
            out.write(line + b"\n")
            count += 1
        out.close()
    return count


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw: Knuth's product below 30, a rounded normal above (fast enough here)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, product, count = math.exp(-lam), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def _rules(rules_dir: Path) -> Iterator[dict[str, Any]]:
    for path in sorted([*rules_dir.glob("*.yaml"), *rules_dir.glob("*.yml")]):
        document = yaml.safe_load(path.read_text("utf-8")) or {}
        yield from document.get("rules", [])


def notifier_names(rules_dir: Path) -> list[str]:
    """Every notifier name the rule files use (the bench config must define them)."""
    names = {name for rule in _rules(rules_dir) for name in rule.get("notify", [])}
    return sorted(names) or ["console"]


def rule_scales(rules_dir: Path) -> set[int]:
    """Every bucket width the rule files name (the bench config must have them)."""
    return {
        int(scale)
        for rule in _rules(rules_dir)
        for scale in (rule.get("when") or {}).get("scales_seconds", [])
    }


def config_yaml(
    brands: Sequence[str],
    sources: list[dict[str, Any]],
    root: Path,
    *,
    scales: Sequence[int] = (60, 300, 900),
    lateness: int = 60,
    store: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A config watching ``brands`` (each found by its id as its only term), with the
    repository's rules and playbooks, console notifiers for every name the rules use,
    ``scales`` and every scale the rules name, no web server, the store at ``store``
    (None: no store), and ``extra`` keys."""
    scales = sorted(set(scales) | rule_scales(root / "rules"))
    config = {
        "brands": [{"id": b, "name": b, "terms": [b]} for b in brands],
        "sources": sources,
        "detect": {"scales_seconds": list(scales), "allowed_lateness_seconds": lateness},
        "notifiers": {name: {"type": "console"} for name in notifier_names(root / "rules")},
        "server": {"enabled": False},
        "store": {"enabled": store is not None, "path": str(store or "xwatch.sqlite3")},
        "rules_dir": str(root / "rules"),
        "playbooks_dir": str(root / "playbooks"),
        **(extra or {}),
    }
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
