"""Detector state as plain JSON data, and back: what a checkpoint holds.

A detector's state is its dataclass fields, nothing else. ``to_state`` walks them
with ``dataclasses.fields`` (recursively into nested dataclasses such as a frozen
params record) and keeps only JSON values: None, bool, int, float, str, lists,
dicts with string keys, enums by value. ``from_state`` rebuilds the detector from
the class's own type hints, so it only ever makes the registered detector classes
and the types their fields declare: nothing in a checkpoint names code to run
(never pickle). Frozen records come back shared: one instance of each (a series'
params), however many checkpoints hold it.

Every state carries ``STATE_VERSION`` and a fingerprint of the class's field
names. A state is refused with a ``CheckpointError`` that says what was expected
and what was found when its version differs (bump ``STATE_VERSION`` whenever a
detector's state changes meaning), when its class is not registered, or when the
fields differ; it is never half-loaded. The caller starts that series fresh.

The values are checked too (``restore_series``, ``restore_term_model``), since a store
can be damaged or edited by hand: every number finite, counts and levels not below zero,
every list of a fixed length (a day's 24 hours, a week's 7 days) that length or emptied,
the others bounded, the width the series' own; then copies of the restored detectors
must judge and learn a bucket without an error and give finite figures. A damaged
state is refused then, naming what is wrong, rather than stopping the daemon at its
first bucket (again at each start) or silencing the series for good (a NaN level never
alerts).

Unless an earlier version can be upgraded: ``UPGRADES`` holds, for a version, the
fingerprints its classes had and how to turn their fields into the next version's
(a field added with the value that means what the old state meant). An upgrade that
keeps what a series learned beats a month of relearning it; a state whose version has
no upgrade, or whose fingerprint is not the one that version had, is refused as above.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Protocol, TypeVar

from xwatch.detect import Detector
from xwatch.detect.share import NegativeShareDetector, ShareParams
from xwatch.detect.terms import TermModel
from xwatch.detect.volume import DAY, CountDetector, CountParams
from xwatch.errors import XwatchError
from xwatch.model import Bucket, Measure, SeriesKey

STATE_VERSION = 12  # bump whenever a detector's state changes meaning

JsonValue = None | bool | int | float | str | list[Any] | dict[str, Any]


class CheckpointError(XwatchError):
    """A detector state that cannot be saved, or is refused on load."""


DETECTORS: dict[str, type[Any]] = {}  # class name -> detector class
_SHARED: dict[Any, Any] = {}  # frozen records (a detector's params) -> the one kept
_SHARED_MAX = 256  # distinct records kept at most (a config has a handful)

D = TypeVar("D", bound=type[Any])


def _is_frozen_record(obj: object) -> bool:
    """Whether ``obj`` is an instance of a frozen dataclass."""
    params = getattr(type(obj), "__dataclass_params__", None)
    return params is not None and bool(params.frozen)


def register(cls: D) -> D:
    """Make a dataclass detector checkpointable (usable as a class decorator)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass: its state cannot be checkpointed")
    DETECTORS[cls.__name__] = cls
    for f in dataclasses.fields(cls):  # a restored default params is the fresh detectors' one
        if _is_frozen_record(f.default):
            _SHARED.setdefault(f.default, f.default)
    return cls


class Stateful(Protocol):
    """What a checkpoint can hold: a registered dataclass that says what it measures
    (a detector, or a new-term model: ``term_volume``)."""

    @property
    def measure(self) -> Measure: ...


register(CountDetector)
register(NegativeShareDetector)
register(TermModel)  # a brand's new terms at one scale (not a Detector: its tracker judges)


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    """One detector's saved state, keyed by its series and measure."""

    series: SeriesKey
    measure: str  # a Measure's value
    detector: str  # class name
    version: int  # STATE_VERSION when saved
    state: dict[str, Any]  # what ``to_state`` returned
    saved_at: datetime | None = None  # set by the store

    @classmethod
    def of(cls, series: SeriesKey, detector: Stateful) -> Checkpoint:
        return cls(
            series,
            detector.measure.value,
            type(detector).__name__,
            STATE_VERSION,
            to_state(detector),
        )


