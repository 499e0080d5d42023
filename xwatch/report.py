"""Backtest report: the daemon's volume detector against labelled anomaly windows.

``xwatch backtest --format nab --report OUT_DIR --labels windows.json FILE.csv ...``
runs each NAB-style series (``timestamp,value``, one row per bucket) through the
volume detector exactly as ``nab_scores`` does (``backtest.nab_signals``: default
parameters, score before learn, no look-ahead), turns the signals into the alerts
the daemon would send, and compares them with the labelled windows.

* An **alerting bucket** is one whose signal is not warming up and whose likelihood
  is at least the threshold, in either direction (the rules' own test).
* An **alert** is an episode, as the daemon's lifecycle (``alerting/lifecycle.py``)
  groups firings: one per direction (the direction is part of an alert's identity)
  until that direction has been calm for ``resolve_after``; the next alerting
  bucket after that is a new alert. The alert is at its first bucket.
* Against the windows (``windows.json``: ``{"<category>/<file>.csv": [[start, end],
  ...]}``, both ends rows of the file): an alert inside a window hits it (the first
  one gives the delay), a window without an alert is a miss, an alert outside every
  window is a false alarm. NAB centres each window on the labelled anomaly, so the
  delay is given from the window's start and from its centre (negative: before it).

Layout: the pure part first (episodes, matching, delays, summary; no I/O), then
reading the inputs, then the report files, then the charts (matplotlib, Agg canvas,
no pyplot and no display).
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from xwatch.model import Direction, Signal, format_count, format_scale

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    FloatArray = npt.NDArray[np.float64]

DEFAULT_LIKELIHOOD = 0.9999
DEFAULT_RESOLVE_AFTER_SECONDS = 7200.0
ZOOM_MARGIN = timedelta(days=1)
CHART_SIZE_INCHES = (16.0, 6.0)
CHART_DPI = 100  # 1600 x 600 pixels
MAX_LISTED_FALSE_ALARMS = 50  # per file in report.md (report.json lists them all)

Progress = Callable[[str], None]


class ReportInputError(Exception):
    """A problem with an input file, as ``file[:line]: message``."""


# --- the pure part ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """A labelled anomaly window, both ends included (NAB: ends are rows of the file)."""

    start: datetime
    end: datetime

    @property
    def centre(self) -> datetime:
        """The labelled anomaly: NAB centres the window on it."""
        return self.start + (self.end - self.start) / 2

    def contains(self, when: datetime) -> bool:
        return self.start <= when <= self.end


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert: alerting buckets of one direction, until calm for ``resolve_after``."""

    direction: Direction
    first: int  # row of the bucket that fired the alert
    last: int  # row of its last alerting bucket
    start: datetime  # that first bucket's start (its row's timestamp)
    end: datetime  # the end of the last alerting bucket
    buckets: int  # alerting buckets in the episode
    observed: float  # at the first bucket
    expected: float
    low: float
    high: float
    likelihood: float
    surprise: float  # -log10 of the first bucket's tail probability
    peak_surprise: float  # the most surprising bucket of the episode


def is_alerting(signal: Signal, likelihood: float) -> bool:
    """The rules' test for a volume signal: not warming up, likely enough, up or down."""
    return not signal.warming_up and signal.likelihood >= likelihood


