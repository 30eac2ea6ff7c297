"""`fastrec list --from-tar`: the lists that extract, filter, split and list would write, made from
the tar index alone (no file is extracted or moved).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

from fastrec.engine.sources import TarIndex, cache_path, index_for
from fastrec.formats.lists import ImageEntry, ListError, list_images, make_lists
from fastrec.fsutil import OutputSet
from fastrec.stages.split import choose


def walk_entries(paths: Iterable[str]) -> list[ImageEntry]:
    """The entries `list --recursive` gives for a tree holding exactly `paths`: a pre-order walk
    with each folder's files (sorted) before its sub-folders (sorted), labels dense per folder."""
    tree: dict = {}
    for p in paths:
        node = tree
        *dirs, name = p.split("/")
        for d in dirs:
            node = node.setdefault(d + "/", {})
        node[name] = None
    entries: list[ImageEntry] = []
    labels: dict[str, int] = {}

    def visit(node: dict, prefix: str) -> None:
        files = sorted(k for k, v in node.items() if v is None)
        for name in files:
            label = labels.setdefault(prefix, len(labels))
            entries.append(ImageEntry(len(entries), prefix + name, (float(label),)))
        for d in sorted((k for k, v in node.items() if v is not None), key=lambda k: k[:-1]):
            visit(node[d], prefix + d)

    visit(tree, "")
    return entries


@dataclass
class TarSplit:
    """Train/val paths after filter and split, done on the index as the file moves would."""

    train: list[str]
    val: list[str]
    small_classes: list[tuple[str, int]]


def split_index(index: TarIndex, min_images: int = 0, val_per_class: int = 0, seed: int = 0) -> TarSplit:
    """What `fastrec filter` then `fastrec split` would leave in the train and val trees."""
    by_class: dict[str, list[str]] = {}   # a class's own files: what filter counts and split picks from
    deeper: dict[str, list[str]] = {}     # files in its sub-folders: they move with the class
    for rel in index.members:
        cls, _, name = rel.partition("/")
        by_class.setdefault(cls, [])
        (deeper.setdefault(cls, []) if "/" in name else by_class[cls]).append(name)
    train, val, small = [], [], []
    for cls in sorted(by_class):
        names = sorted(by_class[cls])
        if len(names) < min_images:
            small.append((cls, len(names)))
            continue
        chosen = set()
        if val_per_class and names:              # split leaves a class without own files alone
            if len(names) <= val_per_class:
                raise ListError(f"class {cls} has {len(names)} images, too few for --val-per-class "
                                f"{val_per_class} (one must stay for training)")
            chosen = set(choose(names, val_per_class, seed, cls))
        for name in names:
            (val if name in chosen else train).append(f"{cls}/{name}")
        train += [f"{cls}/{name}" for name in deeper.get(cls, [])]
    return TarSplit(train, val, small)


def _check_folder(prefix: str) -> None:
    out_dir = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(out_dir):
        raise ListError(f"output folder {out_dir!r} for prefix {prefix!r} does not exist; create it first")


@dataclass
class TarLists:
    train: object                    # lists.ListResult
    val: object | None
    split: TarSplit
    rejected: list[tuple[str, str]]


def make_lists_from_tar(prefix: str, archives: Sequence[str], opts, min_images: int = 0,
                        val_per_class: int = 0, seed: int = 0, val_prefix: str | None = None,
                        val_chunks: int = 1) -> TarLists:
    """The .lst files `fastrec list --recursive` would write for the trees that extract, filter
    (min_images) and split (val_per_class, seed) would leave, made from the index alone."""
    if val_per_class and not val_prefix:
        raise ListError("--val-per-class needs --val-prefix (where the validation lists go)")
    for p in (prefix, val_prefix) if val_per_class else (prefix,):
        _check_folder(p)            # before the index is cached there
    index = index_for(archives, cache_path(prefix), tuple(opts.exts))
    split = split_index(index, min_images, val_per_class, seed)
    if not split.train:
        why = (f"all {len(split.small_classes)} classes have fewer than --min-images {min_images}"
               if split.small_classes else f"the archives hold no image ({', '.join(opts.exts)})")
        raise ListError(f"no image to list: {why}; no list was written")
    val = None
    with OutputSet("the train and val lists") as out:   # one set: both whole, or neither replaced
        train = make_lists(prefix, ".", opts, entries=walk_entries(split.train), outputs=out)
        if val_per_class:
            val = make_lists(val_prefix, ".", dataclasses.replace(opts, chunks=val_chunks),
                             entries=walk_entries(split.val), outputs=out)
    return TarLists(train, val, split, index.rejected)


def make_labelled_lists(prefix: str, root: str | None, archives: Sequence[str] | None, labels_file: str,
                        classes: str, opts, ids_file: str | None = None, partial: bool = False):
    """Lists of a flat set of images (a folder, or a tar such as ILSVRC2012_img_val.tar) labelled
    from a ground-truth file, numbered like the train lists (see formats.lists.ground_truth_labels)."""
    from fastrec.formats.lists import class_labels, ground_truth_labels, write_synset
    exts = tuple(opts.exts)
    if archives:
        _check_folder(prefix)
        index = index_for(archives, cache_path(prefix), exts)
        paths = sorted(index.members, key=lambda p: (p.rsplit("/", 1)[-1], p))
        if len({p.rsplit("/", 1)[0] for p in paths}) > 1:
            raise ListError("--labels lists a flat set: these archives hold several folders (list a train "
                            "tree with --recursive instead)")
        root = "."
    else:
        if not os.path.isdir(root):
            raise ListError(f"image root {root!r} does not exist or is not a folder")
        paths = [e.path for e in list_images(root, False, exts)[0]]
    if not paths:
        raise ListError(f"no image ({', '.join(exts)}) to label in {'the archives' if archives else repr(root)}")
    numbers = class_labels(classes, exts)
    ids = None
    if ids_file:
        ids = {name: i + 1 for name, i in class_labels(ids_file, exts).items()}
    elif not os.path.isdir(classes):    # a synset file: its order is the ids' order too
        ids = {name: i + 1 for name, i in numbers.items()}
    found = ground_truth_labels(labels_file, [p.rsplit("/", 1)[-1] for p in paths], numbers, ids, partial)
    entries = [ImageEntry(i, path, (label,)) for i, (path, label) in enumerate(zip(paths, found))]
    with OutputSet("the lists") as out:
        result = make_lists(prefix, root, opts, entries=entries, outputs=out)
        used = set(found)
        result.label_map = [(name, label) for name, label in sorted(numbers.items(), key=lambda kv: kv[1])
                            if label in used]
        # the folder of a flat set names no class: the synset is the train classes' numbering
        result.synset = write_synset(prefix, sorted(numbers.items(), key=lambda kv: kv[1]), out)
    return result
