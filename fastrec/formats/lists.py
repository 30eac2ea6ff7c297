"""`.lst` files: writing them like `im2rec.py --list` (byte for byte) and reading them back.

A line is `index<TAB>label...<TAB>relative/path\\n`, labels printed with "%f".
Enumeration, labels, the seeded shuffle, chunking and the train/val/test split follow
MXNet 1.9.1's tools/im2rec.py exactly (shared/SPEC.md §3), so a user can swap tools freely.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple, Sequence
from fastrec.errors import FastrecError
from fastrec.fsutil import OutputSet

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
    synset: str | None = None                              # the label -> class-folder file, if written


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


LST_TEXT = dict(encoding=LST_ENCODING, errors=LST_ERRORS, newline="\n")


def write_list(path: str, entries: Iterable[ImageEntry], outputs: OutputSet | None = None) -> int:
    """Write one .lst file (as part of the set `outputs`, or on its own, atomically); returns the
    number of lines."""
    with _own_set(outputs, f"the list {path}") as out, out.open(path, **LST_TEXT) as f:
        n = 0
        for entry in entries:
            f.write(format_line(entry))
            n += 1
    return n


@contextlib.contextmanager
def _own_set(outputs: OutputSet | None, what: str):
    """`outputs` if the caller gathers a set; else a set of one result, committed at the end."""
    if outputs is not None:
        yield outputs
        return
    with OutputSet(what) as own:
        yield own


SYNSET_SUFFIX = ".synset.txt"


def synset_path(prefix: str) -> str:
    """`PREFIX.synset.txt`: beside the lists, named after their prefix."""
    return os.path.abspath(prefix) + SYNSET_SUFFIX


def write_synset(prefix: str, label_map: Sequence[tuple[str, int]], outputs: OutputSet | None = None) -> str | None:
    """Write the class folder of each label, one per line in label order (line N is label N), as
    MXNet's examples and ImageNet pipelines read `synset.txt`. Returns its path, or None when
    there are no classes (a flat list) or the labels are not 0..N-1 (a line could not name one)."""
    if not label_map:
        return None
    labels = [label for _, label in label_map]
    if sorted(labels) != list(range(len(labels))):
        log.warning("labels are not 0..%d: no synset file written for %s", len(labels) - 1, prefix)
        return None
    path = synset_path(prefix)
    with _own_set(outputs, f"the synset file {path}") as out, out.open(path, **LST_TEXT) as f:
        f.writelines(f"{folder}\n" for folder, _ in sorted(label_map, key=lambda kv: kv[1]))
    return path


def read_synset(path: str) -> list[str]:
    """The class folders of a synset file, in label order."""
    with open(path, encoding=LST_ENCODING, errors=LST_ERRORS) as f:
        return [line.rstrip("\n") for line in f]


def synset_of(path: str) -> list[str] | None:
    """The class folders of the synset file of the lists a file belongs to (`data.synset.txt` for
    `data_3.lst` or `data_3.rec`: the longest list prefix its name starts with, in its folder)."""
    folder, name = os.path.split(os.path.abspath(path))
    prefixes = [n[:-len(SYNSET_SUFFIX)] for n in os.listdir(folder) if n.endswith(SYNSET_SUFFIX)]
    prefixes = [p for p in prefixes if name.startswith(p)]
    if not prefixes:
        return None
    return read_synset(os.path.join(folder, max(prefixes, key=len) + SYNSET_SUFFIX))


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


def _empty_cause(root: str, opts: ListOptions) -> str:
    """Why a listing found no image: the likeliest cause first."""
    exts = ", ".join(opts.exts)
    if not opts.recursive and os.path.isdir(root):
        for _, _, files in os.walk(root, onerror=lambda err: None):
            if any(_matches(name, tuple(opts.exts)) for name in files):
                return (f"no image ({exts}) directly in {root!r}, but its sub-folders hold some: "
                        f"add --recursive (each class folder gets its own label)")
    return f"no image ({exts}) under {root!r}: check ROOT and --exts (compared lower-cased)"


def _refuse_stale_lists(prefix: str, new: Sequence[str]) -> None:
    """Lists an earlier listing of this prefix left (`--chunks 3`, then `--chunks 2`: `_2.lst`)
    would be packed beside the new ones, since `pack PREFIX` packs every list the prefix names:
    refuse, naming them, rather than leave a set that means another dataset (deleting files of
    im2rec's names is the user's call)."""
    folder, base = os.path.split(prefix)
    named = re.compile(re.escape(base) + r"(_\d+)?(_train|_val|_test)?\.lst")
    stale = sorted(name for name in os.listdir(folder)
                   if named.fullmatch(name) and os.path.join(folder, name) not in new)
    if stale:
        raise ListError(f"{', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''} in {folder} "
                        f"{'is' if len(stale) == 1 else 'are'} left from an earlier listing of this prefix and "
                        f"`fastrec pack` would pack {'it' if len(stale) == 1 else 'them'} with the new lists; "
                        f"remove {'it' if len(stale) == 1 else 'them'} (and {'its' if len(stale) == 1 else 'their'} "
                        f".rec/.idx) first, or list to another prefix")


def make_lists(prefix: str, root: str, opts: ListOptions | None = None,
               entries: list[ImageEntry] | None = None, allow_empty: bool = True,
               outputs: OutputSet | None = None) -> ListResult:
    """Write the .lst files `im2rec.py --list PREFIX ROOT` would write, and for class folders
    the label -> class-folder file `PREFIX.synset.txt`.

    All of them are one set (fsutil.OutputSet): written to temporaries and renamed into place
    only when every one is whole, so a failure leaves no partial set that `pack` would take for
    whole; with `outputs`, they join the caller's set (train and val lists of one command).

    `entries` replaces the directory walk (e.g. when listing from a tar index). Without
    `allow_empty`, a listing that finds no image raises ListError with its likely cause (and
    writes nothing), where im2rec writes empty lists.
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
    if not entries and not allow_empty:
        raise ListError(_empty_cause(root, opts) + "; no list was written")
    if opts.shuffle:
        random.Random(SHUFFLE_SEED).shuffle(entries)
    result = ListResult(label_map=label_map)
    planned = split_outputs(prefix, entries, opts)
    _refuse_stale_lists(prefix, [path for path, _ in planned])
    with _own_set(outputs, f"the lists {prefix}*.lst") as out:
        for path, chunk in planned:
            result.counts[path] = write_list(path, chunk, out)
            result.files.append(path)
        if any(folder != "." for folder, _ in label_map):   # class folders, not one flat folder
            result.synset = write_synset(prefix, label_map, out)
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