def episodes(
    signals: Sequence[Signal], likelihood: float, resolve_after: timedelta
) -> list[Episode]:
    """The alerts the daemon's lifecycle would send for these signals, in time order.

    The lifecycle resolves an identity once ``now - last firing >= resolve_after``,
    checked after each bucket, so a firing bucket starts a new alert when the calm
    time from the end of the last firing bucket to its own start is that long.
    """
    done: list[Episode] = []
    open_: dict[Direction, Episode] = {}
    for i, signal in enumerate(signals):
        if not is_alerting(signal, likelihood):
            continue
        current = open_.get(signal.direction)
        if current is not None and signal.start - current.end < resolve_after:
            open_[signal.direction] = Episode(
                direction=current.direction,
                first=current.first,
                last=i,
                start=current.start,
                end=signal.end,
                buckets=current.buckets + 1,
                observed=current.observed,
                expected=current.expected,
                low=current.low,
                high=current.high,
                likelihood=current.likelihood,
                surprise=current.surprise,
                peak_surprise=max(current.peak_surprise, signal.surprise),
            )
            continue
        if current is not None:
            done.append(current)
        open_[signal.direction] = Episode(
            direction=signal.direction,
            first=i,
            last=i,
            start=signal.start,
            end=signal.end,
            buckets=1,
            observed=signal.observed,
            expected=signal.expected,
            low=signal.low,
            high=signal.high,
            likelihood=signal.likelihood,
            surprise=signal.surprise,
            peak_surprise=signal.surprise,
        )
    done.extend(open_.values())
    return sorted(done, key=lambda e: (e.first, e.direction))


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One labelled window and what the alerts made of it."""

    window: Window
    first_row: int  # the window's first row
    centre_row: int  # the row nearest its centre (the labelled anomaly)
    alerts: tuple[Episode, ...]  # alerts fired inside it, first first
    carried: Episode | None  # an alert fired before the window that kept firing into it

    @property
    def hit(self) -> bool:
        return bool(self.alerts)

    @property
    def alert(self) -> Episode | None:
        """The first alert inside the window."""
        return self.alerts[0] if self.alerts else None

    @property
    def delay_buckets(self) -> int | None:
        return None if self.alert is None else self.alert.first - self.first_row

    @property
    def delay_minutes(self) -> float | None:
        if self.alert is None:
            return None
        return (self.alert.start - self.window.start).total_seconds() / 60.0

    @property
    def centre_delay_buckets(self) -> int | None:
        return None if self.alert is None else self.alert.first - self.centre_row

    @property
    def centre_delay_minutes(self) -> float | None:
        if self.alert is None:
            return None
        return (self.alert.start - self.window.centre).total_seconds() / 60.0


@dataclass(frozen=True, slots=True)
class FileResult:
    """One series judged against its windows."""

    name: str
    rows: int
    width_seconds: int
    windows: tuple[WindowResult, ...]
    alerts: tuple[Episode, ...]
    false_alarms: tuple[Episode, ...]
    label_key: str | None = None  # the windows.json key the windows came from

    @property
    def hits(self) -> int:
        return sum(1 for w in self.windows if w.hit)

    @property
    def misses(self) -> int:
        return len(self.windows) - self.hits

    @property
    def delays_minutes(self) -> list[float]:
        return [w.delay_minutes for w in self.windows if w.delay_minutes is not None]

    @property
    def centre_delays_minutes(self) -> list[float]:
        return [w.centre_delay_minutes for w in self.windows if w.centre_delay_minutes is not None]

    @property
    def median_delay_minutes(self) -> float | None:
        return _median(self.delays_minutes)

    @property
    def median_centre_delay_minutes(self) -> float | None:
        return _median(self.centre_delays_minutes)


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def match(
    alerts: Sequence[Episode], windows: Sequence[Window], timestamps: Sequence[datetime]
) -> tuple[list[WindowResult], list[Episode]]:
    """Each window with the alerts inside it, and the alerts outside every window.

    ``timestamps`` are the rows' times (sorted), to count the delay in buckets.
    """
    results = []
    inside: set[int] = set()
    for window in sorted(windows, key=lambda w: w.start):
        hits = tuple(a for a in alerts if window.contains(a.start))
        inside.update(id(a) for a in hits)
        first_row = bisect.bisect_left(timestamps, window.start)
        carried = next(
            (a for a in alerts if a.first < first_row <= a.last),
            None,
        )
        results.append(
            WindowResult(
                window=window,
                first_row=first_row,
                centre_row=_nearest_row(timestamps, window.centre),
                alerts=hits,
                carried=carried,
            )
        )
    false_alarms = [a for a in alerts if id(a) not in inside]
    return results, false_alarms


def _nearest_row(timestamps: Sequence[datetime], when: datetime) -> int:
    i = bisect.bisect_left(timestamps, when)
    if i > 0 and (i == len(timestamps) or when - timestamps[i - 1] <= timestamps[i] - when):
        return i - 1
    return i


def judge(
    name: str,
    signals: Sequence[Signal],
    windows: Sequence[Window],
    likelihood: float = DEFAULT_LIKELIHOOD,
    resolve_after: timedelta = timedelta(seconds=DEFAULT_RESOLVE_AFTER_SECONDS),
    label_key: str | None = None,
) -> FileResult:
    """Alerts from the signals of one series (one per row), judged against its windows."""
    alerts = episodes(signals, likelihood, resolve_after)
    window_results, false_alarms = match(alerts, windows, [s.start for s in signals])
    width = int((signals[0].end - signals[0].start).total_seconds()) if signals else 0
    return FileResult(
        name=name,
        rows=len(signals),
        width_seconds=width,
        windows=tuple(window_results),
        alerts=tuple(alerts),
        false_alarms=tuple(false_alarms),
        label_key=label_key,
    )


@dataclass(frozen=True, slots=True)
class Totals:
    files: int
    rows: int
    windows: int
    hits: int
    misses: int
    false_alarms: int
    alerts: int
    median_delay_minutes: float | None
    median_centre_delay_minutes: float | None


def totals(results: Sequence[FileResult]) -> Totals:
    return Totals(
        files=len(results),
        rows=sum(r.rows for r in results),
        windows=sum(len(r.windows) for r in results),
        hits=sum(r.hits for r in results),
        misses=sum(r.misses for r in results),
        false_alarms=sum(len(r.false_alarms) for r in results),
        alerts=sum(len(r.alerts) for r in results),
        median_delay_minutes=_median([d for r in results for d in r.delays_minutes]),
        median_centre_delay_minutes=_median([d for r in results for d in r.centre_delays_minutes]),
    )


# --- text: the table, report.md, report.json ----------------------------------


TABLE_HEADER = (
    "file",
    "windows",
    "hits",
    "misses",
    "false alarms",
    "median delay (min)",
    "from centre (min)",
)


def _minutes(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table_rows(results: Sequence[FileResult]) -> list[tuple[str, ...]]:
    """The summary table (header excluded): one row per file, then the totals."""
    rows: list[tuple[str, ...]] = [
        (
            r.name,
            str(len(r.windows)),
            str(r.hits),
            str(r.misses),
            str(len(r.false_alarms)),
            _minutes(r.median_delay_minutes),
            _minutes(r.median_centre_delay_minutes),
        )
        for r in results
    ]
    t = totals(results)
    rows.append(
        (
            "total",
            str(t.windows),
            str(t.hits),
            str(t.misses),
            str(t.false_alarms),
            _minutes(t.median_delay_minutes),
            _minutes(t.median_centre_delay_minutes),
        )
    )
    return rows


def render_table(results: Sequence[FileResult]) -> str:
    """The summary table as aligned plain text (for the terminal)."""
    rows = [TABLE_HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_duration(minutes: float) -> str:
    """``95`` → ``1h 35m``, ``-1500`` → ``-1d 1h``: for titles and prose."""
    total = round(abs(minutes))
    sign = "-" if minutes < 0 and total else ""
    days, rest = divmod(total, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {mins:02d}m"
    return f"{sign}{mins}m"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _when(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True, slots=True)
class Charts:
    """The chart files of one series, relative to the report folder."""

    overview: str | None = None
    windows: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReportParams:
    likelihood: float = DEFAULT_LIKELIHOOD
    resolve_after_seconds: float = DEFAULT_RESOLVE_AFTER_SECONDS
    labels: str = ""


def render_markdown(
    results: Sequence[FileResult], charts: Sequence[Charts], params: ReportParams
) -> str:
    """report.md: the summary table with links to the charts, then one section per file."""
    out = [
        "# Backtest report: volume detector against labelled windows",
        "",
        f"Alerts: buckets with likelihood >= {params.likelihood:g} (up or down, after the "
        f"detector's warm-up), one alert per direction until calm for "
        f"{format_duration(params.resolve_after_seconds / 60)}, as the daemon's lifecycle "
        f"groups them. Labels: `{params.labels}`. An alert inside a window hits it; a window "
        "without one is a miss; an alert outside every window is a false alarm. Delays run "
        "from the window's start, and from its centre (the labelled anomaly; negative means "
        "before it), to the first alert's bucket; the daemon sends it when that bucket "
        "closes.",
        "",
        "| " + " | ".join((*TABLE_HEADER, "chart")) + " |",
        "|" + "---|" + "---:|" * (len(TABLE_HEADER) - 1) + "---|",
    ]
    rows = table_rows(results)
    for row, chart in zip(rows, [*charts, Charts()], strict=True):
        link = f"[chart]({chart.overview})" if chart.overview else ""
        name = row[0] if row[0] == "total" else f"[{row[0]}](#{_anchor(row[0])})"
        cells = (f"**{name}**" if row[0] == "total" else name, *row[1:], link)
        out.append("| " + " | ".join(cells) + " |")
    for result, chart in zip(results, charts, strict=True):
        out += ["", f"## {result.name}", ""]
        out.append(
            f"{result.rows} rows of {format_scale(result.width_seconds)} buckets, "
            f"{_count(len(result.alerts), 'alert')}, "
            f"{_count(len(result.windows), 'labelled window')}"
            + (f" (`{result.label_key}`)" if result.label_key else " (none in the labels)")
            + "."
        )
        if chart.overview:
            out += ["", f"![{result.name}]({chart.overview})"]
        if result.windows:
            out += [
                "",
                "| # | window (UTC) | result | first alert | delay | from centre | zoom |",
                "|---:|---|---|---|---:|---:|---|",
            ]
            for k, w in enumerate(result.windows, start=1):
                zoom = chart.windows[k - 1] if k - 1 < len(chart.windows) else None
                out.append(
                    "| "
                    + " | ".join(
                        (
                            str(k),
                            f"{_when(w.window.start)} → {_when(w.window.end)}",
                            _window_verdict(w),
                            _alert_text(w.alert) if w.alert else "",
                            _delay_text(w.delay_minutes, w.delay_buckets),
                            _delay_text(w.centre_delay_minutes, w.centre_delay_buckets),
                            f"[zoom]({zoom})" if zoom else "",
                        )
                    )
                    + " |"
                )
        if result.false_alarms:
            out += ["", f"False alarms ({len(result.false_alarms)}):", ""]
            for alert in result.false_alarms[:MAX_LISTED_FALSE_ALARMS]:
                out.append(f"- {_alert_text(alert)}")
            if len(result.false_alarms) > MAX_LISTED_FALSE_ALARMS:
                rest = len(result.false_alarms) - MAX_LISTED_FALSE_ALARMS
                out.append(f"- ... and {rest} more (report.json lists them all)")
    return "\n".join(out) + "\n"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _window_verdict(w: WindowResult) -> str:
    notes = []
    if len(w.alerts) > 1:
        notes.append(f"+{len(w.alerts) - 1} more alert{'s' * (len(w.alerts) > 2)}")
    if w.carried is not None:
        notes.append(f"an alert from {_when(w.carried.start)} was still firing")
    return ("hit" if w.hit else "miss") + (f" ({'; '.join(notes)})" if notes else "")


def _alert_text(alert: Episode) -> str:
    arrow = "up" if alert.direction == "up" else "down"
    expected = format_count(alert.expected)
    return (
        f"{_when(alert.start)} {arrow}: {alert.observed:.0f} (expected {expected}, "
        f"band {alert.low:.0f}-{alert.high:.0f}), {alert.buckets} bucket"
        f"{'s' * (alert.buckets > 1)}"
    )


def _delay_text(minutes: float | None, buckets: int | None) -> str:
    if minutes is None or buckets is None:
        return ""
    return f"{format_duration(minutes)} ({buckets} buckets)"


def _episode_json(alert: Episode) -> dict[str, Any]:
    return {
        "start": alert.start.isoformat(),
        "end": alert.end.isoformat(),
        "direction": alert.direction,
        "first_row": alert.first,
        "last_row": alert.last,
        "buckets": alert.buckets,
        "observed": alert.observed,
        "expected": alert.expected,
        "band": [alert.low, alert.high],
        "likelihood": alert.likelihood,
        "surprise": alert.surprise,
        "peak_surprise": alert.peak_surprise,
    }


def report_json(
    results: Sequence[FileResult], charts: Sequence[Charts], params: ReportParams
) -> dict[str, Any]:
    """report.json: everything report.md says, and every alert."""
    t = totals(results)
    files = []
    for result, chart in zip(results, charts, strict=True):
        windows = []
        for k, w in enumerate(result.windows):
            windows.append(
                {
                    "start": w.window.start.isoformat(),
                    "end": w.window.end.isoformat(),
                    "centre": w.window.centre.isoformat(),
                    "hit": w.hit,
                    "alerts": len(w.alerts),
                    "first_alert": w.alert.start.isoformat() if w.alert else None,
                    "direction": w.alert.direction if w.alert else None,
                    "delay_buckets": w.delay_buckets,
                    "delay_minutes": w.delay_minutes,
                    "centre_delay_buckets": w.centre_delay_buckets,
                    "centre_delay_minutes": w.centre_delay_minutes,
                    "carried_alert": w.carried.start.isoformat() if w.carried else None,
                    "chart": chart.windows[k] if k < len(chart.windows) else None,
                }
            )
        inside = {id(a) for w in result.windows for a in w.alerts}
        files.append(
            {
                "file": result.name,
                "label_key": result.label_key,
                "rows": result.rows,
                "bucket_seconds": result.width_seconds,
                "windows": len(result.windows),
                "hits": result.hits,
                "misses": result.misses,
                "false_alarms": len(result.false_alarms),
                "alerts": len(result.alerts),
                "median_delay_minutes": result.median_delay_minutes,
                "median_centre_delay_minutes": result.median_centre_delay_minutes,
                "chart": chart.overview,
                "window_results": windows,
                "alert_list": [
                    {**_episode_json(a), "false_alarm": id(a) not in inside} for a in result.alerts
                ],
            }
        )
    return {
        "params": {
            "likelihood": params.likelihood,
            "resolve_after_seconds": params.resolve_after_seconds,
            "labels": params.labels,
        },
        "files": files,
        "totals": {
            "files": t.files,
            "rows": t.rows,
            "windows": t.windows,
            "hits": t.hits,
            "misses": t.misses,
            "false_alarms": t.false_alarms,
            "alerts": t.alerts,
            "median_delay_minutes": t.median_delay_minutes,
            "median_centre_delay_minutes": t.median_centre_delay_minutes,
        },
    }


# --- reading the inputs -------------------------------------------------------


def parse_time(text: str) -> datetime:
    """A NAB timestamp (``2015-03-03 04:37:53[.000000]``, ISO 8601); naive is UTC."""
    when = datetime.fromisoformat(text.strip())
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def read_series(path: Path) -> list[tuple[datetime, float]]:
    """The ``timestamp,value`` rows of a NAB CSV file, oldest first."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return series_rows(fh, str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: {exc}") from None


