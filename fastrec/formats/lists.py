"""`.lst` files: writing them like `im2rec.py --list` (byte for byte) and reading them back.

A line is `index<TAB>label...<TAB>relative/path\\n`, labels printed with "%f".
Enumeration, labels, the seeded shuffle, chunking and the train/val/test split follow
MXNet 1.9.1's tools/im2rec.py exactly (shared/SPEC.md §3), so a user can swap tools freely.
"""
from __future__ import annotations

import array
import contextlib
import logging
import os
import random
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple, Sequence
from fastrec.errors import DataError, FastrecError
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
    # Links are followed as im2rec follows them, but a folder already on the way down (`c0/up ->
    # ..`) is a loop: im2rec walks it until the path is too long, repeating the tree in new classes.
    on_the_way = {root: (os.path.realpath(root),)}
    for dirpath, dirs, files in os.walk(root, followlinks=True, onerror=_raise_walk_error):
        dirs.sort()   # in place: the walk is a pre-order with sorted children, like im2rec
        files.sort()
        above = on_the_way.pop(dirpath)
        for d in dirs:
            full = os.path.join(dirpath, d)
            real = os.path.realpath(full)
            if real in above:
                raise ListError(f"symbolic link loop: {full!r} leads back to {real!r}, a folder it lies in; "
                                f"im2rec would list the tree again under it until the path is too long. "
                                f"Remove the link (or point it elsewhere) and list again")
            on_the_way[full] = above + (real,)
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


# ---------------------------------------------------------------- the .lst grammar
# One grammar for every reader (pack, verify, --resume, Dask planning): a line is what MXNet
# 1.9.1's im2rec.py `read_list` makes of it -- the file read as text with universal newlines
# (so CRLF ends a line like LF), the line stripped, split on TAB, each field stripped; then
# int(first), float(each middle field), the last field the path (shared/SPEC.md §4.3). A line
# that is empty once stripped is not a list line (im2rec passes over it too). fastrec adds what
# im2rec finds out only when packing: the id must fit the record header (0..2^64-1), an id may
# appear once per list, and the path stays under the image root.
UINT64_MAX = (1 << 64) - 1
BAD_LINE = "bad-list-line"        # the skip reasons of lines read with skip_bad_lines
DUPLICATE_ID = "duplicate-id"
OUTSIDE_ROOT = "outside-root"
MAX_LISTED = 5                    # bad lines named in one error


@dataclass(frozen=True)
class ListRules:
    """How strictly a .lst is read: the defaults refuse anything im2rec would quietly drop or mix up."""

    skip_bad_lines: bool = False       # a bad line becomes a BadLine (a named skip), not an error
    allow_outside_root: bool = False   # absolute and `..` paths are read, as im2rec reads them
    allow_duplicate_ids: bool = False  # repeated ids are packed, as im2rec packs them
    root: str | None = None            # the image root: a `..` after a link is judged where it leads


LENIENT = ListRules(skip_bad_lines=True, allow_outside_root=True, allow_duplicate_ids=True)


class BadLine(NamedTuple):
    """A line that is not a list item, kept in its place (with skip_bad_lines) so that it becomes a
    skip with its reason. id and labels are the parsed ones where they parse (else -1 and ()),
    so a list digests the same whichever rules read it."""

    id: int
    path: str          # the last field, as im2rec would have read the path
    labels: tuple
    line: int
    reason: str        # BAD_LINE, DUPLICATE_ID or OUTSIDE_ROOT
    message: str


class ListLineError(ListError, DataError):
    """A .lst holds lines the rules refuse; the message names the file, each line and what to do."""


def _fields(text: str) -> list[str]:
    return [x.strip() for x in text.strip().split("\t")]


def parse_line(text: str) -> ListItem | tuple[str, int, tuple] | None:
    """A line as im2rec's read_list parses it: a ListItem; None for a blank line; or, for a line
    im2rec drops or cannot pack, (what is wrong, id or -1, labels or ())."""
    fields = _fields(text)
    if fields == [""]:
        return None
    if len(fields) < 3:
        return (f"needs at least 3 tab-separated fields (id, label, path), has {len(fields)}", -1, ())
    try:
        item_id = int(fields[0])
    except ValueError:
        bom = " (it starts with a byte-order mark: save the list as UTF-8 without one)" \
            if fields[0].startswith("\ufeff") else ""
        return (f"the id {fields[0]!r} is not a whole number{bom}", -1, ())
    try:
        labels = tuple(float(x) for x in fields[1:-1])
    except ValueError:
        bad = next(x for x in fields[1:-1] if not _is_float(x))
        return (f"the label {bad!r} is not a number", item_id, ())
    if not 0 <= item_id <= UINT64_MAX:
        return (f"the id {item_id} is outside 0..2^64-1, which a record header cannot hold", item_id, labels)
    return ListItem(item_id, fields[-1], labels)


