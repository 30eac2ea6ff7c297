"""The one progress display of fastrec: a rich bar on stderr when asked for (or on a terminal), a
silent stand-in otherwise, so callers have one shape either way.

`make_progress(mode, kind)` returns an object with rich.progress.Progress's methods that fastrec
uses (context manager, `add_task`, `update`, `advance`). The kinds choose the columns:

- "count": done/total, elapsed, time left (filter, split, Dask shards, bench);
- "bytes": bytes read, speed, time left (extract);
- "pack": done/total, percent, images/s, MB/s written, skips, time left — sized so that the
  numbers of a 1.3 M image pack fit in 80 columns: the bar takes what width is left.

Pack keeps one task for the whole run (all its lists), so the time left is the pack's.
"""
from __future__ import annotations

import sys

KINDS = ("count", "bytes", "pack")


class NullProgress:
    """Stands in for a rich Progress when no bar is shown: every call does nothing."""

    def __enter__(self) -> "NullProgress":
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def add_task(self, *a, **k) -> int:
        return 0

    def update(self, *a, **k) -> None:
        pass

    def advance(self, *a, **k) -> None:
        pass


def shown(mode: str) -> bool:
    """"on", or "auto" with stderr on a terminal."""
    return mode == "on" or (mode == "auto" and sys.stderr.isatty())


def make_progress(mode: str, kind: str = "count", transient: bool = False, console=None):
    """A rich progress display with the columns of `kind` on stderr (or on `console`), or a
    NullProgress when `mode` ("auto", "on", "off") says no bar."""
    if kind not in KINDS:
        raise ValueError(f"unknown progress kind {kind!r}")
    if mode == "off" or (console is None and not shown(mode)):   # a given console is a terminal
        return NullProgress()
    # rich loads only when a bar is shown: start-up stays short in scripts
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)
    bar = BarColumn(bar_width=None)   # the bar gets the width the numbers leave
    if kind == "pack":
        cols = [TextColumn("{task.description}"), bar, MofNCompleteColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[rate]:>4.0f} img/s {task.fields[mbs]:>5.1f} MB/s "
                           "skip {task.fields[skips]}"),
                TimeRemainingColumn()]
    elif kind == "bytes":
        cols = [TextColumn("{task.description}"), bar, DownloadColumn(), TransferSpeedColumn(),
                TimeRemainingColumn()]
    else:
        cols = [TextColumn("{task.description}"), bar, MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn()]
    return Progress(*cols, console=console or Console(stderr=True), transient=transient, expand=True)


class PackProgress:
    """One bar for a whole pack: images done of all lists, with images/s and MB/s of this run."""

    def __init__(self, mode: str = "auto", console=None):
        self._bar = make_progress(mode, "pack", console=console)
        self._task = None
        self._items = self._bytes = self._skips = 0

    def __enter__(self) -> "PackProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def start(self, total: int, description: str = "pack") -> None:
        """The pack's size in list items (of all its lists)."""
        self._task = self._bar.add_task(description, total=total, rate=0.0, mbs=0.0, skips=0)

    def done_before(self, items: int) -> None:
        """`items` a resumed run finds already done: they move the bar, not the rates."""
        if self._task is not None and items:
            self._bar.update(self._task, advance=items)

    def advance(self, items: int, nbytes: int, skips: int) -> None:
        """`items` more list items done, of which `skips` skipped; `nbytes` more written."""
        if self._task is None or isinstance(self._bar, NullProgress):
            return
        self._items += items
        self._bytes += nbytes
        self._skips += skips
        elapsed = self._bar.tasks[self._task].elapsed or 1e-9
        self._bar.update(self._task, advance=items, skips=self._skips, rate=self._items / elapsed,
                         mbs=self._bytes / elapsed / 1e6)
