"""`.lst` files: writing them like `im2rec.py --list` (byte for byte) and reading them back.

A line is `index<TAB>label...<TAB>relative/path\\n`, labels printed with "%f".
Enumeration, labels, the seeded shuffle, chunking and the train/val/test split follow
MXNet 1.9.1's tools/im2rec.py exactly (shared/SPEC.md §3), so a user can swap tools freely.
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple, Sequence
from fastrec.errors import FastrecError

log = logging.getLogger(__name__)

DEFAULT_EXTS = (".jpeg", ".jpg", ".png")
SHUFFLE_SEED = 100  # im2rec.py seeds the global `random` with 100 before shuffling
LST_ENCODING = "utf-8"
LST_ERRORS = "surrogateescape"  # names that are not valid UTF-8 survive the round trip


class ListError(FastrecError):
    """A tree cannot be listed faithfully; the message names the path and what to do."""


class ImageEntry(NamedTuple):
    index: int
    path: str          # relative to the root, OS separators
    labels: tuple      # floats


@dataclass
class ListOptions:
    """The list-mode flags of im2rec.py, with its defaults."""

    recursive: bool = False
    exts: Sequence[str] = DEFAULT_EXTS
    chunks: int = 1
    train_ratio: float = 1.0
    test_ratio: float = 0.0
    shuffle: bool = True


@dataclass
class ListResult:
    files: list[str] = field(default_factory=list)       # .lst paths written, in order
    counts: dict[str, int] = field(default_factory=dict)  # path -> number of lines
    label_map: list[tuple[str, int]] = field(default_factory=list)  # (relative dir, label)


def _check_name(rel: str) -> None:
    """Refuse names the tab-separated, line-based, field-stripped .lst format cannot carry."""
    bad = [c for c in ("\t", "\n", "\r") if c in rel]
    if bad or rel != rel.strip():
        what = "a tab or line break" if bad else "leading or trailing whitespace"
        raise ListError(f"cannot list {rel!r}: its name contains {what}, which a .lst file cannot "
                        f"hold; rename it (or leave it out with --exts)")


def _raise_walk_error(err: OSError) -> None:
    raise ListError(f"cannot read folder {err.filename!r}: {err.strerror}; fix its permissions or "
                    f"move it out of the tree") from err


def _matches(name: str, exts: Sequence[str]) -> bool:
    return os.path.splitext(name)[1].lower() in exts


def list_images(root: str, recursive: bool, exts: Sequence[str]) -> tuple[list[ImageEntry], list[tuple[str, int]]]:
    """Enumerate images like im2rec's list_image: (entries, [(relative dir, label)])."""
    if not os.path.isdir(root):
        raise ListError(f"image root {root!r} does not exist or is not a folder")
    entries: list[ImageEntry] = []
    if not recursive:
        try:
            names = sorted(os.listdir(root))
        except OSError as err:
            _raise_walk_error(err)
        for name in names:
            full = os.path.join(root, name)
            if os.path.isfile(full) and _matches(name, exts):
                rel = os.path.relpath(full, root)
                _check_name(rel)
                entries.append(ImageEntry(len(entries), rel, (0.0,)))
        return entries, []
    labels: dict[str, int] = {}
    for dirpath, dirs, files in os.walk(root, followlinks=True, onerror=_raise_walk_error):
        dirs.sort()   # in place: the walk is a pre-order with sorted children, like im2rec
        files.sort()
        for name in files:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and _matches(name, exts):
                label = labels.setdefault(dirpath, len(labels))
                rel = os.path.relpath(full, root)
                _check_name(rel)
                entries.append(ImageEntry(len(entries), rel, (float(label),)))
    label_map = [(os.path.relpath(d, root), v) for d, v in sorted(labels.items(), key=lambda kv: kv[1])]
    return entries, label_map


def _label_map(entries: Iterable[ImageEntry]) -> list[tuple[str, int]]:
    """(folder, label) in label order, as the walk prints it."""
    seen: dict[str, int] = {}
    for e in entries:
        seen.setdefault(os.path.dirname(e.path) or ".", int(e.labels[0]))
    return sorted(seen.items(), key=lambda kv: kv[1])


def format_line(entry: ImageEntry) -> str:
    return "%d\t" % entry.index + "".join("%f\t" % x for x in entry.labels) + "%s\n" % entry.path