def _is_float(x: str) -> bool:
    try:
        float(x)
        return True
    except ValueError:
        return False


def leaves_root(path: str) -> bool:
    """Whether a list path names a file outside the image root, lexically: absolute, or climbing
    out with `..` (links inside the tree are followed, as im2rec and `list --recursive` do)."""
    if os.path.isabs(path):
        return True
    if os.pardir not in path:     # the common case, without normalising
        return False
    norm = os.path.normpath(path)
    return norm == os.pardir or norm.startswith(os.pardir + os.sep)


def climbs_past_link(root: str | None, path: str) -> bool:
    """Whether a `..` in a list path climbs out of a symbolic link's target (`link/../x` opens x
    beside what the link points to, not ROOT/x as the path reads), so the file opened is another
    than the one the path names. Lexically inside; only the file system can tell."""
    if root is None or os.pardir not in path.split(os.sep):
        return False
    return os.path.realpath(os.path.join(root, path)) != os.path.realpath(os.path.join(root, os.path.normpath(path)))


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of a .lst; universal newlines, as im2rec's open() reads it."""
    try:
        f = open(path, encoding=LST_ENCODING, errors=LST_ERRORS)
    except OSError as err:
        raise ListError(f"cannot read {path}: {err.strerror}") from err
    with f:
        yield from enumerate(f, 1)


def classify(text: str, lineno: int, rules: ListRules, duplicates: dict[int, int]) -> ListItem | BadLine | None:
    """A line's ListItem, its BadLine (whatever the rules say about skipping: the caller decides),
    or None for a blank line. `duplicates`: line -> the earlier line with the same id."""
    parsed = parse_line(text)
    if parsed is None or isinstance(parsed, ListItem):
        item = parsed
    else:
        what, item_id, labels = parsed
        return BadLine(item_id, _fields(text)[-1], labels, lineno, BAD_LINE, what)
    if item is None:
        return None
    if lineno in duplicates and not rules.allow_duplicate_ids:
        return BadLine(item.id, item.path, item.labels, lineno, DUPLICATE_ID,
                       f"repeats the id {item.id} of line {duplicates[lineno]}")
    if not rules.allow_outside_root and (leaves_root(item.path) or climbs_past_link(rules.root, item.path)):
        return BadLine(item.id, item.path, item.labels, lineno, OUTSIDE_ROOT,
                       f"the path {item.path!r} leaves the image root")
    return item


_REMEDY = {
    BAD_LINE: "fix the line(s), or pass --skip-bad-lines to skip each as `bad-list-line`, as im2rec.py "
              "passes over them",
    DUPLICATE_ID: "give each line its own id (MXNet's readers by id return one image for both), or pass "
                  "--skip-bad-lines to skip the later line, or --allow-duplicate-ids to pack both as "
                  "im2rec.py does",
    OUTSIDE_ROOT: "move the images under ROOT (or give the ROOT that holds them), or pass "
                  "--allow-outside-root to read them where they are, as im2rec.py does",
}


def _refusal(path: str, bad: list[BadLine], count: int | None = None) -> ListLineError:
    """The error for bad lines: the first few by number, the count (when the walk counted them)."""
    shown = "; ".join(f"line {b.line}: {b.message}" for b in bad)
    more = f" (and {count - len(bad)} more)" if count and count > len(bad) else ""
    what = f"{count} lines that are not list items" if count and count > 1 else "a line that is not a list item"
    remedies = " ".join(_REMEDY[r][0].upper() + _REMEDY[r][1:] + "." for r in dict.fromkeys(b.reason for b in bad))
    return ListLineError(f"{path}: {what}: {shown}{more}. {remedies}")


def _repeated(ids: array.array) -> set[int]:
    """The ids that occur more than once (sorted with numpy: 8 bytes a line, no Python set)."""
    import numpy as np

    ordered = np.sort(np.frombuffer(ids, dtype=np.uint64)) if len(ids) else np.zeros(0, np.uint64)
    return set(int(x) for x in np.unique(ordered[1:][ordered[1:] == ordered[:-1]]))