# -- saving ------------------------------------------------------------------------


def to_state(detector: Stateful) -> dict[str, Any]:
    """The detector's state as JSON data: class, version, fingerprint and fields."""
    cls = type(detector)
    if DETECTORS.get(cls.__name__) is not cls:
        raise CheckpointError(
            f"{cls.__name__} is not a registered detector class "
            f"(registered: {', '.join(sorted(DETECTORS))})"
        )
    return {
        "detector": cls.__name__,
        "version": STATE_VERSION,
        "fingerprint": fingerprint(cls),
        "fields": _encode_fields(detector, cls.__name__),
    }


def _encode_fields(obj: object, where: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in _names(type(obj)):
        value = getattr(obj, name)
        # most fields are plain numbers: kept as they are, without a path to name them
        fields[name] = value if type(value) in _PLAIN else _encode(value, f"{where}.{name}")
    return fields


_PLAIN = frozenset({type(None), bool, int, float, str})  # exact types: JSON as they are

_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _names(cls: type[Any]) -> tuple[str, ...]:
    """The dataclass's field names, in order (``dataclasses.fields`` is slow to ask)."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _encode(value: object, where: str) -> JsonValue:
    if isinstance(value, Enum):  # first: a StrEnum is a str, an IntEnum an int
        return _encode(value.value, where)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_fields(value, where)
    if isinstance(value, list | tuple):
        if _PLAIN.issuperset(map(type, value)):  # the common case, in C
            return list(value)
        return [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _encode(item, f"{where}[{key!r}]") for key, item in value.items()}
    raise CheckpointError(f"{where}: cannot checkpoint a {type(value).__name__}")


# -- the fingerprint -----------------------------------------------------------------


def field_names(cls: type[Any]) -> list[str]:
    """The class's field names, nested dataclass fields as ``params.x``, sorted."""
    names: list[str] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        names.append(f.name)
        for nested in _dataclasses_in(hints[f.name]):
            names.extend(f"{f.name}.{name}" for name in field_names(nested))
    return sorted(names)


_FINGERPRINTS: dict[type[Any], str] = {}


def fingerprint(cls: type[Any]) -> str:
    """A short hash of ``field_names(cls)``: states with other fields have another one."""
    value = _FINGERPRINTS.get(cls)
    if value is None:
        value = hashlib.sha256(",".join(field_names(cls)).encode()).hexdigest()[:16]
        _FINGERPRINTS[cls] = value
    return value


def _found_names(cls: type[Any], data: Mapping[str, Any]) -> list[str]:
    """The field names a saved state has, read the way ``field_names`` reads the class."""
    names: list[str] = []
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for name, value in data.items():
        names.append(name)
        nested = _dataclasses_in(hints[name]) if name in known else []
        if len(nested) == 1 and isinstance(value, Mapping):
            names.extend(f"{name}.{inner}" for inner in _found_names(nested[0], value))
        elif len(nested) == 1 and value is None:  # an empty optional record: as declared
            names.extend(f"{name}.{inner}" for inner in field_names(nested[0]))
    return sorted(names)


def _dataclasses_in(hint: Any) -> list[type[Any]]:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return [hint]
    return [cls for arg in typing.get_args(hint) for cls in _dataclasses_in(arg)]


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


# -- upgrading -----------------------------------------------------------------------


Fields = dict[str, Any]


def _fading_onset_tails(fields: Fields) -> Fields:
    """8 -> 9: the count detector's calibration fades (``OnsetTail.weight``, and
    ``CountParams.calibration_halflife_seconds``: the default). A version 8 tail is a
    version 9 one whose weight is 1 (nothing faded yet); it fades from now on."""
    upgraded = dict(fields)
    for name in ("onsets", "bucket_tails"):
        if isinstance(fields.get(name), Mapping):
            upgraded[name] = dict(fields[name]) | {"weight": 1.0}
    if isinstance(fields.get("params"), Mapping):
        halflife = CountParams().calibration_halflife_seconds
        upgraded["params"] = dict(fields["params"]) | {"calibration_halflife_seconds": halflife}
    return upgraded


def _hour_evidence(fields: Fields) -> Fields:
    """9 -> 10: an hour's factor is the ratio of its posts to the posts it would have had
    at a factor of 1 (``hour_posts``, ``hour_expected``), shrunk as Poisson rates are; the
    day's mean information is worked out when it is used, and an hour has been seen once
    it has expected posts (``day_information`` and ``daily_seen`` are gone); a CUSUM holds
    a change near its cap (``CountParams.adopt_likelihood``, the default), not only at it.

    A version 9 factor becomes a ratio resting on the evidence it rested on: its hour's
    buckets within the factor's memory (as many as the new sums hold: ``1 / alpha``), at
    the level and the dispersion saved, weighted as the new sums weigh a bucket. The
    spread and the shrunk factors are worked out again at the next bucket learned
    (``last_hour`` -1: as at a new hour). Fields of the wrong type are left for the
    checkpoint's checks to refuse."""
    upgraded = dict(fields)
    upgraded.pop("day_information", None)
    upgraded.pop("daily_seen", None)  # an hour is seen once it has expected posts
    upgraded["last_hour"] = -1
    if isinstance(fields.get("params"), Mapping):  # the default: a change is held near the cap
        adopt_likelihood = CountParams().adopt_likelihood
        upgraded["params"] = dict(fields["params"]) | {"adopt_likelihood": adopt_likelihood}
    posts, expected = [0.0] * 24, [0.0] * 24
    level, dispersion = _number(fields.get("level")), _number(fields.get("dispersion"))
    width, params = _number(fields.get("width_seconds")), fields.get("params")
    halflife = _number(params.get("daily_halflife_days")) if isinstance(params, Mapping) else None
    daily = _numbers(fields.get("daily"))
    seen = _numbers(fields.get("daily_seen"))
    if (
        level is not None
        and dispersion is not None
        and width is not None
        and 0.0 < width < DAY
        and halflife is not None
        and len(daily) == len(seen) == 24
    ):
        steps = DAY / width / 24.0 * halflife
        memory = 1.0 / (1.0 - 0.5 ** (1.0 / max(steps, 1.0)))  # an EWMA's sum of weights
        for hour, (factor, buckets) in enumerate(zip(daily, seen, strict=True)):
            weight = 1.0 / (1.0 + dispersion * level * factor)
            expected[hour] = min(buckets, memory) * level * weight
            posts[hour] = factor * expected[hour]
    upgraded["hour_posts"], upgraded["hour_expected"] = posts, expected
    return upgraded


def _utc_calendar(fields: Fields) -> Fields:
    """10 -> 11: the rhythm is learned in the brand's time zone (``timezone``); a version
    10 state learned it in UTC."""
    return dict(fields) | {"timezone": "UTC"}


def _share_adoption(fields: Fields) -> Fields:
    """11 -> 12: the share detector adopts a change that lasts (``ShareParams``'
    ``adopt_after_seconds``, ``adopt_likelihood`` and ``shift_memory_seconds``: the
    defaults; a CUSUM for a fall, each CUSUM's change and hold, and the share before an
    adopted change: none yet), and its hours are against the usual
    share of their time (``hour_expected``): a version 11 hour's expected negatives are
    its posts times the share of all hours, which gives the factors it had."""
    upgraded = dict(fields)
    params = fields.get("params")
    if isinstance(params, Mapping):
        fresh = ShareParams()
        upgraded["params"] = dict(params) | {
            "adopt_after_seconds": fresh.adopt_after_seconds,
            "adopt_likelihood": fresh.adopt_likelihood,
            "shift_memory_seconds": fresh.shift_memory_seconds,
        }
    upgraded |= {
        "cusum_down": 0.0,
        "rise_negatives": 0.0,
        "rise_posts": 0.0,
        "held_up": 0,
        "fall_negatives": 0.0,
        "fall_posts": 0.0,
        "held_down": 0,
        "shift_from": 0.0,
        "shift_at": 0.0,
    }
    negatives, posts = _numbers(fields.get("hour_negatives")), _numbers(fields.get("hour_posts"))
    total_posts = math.fsum(posts)
    share = math.fsum(negatives) / total_posts if total_posts > 0.0 else 0.0
    upgraded["hour_expected"] = [share * n for n in posts]
    return upgraded


def _number(value: object) -> float | None:
    """``value`` if it is a number (not a bool), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _numbers(value: object) -> list[float]:
    """``value`` if it is a list of numbers, else an empty list."""
    if not isinstance(value, list):
        return []
    numbers = [_number(item) for item in value]
    return [n for n in numbers if n is not None] if None not in numbers else []


def _unchanged(fields: Fields) -> Fields:
    return dict(fields)


@dataclasses.dataclass(frozen=True, slots=True)
class Upgrade:
    """From one state version to the next: each class's fingerprint in the old version,
    and what turns its fields into the next version's."""

    fingerprints: Mapping[str, str]
    fields: Mapping[str, Callable[[Fields], Fields]]


UPGRADES: dict[int, Upgrade] = {
    8: Upgrade(
        fingerprints={
            "CountDetector": "18505488396d58c9",
            "NegativeShareDetector": "0c3297ff08fb182d",
            "TermModel": "a89c6275c0bdf88b",
        },
        fields={
            "CountDetector": _fading_onset_tails,
            "NegativeShareDetector": _unchanged,
            "TermModel": _unchanged,
        },
    ),
    9: Upgrade(
        fingerprints={
            "CountDetector": "7b277056d6058acd",
            "NegativeShareDetector": "0c3297ff08fb182d",
            "TermModel": "a89c6275c0bdf88b",
        },
        fields={
            "CountDetector": _hour_evidence,
            "NegativeShareDetector": _unchanged,
            "TermModel": _unchanged,
        },
    ),
    10: Upgrade(
        fingerprints={
            "CountDetector": "c2b5e3e520a3b4b1",
            "NegativeShareDetector": "0c3297ff08fb182d",
            "TermModel": "a89c6275c0bdf88b",
        },
        fields={
            "CountDetector": _utc_calendar,
            "NegativeShareDetector": _utc_calendar,
            "TermModel": _unchanged,
        },
    ),
    11: Upgrade(
        fingerprints={
            "CountDetector": "77c1ae68a952cde7",
            "NegativeShareDetector": "45065dd745bfb416",
            "TermModel": "a89c6275c0bdf88b",
        },
        fields={
            "CountDetector": _unchanged,
            "NegativeShareDetector": _share_adoption,
            "TermModel": _unchanged,
        },
    ),
}


def _upgraded(name: str, version: int, found: str, fields: Fields) -> tuple[str, Fields]:
    """The fingerprint and fields of a state of an older ``version`` (in ``UPGRADES``)
    brought to ``STATE_VERSION``; ``CheckpointError`` if its fields are not the ones that
    version had."""
    while version != STATE_VERSION:
        upgrade = UPGRADES[version]
        if upgrade.fingerprints.get(name) != found:
            raise CheckpointError(
                f"{name} state version {version}: its fields are not the ones version "
                f"{version} had (fingerprint {found!r}, expected "
                f"{upgrade.fingerprints.get(name)!r}), so it cannot be upgraded"
            )
        fields = upgrade.fields[name](fields)
        version += 1
        following = UPGRADES.get(version)  # None at STATE_VERSION: the class's own
        found = following.fingerprints.get(name, "") if following else fingerprint(DETECTORS[name])
    return found, fields


def _upgradable() -> str:
    """What ``UPGRADES`` can bring to this version, as a refusal says it."""
    if not UPGRADES:
        return ""
    first, last = min(UPGRADES), max(UPGRADES)
    return f" and upgrades version {first}" if first == last else f" and upgrades {first}-{last}"


# -- loading -------------------------------------------------------------------------


def from_state(data: object) -> Detector:
    """Rebuild a detector from ``to_state``'s output, or raise ``CheckpointError``."""
    if not isinstance(data, Mapping) or not {"detector", "version", "fingerprint", "fields"} <= set(
        data
    ):
        raise CheckpointError(
            "not a detector state: expected an object with detector, version, fingerprint "
            f"and fields, found {_show(data)}"
        )
    name = data["detector"]
    cls = DETECTORS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CheckpointError(
            f"unknown detector class {name!r} (this xwatch knows: {', '.join(sorted(DETECTORS))})"
        )
    fields, found = data["fields"], data["fingerprint"]
    if not isinstance(fields, Mapping):
        raise CheckpointError(f"{name}: fields must be an object, found {_show(fields)}")
    version = data["version"]
    if _is_int(version) and version in UPGRADES:
        found, fields = _upgraded(name, version, found, dict(fields))
    elif not _is_int(version) or version != STATE_VERSION:
        raise CheckpointError(
            f"{name} state version {version!r}: this xwatch reads version "
            f"{STATE_VERSION}{_upgradable()} (the detector's state changed meaning)"
        )
    if found != fingerprint(cls):
        raise CheckpointError(f"{name} fields have changed: {_fields_diff(cls, fields)}")
    detector: Detector = _build(cls, fields, name)
    return detector


def _fields_diff(cls: type[Any], fields: Mapping[str, Any]) -> str:
    expected, found = field_names(cls), _found_names(cls, fields)
    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected]
    if not missing and not unexpected:
        return f"the fingerprint {fingerprint(cls)} differs, the field names do not"
    parts = []
    if missing:
        parts.append(f"expected {', '.join(missing)} (not in the checkpoint)")
    if unexpected:
        parts.append(f"found {', '.join(unexpected)} (unknown to this xwatch)")
    return "; ".join(parts)


