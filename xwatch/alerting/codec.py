"""Records as JSON and back: how alerts, incidents and notices are kept in the store.

``to_json`` turns a frozen record (a dataclass of dataclasses, tuples, enums,
datetimes and plain values) into JSON-ready data; ``from_json`` rebuilds it from
the record's own type hints, so a record's definition is its schema: there is no
second description of the fields to keep in step.

Decoding is strict: a missing field, an unknown field or a value of the wrong type
raises ``CodecError`` naming the path to it (``parts[0].first.signal.end``), so a
row written by another version is refused clearly rather than half-read.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from datetime import datetime
from typing import Any, TypeVar, get_args, get_origin

from xwatch.errors import XwatchError

T = TypeVar("T")


class CodecError(XwatchError, ValueError):
    """Stored data does not fit the record it should become.

    ``str()`` quotes the value found; ``summary`` says the same with its type in its
    place (field names stay: the format's words, not the record's). A notice holds its
    incident's sample posts, and the line that says why a stored one cannot be read
    must not quote them (``xwatch.store.Unreadable``)."""

    def __init__(self, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = message if summary is None else summary


def _wrong(where: str, expected: str, data: Any) -> CodecError:
    """``data`` is not ``expected``: the message quotes it, the summary names its type."""
    return CodecError(
        f"{where}: expected {expected}, found {data!r}",
        f"{where}: expected {expected}, found {type(data).__name__}",
    )


def to_json(value: object) -> Any:
    """JSON-ready data for a record (or any value a record holds)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(kind: type[T], data: Any) -> T:
    """The record of type ``kind`` that ``to_json`` turned into ``data``."""
    result: T = _decode(kind, data, "")
    return result


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _decode(kind: Any, data: Any, path: str) -> Any:
    where = path or "the record"
    origin = get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        options = get_args(kind)
        if data is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(option, data, path)
            except CodecError:
                continue
        raise _wrong(where, f"one of {kind}", data)
    if origin is typing.Literal:
        if data not in get_args(kind):
            raise _wrong(where, f"one of {get_args(kind)}", data)
        return data
    if origin is tuple:
        if not isinstance(data, list):
            raise CodecError(f"{where}: expected a list, found {type(data).__name__}")
        args = get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item, f"{path}[{i}]") for i, item in enumerate(data))
        if len(args) != len(data):
            raise CodecError(f"{where}: expected {len(args)} items, found {len(data)}")
        return tuple(
            _decode(a, item, f"{path}[{i}]")
            for i, (a, item) in enumerate(zip(args, data, strict=True))
        )
    if origin is dict:
        if not isinstance(data, dict):
            raise CodecError(f"{where}: expected an object, found {type(data).__name__}")
        key_type, value_type = get_args(kind)
        return {
            _decode(key_type, k, f"{path}.{k}"): _decode(value_type, v, f"{path}.{k}")
            for k, v in data.items()
        }
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _decode_record(kind, data, path)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(data)
        except ValueError:
            raise _wrong(where, f"a {kind.__name__}", data) from None
    if kind is datetime:
        if not isinstance(data, str):
            raise _wrong(where, "an ISO 8601 time", data)
        try:
            return datetime.fromisoformat(data)
        except ValueError:
            raise _wrong(where, "an ISO 8601 time", data) from None
    if kind is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise _wrong(where, "a number", data)
        return float(data)
    if kind in (str, int, bool):
        if type(data) is not kind:
            raise _wrong(where, kind.__name__, data)
        return data
    if kind is Any or kind is object:
        return data
    raise CodecError(f"{where}: cannot decode a {kind!r}")


def _decode_record(kind: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise _wrong(path or "the record", "an object", data)
    hints = _hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CodecError(f"{path or kind.__name__}: unknown field(s) {', '.join(unknown)}")
    values = {}
    for name, field in fields.items():
        if name not in data:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise CodecError(f"{path or kind.__name__}: missing field {name!r}")
            continue
        values[name] = _decode(hints[name], data[name], f"{path}.{name}" if path else name)
    return kind(**values)
