"""Progress display: a rich bar (images/s, MB/s, ETA, skips) on a terminal, quiet otherwise."""
from __future__ import annotations

import os
import sys


class Progress:
    """`mode`: "on", "off" or "auto" (on when stderr is a terminal)."""

    def __init__(self, mode: str = "auto"):
        on = mode == "on" or (mode == "auto" and sys.stderr.isatty())
        self._bar = None
        if on:  # rich loads only when a bar is shown: start-up stays short in scripts
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                                       TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn)
            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[rate]:.0f} img/s {task.fields[mbs]:.1f} MB/s skipped {task.fields[skips]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
            )
        self._task = None
        self._bytes = 0

    def __enter__(self) -> "Progress":
        if self._bar:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar:
            self._bar.stop()

    def start(self, name: str, total: int, done: int = 0) -> None:
        self._bytes = 0
        if self._bar:
            self._task = self._bar.add_task(os.path.basename(name), total=total, completed=done,
                                            rate=0.0, mbs=0.0, skips=0)

    def advance(self, items: int, nbytes: int, skips: int) -> None:
        if not self._bar or self._task is None:
            return
        self._bytes += nbytes
        task = self._bar.tasks[self._task]
        elapsed = task.elapsed or 1e-9
        self._bar.update(self._task, advance=items, skips=skips,
                         rate=(task.completed + items) / elapsed, mbs=self._bytes / elapsed / 1e6)