MAX_COUNT = 1e12
"""The most mentions a bucket of a series may hold (all of X posts about 6,000 a second):
beyond it, a value is no count (and the count models' arithmetic overflows near 1e305)."""


def series_rows(lines: Iterable[str], name: str) -> list[tuple[datetime, float]]:
    """The ``timestamp,value`` rows of NAB CSV text (``name`` in the messages), oldest
    first; ``ReportInputError`` names the line of the first one that is not."""
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader, [])]
    if header:  # a byte-order mark, as spreadsheets write one, is not part of the name
        header[0] = header[0].removeprefix("\ufeff")
    if "timestamp" not in header or "value" not in header:
        raise ReportInputError(f"{name}:1: expected a CSV header with 'timestamp' and 'value'")
    t_col, v_col = header.index("timestamp"), header.index("value")
    rows: list[tuple[datetime, float]] = []
    for line_no, row in enumerate(reader, start=2):
        if not row:
            continue
        try:
            when, value = parse_time(row[t_col]), float(row[v_col])
            when + timedelta(days=1)  # the detector's own arithmetic: within the calendar
        except (ValueError, IndexError, OverflowError):
            raise ReportInputError(
                f"{name}:{line_no}: expected 'timestamp,value', found {row!r}"
            ) from None
        if not math.isfinite(value):
            raise ReportInputError(f"{name}:{line_no}: value is not a number: {row!r}")
        if not 0.0 <= value <= MAX_COUNT:  # a negative one read as 0: a phantom drop
            raise ReportInputError(
                f"{name}:{line_no}: expected a count of mentions (0 to {MAX_COUNT:.0e}), "
                f"found {row[v_col]!r}"
            )
        if rows and when <= rows[-1][0]:
            raise ReportInputError(f"{name}:{line_no}: timestamps must increase")
        rows.append((when, value))
    return rows


