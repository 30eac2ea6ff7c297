"""Values read from a file (JSON, TOML) checked against the field types a dataclass declares,
so a hand-edited or damaged file is refused with the field's name instead of failing later."""
from __future__ import annotations

import types
import typing


def wrong_fields(cls: type, data: dict) -> list[str]:
    """`NAME must be TYPE, got VALUE` for each value in `data` that is not of the type its field of
    dataclass `cls` declares (a bool is not taken for a number; an int is taken for a float).
    Names that `cls` does not declare are left to the caller."""
    hints = typing.get_type_hints(cls)
    return [f"{name} must be {_describe(hints[name])}, got {value!r}"
            for name, value in data.items() if name in hints and not _fits(value, hints[name])]


def _fits(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, t) for t in typing.get_args(tp))
    if origin is list:
        item = (typing.get_args(tp) or (object,))[0]
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    if isinstance(value, bool):
        return tp is bool or tp is object
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(t) for t in typing.get_args(tp) if t is not type(None))
    if origin is list:
        return f"a list of {_describe((typing.get_args(tp) or (object,))[0]).removeprefix('a ')}s"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
             dict: "a table"}
    return names.get(origin or tp, getattr(tp, "__name__", str(tp)))