def _build(cls: type[Any], data: Mapping[str, Any], where: str) -> Any:
    """A dataclass with exactly the saved fields (``__post_init__`` changes nothing)."""
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{where}: expected an object, found {_show(data)}")
    declared = dataclasses.fields(cls)
    names = {f.name for f in declared}
    missing = [f.name for f in declared if f.name not in data]
    unexpected = [key for key in data if key not in names]
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: expected fields {', '.join(sorted(names))}; missing: "
            f"{', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'}"
        )
    hints = _hints(cls)
    values = {f.name: _decode(data[f.name], hints[f.name], f"{where}.{f.name}") for f in declared}
    try:
        obj = cls(**{f.name: values[f.name] for f in declared if f.init})
    except Exception as exc:
        raise CheckpointError(f"{where}: {cls.__name__} refused its saved fields: {exc}") from exc
    for name, value in values.items():  # what __post_init__ may have changed
        object.__setattr__(obj, name, value)
    return _shared(obj)


def _shared(obj: Any) -> Any:
    """One instance of each frozen record (such as a detector's params), whichever
    checkpoint it came from: 10,000 restored series hold one ``CountParams``, as fresh
    ones hold the default, instead of one each. Mutable objects are returned as they
    are."""
    if not _is_frozen_record(obj):
        return obj
    try:
        kept = _SHARED.get(obj)
    except TypeError:  # a field that cannot be hashed (a list): kept as it is
        return obj
    if kept is not None:
        return kept
    if len(_SHARED) < _SHARED_MAX:
        _SHARED[obj] = obj
    return obj


