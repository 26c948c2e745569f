"""The facts tables under data/, read by one reader. README sends operators here to add a row (a machine type, its
price family, a daemon release, a zone), so a table that cannot be read is one error naming the file, the row and
the field, raised when the table is first read, never a KeyError from deep inside a plan."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml

DATA = Path(__file__).with_name("data")
REPOSITORY = Path(__file__).resolve().parents[2]
# The forms of a digest and a download URL, wherever the program takes one (tables, stack config)
SHA256_PATTERN = r"^[0-9a-f]{64}$"
HTTPS_PATTERN = r"^https://\S+$"
SHA256, HTTPS = re.compile(SHA256_PATTERN), re.compile(HTTPS_PATTERN)


class FactsTableError(Exception):
    """A table under fleet/facts/data that cannot be read; the message names the file, the row and the reason."""


def shown(path: Path) -> str:
    """PATH as an operator finds it: relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(REPOSITORY))
    except ValueError:
        return str(path)


def _kind(value: Any) -> str:
    shown_as = {dict: "a mapping", list: "a list", type(None): "empty", bool: "true/false"}.get(type(value))
    return shown_as or (text if len(text := repr(value)) <= 80 else text[:80] + "...")


class Row:
    """One mapping of a table, read field by field. WHERE is its path in the table (`machine_types.e2-standard-4`),
    so each error says where to look."""

    def __init__(self, path: Path, where: str, raw: Any) -> None:
        self.path, self.where = path, where
        if not isinstance(raw, dict):
            self.fail(f"must be a mapping, not {_kind(raw)}")
        self.raw: dict[Any, Any] = raw

    def at(self, key: str | None = None) -> str:
        return ".".join(str(part) for part in (self.where, key) if part) or "the table"

    def fail(self, reason: str, key: str | None = None) -> NoReturn:
        raise FactsTableError(f"{shown(self.path)}: {self.at(key)} {reason}")

    def _get(self, key: str) -> Any:
        if self.raw.get(key) is None:
            self.fail("is missing", key)
        return self.raw[key]

    def text(self, key: str, pattern: re.Pattern[str] | None = None, form: str = "") -> str:
        """A scalar as text (YAML reads `1.27` as a number and `2026-12-02` as a date: both are text here)."""
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, str | int | float | datetime.date):
            self.fail(f"must be text, not {_kind(value)}", key)
        text = str(value)
        if pattern is not None and not pattern.fullmatch(text):
            self.fail(f"is {text!r}, not {form}", key)
        return text

    def number(self, key: str, whole: bool = True, at_most: float | None = None) -> Any:
        """A positive number (a whole one if WHOLE), at most AT_MOST if given."""
        value = self._get(key)
        kinds = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not 0 < value < float("inf"):
            self.fail(f"is {value!r}, not a positive {'whole number' if whole else 'number'}", key)
        if at_most is not None and value > at_most:
            self.fail(f"is {value!r}, more than {at_most}", key)
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if not isinstance(value, list) or any(v is None or isinstance(v, bool | dict | list) for v in value):
            self.fail(f"must be a list of text, not {_kind(value)}", key)
        return tuple(str(v) for v in value)

    def mapping(self, key: str) -> Row:
        return Row(self.path, self.at(key), self._get(key))

    def rows(self) -> Iterator[tuple[str, Row]]:
        """Each entry as a named row: the table's keys are names (a machine type, a version, a region)."""
        for name, raw in self.raw.items():
            yield str(name), Row(self.path, self.at(str(name)), raw)

    def lists(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        """Each entry as a named list of text (a region's zones)."""
        for name in self.raw:
            yield str(name), self.texts(name)


def table(name: str) -> Row:
    """data/NAME, parsed; the whole table is its first row."""
    path = DATA / name
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise FactsTableError(f"{shown(path)}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise FactsTableError(f"{shown(path)}: not valid YAML ({where}{getattr(exc, 'problem', None) or exc})") \
            from None
    return Row(path, "", raw)
