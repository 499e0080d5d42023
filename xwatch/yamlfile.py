"""Read a YAML file into a frozen pydantic model, keeping line numbers for errors.

Every problem names the file, the line, the key, what was expected and what was
found, e.g.::

    rules/defects.yaml:12: rules[0].when.likelihood: Input should be less than or
    equal to 1 (found 1.5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from xwatch.errors import ConfigError, Problem

Path_ = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class ValueAt(ValueError):
    """What a model's validator finds wrong with one key below the model (``path``, from
    the model's own keys): the problem names that key and its line, not the model."""

    def __init__(self, path: Path_, message: str) -> None:
        super().__init__(message)
        self.path = path


class YamlDocument:
    """Parsed YAML plus the line of every key and item in it."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.problems: list[Problem] = []
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([Problem(file, line, f"not valid YAML: {problem}")]) from None
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: Path_) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    self.problems.append(
                        Problem(
                            self.file,
                            key_node.start_mark.line + 1,
                            f"{_dotted((*path, key))}: duplicate key",
                        )
                    )
                seen.add(key)
                self._walk(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def line_of(self, path: Path_) -> int:
        """The line of the deepest part of ``path`` that exists in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1

    def problem(self, path: Path_, message: str) -> Problem:
        """A problem with the value at ``path``, on its line: ``file:line: key: message``."""
        return Problem(self.file, self.line_of(path), f"{_dotted(path)}: {message}")

    def validate(self, model: type[M], data: Any | None = None, prefix: Path_ = ()) -> M:
        """Validate ``data`` (default: the whole document) found at ``prefix`` into ``model``."""
        if self.problems:
            raise ConfigError(list(self.problems))
        target = self.data if data is None else data
        try:
            return model.model_validate({} if target is None else target)
        except ValidationError as exc:
            raise ConfigError(self.problems_from(exc, prefix, target)) from None

    def problems_from(
        self, exc: ValidationError, prefix: Path_ = (), target: Any = None
    ) -> list[Problem]:
        problems = []
        errors = exc.errors()
        inner = {tuple(e["loc"][:i]) for e in errors for i in range(len(e["loc"]))}
        for error in errors:
            if error["type"] == "too_short" and tuple(error["loc"]) in inner:
                continue  # a list is short only because its bad items were dropped
            loc = (*prefix, *_data_path(target, error["loc"]))
            message = error["msg"]
            at = error.get("ctx", {}).get("error")
            if isinstance(at, ValueAt):
                loc = (*loc, *at.path)
                data = _value_at(target, _data_path(target, error["loc"]) + at.path)
                error = {**error, "input": data}
            where = _dotted(loc) or "(top level)"
            if error["type"] == "extra_forbidden":
                message = "unknown key (check the spelling against the reference in README.md)"
            elif error["type"] != "missing" and "input" in error:
                message = f"{message} (found {_short(error['input'])})"
            problems.append(Problem(self.file, self.line_of(loc), f"{where}: {message}"))
        return problems


def load_yaml(path: Path) -> YamlDocument:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(str(path), 1, f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([Problem(str(path), line, "not valid UTF-8")]) from None
    return YamlDocument(text, str(path))


def _data_path(data: Any, loc: tuple[str | int, ...]) -> Path_:
    """Pydantic's error location as a path into the data.

    Pydantic puts the tag of a tagged union ("replay") and validator names into the
    location; they are not keys of the file, so they are dropped here.
    """
    path: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("type") == part:
            continue  # the tag of a tagged union
        if isinstance(part, str) and part.startswith(("function-", "tagged-union[")):
            continue
        path.append(part)
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            data = None
    return tuple(path)


def _value_at(data: Any, path: Path_) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