_PLAIN_ITEMS: dict[Any, frozenset[type]] = {  # the JSON types an item of this hint may be
    float: frozenset({int, float}),
    int: frozenset({int}),
    str: frozenset({str}),
    bool: frozenset({bool}),
}


def _decode(value: object, hint: Any, where: str) -> Any:
    """``value`` as the type ``hint`` declares, or ``CheckpointError`` saying where it differs."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _decode_union(value, typing.get_args(hint), where)
    if hint is type(None):
        return _expect(value, value is None, "null", where)
    if hint is bool:
        return _expect(value, isinstance(value, bool), "a boolean", where)
    if hint is int:
        return _expect(value, _is_int(value), "an integer", where)
    if hint is float:
        return _expect(value, _is_int(value) or isinstance(value, float), "a number", where)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            known = ", ".join(repr(m.value) for m in hint)
            raise CheckpointError(
                f"{where}: expected a {hint.__name__} ({known}), found {_show(value)}"
            ) from None
    if hint is str:
        return _expect(value, isinstance(value, str), "a string", where)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, _expect(value, isinstance(value, Mapping), "an object", where), where)
    args = typing.get_args(hint)
    if origin in (list, tuple, Sequence) and isinstance(value, list):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise CheckpointError(f"{where}: expected {len(args)} items, found {len(value)}")
            return tuple(
                _decode(v, a, f"{where}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        plain = _PLAIN_ITEMS.get(args[0])
        if plain is not None and plain.issuperset(map(type, value)):  # the common case, in C
            items = list(value)
        else:
            items = [_decode(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) and isinstance(value, Mapping):
        return {str(k): _decode(v, args[1], f"{where}[{k!r}]") for k, v in value.items()}
    if origin is typing.Literal:
        return _expect(value, value in args, " or ".join(map(repr, args)), where)
    raise CheckpointError(f"{where}: expected a {_type_name(hint)}, found {_show(value)}")


def _decode_union(value: object, arms: tuple[Any, ...], where: str) -> Any:
    if value is None and type(None) in arms:
        return None
    others = [arm for arm in arms if arm is not type(None)]
    if len(others) == 1:  # X | None: say what is wrong inside the X
        return _decode(value, others[0], where)
    for arm in others:
        try:
            return _decode(value, arm, where)
        except CheckpointError:
            continue
    expected = " or ".join(_type_name(a) for a in arms)
    raise CheckpointError(f"{where}: expected {expected}, found {_show(value)}")


def _expect(value: object, ok: bool, expected: str, where: str) -> Any:
    if not ok:
        raise CheckpointError(f"{where}: expected {expected}, found {_show(value)}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    return hint.__name__ if isinstance(hint, type) else str(hint)


def _show(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


# -- a series' detectors -------------------------------------------------------------


def restore_series(
    checkpoints: Sequence[Checkpoint], fresh: Callable[[], list[Detector]]
) -> list[Detector]:
    """A series' detectors: the fresh set, each replaced by its restored checkpoint.

    All or nothing: if any checkpoint is refused, or holds a measure or a class
    that no fresh detector matches, ``CheckpointError`` says which, and nothing is
    restored. A fresh detector without a checkpoint (a new measure) stays fresh.
    """
    detectors = fresh()
    by_measure = {d.measure.value: i for i, d in enumerate(detectors)}
    for checkpoint in checkpoints:
        index = by_measure.get(checkpoint.measure)
        if index is not None:  # before the work of building it
            _check_values(checkpoint, detectors[index])
        restored = from_state(checkpoint.state)
        if restored.measure.value != checkpoint.measure:
            raise CheckpointError(
                f"the checkpoint for {checkpoint.measure} holds a {restored.measure.value} detector"
            )
        index = by_measure.get(checkpoint.measure)
        if index is None:
            raise CheckpointError(
                f"no detector judges {checkpoint.measure} any more "
                f"(measures judged: {', '.join(by_measure)})"
            )
        expected = type(detectors[index])
        if type(restored) is not expected:
            raise CheckpointError(
                f"{checkpoint.measure} is judged by {expected.__name__} now, "
                f"the checkpoint holds a {type(restored).__name__}"
            )
        learned_in = getattr(restored, "timezone", None)
        zone = getattr(detectors[index], "timezone", None)
        if learned_in != zone:  # its hours and days are another zone's: unlearn them
            raise CheckpointError(
                f"its rhythm was learned in the time zone {learned_in}, and the brand's is "
                f"{zone} now: it is learned afresh"
            )
        detectors[index] = restored
    _check_working(checkpoints)
    return detectors


MAX_LIST = 100_000
"""The longest a list in a restored state may be whose fresh length is not fixed (the
calibration's tails keep a few hundred items)."""
_PROBE_ERRORS = (ArithmeticError, ValueError, IndexError, KeyError, TypeError, AttributeError)
NON_NEGATIVE = frozenset(
    {
        # counts (of buckets, posts, days) and the levels, factors and rates made of them
        "learned", "seen_posts", "outlier_run", "held_up", "held_down", "buckets",
        "posts", "negatives", "observed", "expected", "unseen", "weekly_seen", "warmup_n",
        "day_buckets", "hour_posts", "hour_negatives", "hour_expected", "weekday_posts",
        "weekday_negatives", "today_posts", "today_negatives", "level", "calm_level",
        "shift_from", "week_high", "week_low", "dispersion", "daily", "weekly",
        "hour_factors", "weekday_factors", "trusted_mean", "unit", "rise_negatives",
        "rise_posts", "fall_negatives", "fall_posts", "cusum_down",
    }
)  # fmt: skip
"""Fields (of any detector class, or of a record in one) that are never below zero: a
negative count is a damaged state (``learned`` of -5 divided by zero five buckets on;
a level of -50 made every bucket an alert)."""


def _check_values(checkpoint: Checkpoint, fresh: Any) -> None:
    """The restored state's values against a fresh detector of its series: the same
    width, numbers finite, fixed-length lists of their length, the others bounded."""
    fields = checkpoint.state.get("fields") if isinstance(checkpoint.state, Mapping) else None
    if not isinstance(fields, Mapping):
        return  # from_state has refused it already
    width = fields.get("width_seconds")
    if width != fresh.width_seconds:
        raise CheckpointError(
            f"{checkpoint.measure}: learned at {width!r} s, the series counts at "
            f"{fresh.width_seconds} s"
        )
    if checkpoint.version == STATE_VERSION:  # an older one's fields may differ: probed
        _check_like(fields, _fresh_fields(fresh), checkpoint.measure)
    else:
        _check_like(fields, None, checkpoint.measure)


_FRESH_FIELDS: dict[tuple[type[Any], str, int], Any] = {}


def _fresh_fields(fresh: Any) -> Any:
    """``to_state(fresh)["fields"]``, once per class, measure and width."""
    key = (type(fresh), fresh.measure.value, fresh.width_seconds)
    found = _FRESH_FIELDS.get(key)
    if found is None:
        found = _FRESH_FIELDS[key] = to_state(fresh)["fields"]
    return found


def _check_like(value: Any, fresh: Any, where: str, positive: bool = False) -> None:
    """``value`` (restored) against ``fresh`` (its fresh detector's, or None): numbers
    finite (and not below zero where ``positive``), lists of the fresh length or bounded."""
    if isinstance(value, Mapping):
        if len(value) > MAX_LIST:
            raise CheckpointError(f"{where}: {len(value):,} items, at most {MAX_LIST:,}")
        numbers = list(value.values())
        if _numbers_fine(numbers, where, positive):
            return
        for key, item in value.items():
            kind = type(item)
            if kind is float or kind is int:  # most fields: no call for them
                if not math.isfinite(item) or (item < 0 and key in NON_NEGATIVE):
                    _numbers_fine([item], f"{where}.{key}", key in NON_NEGATIVE)
            elif kind is not str and kind is not bool and item is not None:
                like = fresh.get(key) if isinstance(fresh, Mapping) else None
                _check_like(item, like, f"{where}.{key}", key in NON_NEGATIVE)
    elif isinstance(value, list):
        if isinstance(fresh, list) and fresh and len(value) not in (0, len(fresh)):
            # (the warm-up's lists are emptied once it is over)
            raise CheckpointError(f"{where}: {len(value):,} items, expected {len(fresh)}")
        if len(value) > MAX_LIST:
            raise CheckpointError(f"{where}: {len(value):,} items, at most {MAX_LIST:,}")
        if _numbers_fine(value, where, positive):
            return
        like = fresh[0] if isinstance(fresh, list) and fresh else None
        for item in value:
            _check_like(item, like, where, positive)
    else:
        _numbers_fine([value], where, positive)


def _numbers_fine(values: list[Any], where: str, positive: bool) -> bool:
    """True when ``values`` are all plain numbers, and fine; False when some are not
    numbers (to be looked into); ``CheckpointError`` when a number is not fine."""
    if not all(type(x) is float or type(x) is int for x in values):
        return False
    if not all(map(math.isfinite, values)):
        bad = next(x for x in values if not math.isfinite(x))
        raise CheckpointError(f"{where}: {bad!r} is not a number this state can hold")
    if positive and values and min(values) < 0:
        raise CheckpointError(f"{where}: {min(values)!r}, a count or a level, is below zero")
    return True


def _check_working(checkpoints: Sequence[Checkpoint]) -> None:
    """Copies of the restored detectors judge and learn one bucket (the next one by the
    wall clock: what a restarted daemon gives them first); any error, or a figure that
    is not a number, refuses the series."""
    if not checkpoints:
        return
    series = checkpoints[0].series
    width = series.scale_seconds
    start = datetime.fromtimestamp(datetime.now(UTC).timestamp() // width * width, UTC)
    bucket = Bucket(series, start, start + timedelta(seconds=width), 10, 2, 0)
    for checkpoint in checkpoints:
        copy = from_state(checkpoint.state)
        try:
            signal = copy.score_one(bucket)
            copy.learn_one(bucket)
        except _PROBE_ERRORS as exc:
            raise CheckpointError(
                f"{checkpoint.measure}: the restored state fails on a bucket: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        figures = (signal.expected, signal.low, signal.high, signal.likelihood)
        if not all(math.isfinite(x) for x in figures):
            raise CheckpointError(
                f"{checkpoint.measure}: the restored state judges a bucket as {figures}"
            )


def restore_term_model(checkpoint: Checkpoint, width_seconds: int) -> TermModel:
    """A tracker's new-term model from its checkpoint, or ``CheckpointError`` saying why."""
    fields = checkpoint.state.get("fields") if isinstance(checkpoint.state, Mapping) else None
    if checkpoint.version == STATE_VERSION and isinstance(fields, Mapping):
        _check_like(fields, _fresh_fields(TermModel(width_seconds)), "term_volume")
    restored = from_state(checkpoint.state)
    if not isinstance(restored, TermModel):
        raise CheckpointError(
            f"the checkpoint for term_volume holds a {type(restored).__name__}, not a TermModel"
        )
    if restored.width_seconds != width_seconds:
        raise CheckpointError(
            f"the term model was learned at {restored.width_seconds} s, "
            f"its tracker counts at {width_seconds} s"
        )
    copy = from_state(checkpoint.state)
    assert isinstance(copy, TermModel)
    try:  # a copy learns a bucket, and says how usual a term is
        copy.learn(datetime.now(UTC).timestamp() // width_seconds * width_seconds, 10, {"x": 1})
        usual = copy.usual("x")
    except _PROBE_ERRORS as exc:
        raise CheckpointError(
            f"term_volume: the restored model fails on a bucket: {type(exc).__name__}: {exc}"
        ) from exc
    if not math.isfinite(usual):
        raise CheckpointError(f"term_volume: the restored model gives a term's share as {usual}")
    restored.intern_terms()  # one string per word, shared with the other brands' models
    return restored
