"""A pack's manifest as the pack loop uses it: the source and list identity, the manifest at
the start and at the end of a pack, and the check that `--resume` continues the same pack."""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
from typing import Iterable, Iterator

from fastrec._version import __version__
from fastrec.engine.job import Job
from fastrec.engine.options import LATER_SETTINGS, PackOptions
from fastrec.engine.outputs import _complete_lines, _count_lines, _Outputs
from fastrec.errors import DataError, EnvironmentFault, UsageError
from fastrec.formats.fingerprints import file_digest
from fastrec.formats.lists import ListItem, synset_of
from fastrec.formats.manifest import (FORMAT_VERSION, ListDigest, Manifest, label_key, read_manifest,
                                      setting_differences, write_manifest)

log = logging.getLogger(__name__)


def source_identity(job: Job) -> dict:
    """Where the images come from: the image root, or the archives (path and size)."""
    if job.source is not None:
        return {"archives": [[os.path.abspath(a), os.path.getsize(a)] for a in job.source.archives]}
    return {"root": os.path.abspath(job.root)}


def list_digest(items: Iterable[ListItem]) -> ListDigest:
    digest = ListDigest()
    for _ in digested(items, digest):
        pass
    return digest


def list_changed(lst: str) -> DataError:
    """The fault of a .lst edited or replaced while it was packed (it is read more than once)."""
    return DataError(f"{lst} changed while it was being packed (its items are not those the pack started "
                     f"from), so the outputs would mix old and new items; pack it again, without --resume")


def digested(items: Iterable[ListItem], digest: ListDigest) -> Iterator[ListItem]:
    """`items`, fed to `digest` as they are walked."""
    for item in items:
        digest.update(item.id, item.labels, item.path)
        yield item


def start_manifest(job: Job, opts: PackOptions) -> Manifest:
    """The manifest of a pack that is starting: what it will make, from what, and how."""
    digest = list_digest(job.items)
    classes = digest.classes
    if len(set(classes.values())) < len(classes):   # one folder, several labels (a labelled flat val
        names = synset_of(job.lst) or []            # set): the folders name no class; the synset does
        classes = {k: names[int(k)] for k in classes if k.isdigit() and int(k) < len(names)}
    return Manifest(fastrec=__version__, settings=opts.settings(), list=job.lst,
                    list_digest=digest.hexdigest(), source=source_identity(job),
                    expected=len(job.items), classes=classes, format=FORMAT_VERSION,
                    fingerprints=os.path.basename(job.fingerprints))


def finish_manifest(job: Job, manifest: Manifest) -> Manifest:
    """`manifest` with the counts of the finished outputs: the list walked against the skip lines
    (each item is a record or, in list order, a skip line), the records counted in the .idx."""
    skip_lines = _complete_lines(job.skipped)
    skip_line = next(skip_lines, None)
    reasons: collections.Counter = collections.Counter()
    per_class: collections.Counter = collections.Counter()
    k = 0   # skip lines that name the list's items, in order
    for item in job.items:
        if skip_line is not None and skip_line.split(b"\t", 1)[0] == os.fsencode(item.path):
            reasons[skip_line.split(b"\t")[1].decode("utf-8", "replace")] += 1
            k += 1
            skip_line = next(skip_lines, None)
        elif item.labels:
            per_class[label_key(item.labels[0])] += 1
    skipped = k + (skip_line is not None) + sum(1 for _ in skip_lines)
    written = _count_lines(job.idx)
    return dataclasses.replace(manifest, written=written, skipped=skipped, reasons=dict(reasons),
                               per_class=dict(per_class), fingerprints_digest=_sidecar_digest(job),
                               complete=written + skipped == manifest.expected == written + k)


def _sidecar_digest(job: Job) -> str:
    return file_digest(job.fingerprints) if os.path.exists(job.fingerprints) else ""


def _write_manifest(job: Job, manifest: Manifest, out: "_Outputs | None" = None) -> None:
    try:
        write_manifest(job.manifest, manifest)
    except OSError as err:
        if out is not None:
            out.close(sync=False)
        raise EnvironmentFault(f"writing {job.manifest} failed: {err.strerror}; fix that and rerun with "
                               f"--resume to continue where it stopped") from err


def _describe_source(source: dict) -> str:
    if "root" in source:
        return f"the image root {source['root']}"
    return "the archives " + ", ".join(f"{path} ({size} bytes)" for path, size in source.get("archives", []))


def check_resumable(job: Job, fresh: Manifest) -> None:
    """Refuse (UsageError) to resume outputs whose manifest says they were made with other
    settings, from another list or from other images; without a manifest, say it cannot check."""
    old = read_manifest(job.manifest)
    if old is None:
        if os.path.exists(job.rec):
            log.warning("%s has no manifest (made by im2rec or an older fastrec): cannot check that it was "
                        "packed with these settings and this list; resuming as asked", job.rec)
        return
    if (old.fastrec, old.format) != (__version__, FORMAT_VERSION):   # another writer: other bytes, maybe
        raise UsageError(f"cannot --resume {job.rec}: it was packed by fastrec {old.fastrec} (pack format "
                         f"{old.format}), this is fastrec {__version__} (pack format {FORMAT_VERSION}), whose "
                         f"bytes may differ; pack it again without --resume (the files are untouched)")
    problems = []
    changed = setting_differences({**LATER_SETTINGS, **old.settings}, fresh.settings)
    if changed:
        problems.append("the settings differ (" + "; ".join(changed) + ")")
    if old.list_digest != fresh.list_digest:
        problems.append(f"the list changed: the ids, labels or paths of {job.lst} are not the ones packed")
    if old.source != fresh.source:
        problems.append(f"the images come from elsewhere ({_describe_source(old.source)} -> "
                        f"{_describe_source(fresh.source)})")
    if problems:
        raise UsageError(f"cannot --resume {job.rec}: " + "; ".join(problems) + ". Rerun with what the "
                         "interrupted run used, or pack without --resume to start over (the files are untouched)")