def load_labels(path: Path) -> dict[str, list[Window]]:
    """NAB's windows file: ``{"<category>/<file>.csv": [[start, end], ...]}``."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportInputError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ReportInputError(f"{path}: expected an object of file -> [[start, end], ...]")
    labels: dict[str, list[Window]] = {}
    for key, bounds in data.items():
        if not isinstance(bounds, list):
            raise ReportInputError(f"{path}: {key}: expected a list of [start, end]")
        windows = []
        for pair in bounds:
            try:
                start, end = (parse_time(x) for x in pair)
            except (ValueError, TypeError, AttributeError):
                raise ReportInputError(
                    f"{path}: {key}: expected [start, end] timestamps, found {pair!r}"
                ) from None
            if end < start:
                raise ReportInputError(f"{path}: {key}: window ends before it starts: {pair!r}")
            try:  # the charts' arithmetic around it: within the calendar
                start - ZOOM_MARGIN, end + ZOOM_MARGIN
            except OverflowError:
                raise ReportInputError(
                    f"{path}: {key}: window too near the calendar's ends: {pair!r}"
                ) from None
            windows.append(Window(start, end))
        labels[str(key)] = sorted(windows, key=lambda w: w.start)
    return labels


def label_key_for(labels: Mapping[str, object], path: Path) -> str | None:
    """The labels' key for a data file: ``<folder>/<name>``, else a unique ``<name>``."""
    parts = path.resolve().parts
    if len(parts) >= 2:
        exact = f"{parts[-2]}/{parts[-1]}"
        if exact in labels:
            return exact
    same_name = [k for k in labels if PurePosixPath(k).name == path.name]
    return same_name[0] if len(same_name) == 1 else None