def write_list(path: str, entries: Iterable[ImageEntry]) -> int:
    """Write one .lst file; returns the number of lines."""
    n = 0
    with open(path, "w", encoding=LST_ENCODING, errors=LST_ERRORS, newline="\n") as f:
        for entry in entries:
            f.write(format_line(entry))
            n += 1
    return n


def split_outputs(prefix: str, entries: list[ImageEntry], opts: ListOptions) -> list[tuple[str, list[ImageEntry]]]:
    """The (file name, entries) pairs im2rec writes: chunks, then test/val/train within each."""
    n = len(entries)
    chunk_size = (n + opts.chunks - 1) // opts.chunks
    out = []
    for c in range(opts.chunks):
        chunk = entries[c * chunk_size:(c + 1) * chunk_size]
        sfx = "_%d" % c if opts.chunks > 1 else ""
        # Split points use the nominal chunk size, not len(chunk), exactly as im2rec does.
        sep = int(chunk_size * opts.train_ratio)
        sep_test = int(chunk_size * opts.test_ratio)
        if opts.train_ratio == 1.0:
            out.append((f"{prefix}{sfx}.lst", chunk))
            continue
        if opts.test_ratio:
            out.append((f"{prefix}{sfx}_test.lst", chunk[:sep_test]))
        if opts.train_ratio + opts.test_ratio < 1.0:
            out.append((f"{prefix}{sfx}_val.lst", chunk[sep_test + sep:]))
        out.append((f"{prefix}{sfx}_train.lst", chunk[sep_test:sep_test + sep]))
    return out


def make_lists(prefix: str, root: str, opts: ListOptions | None = None,
               entries: list[ImageEntry] | None = None) -> ListResult:
    """Write the .lst files `im2rec.py --list PREFIX ROOT` would write.

    `entries` replaces the directory walk (e.g. when listing from a tar index).
    """
    opts = opts or ListOptions()
    if opts.chunks < 1:
        raise ListError(f"--chunks must be at least 1, got {opts.chunks}")
    prefix, root = os.path.abspath(prefix), os.path.abspath(root)
    out_dir = os.path.dirname(prefix)
    if not os.path.isdir(out_dir):
        raise ListError(f"output folder {out_dir!r} for prefix {prefix!r} does not exist; create it first")
    label_map: list[tuple[str, int]] = []
    if entries is None:
        entries, label_map = list_images(root, opts.recursive, tuple(opts.exts))
    else:
        label_map = _label_map(entries)
    entries = list(entries)
    if opts.shuffle:
        random.Random(SHUFFLE_SEED).shuffle(entries)
    result = ListResult(label_map=label_map)
    for path, chunk in split_outputs(prefix, entries, opts):
        result.counts[path] = write_list(path, chunk)
        result.files.append(path)
    return result


class ListItem(NamedTuple):
    """One parsed .lst line: id, path (as written), labels (floats)."""

    id: int
    path: str
    labels: tuple


def read_list(path: str, warn: bool = True) -> Iterator[ListItem]:
    """Parse a .lst like im2rec's read_list: bad lines are logged (if `warn`) and skipped, not fatal."""
    with open(path, encoding=LST_ENCODING, errors=LST_ERRORS) as f:
        for lineno, line in enumerate(f, 1):
            fields = [x.strip() for x in line.strip().split("\t")]
            if len(fields) < 3:
                if line.strip() and warn:
                    log.warning("%s:%d: needs at least 3 tab-separated fields, has %d: %r",
                                path, lineno, len(fields), line)
                continue
            try:
                yield ListItem(int(fields[0]), fields[-1], tuple(float(x) for x in fields[1:-1]))
            except ValueError as err:
                if warn:
                    log.warning("%s:%d: cannot parse %r: %s", path, lineno, line, err)


def find_lists(prefix: str) -> tuple[str, list[str]]:
    """The .lst files im2rec would pack for PREFIX: (working dir, sorted list paths).

    A folder prefix means every .lst in it; otherwise every file in the prefix's folder whose
    absolute path starts with the prefix and ends with .lst. Sorted, where im2rec uses the
    (arbitrary) os.listdir order, so runs are reproducible.
    """
    prefix = os.path.abspath(prefix)
    work = prefix if os.path.isdir(prefix) else os.path.dirname(prefix)
    if not os.path.isdir(work):
        return work, []
    found = []
    for name in sorted(os.listdir(work)):
        full = os.path.join(work, name)
        if os.path.isfile(full) and full.startswith(prefix) and full.endswith(".lst"):
            found.append(full)
    return work, found