def _lines_of(path: str, repeated: set[int], ids: dict[int, int] | None = None) -> dict[int, int]:
    """line -> the earlier line with the same id, for the ids of `repeated` (a second walk);
    `ids`, if given, gets line -> id for those lines."""
    first: dict[int, int] = {}
    out: dict[int, int] = {}
    for lineno, text in _lines(path):
        parsed = parse_line(text)
        if isinstance(parsed, ListItem) and parsed.id in repeated:
            if parsed.id in first:
                out[lineno] = first[parsed.id]
                if ids is not None:
                    ids[lineno] = parsed.id
            else:
                first[parsed.id] = lineno
    return out


def duplicate_lines(path: str) -> dict[int, int]:
    """line -> the earlier line with the same id, for each repeated id of a .lst. The list is read
    again to find the lines only when an id repeats."""
    ids = array.array("Q")
    for _, text in _lines(path):
        parsed = parse_line(text)
        if isinstance(parsed, ListItem):
            ids.append(parsed.id)
    repeated = _repeated(ids)
    return _lines_of(path, repeated) if repeated else {}


class ListCheck(NamedTuple):
    items: int                    # list lines (items and, with skip_bad_lines, bad lines)
    duplicates: dict[int, int]    # what read_list needs: line -> the earlier line with its id


def check_list(path: str, rules: ListRules = ListRules()) -> ListCheck:
    """Read a .lst once under `rules`: without skip_bad_lines, any bad line (grammar, id range, a
    repeated id, a path out of the root) raises ListLineError naming the first few and the count."""
    ids = array.array("Q")
    bad: list[BadLine] = []
    count = items = 0
    for lineno, text in _lines(path):
        entry = classify(text, lineno, rules, {})
        items += entry is not None
        if isinstance(entry, ListItem) or (isinstance(entry, BadLine) and entry.reason == OUTSIDE_ROOT):
            ids.append(entry.id)
        if isinstance(entry, BadLine):
            count += 1
            if len(bad) < MAX_LISTED:
                bad.append(entry)
    repeated = set() if rules.allow_duplicate_ids else _repeated(ids)
    repeat_ids: dict[int, int] = {}
    duplicates = _lines_of(path, repeated, repeat_ids) if repeated else {}
    if rules.skip_bad_lines:
        return ListCheck(items, duplicates)
    for lineno, earlier in sorted(duplicates.items())[:MAX_LISTED]:
        bad.append(BadLine(repeat_ids[lineno], "", (), lineno, DUPLICATE_ID,
                           f"repeats the id {repeat_ids[lineno]} of line {earlier}"))
    count += len(duplicates)
    if count:
        raise _refusal(path, sorted(bad, key=lambda b: b.line)[:MAX_LISTED], count)
    return ListCheck(items, duplicates)


def read_list(path: str, rules: ListRules = ListRules(), duplicates: dict[int, int] | None = None
              ) -> Iterator[ListItem | BadLine]:
    """The items of a .lst, in order, as im2rec's read_list parses them (blank lines are passed
    over). A line the rules refuse raises ListLineError, or with rules.skip_bad_lines is yielded
    as a BadLine in its place. `duplicates` (from check_list) saves the walk that finds repeated
    ids; None: find them first (unless rules.allow_duplicate_ids)."""
    if duplicates is None:
        duplicates = {} if rules.allow_duplicate_ids else duplicate_lines(path)
    for lineno, text in _lines(path):
        entry = classify(text, lineno, rules, duplicates)
        if isinstance(entry, BadLine) and not rules.skip_bad_lines:
            raise _refusal(path, [entry])
        if entry is not None:
            yield entry


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
    return [w for _, w in _numbered_words(path)]


def _numbered_words(path: str) -> list[tuple[int, list[str]]]:
    """(line number from 1, words) of each non-blank line; commas separate words too."""
    try:
        with open(path, encoding=LST_ENCODING, errors=LST_ERRORS) as f:
            return [(n, line.replace(",", " ").split()) for n, line in enumerate(f, 1) if line.strip()]
    except OSError as err:
        raise ListError(f"cannot read {path!r}: {err.strerror}") from err