# --- the report ---------------------------------------------------------------


@dataclass(slots=True)
class Report:
    results: list[FileResult] = field(default_factory=list)
    charts: list[Charts] = field(default_factory=list)


def build_report(
    files: Sequence[Path],
    labels_path: Path,
    out_dir: Path,
    params: ReportParams | None = None,
    progress: Progress | None = None,
    charts: bool = True,
) -> Report:
    """Judge each file against its windows; write the charts, report.md and report.json."""
    from xwatch.backtest import nab_signals

    params = params or ReportParams(labels=str(labels_path))
    say = progress or (lambda _: None)
    labels = load_labels(labels_path)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, a folder not writable
        raise ReportInputError(f"{out_dir}: cannot make the report's folder: {exc}") from None
    report = Report()
    stems: set[str] = set()
    for n, path in enumerate(files, start=1):
        prefix = f"[{n}/{len(files)}] {path.name}"
        rows = read_series(path)
        if not rows:
            raise ReportInputError(f"{path}: no rows after the header")
        key = label_key_for(labels, path)
        if key is None:
            say(f"{prefix}: no windows in {labels_path} for this file; judging alerts only")
        for window in labels.get(key, []) if key else []:
            first, last = rows[0][0], rows[-1][0]
            if window.end < first or window.start > last:  # a time zone? a year?
                say(
                    f"{prefix}: warning: the window {window.start:%Y-%m-%d %H:%M} to "
                    f"{window.end:%Y-%m-%d %H:%M} lies outside the series ("
                    f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}): a miss no detector "
                    "can avoid"
                )
        say(f"{prefix}: {len(rows)} rows, running the volume detector")
        signals = nab_signals(rows)
        result = judge(
            path.name,
            signals,
            labels.get(key, []) if key else [],
            params.likelihood,
            timedelta(seconds=params.resolve_after_seconds),
            key,
        )
        say(
            f"{prefix}: {_count(len(result.alerts), 'alert')}, "
            f"{result.hits}/{len(result.windows)} windows hit, "
            f"{_count(len(result.false_alarms), 'false alarm')}"
        )
        chart = Charts()
        if charts:
            stem = _unique_stem(path.stem, stems)
            say(f"{prefix}: drawing {_count(1 + len(result.windows), 'chart')}")
            chart = write_charts(out_dir, stem, signals, result, params)
        report.results.append(result)
        report.charts.append(chart)
    (out_dir / "report.md").write_text(
        render_markdown(report.results, report.charts, params), "utf-8"
    )
    (out_dir / "report.json").write_text(
        json.dumps(report_json(report.results, report.charts, params), indent=1) + "\n", "utf-8"
    )
    say(f"wrote {out_dir / 'report.md'} and {out_dir / 'report.json'}")
    return report


