"""argparse types with one-line reasons, shared by the commands' flag declarations (cli.py and the
stages' `register`): a wrong value is `error: argument --x: must be in 1..1024, got 0`."""
from __future__ import annotations

import argparse

from fastrec.engine.options import INT64_MAX, Whole


def checked(parse):
    """An argparse `type` from a parser that raises ValueError with a one-line reason."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    convert.__name__ = getattr(parse, "__name__", type(parse).__name__)
    return convert


def whole(lo: int, hi: int = INT64_MAX):
    """A whole number in lo..hi."""
    return checked(Whole(lo, hi))


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number in 0..1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:   # also refuses nan
        raise ValueError(f"must be in 0..1, got {text}")
    return value


def _path(text: str) -> str:
    if not text:
        raise ValueError("expected a path, got an empty string")
    return text


FRACTION = checked(_fraction)
PATH = checked(_path)


def hidden_alias(parser, old: str, dest: str, **kw) -> None:
    """An old name of a flag that still works but no longer shows in --help."""
    parser.add_argument(old, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kw)
