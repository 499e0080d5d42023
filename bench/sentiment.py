"""Negative-vs-rest precision, recall and F1 of the sentiment scorers, and their throughput.

    .venv/bin/python bench/sentiment.py [--data DIR] [--thresholds] [--train]
                                        [--split-seeds SEED ...]

Reads ``airline_dev.jsonl``, ``tweeteval_val.jsonl`` (English) and ``wrime_dev.jsonl``
(Japanese) from ``../shared/data/sentiment`` (JSON lines ``{text, lang, label}``;
measurement only: nothing is copied, trained or tuned on it; exit 2 when it is absent).

Scorers, side by side: raw VADER and the English default (VADER plus complaint cues) on the
English sets, the raw Japanese lexicon and the Japanese default (lexicon plus complaint
cues) on the Japanese set.  A text counts as predicted negative when its label is
"negative" (score <= -0.05).  Throughput is texts per second of CPU time on one core (one
process, one thread), over all texts of the scorer's language, best of three passes.

``--thresholds`` adds F1 at other negative thresholds (the precision/recall trade-off).
``--train`` adds ``xwatch train`` on a fixed 80 % of the airline set (a seeded shuffle),
scored on the other 20 %, next to the English default on the same 20 % (a few minutes;
the training time is given as wall time and as this process's CPU time, which a loaded
machine inflates less).  ``--split-seeds 0 1 2 3`` does it for each of those shuffles
(seed 0 is the fixed split) and ends with the mean and range of their F1: 1,464 test
rows give the F1 of one split a standard error of about 1 point, so a change to the
trainer is a win when it wins on most splits, not on one.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from machine import machine  # bench/machine.py (scripts run with bench/ on sys.path)

from xwatch.sentiment import JapaneseLexiconScorer, Scorer, VaderScorer
from xwatch.sentiment.complaints import ComplaintScorer, english_default, japanese_default
from xwatch.sentiment.trained import LABELS, Example, train

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sentiment"
SETS = {"airline_dev": "en", "tweeteval_val": "en", "wrime_dev": "ja"}
THRESHOLDS = (0.0, -0.05, -0.1, -0.2, -0.3, -0.5)
"""Negative thresholds for ``--thresholds``; 0.0 means "any score below 0"."""
SPLIT_SEED = 0
TRAIN_SHARE = 0.8


def read(path: Path) -> list[dict[str, str]]:
    """The rows of a JSON-lines file."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


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
    """Texts per second of this process's CPU time, best of three passes.  CPU time, not
    wall time: on a shared machine the wall clock also counts the time other processes
    hold the core."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        scorer.score(texts)
        best = min(best, time.process_time() - started)
    return len(texts) / best


def row(name: str, rows: int, label: str, scores: tuple[float, float, float]) -> str:
    precision, recall, f1 = scores
    return f"{name:<14} {rows:>5}  {label:<17} {precision:>5.1f} {recall:>5.1f} {f1:>5.1f}"


def thresholds(scorer: Scorer, texts: Sequence[str], truth: Sequence[bool]) -> str:
    """F1 at each of ``THRESHOLDS`` (score <= threshold, or < 0 for 0.0)."""
    scores = [sentiment.score for sentiment in scorer.score(texts)]
    cells = []
    for threshold in THRESHOLDS:
        predicted = [s < 0 if threshold == 0.0 else s <= threshold for s in scores]
        cells.append(f"{threshold:+.2f}:{prf(predicted, truth)[2]:4.1f}")
    return " ".join(cells)


def example(data: dict[str, str]) -> Example:
    """A training example from a data row."""
    label = data["label"]
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}")
    return Example(data["text"], label, data.get("lang"))


def train_split(path: Path, default: ComplaintScorer, seed: int = SPLIT_SEED) -> float:
    """``xwatch train`` on 80 % of the airline set (shuffled with ``seed``), scored on the
    other 20 %; returns the trained model's negative F1 there."""
    rows = read(path)
    random.Random(seed).shuffle(rows)
    cut = int(TRAIN_SHARE * len(rows))
    train_rows, test_rows = rows[:cut], rows[cut:]
    examples = [example(r) for r in train_rows]
    started, cpu_started = time.perf_counter(), time.process_time()
    model = train(examples, progress=lambda line: print(f"  {line}", file=sys.stderr))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    texts = [r["text"] for r in test_rows]
    truth = [r["label"] == "negative" for r in test_rows]
    print()
    print(
        f"xwatch train on {len(train_rows)} airline rows (seed {seed}), "
        f"scored on the other {len(test_rows)}: {seconds:.0f} s ({cpu_seconds:.0f} s of CPU), "
        f"{model.stats['model']} C={model.stats['C']:g}, "
        f"class_weight={model.stats['class_weight']}, "
        f"cross-validated negative F1 {100 * model.stats['cv']['negative']['f1']:.1f}"
    )
    print(f"{'data set':<14} {'rows':>5}  {'scorer':<17} {'P':>5} {'R':>5} {'F1':>5}")
    f1 = 0.0
    for label, scorer in (("English default", default), ("xwatch train", model)):
        predicted = [s.label == "negative" for s in scorer.score(texts)]
        scores = prf(predicted, truth)
        print(row("airline 20 %", len(texts), label, scores))
        f1 = scores[2]
    return f1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the sentiment data folder")
    parser.add_argument(
        "--thresholds", action="store_true", help="also F1 at other negative thresholds"
    )
    parser.add_argument(
        "--train", action="store_true", help="also xwatch train on an 80/20 airline split"
    )
    parser.add_argument(
        "--split-seeds",
        type=int,
        nargs="+",
        default=[SPLIT_SEED],
        metavar="SEED",
        help=f"with --train, the shuffles of the 80/20 split (default {SPLIT_SEED})",
    )
    args = parser.parse_args(argv)
    paths = {name: args.data / f"{name}.jsonl" for name in SETS}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        print(f"sentiment data absent: {', '.join(missing)} (see ../shared/data)", file=sys.stderr)
        return 2
    english = english_default()
    scorers: dict[str, dict[str, Scorer]] = {
        "en": {"raw VADER": VaderScorer(), "English default": english},
        "ja": {"raw JA lexicon": JapaneseLexiconScorer(), "Japanese default": japanese_default()},
    }
    print(machine())
    print()
    print(f"{'data set':<14} {'rows':>5}  {'scorer':<17} {'P':>5} {'R':>5} {'F1':>5}")
    corpus: dict[str, list[str]] = {"en": [], "ja": []}
    curves: list[str] = []
    for name, lang in SETS.items():
        rows = read(paths[name])
        texts = [r["text"] for r in rows]
        truth = [r["label"] == "negative" for r in rows]
        corpus[lang].extend(texts)
        for label, scorer in scorers[lang].items():
            predicted = [s.label == "negative" for s in scorer.score(texts)]
            print(row(name, len(texts), label, prf(predicted, truth)))
            if args.thresholds:
                curves.append(f"{name:<14} {label:<17} {thresholds(scorer, texts, truth)}")
    if curves:
        print()
        print("negative F1 by threshold (a text is negative when its score <= the threshold)")
        print("\n".join(curves))
    print()
    print(f"{'scorer':<17} {'texts/s (1 core)':>16}  over")
    for lang, by_label in scorers.items():
        for label, scorer in by_label.items():
            rate = throughput(scorer, corpus[lang])
            print(f"{label:<17} {rate:>16,.0f}  {len(corpus[lang])} {lang} texts")
    if args.train:
        f1s = [train_split(paths["airline_dev"], english, seed) for seed in args.split_seeds]
        if len(f1s) > 1:
            print()
            print(
                f"xwatch train, negative F1 over {len(f1s)} splits (seeds {args.split_seeds}): "
                f"mean {sum(f1s) / len(f1s):.1f}, min {min(f1s):.1f}, max {max(f1s):.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
