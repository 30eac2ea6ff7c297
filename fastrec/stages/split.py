"""`fastrec split`: move N seeded-random images of every class into a validation tree.

The choice for a class depends only on the seed, the class name and its sorted file names
(`random.Random(b"SEED:" + class name bytes)` samples the sorted list), so adding or removing other
classes never changes it. Every class must keep at least one training image: `fastrec list
--recursive` labels only folders that hold images, so a class emptied by the split would shift
every later label between the train and val lists.

The manifest (JSON lines) is the contract that makes this safe:

    {"fastrec_split": 1, "root": ..., "val_root": ..., "per_class": N, "seed": S, "exts": [...]}
    {"src": "/abs/ROOT/cls/a.jpg", "dst": "/abs/VAL/cls/a.jpg"}      one line per move
    {"complete": true, "moves": K}

It is written whole (atomically, fsynced, ending in the completion line) before the first move.
A rerun with the same arguments finds it and finishes the moves instead of drawing again;
`fastrec split --undo MANIFEST` moves every file back, then renames the manifest to
`MANIFEST.undone`. Default place: `VAL_ROOT/.fastrec-split.jsonl`. The manifest's path is also
recorded in ROOT (`fastrec.stages.treestate`) before the first move, so a rerun of `filter` counts
the moved images as their class's (`moved_by_splits`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Sequence

from fastrec import fsutil
from fastrec.progress import make_progress
from fastrec.formats.lists import DEFAULT_EXTS
from fastrec.stages import treestate
from fastrec.stages.args import PATH, hidden_alias, whole
from fastrec.errors import FastrecError, UsageError

log = logging.getLogger(__name__)

MANIFEST_NAME = ".fastrec-split.jsonl"
MANIFEST_VERSION = 1
UNDONE_SUFFIX = ".undone"


class SplitError(FastrecError):
    """The split cannot go ahead; the message names the path or class and what to do."""


@dataclass
class SplitSummary:
    """What `split_classes` did (or, dry run, would do)."""

    manifest: str = ""
    classes: int = 0
    moves: list[tuple[str, str]] = field(default_factory=list)  # the whole plan (src, dst)
    moved: int = 0      # moved by this run
    already: int = 0    # done by an earlier, interrupted run
    resumed: bool = False  # the plan came from an existing manifest
    dry_run: bool = False


@dataclass
class UndoSummary:
    manifest: str = ""
    restored: int = 0   # moved back by this run
    already: int = 0    # already back (an interrupted undo, or never moved)


def default_manifest(val_root: str) -> str:
    return os.path.join(val_root, MANIFEST_NAME)


def choose(names: Sequence[str], k: int, seed: int, cls: str) -> list[str]:
    """The `k` names a class sends to validation: seeded by (seed, class) only, returned sorted.

    The seed is the key's bytes: `random` hashes a str seed as its UTF-8 bytes, so this is the
    same choice as a str key for UTF-8 names, and any other folder name (its `os.fsencode`
    bytes) works too."""
    return sorted(random.Random(f"{seed}:".encode() + os.fsencode(cls)).sample(sorted(names), k))


def _header(root: str, val_root: str, per_class: int, seed: int, exts: Sequence[str]) -> dict:
    return {"fastrec_split": MANIFEST_VERSION, "root": root, "val_root": val_root,
            "per_class": per_class, "seed": seed, "exts": list(exts)}


def read_manifest(path: str) -> tuple[dict, list[tuple[str, str]]]:
    """(header, [(src, dst)]) of a complete manifest; SplitError if it is not one."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as err:
        raise SplitError(f"cannot read split manifest {path!r}: {err}; pass the manifest a "
                         f"`fastrec split` wrote") from err
    if not lines or lines[0].get("fastrec_split") != MANIFEST_VERSION:
        raise SplitError(f"{path!r} is not a fastrec split manifest (version {MANIFEST_VERSION}); "
                         f"pass another --manifest")
    moves = [(d["src"], d["dst"]) for d in lines[1:-1]]
    end = lines[-1]
    if not end.get("complete") or end.get("moves") != len(moves) or any("src" not in d for d in lines[1:-1]):
        raise SplitError(f"split manifest {path!r} is incomplete or damaged (no completion line "
                         f"for {len(moves)} moves); nothing was moved by it unless you did so by "
                         f"hand: move it away and split again")
    return lines[0], moves