def _unique_stem(stem: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "series"
    candidate, k = base, 2
    while candidate in taken:
        candidate, k = f"{base}-{k}", k + 1
    taken.add(candidate)
    return candidate


# --- charts -------------------------------------------------------------------

COLOURS = {
    "series": "#1f3b73",
    "expected": "#d35400",
    "band": "#f0a830",
    "window": "#2ca02c",
    "warmup": "#9e9e9e",
    "up": "#d62728",
    "down": "#7b3fbf",
    "centre": "#111111",
}


def write_charts(
    out_dir: Path, stem: str, signals: Sequence[Signal], result: FileResult, params: ReportParams
) -> Charts:
    """The overview chart of a series and one zoom (±1 day) per labelled window."""
    overview = f"{stem}.png"
    plot_overview(out_dir / overview, signals, result, params)
    zooms = []
    for k in range(len(result.windows)):
        name = f"{stem}-window-{k + 1}.png"
        plot_window(out_dir / name, signals, result, k, params)
        zooms.append(name)
    return Charts(overview, tuple(zooms))


@dataclass(frozen=True, slots=True)
class _Series:
    """Plot-ready columns of a slice of the signals (no band while warming up)."""

    x: FloatArray  # matplotlib date numbers
    observed: FloatArray
    expected: FloatArray
    low: FloatArray
    high: FloatArray


def _dates(times: Sequence[datetime]) -> FloatArray:
    """Matplotlib's date numbers (``matplotlib.dates`` has no type hints)."""
    import matplotlib.dates as mdates
    import numpy as np

    return np.asarray(mdates.date2num(list(times)), dtype=np.float64)  # type: ignore[no-untyped-call]


def _date(when: datetime) -> float:
    return float(_dates([when])[0])


def _columns(signals: Sequence[Signal]) -> _Series:
    import numpy as np

    nan = float("nan")
    return _Series(
        x=_dates([s.start for s in signals]),
        observed=np.array([s.observed for s in signals], dtype=np.float64),
        expected=np.array([nan if s.warming_up else s.expected for s in signals], np.float64),
        low=np.array([nan if s.warming_up else s.low for s in signals], dtype=np.float64),
        high=np.array([nan if s.warming_up else s.high for s in signals], dtype=np.float64),
    )


def _new_axes() -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=CHART_SIZE_INCHES, dpi=CHART_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: no pyplot, no display, no global state
    return fig, fig.add_subplot()


def _draw_series(ax: Axes, cols: _Series, width_seconds: int, lw: float) -> None:
    """The band underneath, the counts over it, its upper edge and the expected value on top."""
    import numpy as np

    ax.fill_between(
        cols.x,
        cols.low,
        cols.high,
        where=~np.isnan(cols.high),
        step="post",
        color=COLOURS["band"],
        alpha=0.3,
        lw=0,
        zorder=1.5,
        label="expected band (low..high)",
    )
    ax.step(
        cols.x,
        cols.observed,
        where="post",
        color=COLOURS["series"],
        lw=lw,
        zorder=2,
        label=f"mentions per {format_scale(width_seconds)}",
    )
    ax.step(cols.x, cols.high, where="post", color=COLOURS["band"], lw=0.9, zorder=3)
    ax.step(
        cols.x,
        cols.expected,
        where="post",
        color=COLOURS["expected"],
        lw=lw + 0.4,
        zorder=4,
        label="expected",
    )


def _y_scale(ax: Axes, observed: FloatArray, spiky: float) -> str:
    """Linear, unless spikes dwarf the usual values (the top is ``spiky`` times the 95th
    percentile or more), so that the band and the onsets stay readable: then a log scale
    for busy series, and a square-root scale (which keeps zero, and on which count noise
    has about the same width at every level) for sparse ones."""
    import numpy as np

    ax.set_ylim(bottom=0)
    if len(observed) == 0:
        return ""
    top, typical = float(np.max(observed)), float(np.percentile(observed, 95))
    if top < spiky * max(typical, 1.0):
        return ""
    if float(np.median(observed)) >= 10:
        ax.set_yscale("symlog", linthresh=max(1.0, float(np.percentile(observed, 10))))
        ax.set_ylim(bottom=0, top=top * 1.6)
        return " (log scale)"
    ax.set_yscale("function", functions=(_sqrt, np.square))
    ax.set_ylim(bottom=0, top=top * 1.05)
    return " (square-root scale)"


def _sqrt(values: FloatArray) -> FloatArray:
    import numpy as np

    return np.sqrt(np.maximum(values, 0.0))


def _draw_windows(ax: Axes, windows: Sequence[WindowResult], numbers: Sequence[int]) -> None:
    from matplotlib.transforms import blended_transform_factory

    on_top = blended_transform_factory(ax.transData, ax.transAxes)
    for k, (w, number) in enumerate(zip(windows, numbers, strict=True)):
        ax.axvspan(
            _date(w.window.start),
            _date(w.window.end),
            color=COLOURS["window"],
            alpha=0.14,
            lw=0,
            zorder=1,
            label="labelled window" if k == 0 else None,
        )
        ax.axvline(
            _date(w.window.centre),
            color=COLOURS["centre"],
            ls=(0, (4, 3)),
            lw=0.9,
            zorder=4,
            label="labelled anomaly (window centre)" if k == 0 else None,
        )
        if len(windows) > 1:
            ax.text(
                _date(w.window.centre),
                0.985,
                f" {number} ",
                transform=on_top,
                ha="center",
                va="top",
                fontsize=9,
                color=COLOURS["window"],
                fontweight="bold",
                zorder=6,
            )


def _draw_alerts(
    ax: Axes, alerts: Sequence[Episode], false_alarms: Sequence[Episode], size: float
) -> None:
    """One marker per alert (its first bucket): up ▲ red, down ▼ purple; hollow if false."""
    false = {id(a) for a in false_alarms}
    for direction, marker in (("up", "^"), ("down", "v")):
        colour = COLOURS[direction]
        for is_false in (False, True):
            chosen = [
                a for a in alerts if a.direction == direction and (id(a) in false) == is_false
            ]
            if not chosen:
                continue
            ax.scatter(
                _dates([a.start for a in chosen]),
                [a.observed for a in chosen],
                marker=marker,
                s=size,
                facecolors="white" if is_false else colour,
                edgecolors=colour,
                linewidths=1.4,
                zorder=6,
                label=f"alert {direction}, " + ("false alarm" if is_false else "in a window"),
            )


def _draw_alerting_buckets(ax: Axes, signals: Sequence[Signal], likelihood: float) -> None:
    """Every bucket over the threshold, small: the buckets that kept an alert firing."""
    firing = [s for s in signals if is_alerting(s, likelihood)]
    if firing:
        ax.scatter(
            _dates([s.start for s in firing]),
            [s.observed for s in firing],
            marker="o",
            s=12,
            color=[COLOURS[s.direction] for s in firing],
            zorder=5,
            label="bucket over the threshold",
        )


def _date_axis(ax: Axes, first: datetime, last: datetime) -> None:
    import matplotlib.dates as mdates

    ax.set_xlim(_date(first), _date(last))
    locator = mdates.AutoDateLocator(tz=UTC, minticks=6, maxticks=16)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    )
    ax.set_xlabel("time (UTC)")
    ax.grid(True, color="#e3e3e3", lw=0.6)
    ax.set_axisbelow(True)