def _examples(names: Sequence[str], few: int = 5) -> str:
    return ", ".join(repr(n) for n in names[:few]) + (", ..." if len(names) > few else "")


def ground_truth_labels(path: str, names: Sequence[str], labels: dict[str, int],
                        ids: dict[str, int] | None = None, partial: bool = False) -> list[float]:
    """The label of each file of `names` (basenames, in file order) from a ground-truth file:

    - `file class` lines (comma or space separated; `file` with or without its extension;
      `class` a class name of `labels`, or a label number; extra columns and a header line are
      ignored), as in LOC_val_solution.csv or caffe's val.txt;
    - or one number a line (ILSVRC2012_validation_ground_truth.txt): the 1-based ILSVRC id of
      the file at that position; `ids` maps a class name to its id (the devkit's class order).
    Every file must get exactly one label: a missing or unknown one is an error, not label 0, and
    so is a file given two different classes (by two lines, naming both). A labelled file that is
    not among `names` (a partial extraction) is an error too, unless `partial`: then a warning
    with the count."""
    numbered = _numbered_words(path)
    words = [w for _, w in numbered]
    if words and all(len(w) == 1 and w[0].isdigit() for w in words):
        if ids is None:
            raise ListError(f"{path!r} holds one ILSVRC id a line (the devkit's form): give the devkit's class "
                            f"order with --ids SYNSETS (line i: the class of id i)")
        by_id = {i: name for name, i in ids.items()}
        if len(words) != len(names):
            raise ListError(f"{path!r} has {len(words)} ids for {len(names)} images: the ground truth of "
                            f"another set, or a partial one? (one 1-based id a line, in file-name order, "
                            f"so it cannot label a partial set: use the `file class` form)")
        out = []
        for name, (word,) in zip(names, words):
            cls = by_id.get(int(word))
            if cls is None or cls not in labels:
                raise ListError(f"{path!r}: id {word} of {name} is not a class of --ids and --classes")
            out.append(float(labels[cls]))
        return out
    table: dict[str, tuple[float, int, str]] = {}   # file (as written) -> (label, line, class)
    header = ""     # line 1, when its class is no class and it was taken for a header
    for i, (lineno, w) in enumerate(numbered):
        if len(w) < 2:
            raise ListError(f"{path!r} line {lineno}: expected `file class`, got {' '.join(w)!r}")
        cls = w[1]
        if cls in labels:
            label = labels[cls]
        elif cls.isdigit() and int(cls) < len(labels):
            label = int(cls)
        elif i == 0:
            header = f"; line {lineno} ({' '.join(w)!r}) was taken for a header, its class being no class of --classes"
            continue        # a header line (ImageId,PredictionString)
        else:
            raise ListError(f"{path!r} line {lineno}: class {cls!r} is not a class of --classes")
        _one_class(path, w[0], table.get(w[0]), (float(label), lineno, cls))
        table[w[0]] = (float(label), lineno, cls)
    out, missing, used = [], [], set()
    for name in names:
        stem = os.path.splitext(name)[0]
        hits = [(key, table[key]) for key in dict.fromkeys((name, stem)) if key in table]
        if len(hits) == 2:      # `x.JPEG 3` and `x 5`: two lines for one image
            _one_class(path, name, hits[0][1], hits[1][1])
        if not hits:
            missing.append(name)
            out.append(None)
            continue
        used.update(key for key, _ in hits)
        out.append(hits[0][1][0])
    if missing:
        raise ListError(f"{len(missing)} of {len(names)} images have no label in {path!r}, e.g. {missing[0]!r}"
                        + header)
    absent = [key for key in table if key not in used]
    if absent:
        what = (f"{len(absent)} labelled images of {path!r} are not among the {len(names)} images listed: "
                f"{_examples(absent)}")
        if not partial:
            raise ListError(f"{what}; a partial extraction? finish it, or pass --partial-labels to list "
                            f"the images that are there")
        log.warning("%s (--partial-labels: listing the %d that are there)", what, len(names))
    return out


def _one_class(path: str, name: str, first: tuple | None, second: tuple) -> None:
    """Refuse two lines that give one image different classes (the same class twice is fine)."""
    if first is not None and first[0] != second[0]:
        (_, a, ca), (_, b, cb) = sorted([first, second], key=lambda t: t[1])
        raise ListError(f"{path!r}: {name!r} has two classes: line {a} says {ca!r}, line {b} says {cb!r}; "
                        f"keep one of the lines")
