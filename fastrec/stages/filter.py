"""`fastrec filter`: move classes with too few images out of the tree (never delete them).

A class is a visible sub-folder of ROOT; its image count is the number of files directly inside
it whose extension is an image extension (`fastrec.formats.lists.DEFAULT_EXTS` unless told), i.e. what
`fastrec list --recursive` gives that class's label. Classes below the minimum move, whole, to
`MOVE_TO/<class>` by `fastrec.fsutil.move`: a rename on one filesystem, copy + verify + remove
across filesystems. Running it again changes nothing: the kept classes pass, the moved ones are
no longer in ROOT. An interrupted cross-filesystem move is finished by the rerun.

Rerunnable after `split` too: the classes moved are recorded in ROOT (`fastrec.stages.treestate`)
before they move, so `extract` does not bring them back, and a class's images that a split moved
to validation (its manifest is recorded there too) still count as the class's, so the decision
of the first run stands. A class with validation images is never moved: the validation tree
would keep a class the training tree lost (undo the split first).
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from typing import Sequence

from fastrec import fsutil
from fastrec.progress import make_progress
from fastrec.formats.lists import DEFAULT_EXTS
from fastrec.stages import treestate
from fastrec.stages.args import PATH, whole
from fastrec.stages.split import moved_by_splits
from fastrec.errors import FastrecError, UsageError

log = logging.getLogger(__name__)


class FilterError(FastrecError):
    """The filter cannot run; the message names the path and what to do."""


@dataclass
class FilterSummary:
    """What `filter_classes` found and did. Counts are (class name, number of images)."""

    kept: list[tuple[str, int]] = field(default_factory=list)
    moved: list[tuple[str, int]] = field(default_factory=list)   # moved now (or would, dry run)
    finished: list[str] = field(default_factory=list)  # interrupted moves this run completed
    dry_run: bool = False

    @property
    def kept_images(self) -> int:
        return sum(n for _, n in self.kept)

    @property
    def moved_images(self) -> int:
        return sum(n for _, n in self.moved)


def filter_classes(root: str, min_images: int, move_to: str, *, exts: Sequence[str] = DEFAULT_EXTS,
                   dry_run: bool = False, progress: str = "off") -> FilterSummary:
    """Move every class of `root` with fewer than `min_images` images to `move_to/<class>`.

    root: the tree whose sub-folders are classes. min_images: the least number of images a
    class keeps its place with (a count, default none: required). move_to: where small classes
    go; created if missing; must not overlap `root`. exts: lower-case image extensions, default
    `fastrec.formats.lists.DEFAULT_EXTS`. dry_run: report only, change nothing. progress: "auto", "on"
    or "off" (default) for a progress bar over classes.
    """
    exts = tuple(e.lower() for e in exts)
    if min_images < 0:
        raise FilterError(f"--min-images must be 0 or more, got {min_images}")
    if not os.path.isdir(root):
        raise FilterError(f"image root {root!r} does not exist or is not a folder")
    if os.path.exists(move_to) and not os.path.isdir(move_to):
        raise FilterError(f"--move-to {move_to!r} exists and is not a folder; choose a folder")
    try:
        fsutil.refuse_nesting(root, "ROOT", move_to, "--move-to")
    except fsutil.MoveError as err:
        raise FilterError(str(err)) from err
    summary = FilterSummary(dry_run=dry_run)
    small: list[tuple[str, int]] = []
    in_val = moved_by_splits(root)   # class -> names a split moved to validation
    for name in fsutil.class_folders(root):
        n = len(set(fsutil.list_images(os.path.join(root, name), exts)) | in_val.get(name, set()))
        (small if n < min_images else summary.kept).append((name, n))
    held = [f"{name} ({len(in_val[name])})" for name, _ in small if in_val.get(name)]
    if held:
        raise FilterError(f"{len(held)} classes to move have images in a validation tree: "
                          f"{', '.join(held[:10])}{' ...' if len(held) > 10 else ''}; moving them would "
                          f"leave validation classes training lacks: filter with the settings of the "
                          f"first run, or undo the split first (fastrec split --undo MANIFEST: "
                          f"{', '.join(treestate.split_manifests(root))}); nothing was moved")
    for name, _ in small:   # refuse before anything moves
        dst = os.path.join(move_to, name)
        if os.path.lexists(dst) and not os.path.isdir(dst):
            raise FilterError(f"cannot move class {name!r}: {dst!r} exists and is not a folder; "
                              f"move it away and run again")
    if dry_run:
        summary.moved = small
        return summary
    treestate.record_filtered(root, {name: os.path.abspath(os.path.join(move_to, name)) for name, _ in small},
                              kept=[name for name, _ in summary.kept])
    crash = fsutil.CrashAfter()
    with make_progress(progress) as bar:
        task = bar.add_task("filter: moving classes", total=len(small))
        for name, n in small:
            src, dst = os.path.join(root, name), os.path.join(move_to, name)
            if os.path.lexists(dst):
                summary.finished.append(name)   # an interrupted cross-filesystem move
            try:
                fsutil.move(src, dst)
            except fsutil.MoveError as err:
                raise FilterError(str(err)) from err
            log.debug("moved %s (%d images) to %s", src, n, dst)
            summary.moved.append((name, n))
            bar.advance(task)
            crash.tick()
    return summary


# ---------------------------------------------------------------- command line
def cmd_filter(a: argparse.Namespace) -> int:
    try:
        s = filter_classes(a.root, a.min_images if a.more_than is None else a.more_than + 1, a.move_to, exts=a.exts, dry_run=a.dry_run,
                           progress=a.progress)
    except FilterError as err:
        raise UsageError(str(err)) from err
    verb = "would move" if s.dry_run else "moved"
    for name, n in s.moved:
        print(f"{verb}\t{name}\t{n}")
    print(f"{len(s.kept)} classes kept ({s.kept_images} images); {len(s.moved)} classes {verb} "
          f"to {a.move_to} ({s.moved_images} images)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("filter", help="move classes with too few images out of the tree")
    p.add_argument("root", help="folder whose sub-folders are the classes")
    p.add_argument("--min-images", type=whole(0), default=500,
                   help="classes with fewer images than this are moved: a class of exactly N stays "
                        "(the tutorial's `count > 500` is --more-than 500)")
    p.add_argument("--more-than", type=whole(0), default=None,
                   help="classes with N images or fewer are moved (the tutorial's `count > N`)")
    p.add_argument("--move-to", required=True, type=PATH, help="folder the small classes are moved into")
    p.add_argument("--exts", nargs="+", default=list(DEFAULT_EXTS),
                   help="extensions counted as images")
    p.add_argument("--dry-run", action="store_true", help="only print what would move")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar (auto: only on a terminal)")
    p.set_defaults(func=cmd_filter)
