"""`fastrec verify --sources`: re-read every packed item's source and say which changed since it
was packed (the check to run before a long training run, or before deleting the images).

The sources are where the pack's manifest says: files under its image root, or members of its
archives (indexed afresh from the archives as they are now, never from a cached index). Each
source's bytes are fingerprinted as the pack core did and compared with the source fingerprint
the pack's sidecar recorded. The list is walked against the skip file and the sidecar (as
`--resume` walks them), one source at a time: memory stays flat whatever the pack's size.
"""
from __future__ import annotations

import os

from fastrec._native.core import fingerprint
from fastrec.errors import FastrecError
from fastrec.formats.fingerprints import fingerprints_path, iter_entries, open_entries
from fastrec.formats.lists import LENIENT, read_list
from fastrec.formats.manifest import ManifestError, manifest_path, read_manifest
from fastrec.reports.verify import Report


def _reader(manifest):
    """path -> the source's bytes now (FileNotFoundError when it is gone)."""
    if "root" in manifest.source:
        root = manifest.source["root"]

        def read_file(path: str) -> bytes:
            with open(os.path.join(root, path), "rb") as f:
                return f.read()
        return read_file
    from fastrec.engine.sources import build_index
    archives = [path for path, _ in manifest.source.get("archives", [])]
    for path in archives:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"the archive {path} is not there")
    return build_index(archives, exts=None).read


def check_sources(report: Report) -> None:
    """Add to `report` (of one .rec) a fault per packed item whose source changed or is gone,
    and a note with the counts; a pack that cannot be checked (no manifest or sidecar) is a fault."""
    rec = report.rec
    base = os.path.splitext(rec)[0]
    try:
        manifest = read_manifest(manifest_path(rec))
    except ManifestError as err:
        report.fault(None, None, f"--sources: {err}")
        return
    sidecar = fingerprints_path(rec)
    if manifest is None or not os.path.isfile(sidecar) or not os.path.isfile(base + ".lst"):
        report.fault(None, None, f"--sources: {os.path.basename(rec)} has no manifest, fingerprints or list "
                                 f"beside it (made by im2rec or an older fastrec): its sources cannot be checked")
        return
    try:
        read = _reader(manifest)
        f, count = open_entries(sidecar)
    except (OSError, FastrecError) as err:   # a missing or damaged archive, a damaged sidecar
        report.fault(None, None, f"--sources: {err}")
        return
    skipped = _skipped_paths(base + ".skipped.tsv")
    skip = next(skipped, None)
    checked = changed = gone = 0
    with f:
        entries = iter_entries(f, count)
        # every line, whatever rules packed it: a line the pack refused to read is in the skips
        for line, item in enumerate(read_list(base + ".lst", LENIENT), 1):
            if skip is not None and skip == item.path:     # skipped when packed: nothing to prove
                skip = next(skipped, None)
                continue
            entry = next(entries, None)
            if entry is None or entry[0] != item.id:
                report.fault(None, None, f"--sources: the list and {os.path.basename(sidecar)} part at item "
                                         f"{line} (id {item.id}); the pack itself is faulty (see above)")
                break
            checked += 1
            try:
                now = fingerprint(read(item.path))
            except OSError as err:
                gone += 1
                report.fault(None, None, f"source {item.path} (id {item.id}) cannot be read: "
                                         f"{getattr(err, 'strerror', None) or err}")
                continue
            if now != entry[1]:
                changed += 1
                report.fault(None, None, f"source {item.path} (id {item.id}) changed since it was packed")
    report.notes.append(f"sources: {checked} re-read, {changed} changed, {gone} unreadable")


def _skipped_paths(path: str):
    """The item paths of a .skipped.tsv, in order, read as they are walked."""
    if not os.path.isfile(path):
        return iter(())

    def walk():
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                if line.endswith("\n"):
                    yield line.split("\t", 1)[0]
    return walk()