def prefix_folder(prefix: str) -> str:
    """The folder a PREFIX names: itself if it is a folder, else the folder it lies in."""
    prefix = os.path.abspath(prefix)
    return prefix if os.path.isdir(prefix) else os.path.dirname(prefix)


def prefix_files(prefix: str, suffix: str) -> tuple[str, list[str]]:
    """The files a PREFIX names, as im2rec matches .lst files: (folder, sorted paths).

    A folder prefix means every `*suffix` file in it; otherwise every file in the prefix's folder
    whose absolute path starts with the prefix and ends with `suffix` (so `x.rec` names itself).
    Sorted, where im2rec uses the (arbitrary) os.listdir order, so runs are reproducible.
    """
    prefix = os.path.abspath(prefix)
    folder = prefix_folder(prefix)
    if not os.path.isdir(folder):
        return folder, []
    found = []
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if full.startswith(prefix) and full.endswith(suffix) and os.path.isfile(full):
            found.append(full)
    return folder, found


def find_lists(prefix: str) -> tuple[str, list[str]]:
    """The .lst files im2rec would pack for PREFIX: (working dir, sorted list paths)."""
    return prefix_files(prefix, ".lst")


# ---------------------------------------------------------------- labels from a ground-truth file
def class_labels(classes: str, exts: Sequence[str] = DEFAULT_EXTS) -> dict[str, int]:
    """class name -> label, numbered as the train lists number them: `classes` is the train tree
    (the labels `list --recursive` gives its folders) or a synset file (first word of each line,
    label = line number from 0, e.g. synset_words.txt or caffe's synsets.txt)."""
    if os.path.isdir(classes):
        _, label_map = list_images(classes, True, tuple(exts))
        if not label_map:
            raise ListError(f"the train tree {classes!r} holds no image folder ({', '.join(exts)})")
        if any(rel == "." or os.sep in rel for rel, _ in label_map):
            raise ListError(f"the train tree {classes!r} is not one folder per class (images at its top or in "
                            f"nested folders); give a synset file as --classes instead")
        return dict(label_map)
    words = _read_words(classes)
    names = [w[0] for w in words]
    if len(set(names)) != len(names):
        raise ListError(f"the synset file {classes!r} names a class twice")
    return {name: i for i, name in enumerate(names)}


