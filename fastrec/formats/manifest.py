"""A pack's record of itself: `<list>.manifest.json`, written atomically beside the `.rec`/`.idx`.

It says which fastrec made the pack, with which byte-changing settings, from which list (a
digest of every item's id, labels and path, in order) and source, and what came of it (items
expected, records written, skips by reason, records per label, and the label -> class-folder
map). `--resume` and the Dask shards refuse to continue work whose manifest differs, `verify`
checks a pack against it, and `--json` prints it. The `.rec`/`.idx` stay exactly im2rec's.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Iterable

from fastrec.errors import DataError
from fastrec.formats.fields import wrong_fields
from fastrec.fsutil import NotRegularFile, atomic_write, open_regular

MANIFEST_SUFFIX = ".manifest.json"
# The version of the bytes a pack holds (.rec, .idx, fingerprints, manifest) for a given list and
# settings: bump it whenever fastrec would write other bytes. --resume and the Dask shards refuse to
# continue work whose format (or fastrec version) is not this one. 2: the fingerprints sidecar.
FORMAT_VERSION = 2


def manifest_path(rec: str) -> str:
    """`x.rec` -> `x.manifest.json` (named after the list, like the .idx)."""
    return os.path.splitext(rec)[0] + MANIFEST_SUFFIX


class ListDigest:
    """Digest of list items (id, labels, path), fed in order; also counts items per label and
    remembers each label's class folder (the folder of its first item's path)."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.count = 0
        self.classes: dict[str, str] = {}

    def update(self, item_id: int, labels: Iterable[float], path: str) -> None:
        labels = tuple(labels)
        line = "%d\t%s\t%s\n" % (item_id, "\t".join("%r" % float(x) for x in labels), path)
        self._h.update(line.encode("utf-8", "surrogateescape"))
        self.count += 1
        if labels:
            self.classes.setdefault(label_key(labels[0]), os.path.dirname(path))

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def label_key(label: float) -> str:
    """A label as a JSON key: integers without a fraction ("3"), other floats as repr."""
    return str(int(label)) if float(label).is_integer() else repr(float(label))


@dataclass
class Manifest:
    fastrec: str                                   # version that wrote the pack
    settings: dict                                 # every setting that changes the bytes
    list: str                                      # the .lst packed (absolute path)
    list_digest: str                               # ListDigest of its items
    source: dict                                   # {"root": path} or {"archives": [...]}
    expected: int                                  # items in the list
    written: int = 0                               # records in the .rec
    skipped: int = 0                               # lines in the .skipped.tsv
    reasons: dict = field(default_factory=dict)    # skip reason -> count
    per_class: dict = field(default_factory=dict)  # label -> records written
    classes: dict = field(default_factory=dict)    # label -> class folder
    complete: bool = False                         # every item is a record or a skip
    format: int = FORMAT_VERSION                   # FORMAT_VERSION of the fastrec that wrote it
    fingerprints: str = ""                         # the sidecar (formats/fingerprints.py), beside it
    fingerprints_digest: str = ""                  # fingerprints.file_digest of it, once complete

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        """ValueError for anything but a JSON object with the fields of a manifest, each of its type."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"not a JSON object but {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        problems = wrong_fields(cls, data) + [f"{f.name} is missing" for f in fields(cls) if f.name not in data
                                              and f.default is MISSING and f.default_factory is MISSING]
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**data)


class ManifestError(DataError, ValueError):
    """A manifest is there but cannot be read (damaged, edited, or not a regular file)."""


def write_manifest(path: str, manifest: Manifest) -> None:
    atomic_write(path, manifest.to_json().encode("utf-8", "surrogateescape"))


def read_manifest(path: str) -> Manifest | None:
    """The manifest at `path`, or None when there is none (a pack from im2rec or an older fastrec)."""
    try:
        with open_regular(path) as f:   # never blocks on a FIFO nor reads a device forever
            return Manifest.from_json(f.read().decode("utf-8", "surrogateescape"))
    except FileNotFoundError:
        return None
    except NotRegularFile as err:
        raise ManifestError(f"{err} (move it away to go on without it)") from None
    except ValueError as err:
        raise ManifestError(f"{path} cannot be read: {err} (move it away to go on without it)") from None


def setting_differences(old: dict, new: dict) -> list[str]:
    """Human-readable `name: old -> new` for every setting that differs."""
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return out
