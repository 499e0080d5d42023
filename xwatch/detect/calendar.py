"""The calendar a series' rhythm is learned in: its brand's time zone.

The hour of the day and the day of the week that the detectors' factors belong to are
those of the brand's audience. Learned in UTC, a daylight-saving change moved the whole
rhythm an hour (a busy brand: 5-17 false volume episodes per scale in the week of the
change), and a weekend quieter on the local calendar began and ended at the wrong
hours every week (a UTC-5 brand's Friday evening judged as a Saturday).
"""

from __future__ import annotations

import functools
from datetime import date, datetime
from zoneinfo import ZoneInfo

UTC_ZONE = "UTC"
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (checked where a config names it)."""
    return ZoneInfo(name)


def local(at: datetime, timezone: str) -> datetime:
    """``at`` (aware) as the wall-clock time of ``timezone``."""
    return at if timezone == UTC_ZONE else at.astimezone(zone(timezone))


def day_number(at: datetime) -> int:
    """The date of ``at`` (a local time, from ``local``), as days since 1970-01-01."""
    return at.toordinal() - _EPOCH_ORDINAL
