"""Alerts as plain text that explains itself: what fired, the numbers, the posts, the playbook."""

from __future__ import annotations

import re

from xwatch.model import (
    Alert,
    AlertEvent,
    EventKind,
    Measure,
    Signal,
    format_count,
    format_duration,
    format_scale,
)

# control and bidi characters, and lone surrogates (text no encoder writes: the store,
# Slack and the logs would refuse it)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
MEASURE_NAMES = {
    Measure.VOLUME: "volume",
    Measure.NEGATIVE_SHARE: "negative share",
    Measure.NEGATIVE_VOLUME: "negative volume",
    Measure.TERM_VOLUME: "term volume",
    Measure.MENTION: "single post",
}


def clean(text: str, limit: int = 200) -> str:
    """One line of untrusted text, safe for a terminal: no control or bidi characters, no
    lone surrogates."""
    text = _CONTROL.sub(" ", text.replace("\n", " ").replace("\r", " "))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(signal: Signal) -> str:
    """``negative share 62% (usual 9%, band 4%-16%)`` or ``volume 143 (expected 31, ...)``,
    and the run of buckets behind it when no single bucket explains it (``sustained``)."""
    name = MEASURE_NAMES[signal.measure]
    if signal.measure is Measure.MENTION:
        return f"{name} matched at {signal.end:%Y-%m-%d %H:%M:%S} UTC"
    if signal.measure is Measure.NEGATIVE_SHARE:
        text = (
            f"{name} {signal.observed:.0%} (usual {signal.expected:.0%}, "
            f"band {signal.low:.0%}-{signal.high:.0%})"
        )
    elif signal.so_far:
        elapsed = round((signal.end - signal.start).total_seconds())
        text = (
            f"{name} {signal.observed:.0f} in the first {format_duration(elapsed)} of its "
            f"{format_scale(signal.series.scale_seconds)} bucket (expected "
            f"{format_count(signal.expected)} in all of it, band {signal.low:.0f}-"
            f"{signal.high:.0f})"
        )
    else:
        text = (
            f"{name} {signal.observed:.0f} (expected {format_count(signal.expected)}, "
            f"band {signal.low:.0f}-{signal.high:.0f})"
        )
    run = sustained(signal)
    return f"{text}; {run}" if run else text


def sustained(signal: Signal) -> str:
    """``sustained since 13:05 UTC (6 buckets of 5m): 98 against 51.2 expected``: the
    detector's evidence over consecutive buckets, when that is what made the likelihood
    ("" when the bucket alone did)."""
    run = signal.run
    if run is None or run.buckets < 2:
        return ""
    width = format_scale(signal.series.scale_seconds)
    since = f"sustained since {run.start:%H:%M} UTC ({run.buckets} buckets of {width})"
    if signal.measure is Measure.NEGATIVE_SHARE:
        return (
            f"{since}: {run.observed:.0f} of {run.posts} posts negative "
            f"against {format_count(run.expected)} expected"
        )
    return f"{since}: {run.observed:.0f} against {format_count(run.expected)} expected"


def headline(alert: Alert) -> str:
    if alert.signal.measure is Measure.MENTION:
        return f"[{alert.severity.value.upper()}] {alert.series.brand}: {alert.title} (single post)"
    if alert.term:
        return (
            f"[{alert.severity.value.upper()}] {alert.series.brand}: {alert.title} "
            f"(new term {clean(alert.term, 40)!r})"
        )
    arrow = "up" if alert.signal.direction == "up" else "down"
    return (
        f"[{alert.severity.value.upper()}] {alert.series.brand}: {alert.title} "
        f"({MEASURE_NAMES[alert.signal.measure]} {arrow})"
    )


def render_text(event: AlertEvent) -> str:
    alert = event.alert
    if event.kind is EventKind.RESOLVED:
        return (
            f"RESOLVED {headline(alert)}\n"
            f"  calm since  {alert.signal.end:%Y-%m-%d %H:%M} UTC "
            f"(resolved at {event.at:%Y-%m-%d %H:%M} UTC)\n"
            f"  rule        {alert.rule_id}\n"
        )
    signal = alert.signal
    if signal.measure is Measure.MENTION:
        when = f"{signal.end:%Y-%m-%d %H:%M:%S} UTC (one post)"
    elif signal.so_far:
        when = (
            f"{signal.start:%Y-%m-%d %H:%M}-{signal.end:%H:%M:%S} UTC (a "
            f"{format_scale(alert.series.scale_seconds)} bucket still open: its posts so far)"
        )
    else:
        when = (
            f"{signal.start:%Y-%m-%d %H:%M}-{signal.end:%H:%M} UTC "
            f"({format_scale(alert.series.scale_seconds)} buckets)"
        )
    lines = [
        f"FIRING {headline(alert)}",
        f"  when        {when}",
        f"  signal      {describe(signal)}, likelihood {signal.likelihood:.5f}",
    ]
    for other in alert.context:
        if other.measure != signal.measure:
            lines.append(f"  context     {describe(other)}")
    topic = f" (posts matching rule {alert.series.topic!r})" if alert.series.topic else ""
    lines.append(
        f"  posts       {alert.bucket.count} in the bucket{' so far' if signal.so_far else ''}"
        f"{topic}, {alert.bucket.negative} negative"
    )
    for mention in alert.bucket.samples:
        label = mention.sentiment.label if mention.sentiment else "?"
        who = clean(mention.author.handle, 40) or "?"
        lines.append(
            f"    - @{who} ({mention.author.followers:,} followers, {label}): "
            f'"{clean(mention.text)}"'
        )
        if mention.url:
            lines.append(f"      {clean(mention.url, 120)}")
    lines.append(f"  playbook    {alert.playbook.title}: {alert.playbook.url}")
    lines.append(f"  rule        {alert.rule_id}")
    return "\n".join(lines) + "\n"
