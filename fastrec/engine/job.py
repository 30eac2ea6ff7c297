"""One .lst to pack (`Job`) and its items as read from the file (`ListFile`)."""
from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

from fastrec.formats.fingerprints import fingerprints_path
from fastrec.formats.lists import BadLine, ListItem, ListRules, check_list, read_list
from fastrec.formats.manifest import manifest_path


class ListFile:
    """The items of a .lst, read from the file each time they are walked (never all in memory):
    iterate, len() (counted once), and slices (what a cluster shard takes). The first walk checks
    the whole list under `rules` (formats.lists.check_list): a bad line stops the pack before
    anything is written, or, with rules.skip_bad_lines, is a BadLine item that becomes a skip."""

    def __init__(self, path: str, rules: ListRules = ListRules()):
        self.path, self.rules = path, rules
        self._len: int | None = None
        self._duplicates: dict[int, int] | None = None
        self._cursor: tuple[int, Iterator[ListItem]] | None = None   # (next index, its iterator)

    def __iter__(self) -> Iterator[ListItem | BadLine]:
        if self._duplicates is None:
            self._len, self._duplicates = check_list(self.path, self.rules)
        return read_list(self.path, self.rules, self._duplicates)

    def __len__(self) -> int:
        if self._len is None:
            self._len, self._duplicates = check_list(self.path, self.rules)
        return self._len

    def __getitem__(self, cut: slice) -> list[ListItem]:
        if not isinstance(cut, slice) or cut.step not in (None, 1) or (cut.start or 0) < 0 or \
                (cut.stop is not None and cut.stop < 0):
            raise TypeError("a ListFile is read in runs: take a slice [start:stop] of non-negative ends")
        start = cut.start or 0
        at, it = self._cursor if self._cursor and self._cursor[0] <= start else (0, iter(self))
        run = list(itertools.islice(it, start - at, None if cut.stop is None else max(cut.stop - at, start - at)))
        self._cursor = (start + len(run), it)    # consecutive runs (cluster shards) read the file once
        return run


@dataclass
class Job:
    """One .lst to pack: the list items and where the outputs go."""

    items: Sequence[ListItem] | ListFile
    root: str
    rec: str
    idx: str
    skipped: str
    source: object = None   # a sources.TarIndex to read images from instead of files under root
    lst: str = ""           # the .lst packed; "" for a Dask shard (no manifest of its own)

    @classmethod
    def for_list(cls, lst: str, root: str, rules: ListRules = ListRules()) -> "Job":
        """The outputs go beside the list, named after it (as im2rec names them)."""
        base = os.path.splitext(lst)[0]
        return cls(ListFile(lst, dataclasses.replace(rules, root=root)), root, base + ".rec", base + ".idx", base + ".skipped.tsv",
                   lst=os.path.abspath(lst))

    @property
    def manifest(self) -> str:
        return manifest_path(self.rec)

    @property
    def fingerprints(self) -> str:
        return fingerprints_path(self.rec)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every file a pack of this job writes (the one list the output checks walk)."""
        return self.rec, self.idx, self.skipped, self.fingerprints, self.manifest
