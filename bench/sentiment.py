"""Negative-vs-rest precision, recall and F1 of the sentiment scorers, and their throughput.

    .venv/bin/python bench/sentiment.py [--data DIR]

Reads ``airline_dev.jsonl``, ``tweeteval_val.jsonl`` (English) and ``wrime_dev.jsonl``
(Japanese) from ``../shared/data/sentiment`` (JSON lines ``{text, lang, label}``;
measurement only: nothing is copied, trained or tuned on it; exit 2 when it is absent).
Scorers, side by side: raw VADER and the English default (VADER plus complaint cues) on the
English sets, the raw Japanese lexicon and the Japanese default (lexicon plus complaint
cues) on the Japanese set.  A text counts as predicted negative when its label is
"negative" (score <= -0.05).  Throughput is texts per second on one core (one process, one
thread), over all texts of the scorer's language, best of three passes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from machine import machine  # bench/machine.py (scripts run with bench/ on sys.path)

from xwatch.sentiment import JapaneseLexiconScorer, Scorer, VaderScorer
from xwatch.sentiment.complaints import english_default, japanese_default

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sentiment"
SETS = {"airline_dev": "en", "tweeteval_val": "en", "wrime_dev": "ja"}


def read(path: Path) -> tuple[list[str], list[bool]]:
    """The texts of a JSON-lines file, and whether each is labelled negative."""
    texts: list[str] = []
    negative: list[bool] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                texts.append(str(row["text"]))
                negative.append(row["label"] == "negative")
    return texts, negative


def prf(predicted: Sequence[bool], truth: Sequence[bool]) -> tuple[float, float, float]:
    """Precision, recall and F1 (in %) of ``predicted`` negatives against ``truth``."""
    tp = sum(p and t for p, t in zip(predicted, truth, strict=True))
    fp = sum(p and not t for p, t in zip(predicted, truth, strict=True))
    fn = sum(t and not p for p, t in zip(predicted, truth, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return 100 * precision, 100 * recall, 100 * f1


def throughput(scorer: Scorer, texts: Sequence[str]) -> float:
    """Texts per second, best of three passes."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        scorer.score(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the sentiment data folder")
    args = parser.parse_args(argv)
    paths = {name: args.data / f"{name}.jsonl" for name in SETS}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        print(f"sentiment data absent: {', '.join(missing)} (see ../shared/data)", file=sys.stderr)
        return 2
    scorers: dict[str, dict[str, Scorer]] = {
        "en": {"raw VADER": VaderScorer(), "English default": english_default()},
        "ja": {"raw JA lexicon": JapaneseLexiconScorer(), "Japanese default": japanese_default()},
    }
    print(machine())
    print()
    print(f"{'data set':<14} {'rows':>5}  {'scorer':<17} {'P':>5} {'R':>5} {'F1':>5}")
    corpus: dict[str, list[str]] = {"en": [], "ja": []}
    for name, lang in SETS.items():
        texts, truth = read(paths[name])
        corpus[lang].extend(texts)
        for label, scorer in scorers[lang].items():
            predicted = [s.label == "negative" for s in scorer.score(texts)]
            precision, recall, f1 = prf(predicted, truth)
            print(
                f"{name:<14} {len(texts):>5}  {label:<17} "
                f"{precision:>5.1f} {recall:>5.1f} {f1:>5.1f}"
            )
    print()
    print(f"{'scorer':<17} {'texts/s (1 core)':>16}  over")
    for lang, by_label in scorers.items():
        for label, scorer in by_label.items():
            rate = throughput(scorer, corpus[lang])
            print(f"{label:<17} {rate:>16,.0f}  {len(corpus[lang])} {lang} texts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
