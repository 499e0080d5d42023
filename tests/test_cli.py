"""The command-line contracts other tools rely on (DESIGN.md)."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xwatch.backtest import nab_scores
from xwatch.cli import backtest_nab, main, sentiment


def nab_csv(values: list[int], gap_seconds: int = 300) -> str:
    start = datetime(2015, 2, 26, 21, 42, 53)
    rows = [
        (start + timedelta(seconds=gap_seconds * i)).strftime("%Y-%m-%d %H:%M:%S")
        for i in range(len(values))
    ]
    return "timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(rows, values, strict=True))


def test_backtest_nab_prints_one_score_in_0_1_per_row() -> None:
    values = [20 + (i % 7) for i in range(600)] + [400] + [21] * 50
    out = io.StringIO()
    assert backtest_nab(io.StringIO(nab_csv(values)), out) == 0
    scores = [float(line) for line in out.getvalue().splitlines()]
    assert len(scores) == len(values)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[600] == max(scores)  # the spike is the most anomalous row


def test_backtest_nab_has_no_look_ahead() -> None:
    values = [20 + (i * 7919) % 11 for i in range(700)]
    start = datetime(2015, 2, 26, tzinfo=UTC)
    rows = [(start + timedelta(minutes=5 * i), float(v)) for i, v in enumerate(values)]
    full = nab_scores(rows)
    changed = nab_scores(rows[:500] + [(t, v * 10) for t, v in rows[500:]])
    assert full[:500] == changed[:500]  # row i depends on rows 0..i only


def test_backtest_nab_rejects_a_bad_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert backtest_nab(io.StringIO("timestamp,value\n2015-01-01 00:00:00,x\n"), io.StringIO()) == 1
    assert "<stdin>:2:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ("2015-01-01 00:00:00,nan\n", "<stdin>:2: value is not a number"),
        ("2015-01-01 00:00:00,inf\n", "<stdin>:2: value is not a number"),
        ("2015-01-01 00:00:00,-5\n", "<stdin>:2: expected a count of mentions (0 to 1e+12)"),
        ("2015-01-01 00:00:00,1e308\n", "<stdin>:2: expected a count of mentions"),
        ("9999-12-31 23:55:00,1\n", "<stdin>:2: expected 'timestamp,value'"),  # no next bucket
        ("2015-01-01 00:05:00,1\n2015-01-01 00:00:00,1\n", "<stdin>:3: timestamps must increase"),
    ],
)
def test_backtest_nab_says_which_row_it_cannot_judge(
    rows: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert backtest_nab(io.StringIO("timestamp,value\n" + rows), io.StringIO()) == 1
    assert capsys.readouterr().err.startswith(expected)


def test_backtest_nab_reads_a_header_after_a_byte_order_mark() -> None:
    out = io.StringIO()
    assert backtest_nab(io.StringIO("\ufeff" + nab_csv([5, 6, 5, 7])), out) == 0
    assert len(out.getvalue().splitlines()) == 4


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.jsonl", None, "missing.jsonl: cannot read: No such file or directory"),
        ("folder", "", "folder: cannot read: Is a directory"),
        ("plain.jsonl.gz", b"not gzip", "plain.jsonl.gz: cannot read: Not a gzipped file"),
        ("cut.jsonl.gz", b"", r"cut.jsonl.gz: cannot read past line \d+: Compressed file ended"),
    ],
)
def test_backtest_says_why_it_cannot_read_its_input(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | str | None,
    expected: str,
) -> None:
    path = tmp_path / name
    if content == "":
        path.mkdir()
    elif content == b"":  # a gzip file cut short, in the middle of its 2,000 lines
        whole = gzip.compress(
            b'{"id": "1", "text": "kettlebird", "created_at": "2026-11-16T09:00:00Z"}\n' * 2000
        )
        path.write_bytes(whole[: len(whole) // 2])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    assert main(["backtest", "--jobs", "1", "--input", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"xwatch: {tmp_path}/" in err and re.search(expected, err), err
    assert "Traceback" not in err


def test_sentiment_refuses_a_line_nested_deeper_than_the_stack(
    capsys: pytest.CaptureFixture[str],
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert sentiment(io.StringIO(f'{{"text": "ok"}}\n{deep}\n'), io.StringIO(), "en") == 1
    assert "<stdin>:2:" in capsys.readouterr().err


def test_backtest_nab_reads_the_file_input_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--input`` was ignored with ``--format nab``: it read stdin (and waited on a
    terminal) instead of the file."""
    path = tmp_path / "series.csv"
    path.write_text(nab_csv([5, 6, 5, 7]), "utf-8")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["backtest", "--format", "nab", "--input", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert main(["backtest", "--format", "nab", "--input", str(tmp_path / "none.csv")]) == 1
    assert capsys.readouterr().err.startswith(f"{tmp_path}/none.csv: ")


def test_run_help_names_the_incident_pages(capsys: pytest.CaptureFixture[str]) -> None:
    """The daemon serves /incidents/ (the pages alerts link to); 'run --help' left it out."""
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "/incidents/" in capsys.readouterr().out


def test_backtest_nab_through_the_console_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xwatch", "backtest", "--format", "nab"],
        input=nab_csv([5, 6, 5, 7]),
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(result.stdout.splitlines()) == 4


def test_sentiment_contract_in_order_with_language() -> None:
    lines = [
        {"text": "I love my new kettle, best purchase ever!"},
        {"text": "Worst customer service. Still waiting for my refund.", "lang": "en"},
        {"text": "ケトルが壊れた。最悪"},
        {"text": "The kettle arrived."},
    ]
    out = io.StringIO()
    assert sentiment(io.StringIO("\n".join(json.dumps(x) for x in lines) + "\n"), out, "en") == 0
    results = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["label"] for r in results] == ["positive", "negative", "negative", "neutral"]
    assert [r["lang"] for r in results] == ["en", "en", "ja", "en"]
    assert all(-1.0 <= r["score"] <= 1.0 for r in results)