def _write_manifest(path: str, header: dict, moves: list[tuple[str, str]]) -> None:
    out = [json.dumps(header)]
    out += [json.dumps({"src": s, "dst": d}) for s, d in moves]
    out.append(json.dumps({"complete": True, "moves": len(moves)}))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fsutil.atomic_write(path, ("\n".join(out) + "\n").encode("utf-8", "surrogateescape"))


def _plan(root: str, val_root: str, per_class: int, seed: int, exts: Sequence[str]) -> tuple[int, list]:
    too_few, clashes, moves = [], [], []
    classes = []
    for cls in fsutil.class_folders(root):
        names = fsutil.list_images(os.path.join(root, cls), exts)
        if not names:
            continue   # no images: not a class for `fastrec list` either
        classes.append(cls)
        if len(names) <= per_class:
            too_few.append(f"{cls} ({len(names)})")
            continue
        for name in choose(names, per_class, seed, cls):
            src, dst = os.path.join(root, cls, name), os.path.join(val_root, cls, name)
            if os.path.lexists(dst):
                clashes.append(dst)
            moves.append((src, dst))
    if too_few:
        raise SplitError(f"{len(too_few)} classes have too few images for --val-per-class {per_class} "
                         f"(each needs at least {per_class + 1}, so one stays for training): "
                         f"{', '.join(too_few[:20])}{' ...' if len(too_few) > 20 else ''}; move them "
                         f"away first (fastrec filter {root} --min-images {per_class + 1} --move-to DIR) "
                         f"or lower --val-per-class; nothing was moved")
    if clashes:
        raise SplitError(f"{len(clashes)} files already exist in the validation tree, e.g. "
                         f"{clashes[0]!r}; split into an empty --val-root (or undo the earlier split "
                         f"with --undo); nothing was moved")
    return len(classes), moves


def _move_all(pairs: list[tuple[str, str]], manifest: str, label: str, progress: str) -> tuple[int, int]:
    """Move each (src, dst) in order; returns (moved by this run, done by an earlier run)."""
    moved = already = 0
    crash = fsutil.CrashAfter()
    with make_progress(progress) as bar:
        task = bar.add_task(label, total=len(pairs))
        for src, dst in pairs:
            try:
                did = fsutil.move(src, dst)
            except fsutil.MoveError as err:
                raise SplitError(f"{err} (manifest {manifest})") from err
            if did:
                moved += 1
                crash.tick()
            else:
                already += 1
            bar.advance(task)
    return moved, already


def split_classes(root: str, val_root: str, per_class: int, seed: int = 0, *,
                  exts: Sequence[str] = DEFAULT_EXTS, manifest: str | None = None,
                  dry_run: bool = False, progress: str = "off") -> SplitSummary:
    """Move `per_class` seeded-random images of each class of `root` to `val_root/<class>/`.

    root: the training tree (sub-folders are classes). val_root: the validation tree, created
    if missing, must not overlap `root`. per_class: images moved per class (a count); every class
    must have more. seed: an integer; the same seed gives the same split (default 0). exts:
    image extensions, default `fastrec.formats.lists.DEFAULT_EXTS`. manifest: where the move list is
    written, default `val_root/.fastrec-split.jsonl`; if it exists (an interrupted or finished
    split with the same arguments) its moves are finished instead of drawing again. dry_run:
    plan and report only; nothing is written. progress: "auto", "on" or "off" (default).
    """
    root, val_root = os.path.abspath(root), os.path.abspath(val_root)
    exts = tuple(e.lower() for e in exts)
    manifest = os.path.abspath(manifest or default_manifest(val_root))
    if per_class < 1:
        raise SplitError(f"--val-per-class must be at least 1, got {per_class}")
    if not os.path.isdir(root):
        raise SplitError(f"image root {root!r} does not exist or is not a folder")
    try:
        fsutil.refuse_nesting(root, "ROOT", val_root, "--val-root")
    except fsutil.MoveError as err:
        raise SplitError(str(err)) from err
    if fsutil.is_inside(manifest, root):
        raise SplitError(f"--manifest {manifest!r} lies inside ROOT {root!r}; put it elsewhere")
    summary = SplitSummary(manifest=manifest, dry_run=dry_run)
    header = _header(root, val_root, per_class, seed, exts)
    if os.path.exists(manifest):
        old, moves = read_manifest(manifest)
        if old != header:
            diff = [k for k in header if old.get(k) != header[k]]
            raise SplitError(f"split manifest {manifest!r} was written with other arguments "
                             f"({', '.join(diff)} {'differs' if len(diff) == 1 else 'differ'}); rerun with those, undo it with "
                             f"`fastrec split --undo {manifest}`, or pass another --manifest")
        summary.resumed = True
        summary.classes = len({os.path.dirname(d) for _, d in moves})
    else:
        summary.classes, moves = _plan(root, val_root, per_class, seed, exts)
        if not dry_run:
            _write_manifest(manifest, header, moves)
    summary.moves = moves
    if dry_run:
        return summary
    treestate.record_split(root, manifest)
    summary.moved, summary.already = _move_all(moves, manifest, "split: moving images", progress)
    return summary


