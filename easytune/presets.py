"""Every presets/*.yaml file is read through a typed class and this one checker.

A preset class is a frozen dataclass whose field types are its schema:

    int, float, bool, str           float accepts an integer (YAML writes 5 for 5.0), never a bool
    Literal["a", "b"]               one of these values
    X | None                        X, or null
    tuple[X, ...] / tuple[X, Y]     a list of any length / of exactly this length
    dict[str, X]                    a mapping with any keys
    dict[Literal["a", "b"], X]      a mapping with exactly these keys
    another preset class            a nested mapping

`bounds(...)` on a field limits every number the field holds (for a tuple or mapping: each item).
A key the class does not name is an error, and so is a missing field without a default. Rules
between fields go in `__post_init__`: its ValueError is reported at that mapping's key path. Every
problem in the file is reported at once, each as `<file>: <key path>: <what is wrong>`.

    load_preset(Intents, PRESETS_DIR / "intents.yaml")  -> Intents, cached by the file's mtime
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from easytune.yaml_files import read_yaml

T = TypeVar("T")


class PresetError(ValueError):
    """A preset file breaks its schema: a packaging error, not something a user can fix."""

    def __init__(self, file: str, problems: list[str]):
        self.file = file
        self.problems = problems
        super().__init__("\n  ".join([f"{file}:"] + problems) if len(problems) > 1 else f"{file}: {problems[0]}")


def bounds(default: Any = dataclasses.MISSING, *, ge: float | None = None, le: float | None = None,
           gt: float | None = None, lt: float | None = None) -> Any:
    """A field whose numbers must lie in a range: ge/le inclusive, gt/lt exclusive."""
    limits = {"ge": ge, "le": le, "gt": gt, "lt": lt}
    return dataclasses.field(default=default, metadata={"bounds": {k: v for k, v in limits.items() if v is not None}})


_BOUND_TESTS = {"ge": (lambda v, x: v >= x, "≥"), "le": (lambda v, x: v <= x, "≤"),
                "gt": (lambda v, x: v > x, ">"), "lt": (lambda v, x: v < x, "<")}


def _name(hint: Any) -> str:
    if typing.get_origin(hint) is None and hasattr(hint, "__name__"):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _join(where: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


class _Checker:
    """Walks parsed YAML along the type hints, collecting problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where or '(top)'}: {message}")

    def build(self, hint: Any, value: Any, where: str, limits: dict) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            choices = [a for a in args if a is not type(None)]
            if len(choices) == 1:
                return self.build(choices[0], value, where, limits)
            for choice in choices:  # the first alternative the value fits
                trial = _Checker()
                result = trial.build(choice, value, where, limits)
                if not trial.problems:
                    return result
            self.fail(where, f"expected {' or '.join(_name(c) for c in choices)}, got {value!r}")
            return None
        if origin is Literal:
            if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
                self.fail(where, f"expected one of {', '.join(map(str, args))}, got {value!r}")
            return value
        if origin is tuple:
            if not isinstance(value, list):
                self.fail(where, f"expected a list, got {value!r}")
                return None
            items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
            if len(items) != len(value):
                self.fail(where, f"expected a list of {len(items)}, got {value!r}")
                return None
            return tuple(self.build(h, v, _join(where, i), limits) for i, (h, v) in enumerate(zip(items, value)))
        if origin is dict:
            return self._mapping(args, value, where, limits)
        if dataclasses.is_dataclass(hint):
            return self.record(hint, value, where)
        return self._scalar(hint, value, where, limits)

    def _mapping(self, args: tuple, value: Any, where: str, limits: dict) -> dict | None:
        key_hint, value_hint = args
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {value!r}")
            return None
        if typing.get_origin(key_hint) is Literal:
            wanted = typing.get_args(key_hint)
            for key in value:
                if key not in wanted:
                    self.fail(_join(where, key), f"unknown field {key!r} (expected {', '.join(wanted)})")
            for key in wanted:
                if key not in value:
                    self.fail(where, f"missing {key!r}")
        return {key: self.build(value_hint, item, _join(where, key), limits) for key, item in value.items()}

    def _scalar(self, hint: Any, value: Any, where: str, limits: dict) -> Any:
        if hint is bool:
            ok = isinstance(value, bool)
        elif hint is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif hint is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif hint is str:
            ok = isinstance(value, str)
        else:
            raise TypeError(f"presets: unsupported type {hint!r} at {where}")
        if not ok:
            self.fail(where, f"expected {_name(hint)}, got {value!r}")
            return value
        for name, limit in limits.items():
            test, sign = _BOUND_TESTS[name]
            if not test(value, limit):
                self.fail(where, f"expected a number {sign} {limit:g}, got {value!r}")
        return value

    def record(self, cls: type[T], value: Any, where: str) -> T | None:
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {value!r}")
            return None
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls) if f.init}
        for key in value:
            if key not in known:
                self.fail(_join(where, key), f"unknown field {key!r}")
        before = len(self.problems)
        kwargs = {}
        for name, f in known.items():
            if name in value:
                kwargs[name] = self.build(hints[name], value[name], _join(where, name),
                                          f.metadata.get("bounds", {}))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.fail(where, f"missing {name!r}")
        if len(self.problems) > before:
            return None
        try:
            return cls(**kwargs)
        except ValueError as err:  # a rule between fields (__post_init__)
            self.fail(where, str(err))
            return None


def check_preset(cls: type[T], data: Any, file: str, error: type[PresetError] = PresetError) -> T:
    """Parsed YAML → an instance of `cls`; raises `error` naming `file` and every bad key path."""
    checker = _Checker()
    result = checker.record(cls, data, "")
    if checker.problems or result is None:
        raise error(file, checker.problems)
    return result


@lru_cache(maxsize=16)
def _load(cls: type, error: type[PresetError], path: str, mtime: float) -> Any:
    file = Path(path)
    return check_preset(cls, read_yaml(file), file.name, error)


def load_preset(cls: type[T], path: str | Path, error: type[PresetError] = PresetError) -> T:
    """The preset at `path`, checked against `cls`; read again only when the file changes."""
    path = Path(path)
    return _load(cls, error, str(path), path.stat().st_mtime)


def as_dict(preset: Any) -> dict:
    """A preset as plain data (tuples as lists), for readers that take the file's mappings."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(preset))