def _warmup_span(ax: Axes, signals: Sequence[Signal]) -> None:
    warm = [s for s in signals if s.warming_up]
    if warm:
        ax.axvspan(
            _date(warm[0].start),
            _date(warm[-1].end),
            color=COLOURS["warmup"],
            alpha=0.2,
            lw=0,
            zorder=1,
            label="detector warming up (no alerts)",
        )


def _finish(fig: Figure, ax: Axes, title: str, path: Path) -> None:
    fig.suptitle(title, fontsize=13)
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 5), fontsize=9.5)
    fig.savefig(path, dpi=CHART_DPI, format="png")


def plot_overview(
    path: Path, signals: Sequence[Signal], result: FileResult, params: ReportParams
) -> None:
    """The whole series: counts, expected value and band, windows and alerts."""
    fig, ax = _new_axes()
    cols = _columns(signals)
    _warmup_span(ax, signals)
    _draw_windows(ax, result.windows, range(1, len(result.windows) + 1))
    _draw_series(ax, cols, result.width_seconds, lw=0.5)
    _draw_alerts(ax, result.alerts, result.false_alarms, size=55)
    scale = _y_scale(ax, cols.observed, spiky=8.0)
    ax.set_ylabel(f"mentions per {format_scale(result.width_seconds)}{scale}")
    if signals:
        _date_axis(ax, signals[0].start, signals[-1].end)
    title = (
        f"{result.name}: {_count(len(result.windows), 'labelled window')}, "
        f"{result.hits} hit, {result.misses} missed; {_count(len(result.alerts), 'alert')}, "
        f"{_count(len(result.false_alarms), 'false alarm')} "
        f"(likelihood >= {params.likelihood:g}, {format_scale(result.width_seconds)} buckets)"
    )
    _finish(fig, ax, title, path)