def test_sentiment_rejects_a_line_without_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert sentiment(io.StringIO('{"txt": "x"}\n'), io.StringIO(), "en") == 1
    assert "<stdin>:1:" in capsys.readouterr().err


def test_help_teaches_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("run", "check", "backtest", "sentiment"):
        assert command in text
    assert "xwatch run" in text  # an example to start with


def test_backtest_nab_scores_the_onset_of_a_burst_not_every_bucket() -> None:
    start = datetime(2015, 3, 2, tzinfo=UTC)
    values = [20 + (i * 7919) % 9 for i in range(700)]
    values[650:656] = [400] * 6  # a half-hour burst
    scores = nab_scores(
        [(start + timedelta(minutes=5 * i), float(v)) for i, v in enumerate(values)]
    )
    assert scores[650] == max(scores)  # the burst's first bucket starts the alert
    assert max(scores[651:656]) < scores[650] / 2  # the rest of it adds little


def test_sentiment_answers_the_lines_before_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    """The output stops exactly at the bad line, so it still lines up with the input."""
    lines = [json.dumps({"text": f"kettle {i}"}) for i in range(1500)] + ["not json"]
    out = io.StringIO()
    assert sentiment(io.StringIO("\n".join(lines) + "\n"), out, "en") == 1
    assert len(out.getvalue().splitlines()) == 1500
    assert "<stdin>:1501:" in capsys.readouterr().err


def test_sentiment_names_a_fallback_language_without_a_scorer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sentiment(io.StringIO('{"text": "c est nul"}\n'), io.StringIO(), "fr") == 2
    err = capsys.readouterr().err
    assert "--fallback-lang fr: no scorer for it (languages with one: en, ja)" in err
    out = io.StringIO()
    assert sentiment(io.StringIO('{"text": "nul", "lang": "fr"}\n'), out, "JA") == 0
    assert json.loads(out.getvalue())["lang"] == "fr"


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """``xwatch sentiment ... | head -1``: the pipe closes, and xwatch stops quietly."""
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"text": "bad kettle"}) + "\n" for _ in range(5000)))
    with (
        posts.open("rb") as stdin,
        subprocess.Popen(
            [sys.executable, "-m", "xwatch", "sentiment"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as process,
    ):
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline()  # one answer (of 5,000: far more than a pipe holds)
        process.stdout.close()
        err = process.stderr.read().decode()
        assert process.wait(60) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_backtest_reads_a_pipe_once_whatever_jobs_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--input /dev/stdin`` or ``<(zcat ...)``: every worker process opened the pipe and
    got a share of its lines (a plausible, wrong alert history); now one reader, as for
    ``-``, and gzip is found by its first bytes."""
    lines = b"".join(  # each a complaint from a big account, with twice the reach before
        b'{"id": "%d", "text": "kettlebird is awful, broken", "created_at": '
        b'"2026-11-16T09:%02d:00Z", "author": {"id": "a", "handle": "big", "followers": %d}}\n'
        % (i, i, 200_000 * 2**i)
        for i in range(8)
    )
    path = tmp_path / "mentions.jsonl"
    path.write_bytes(lines)
    assert main(["backtest", "--jobs", "1", "--json", "--input", str(path)]) == 0
    expected = capsys.readouterr().out
    assert expected.count("\n") > 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(gzip.compress(lines),))
    writer.start()
    try:
        assert main(["backtest", "--jobs", "2", "--json", "--input", str(fifo)]) == 0
    finally:
        writer.join(10)
    assert capsys.readouterr().out == expected