def undo_split(manifest: str, *, progress: str = "off") -> UndoSummary:
    """Move every file of a split manifest back to where it came from; resumable.

    manifest: the path `split_classes` wrote. When all is back, emptied class folders of the
    validation tree are removed (only if empty) and the manifest is renamed to
    `MANIFEST.undone`, so the same validation tree can be split again.
    """
    manifest = os.path.abspath(manifest)
    if not os.path.exists(manifest):
        done = manifest + UNDONE_SUFFIX
        hint = f" ({done!r} exists: that split was already undone)" if os.path.exists(done) else ""
        raise SplitError(f"split manifest {manifest!r} does not exist{hint}")
    header, moves = read_manifest(manifest)
    summary = UndoSummary(manifest=manifest)
    back = [(dst, src) for src, dst in reversed(moves)]
    summary.restored, summary.already = _move_all(back, manifest, "split --undo: moving back", progress)
    for folder in sorted({os.path.dirname(d) for _, d in moves}):
        try:
            os.rmdir(folder)   # only succeeds on an empty folder; nothing is deleted
        except OSError:
            pass
    os.replace(manifest, manifest + UNDONE_SUFFIX)
    fsutil.fsync_dir(os.path.dirname(manifest))
    treestate.forget_split(header["root"], manifest)
    return summary


def moved_by_splits(root: str) -> dict[str, set[str]]:
    """Class -> names of its images that the splits recorded in `root` moved (or are moving) to
    validation: still the class's images when `filter` counts them."""
    out: dict[str, set[str]] = {}
    for manifest in treestate.split_manifests(root):
        header, moves = read_manifest(manifest)
        for src, _ in moves:
            cls, name = os.path.split(os.path.relpath(src, header["root"]))
            out.setdefault(cls, set()).add(name)
    return out


# ---------------------------------------------------------------- command line
def cmd_split(a: argparse.Namespace) -> int:
    try:
        if a.undo:
            if a.root or a.val_root:
                raise UsageError("--undo MANIFEST takes no ROOT or --val-root (the manifest names them)")
            u = undo_split(a.undo, progress=a.progress)
            print(f"moved {u.restored} images back ({u.already} were already back); "
                  f"manifest renamed to {u.manifest}{UNDONE_SUFFIX}")
            return 0
        if not a.root or not a.val_root:
            raise UsageError("give ROOT and --val-root DIR (or --undo MANIFEST)")
        s = split_classes(a.root, a.val_root, a.per_class, a.seed, exts=a.exts, manifest=a.manifest,
                          dry_run=a.dry_run, progress=a.progress)
    except SplitError as err:
        raise UsageError(str(err)) from err
    if s.dry_run:
        for src, dst in s.moves:
            print(f"would move\t{src}\t{dst}")
        print(f"would move {len(s.moves)} images of {s.classes} classes to {a.val_root}")
    else:
        print(f"moved {s.moved} images of {s.classes} classes to {a.val_root}"
              f"{f' ({s.already} moved by an earlier run)' if s.already else ''}; manifest {s.manifest}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("split", help="move N seeded-random images per class into a validation tree")
    p.add_argument("root", nargs="?", help="training tree whose sub-folders are the classes")
    p.add_argument("--val-root", type=PATH, help="validation tree to move the images into")
    p.add_argument("--val-per-class", dest="per_class", type=whole(1), default=50, help="images moved per class")
    hidden_alias(p, "--per-class", "per_class", type=whole(1))
    p.add_argument("--seed", type=whole(0), default=0, help="random seed; the same seed gives the same split")
    p.add_argument("--exts", nargs="+", default=list(DEFAULT_EXTS),
                   help="extensions counted as images")
    p.add_argument("--manifest", type=PATH, help=f"move list to write (default VAL_ROOT/{MANIFEST_NAME})")
    p.add_argument("--dry-run", action="store_true", help="only print what would move")
    p.add_argument("--undo", metavar="MANIFEST", type=PATH, help="move the files of an earlier split back")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar (auto: only on a terminal)")
    p.set_defaults(func=cmd_split)
