"""The backtest report: alerts as episodes, matched to labelled windows, and its files.

Synthetic series only (no shared data): a flat, Poisson-like count with spikes put
where the tests want them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from xwatch.alerting.lifecycle import AlertBook
from xwatch.backtest import nab_score, nab_scores, nab_signals
from xwatch.cli import main
from xwatch.model import (
    Alert,
    Bucket,
    Direction,
    EventKind,
    Measure,
    PlaybookRef,
    SeriesKey,
    Severity,
    Signal,
)
from xwatch.report import (
    Window,
    episodes,
    format_duration,
    judge,
    label_key_for,
    load_labels,
    read_series,
    render_table,
)

T0 = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
STEP = timedelta(minutes=5)
DAY_ROWS = 288
TWO_HOURS = timedelta(hours=2)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Rows of the synthetic series: three days of 5-minute buckets; the detector warms
# up on the first day. One burst inside the labelled window, one spike outside it.
ROWS = 3 * DAY_ROWS
SPIKE_IN = DAY_ROWS + 144  # day 2, 12:00: three buckets of 200
SPIKE_OUT = 2 * DAY_ROWS + 60  # day 3, 05:00: one bucket of 200
WINDOW = Window(
    T0 + SPIKE_IN * STEP - timedelta(hours=1), T0 + SPIKE_IN * STEP + timedelta(hours=3)
)
QUIET_WINDOW = Window(T0 + 2 * DAY_ROWS * STEP + timedelta(hours=12), T0 + 3 * DAY_ROWS * STEP)


def flat_counts(n: int = ROWS, seed: int = 7) -> list[int]:
    """Poisson(20), clipped to 13..27 so that chance alone never alerts at 0.9999."""
    rng = np.random.default_rng(seed)
    return [int(v) for v in np.clip(rng.poisson(20.0, n), 13, 27)]


def synthetic_counts() -> list[int]:
    counts = flat_counts()
    for i in range(SPIKE_IN, SPIKE_IN + 3):
        counts[i] = 200
    counts[SPIKE_OUT] = 200
    return counts


def rhythmic_counts(days: int = 8, seed: int = 3) -> tuple[list[int], int]:
    """A brand's week: a daily rhythm with Poisson noise, a crisis on day 6 at 14:00
    (eight times the usual volume within the hour, fading over six hours) and a
    one-bucket spike on day 3. Returns the counts and the crisis's first row.
    (docs/backtest-example.png is the report's zoom chart of this series.)"""
    rng = np.random.default_rng(seed)
    onset = 5 * DAY_ROWS + 14 * 12
    counts = []
    for i in range(days * DAY_ROWS):
        hour = (i % DAY_ROWS) / 12
        mean = 25.0 * (1.0 + 0.7 * np.sin(2 * np.pi * (hour - 9.0) / 24.0))
        if i >= onset:
            minutes = (i - onset) * 5
            mean *= 1.0 + 7.0 * min(1.0, minutes / 60) * float(np.exp(-max(0, minutes - 60) / 120))
        counts.append(int(rng.poisson(mean)))
    counts[2 * DAY_ROWS + 20 * 12] += 120
    return counts, onset


def rows_of(counts: Sequence[int]) -> list[tuple[datetime, float]]:
    return [(T0 + i * STEP, float(v)) for i, v in enumerate(counts)]


def write_csv(path: Path, counts: Sequence[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["timestamp,value"] + [
        f"{(T0 + i * STEP).strftime('%Y-%m-%d %H:%M:%S')},{v}" for i, v in enumerate(counts)
    ]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def nab_time(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f")


# --- the pure part: hits, misses, false alarms, delays ------------------------


def test_a_spike_in_a_window_is_a_hit_and_one_outside_is_a_false_alarm() -> None:
    result = judge("series.csv", nab_signals(rows_of(synthetic_counts())), [WINDOW])
    assert (len(result.windows), result.hits, result.misses) == (1, 1, 0)
    assert len(result.false_alarms) == 1
    assert len(result.alerts) == 2  # the three-bucket burst is one alert
    assert result.false_alarms[0].start == T0 + SPIKE_OUT * STEP
    window = result.windows[0]
    assert window.alert is not None and window.alert.start == T0 + SPIKE_IN * STEP
    # the burst's three buckets, and maybe one more while its CUSUM evidence drains
    assert window.alert.direction == "up" and window.alert.buckets in (3, 4)
    # the window opens an hour before the burst; its centre is an hour after it
    assert (window.delay_buckets, window.delay_minutes) == (12, 60.0)
    assert (window.centre_delay_buckets, window.centre_delay_minutes) == (-12, -60.0)
    assert result.median_delay_minutes == 60.0
    assert result.median_centre_delay_minutes == -60.0


def test_a_window_without_an_anomaly_is_a_miss() -> None:
    result = judge("series.csv", nab_signals(rows_of(synthetic_counts())), [WINDOW, QUIET_WINDOW])
    assert (result.hits, result.misses, len(result.false_alarms)) == (1, 1, 1)
    quiet = result.windows[1]
    assert not quiet.hit and quiet.alert is None and quiet.carried is None
    assert quiet.delay_minutes is None and quiet.centre_delay_buckets is None
    # a flat series with no spike at all: nothing fires, the window is missed
    calm = judge("calm.csv", nab_signals(rows_of(flat_counts())), [WINDOW])
    assert (calm.hits, calm.misses, len(calm.alerts)) == (0, 1, 0)
    assert calm.median_delay_minutes is None


def test_a_crisis_in_a_rhythmic_week_is_caught_early() -> None:
    counts, onset = rhythmic_counts()
    crisis = T0 + onset * STEP
    window = Window(crisis - timedelta(hours=6), crisis + timedelta(hours=6))
    result = judge("week.csv", nab_signals(rows_of(counts)), [window])
    assert result.hits == 1
    first = result.windows[0]
    assert first.alert is not None and first.alert.direction == "up"
    assert first.centre_delay_minutes is not None and 0 <= first.centre_delay_minutes <= 30
    assert any(a.start == T0 + (2 * DAY_ROWS + 20 * 12) * STEP for a in result.false_alarms)


def test_the_report_uses_the_same_detector_as_nab_scores() -> None:
    rows = rows_of(synthetic_counts())
    signals = nab_signals(rows)
    scores = nab_scores(rows)
    assert all(score == 0.0 for s, score in zip(signals, scores, strict=True) if s.warming_up)
    # nab_scores only ever lowers a signal's score (the episode bar), never raises it
    assert all(
        score <= nab_score(s.surprise) + 1e-12
        for s, score in zip(signals, scores, strict=True)
        if not s.warming_up
    )


# --- episodes: the daemon's lifecycle -------------------------------------------


def signal(i: int, likelihood: float = 0.5, direction: Direction = "up") -> Signal:
    start = T0 + i * STEP
    tail = 1.0 - likelihood
    return Signal(
        series=SeriesKey("b", "", 300),
        measure=Measure.VOLUME,
        start=start,
        end=start + STEP,
        observed=100.0 if likelihood > 0.5 else 20.0,
        expected=20.0,
        low=10.0,
        high=32.0,
        likelihood=likelihood,
        direction=direction,
        surprise=Signal.surprise_of(tail),
    )


def series_with(firing: dict[int, Direction], n: int) -> list[Signal]:
    return [
        signal(i, 0.99999, firing[i]) if i in firing else signal(i, 0.5, "down") for i in range(n)
    ]


def test_consecutive_alerting_buckets_are_one_alert() -> None:
    signals = series_with({10: "up", 11: "up", 12: "up", 14: "up"}, 60)
    (only,) = episodes(signals, 0.9999, TWO_HOURS)
    assert (only.first, only.last, only.buckets) == (10, 14, 4)
    assert only.start == T0 + 10 * STEP and only.end == T0 + 15 * STEP


def test_a_burst_after_the_calm_period_is_a_second_alert() -> None:
    # 24 calm buckets of 5 minutes = 2 hours: resolved, the next burst is a new alert
    second = 11 + 24
    alerts = episodes(
        series_with({10: "up", second: "up", second + 1: "up"}, 80), 0.9999, TWO_HOURS
    )
    assert [(a.first, a.buckets) for a in alerts] == [(10, 1), (second, 2)]
    # one bucket less of calm: still the same alert
    alerts = episodes(series_with({10: "up", second - 1: "up"}, 80), 0.9999, TWO_HOURS)
    assert [(a.first, a.last) for a in alerts] == [(10, second - 1)]


def test_up_and_down_are_separate_alerts_and_warm_up_never_alerts() -> None:
    signals = series_with({10: "up", 11: "down", 12: "up"}, 30)
    signals[20] = dataclasses.replace(signal(20, 1.0), warming_up=True)
    alerts = episodes(signals, 0.9999, TWO_HOURS)
    assert [(a.direction, a.first, a.last) for a in alerts] == [("up", 10, 12), ("down", 11, 11)]
    assert episodes(signals, 1.0, TWO_HOURS) == []  # nothing reaches a likelihood of 1


def _daemon_firings(signals: Sequence[Signal], likelihood: float, resolve: timedelta) -> list[int]:
    """The rows where the daemon's own AlertBook sends FIRING, fed as the pipeline feeds it."""
    book = AlertBook(resolve)
    playbook = PlaybookRef("p", "P", "http://p")
    row = {s.start: i for i, s in enumerate(signals)}
    fired = []
    for s in signals:
        bucket = Bucket(s.series, s.start, s.end, int(s.observed), 0, 0)
        alerts = []
        if not s.warming_up and s.likelihood >= likelihood:
            alerts.append(
                Alert("r", "t", Severity.WARNING, s.series, s, bucket, (s,), playbook, ())
            )
        for event in book.observe(alerts, s.end) + book.observe([], s.end):
            if event.kind is EventKind.FIRING:
                fired.append(row[event.alert.signal.start])
    return fired


@pytest.mark.parametrize("seed", range(20))
def test_episodes_match_the_daemon_lifecycle(seed: int) -> None:
    rng = random.Random(seed)
    n = 600
    firing: dict[int, Direction] = {}
    i = 0
    while i < n:
        i += rng.choice([1, 2, 5, 20, 23, 24, 25, 40])
        for j in range(i, min(n, i + rng.choice([1, 1, 3, 8]))):
            firing[j] = rng.choice(["up", "up", "down"])
    signals = series_with(firing, n)
    resolve = timedelta(seconds=rng.choice([0, 300, 3600, 7200]))
    ours = [a.first for a in episodes(signals, 0.9999, resolve)]
    assert ours == sorted(_daemon_firings(signals, 0.9999, resolve))


def test_format_duration() -> None:
    assert [format_duration(m) for m in (5, 95, -60, 24 * 60 + 61, -0.2)] == [
        "5m",
        "1h 35m",
        "-1h 00m",
        "1d 1h",
        "0m",
    ]


# --- inputs --------------------------------------------------------------------


def test_labels_match_files_by_folder_and_name(tmp_path: Path) -> None:
    labels_path = tmp_path / "windows.json"
    labels_path.write_text(
        json.dumps(
            {
                "realTweets/a.csv": [["2015-03-03 04:37:53.000000", "2015-03-04 13:37:53.000000"]],
                "other/b.csv": [],
            }
        ),
        "utf-8",
    )
    labels = load_labels(labels_path)
    (w,) = labels["realTweets/a.csv"]
    assert w.start == datetime(2015, 3, 3, 4, 37, 53, tzinfo=UTC)
    assert w.centre == datetime(2015, 3, 3, 21, 7, 53, tzinfo=UTC)
    assert label_key_for(labels, tmp_path / "realTweets" / "a.csv") == "realTweets/a.csv"
    assert label_key_for(labels, tmp_path / "elsewhere" / "b.csv") == "other/b.csv"
    assert label_key_for(labels, tmp_path / "c.csv") is None


def test_bad_inputs_name_the_file_and_line(tmp_path: Path) -> None:
    from xwatch.report import ReportInputError

    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2015-01-01 00:00:00,3\n2015-01-01 00:05:00,x\n", "utf-8")
    with pytest.raises(ReportInputError, match=r"bad\.csv:3:"):
        read_series(bad)
    labels = tmp_path / "windows.json"
    labels.write_text('{"a.csv": [["2015-01-01", "never"]]}', "utf-8")
    with pytest.raises(ReportInputError, match=r"windows\.json: a\.csv"):
        load_labels(labels)


# --- the command ---------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return int(width), int(height)


def test_cli_writes_the_report_the_charts_and_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    series = write_csv(tmp_path / "data" / "synthetic" / "series.csv", synthetic_counts())
    calm = write_csv(tmp_path / "data" / "synthetic" / "calm.csv", flat_counts(seed=11))
    labels = tmp_path / "data" / "windows.json"
    labels.write_text(
        json.dumps(
            {
                "synthetic/series.csv": [
                    [nab_time(WINDOW.start), nab_time(WINDOW.end)],
                    [nab_time(QUIET_WINDOW.start), nab_time(QUIET_WINDOW.end)],
                ],
                "synthetic/calm.csv": [[nab_time(WINDOW.start), nab_time(WINDOW.end)]],
            }
        ),
        "utf-8",
    )
    out = tmp_path / "report"
    argv = ["backtest", "--format", "nab", "--report", str(out), "--labels", str(labels)]
    assert main([*argv, str(series), str(calm)]) == 0

    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].split()[:3] == ["file", "windows", "hits"]
    assert table[1].split() == ["series.csv", "2", "1", "1", "1", "60", "-60"]
    assert table[2].split() == ["calm.csv", "1", "0", "1", "0", "-", "-"]
    assert table[3].split() == ["total", "3", "1", "2", "1", "60", "-60"]
    assert "[1/2] series.csv" in captured.err and "[2/2] calm.csv" in captured.err

    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["totals"] == {
        "files": 2,
        "rows": 2 * ROWS,
        "windows": 3,
        "hits": 1,
        "misses": 2,
        "false_alarms": 1,
        "alerts": 2,
        "median_delay_minutes": 60.0,
        "median_centre_delay_minutes": -60.0,
    }
    first = report["files"][0]
    assert (first["file"], first["label_key"], first["bucket_seconds"]) == (
        "series.csv",
        "synthetic/series.csv",
        300,
    )
    hit = first["window_results"][0]
    assert hit["hit"] and hit["direction"] == "up"
    assert (hit["delay_buckets"], hit["delay_minutes"]) == (12, 60.0)
    assert (hit["centre_delay_buckets"], hit["centre_delay_minutes"]) == (-12, -60.0)
    assert hit["first_alert"] == (T0 + SPIKE_IN * STEP).isoformat()
    assert [a["false_alarm"] for a in first["alert_list"]] == [False, True]

    charts = [first["chart"], *(w["chart"] for w in first["window_results"])]
    charts += [report["files"][1]["chart"], report["files"][1]["window_results"][0]["chart"]]
    assert charts == [
        "series.png",
        "series-window-1.png",
        "series-window-2.png",
        "calm.png",
        "calm-window-1.png",
    ]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(charts)
    for name in charts:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert png_size(data) == (1600, 600)

    markdown = (out / "report.md").read_text("utf-8")
    assert "| series.csv" not in markdown  # file names link to their sections
    assert "[series.csv](#seriescsv) | 2 | 1 | 1 | 1 | 60 | -60 | [chart](series.png) |" in markdown
    assert "| **total** | 3 | 1 | 2 | 1 | 60 | -60 |  |" in markdown
    assert "![series.csv](series.png)" in markdown and "[zoom](series-window-2.png)" in markdown


def test_cli_report_needs_labels_and_readable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    series = write_csv(tmp_path / "series.csv", flat_counts(100))
    assert main(["backtest", "--format", "nab", "--report", str(tmp_path / "r"), str(series)]) == 2
    labels = tmp_path / "windows.json"
    labels.write_text("{}", "utf-8")
    missing = tmp_path / "missing.csv"
    argv = ["backtest", "--format", "nab", "--report", str(tmp_path / "r"), "--labels", str(labels)]
    assert main([*argv, str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,value\n", "utf-8")
    assert main([*argv, str(empty)]) == 1
    assert "empty.csv: no rows" in capsys.readouterr().err
    assert main(["backtest", "--format", "nab", str(series)]) == 2  # files need --report
    taken = tmp_path / "taken"  # a file where the report's folder would go
    taken.write_text("", "utf-8")
    argv[4] = str(taken)
    assert main([*argv, str(series)]) == 1
    err = capsys.readouterr().err
    assert f"{taken}: cannot make the report's folder" in err and "Traceback" not in err
    labels.write_text('{"series.csv": [["9999-12-31 00:00:00", "9999-12-31 23:59:59"]]}')
    assert main([*argv, str(series)]) == 1
    assert "window too near the calendar's ends" in capsys.readouterr().err
    labels.write_text('{"series.csv": [["2020-01-01 00:00:00", "2020-01-02 00:00:00"]]}')
    argv[4] = str(tmp_path / "r2")
    assert main([*argv, str(series)]) == 0
    assert "warning: the window 2020-01-01 00:00 to 2020-01-02 00:00 lies outside the series" in (
        capsys.readouterr().err
    )


def test_the_stdin_contract_without_report_is_unchanged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = synthetic_counts()
    csv_text = "timestamp,value\n" + "".join(
        f"{(T0 + i * STEP).strftime('%Y-%m-%d %H:%M:%S')},{v}\n" for i, v in enumerate(counts)
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(csv_text))
    assert main(["backtest", "--format", "nab"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(counts)  # one score per row, nothing else
    assert [float(x) for x in lines] == pytest.approx(nab_scores(rows_of(counts)), abs=1e-9)
    assert all(0.0 <= float(x) <= 1.0 for x in lines)


def test_render_table_aligns_columns() -> None:
    result = judge("series.csv", nab_signals(rows_of(synthetic_counts())), [WINDOW])
    lines = render_table([result]).splitlines()
    assert len({len(line) for line in lines}) == 1  # every row as wide as the header