def plot_window(
    path: Path, signals: Sequence[Signal], result: FileResult, index: int, params: ReportParams
) -> None:
    """One labelled window ±1 day: the onset, the band and when the alert came."""
    w = result.windows[index]
    start, end = w.window.start - ZOOM_MARGIN, w.window.end + ZOOM_MARGIN
    times = [s.start for s in signals]
    part = signals[bisect.bisect_left(times, start) : bisect.bisect_right(times, end)]
    fig, ax = _new_axes()
    cols = _columns(part)
    _warmup_span(ax, part)
    # every window in sight (the alerts in them are drawn as in a window: an alert in a
    # neighbouring window showed as a hit on unshaded ground)
    near = [
        (other, number)
        for number, other in enumerate(result.windows, start=1)
        if other.window.end >= start and other.window.start <= end
    ]
    _draw_windows(ax, [other for other, _ in near], [number for _, number in near])
    _draw_series(ax, cols, result.width_seconds, lw=0.9)
    _draw_alerting_buckets(ax, part, params.likelihood)
    shown = [a for a in result.alerts if start <= a.start <= end]
    _draw_alerts(ax, shown, result.false_alarms, size=120)
    scale = _y_scale(ax, cols.observed, spiky=20.0)
    ax.set_ylabel(f"mentions per {format_scale(result.width_seconds)}{scale}")
    _date_axis(ax, start, end)
    if w.alert is not None and w.delay_minutes is not None and w.centre_delay_minutes is not None:
        centre = w.centre_delay_minutes
        verdict = (
            f"hit: first alert {_when(w.alert.start)} ({w.alert.direction}), "
            f"{format_duration(w.delay_minutes)} after the window opened, "
            f"{format_duration(abs(centre))} {'before' if centre < 0 else 'after'} "
            "the labelled anomaly"
        )
        ax.annotate(
            "first alert",
            (_date(w.alert.start), w.alert.observed),
            xytext=(0, 16),
            textcoords="offset points",
            ha="center",
            fontsize=9,
            color=COLOURS[w.alert.direction],
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
            zorder=7,
        )
    elif w.carried is not None:
        verdict = f"missed: the alert from {_when(w.carried.start)} was still firing"
    else:
        verdict = "missed: no alert inside the window"
    title = (
        f"{result.name}, window {index + 1} of {len(result.windows)} "
        f"({_when(w.window.start)} to {_when(w.window.end)} UTC)\n{verdict}"
    )
    _finish(fig, ax, title, path)