def _read_words(path: str) -> list[list[str]]:
    try:
        with open(path, encoding=LST_ENCODING, errors=LST_ERRORS) as f:
            return [line.replace(",", " ").split() for line in f if line.strip()]
    except OSError as err:
        raise ListError(f"cannot read {path!r}: {err.strerror}") from err


def ground_truth_labels(path: str, names: Sequence[str], labels: dict[str, int],
                        ids: dict[str, int] | None = None) -> list[float]:
    """The label of each file of `names` (basenames, in file order) from a ground-truth file:

    - `file class` lines (comma or space separated; `file` with or without its extension;
      `class` a class name of `labels`, or a label number; extra columns and a header line are
      ignored), as in LOC_val_solution.csv or caffe's val.txt;
    - or one number a line (ILSVRC2012_validation_ground_truth.txt): the 1-based ILSVRC id of
      the file at that position; `ids` maps a class name to its id (the devkit's class order).
    Every file must get exactly one label: a missing or unknown one is an error, not label 0."""
    words = _read_words(path)
    if words and all(len(w) == 1 and w[0].isdigit() for w in words):
        if ids is None:
            raise ListError(f"{path!r} holds one ILSVRC id a line (the devkit's form): give the devkit's class "
                            f"order with --ids SYNSETS (line i: the class of id i)")
        by_id = {i: name for name, i in ids.items()}
        if len(words) != len(names):
            raise ListError(f"{path!r} has {len(words)} ids for {len(names)} images: the ground truth of "
                            f"another set? (one 1-based id a line, in file-name order)")
        out = []
        for name, (word,) in zip(names, words):
            cls = by_id.get(int(word))
            if cls is None or cls not in labels:
                raise ListError(f"{path!r}: id {word} of {name} is not a class of --ids and --classes")
            out.append(float(labels[cls]))
        return out
    table: dict[str, float] = {}
    for n, w in enumerate(words):
        if len(w) < 2:
            raise ListError(f"{path!r} line {n + 1}: expected `file class`, got {' '.join(w)!r}")
        cls = w[1]
        if cls in labels:
            label = labels[cls]
        elif cls.isdigit() and int(cls) < len(labels):
            label = int(cls)
        elif n == 0:
            continue        # a header line (ImageId,PredictionString)
        else:
            raise ListError(f"{path!r} line {n + 1}: class {cls!r} is not a class of --classes")
        table[w[0]] = table[os.path.splitext(w[0])[0]] = float(label)
    out, missing = [], []
    for name in names:
        label = table.get(name, table.get(os.path.splitext(name)[0]))
        if label is None:
            missing.append(name)
        out.append(label)
    if missing:
        raise ListError(f"{len(missing)} of {len(names)} images have no label in {path!r}, e.g. {missing[0]!r}")
    return out
