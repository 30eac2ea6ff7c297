"""fastrec: pack image folders and tar archives into MXNet RecordIO shards, fast.

The public Python API (everything else is private to its package):

    pack_prefix(prefix, root, PackOptions(...), archives=())  -> Summary   pack like `fastrec pack`
    make_lists(prefix, root, ListOptions(...))                -> ListResult  like `fastrec list`
    read_list(path)        -> iterator of ListItem(id, path, labels); a bad line raises ListLineError
                              (read_list(path, ListRules(skip_bad_lines=True)) yields it as a BadLine)
    RecordReader(rec)      -> iterator of framed record payloads; unpack(payload) -> (IRHeader, bytes)
    FastrecError and its kinds UsageError, DataError, EnvironmentFault (fastrec.errors)

Names load on first use, so `import fastrec` stays fast and light.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fastrec._version import __version__

_EXPORTS = {
    "pack_prefix": "fastrec.engine", "PackOptions": "fastrec.engine", "Summary": "fastrec.engine",
    "make_lists": "fastrec.formats.lists", "ListOptions": "fastrec.formats.lists",
    "ListResult": "fastrec.formats.lists", "read_list": "fastrec.formats.lists",
    "ListItem": "fastrec.formats.lists",
    "RecordReader": "fastrec.formats.recordio", "IRHeader": "fastrec.formats.recordio",
    "unpack": "fastrec.formats.recordio", "read_index": "fastrec.formats.recordio",
    "FastrecError": "fastrec.errors", "UsageError": "fastrec.errors", "DataError": "fastrec.errors",
    "EnvironmentFault": "fastrec.errors",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from fastrec.engine import PackOptions, Summary, pack_prefix
    from fastrec.errors import DataError, EnvironmentFault, FastrecError, UsageError
    from fastrec.formats.lists import ListItem, ListOptions, ListResult, make_lists, read_list
    from fastrec.formats.recordio import IRHeader, RecordReader, read_index, unpack


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastrec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
