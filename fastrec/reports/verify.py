"""`fastrec verify`: prove a pack is sound and whole before training starts on it.

Checks, per file: the framing of every record (magic, cflag sequence, lengths, padding, 4-byte
alignment), the IRHeader of every record (long enough, label bytes present, finite labels),
that the .idx names exactly the records in the .rec (same offsets, keys equal to header ids,
nothing past the end), and with `decode=True` that every image decodes, optionally to the
expected shorter edge. Every fault names the record number and byte offset.

Then the pack against what it was made from: every item of its `.lst` is a record, in list
order, or a line of its `.skipped.tsv` (so an interrupted pack fails, naming how many items are
missing), and, where pack left a `<list>.manifest.json`, the counts it recorded and that it
finished. A lone `.rec` (moved away from its .idx and .lst, as the MXNet tutorial does) is
checked alone, and the report says so.

Then the proof: where pack left a `<list>.fingerprints` (formats/fingerprints.py), every .idx line
names a record whose framed bytes have the fingerprint recorded when it was packed, under the same
id, each record is named by exactly one line, and the sidecar is the one the manifest recorded.
A pack without one (im2rec's, an older fastrec's) is checked as before, with a note saying that
its records' bytes cannot be proven.
"""
from __future__ import annotations

import array
import bisect
import collections
import io
import math
import os
import shlex
from dataclasses import dataclass, field

from fastrec._native.core import fingerprint
from fastrec.formats.fingerprints import (FingerprintsError, file_digest, fingerprints_path, iter_entries,
                                          open_entries)
from fastrec.formats.lists import (DUPLICATE_ID, LENIENT, BadLine, ListRules, duplicate_lines,
                                   prefix_files, read_list)
from fastrec.formats.manifest import ListDigest, manifest_path, read_manifest
from fastrec.formats.recordio import FramingFault, RecordIOError, iter_index, unpack, walk_records

MAX_FAULTS = 100  # a report lists this many; the count covers all


@dataclass
class Fault:
    record: int | None
    offset: int | None
    what: str

    def __str__(self) -> str:
        where = []
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.offset is not None:
            where.append(f"byte {self.offset}")
        return f"{', '.join(where) or 'file'}: {self.what}"


@dataclass
class Report:
    rec: str
    records: int = 0
    bytes: int = 0
    decoded: int = 0
    faults: list[Fault] = field(default_factory=list)
    fault_count: int = 0
    notes: list[str] = field(default_factory=list)   # what could not be checked, and why
    expected: int | None = None    # items in the .lst (None: no list found)
    skipped: int = 0               # lines of the .skipped.tsv
    missing: int = 0               # list items neither packed nor skipped

    def fault(self, record: int | None, offset: int | None, what: str) -> None:
        self.fault_count += 1
        if len(self.faults) < MAX_FAULTS:
            self.faults.append(Fault(record, offset, what))

    @property
    def ok(self) -> bool:
        return self.fault_count == 0

    def lines(self) -> list[str]:
        status = "OK" if self.ok else f"{self.fault_count} FAULT(S)"
        out = [f"{self.rec}: {self.records} records, {self.bytes} bytes"
               + (f", {self.decoded} images decoded" if self.decoded else "") + f": {status}"]
        if self.expected is not None:
            out.append(f"  list: {self.expected} items, {self.records} packed, {self.skipped} skipped, "
                       f"{self.missing} missing")
        out += [f"  note: {n}" for n in self.notes]
        out += [f"  {f}" for f in self.faults]
        if self.fault_count > len(self.faults):
            out.append(f"  ... and {self.fault_count - len(self.faults)} more")
        return out

    def to_dict(self) -> dict:
        return {"rec": self.rec, "ok": self.ok, "records": self.records, "bytes": self.bytes,
                "decoded": self.decoded, "expected": self.expected, "skipped": self.skipped,
                "missing": self.missing, "fault_count": self.fault_count,
                "faults": [str(f) for f in self.faults], "notes": self.notes}


class _RecordTable:
    """What verify keeps of each record, in file order, in flat arrays of 25 bytes a record (the
    id matching against the list adds ~100 bytes a record while it runs): its offset, header id
    (or none) and labels."""

    def __init__(self) -> None:
        self.offsets = array.array("Q")      # increasing: a record's number is its position
        self.ids = array.array("Q")
        self.has_id = bytearray()            # 0: the header did not parse
        self.label = array.array("d")        # the one label (float32 values, exact in a double)
        self.multi: dict[int, tuple[float, ...]] = {}   # record -> its labels, when it holds several
        self.digest = array.array("Q")       # fingerprint of the framed record (with a sidecar only)

    def add(self, offset: int, header) -> None:
        self.offsets.append(offset)
        self.ids.append(header.id if header else 0)
        self.has_id.append(1 if header else 0)
        labels = _labels(header) if header else ()
        self.label.append(labels[0] if len(labels) == 1 else 0.0)
        if len(labels) != 1:
            self.multi[len(self.offsets) - 1] = labels

    def labels(self, n: int) -> tuple[float, ...]:
        return self.multi[n] if n in self.multi else (self.label[n],)

    def at(self, offset: int) -> int | None:
        """The number of the record that starts at `offset`, if one does."""
        n = bisect.bisect_left(self.offsets, offset)
        return n if n < len(self.offsets) and self.offsets[n] == offset else None


def _scan(f: io.BufferedReader, size: int, report: Report):
    """Yield (record number, offset, payload) of each well-framed record; faults go to report.

    The walk is formats.recordio's: after a framing fault it resynchronises at the next aligned
    magic that starts a record (cflag 0 or 1), as dmlc's splitter would.
    """
    if size % 4:
        report.fault(None, size, f"file length {size} is not a multiple of 4 (dmlc refuses it)")
    n = 0
    for found in walk_records(f, size):
        if isinstance(found, FramingFault):
            report.fault(n, found.offset, found.what)
            continue
        yield n, found.offset, found.end, found.payload
        n += 1


def _check_header(report: Report, n: int, offset: int, payload: bytes):
    try:
        header, image = unpack(payload)
    except RecordIOError as err:
        report.fault(n, offset, f"bad image header: {err}")
        return None, None
    labels = header.label if header.flag > 0 else [header.label]
    if any(math.isnan(float(x)) for x in labels):
        report.fault(n, offset, "label is NaN")
    return header, image


def _check_image(report: Report, n: int, offset: int, image: bytes, resize: int | None, worker) -> None:
    """Decode with the packer's own strict decoder (damaged entropy data is an error, where most
    viewers only warn); non-JPEG images go through Pillow."""
    from fastrec._native.core import NEEDS_FALLBACK, OK, STATUS_NAMES

    _, [(status, _, message, _, _, w, h, _, _)] = worker.pack_bytes([0], [0.0], [image])
    if status == NEEDS_FALLBACK:
        from PIL import Image
        try:
            with Image.open(io.BytesIO(image)) as im:
                im.load()
                (w, h), status = im.size, OK
        except Exception as err:  # any decoder failure is a fault to report, not a crash
            message = f"{type(err).__name__}: {err}"
    if status != OK:
        report.fault(n, offset, f"image does not decode: {STATUS_NAMES[status]}: {message}")
        return
    report.decoded += 1
    if resize and min(w, h) != resize:
        report.fault(n, offset, f"image is {w}x{h}; its shorter edge should be {resize}")


def verify_rec(rec: str, idx: str | None = None, decode: bool = False, resize: int | None = None,
               require_fingerprints: bool = False) -> Report:
    """Check one .rec, its .idx (by default the same name with .idx), and, where they are beside it,
    its .lst, .skipped.tsv and manifest. `require_fingerprints`: a pack without its sidecar (or
    its .idx, which the sidecar is checked against) fails instead of being checked as im2rec's."""
    report = Report(rec)
    base = os.path.splitext(rec)[0]
    idx = idx if idx is not None else base + ".idx"
    size = os.path.getsize(rec)
    report.bytes = size
    records = _RecordTable()
    worker = None
    if decode:
        from fastrec._native.core import Worker
        worker = Worker(color=-1, raw=True)  # raw: decode only, no re-encode
    sidecar = fingerprints_path(rec)
    proving = os.path.isfile(sidecar)
    with open(rec, "rb") as f:
        for n, offset, end, payload in _scan(f, size, report):
            header, image = _check_header(report, n, offset, payload)
            records.add(offset, header)
            if proving:    # the framed bytes as the .rec holds them: framing, header, labels, image
                f.seek(offset)
                records.digest.append(fingerprint(f.read(end - offset)))
            report.records += 1
            if decode and image is not None:
                _check_image(report, n, offset, image, resize, worker)
    lst = base + ".lst"
    idx_there, lst_there = _regular_beside(report, idx), _regular_beside(report, lst)
    if require_fingerprints and not idx_there:
        report.fault(None, None, f"--require-fingerprints: no {os.path.basename(idx)} beside it, so its "
                                 f"fingerprints cannot prove its records")
    if not idx_there and not lst_there:
        report.notes.append(f"no {os.path.basename(idx)} or {os.path.basename(lst)} beside it: checked "
                            f"the framing and headers of the .rec alone")
        _check_not_empty(report)
        return report
    if idx_there:
        _check_index(report, idx, size, records)
        _check_fingerprints(report, idx, sidecar, records, proving, require_fingerprints)
    else:
        report.notes.append(f"no index file {idx}: the records were checked against the list by header id")
    if lst_there:
        _check_list(report, base, records)
    else:
        report.notes.append(f"no list {lst}: cannot tell whether the pack is complete")
    _check_manifest(report, rec)
    _check_not_empty(report)
    return report


def _regular_beside(report: Report, path: str) -> bool:
    """Whether `path` is a file to check. A folder, FIFO or device by that name is a fault and is
    never opened (reading a FIFO would block, a device may never end)."""
    if os.path.exists(path) and not os.path.isfile(path):
        report.fault(None, None, f"{path} is not a regular file")
        return False
    return os.path.exists(path)


def _check_not_empty(report: Report) -> None:
    """No records is a fault, unless the list itself is empty (im2rec's last chunk can be)."""
    if report.records:
        return
    if report.expected == 0:
        report.notes.append("the list is empty, and so is the pack")
    else:
        report.fault(None, None, "the .rec holds no records" + (
            f": all {report.skipped} list items were skipped" if report.expected and not report.missing else ""))


def _check_index(report: Report, idx: str, size: int, records: _RecordTable) -> None:
    try:      # a line that is not 'key<TAB>offset' is the one fault to report: look for it first
        for _ in iter_index(idx):
            pass
    except RecordIOError as err:
        report.fault(None, None, str(err))
        return
    seen = bytearray(len(records.offsets))     # .idx lines naming each record (up to 2)
    for line, (key, offset) in enumerate(iter_index(idx), 1):
        n = records.at(offset)
        if offset >= size:
            report.fault(None, offset, f"{idx}:{line}: points past the end of the .rec ({size} bytes)")
        elif n is None:
            report.fault(None, offset, f"{idx}:{line}: does not point at the start of a record")
        else:
            if seen[n]:     # a reader would serve the record twice an epoch (gluon counts lines)
                report.fault(n, offset, f"{idx}:{line}: names the same record as an earlier line")
            seen[n] = 1
            if records.has_id[n] and records.ids[n] != key:
                report.fault(n, offset, f"{idx}:{line}: key {key} but the record's header id is "
                                        f"{records.ids[n]}")
    for n in (i for i, s in enumerate(seen) if not s):
        report.fault(n, records.offsets[n], f"record is not in {idx}")


def _check_fingerprints(report: Report, idx: str, sidecar: str, records: _RecordTable, proving: bool,
                        required: bool = False) -> None:
    """Each .idx line's record has, under the line's key, the fingerprint it was packed with (the
    sidecar holds one entry per .idx line, in the same order)."""
    if not proving:
        if os.path.lexists(sidecar):
            report.fault(None, None, f"{sidecar} is not a regular file")
        elif required:
            report.fault(None, None, f"--require-fingerprints: no {os.path.basename(sidecar)}, so nothing proves "
                                     f"that each record holds the bytes it was packed with (a pack by im2rec, "
                                     f"by a fastrec before fingerprints, or one whose sidecar was removed): "
                                     f"pack it again with fastrec")
        else:
            report.notes.append(f"no {os.path.basename(sidecar)} (made by im2rec or a fastrec before fingerprints): "
                                f"framing, headers, ids and labels are checked, but not that each record holds "
                                f"the bytes it was packed with")
        return
    try:
        f, count = open_entries(sidecar)
    except FingerprintsError as err:
        report.fault(None, None, str(err))
        return
    name = os.path.basename(sidecar)
    lines = 0
    odd = None    # the first .idx line not written as pack writes it (readers parse some alike)
    with f, open(idx, "rb") as index:      # a regular file: _check_index looked
        entries = iter_entries(f, count)
        for line, raw in enumerate(index, 1):
            lines = line
            fields = raw.split(b"\t")
            try:
                key, offset = int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                key = offset = -1
            if odd is None and raw != b"%d\t%d\n" % (key, offset):
                odd = line
            entry = next(entries, None)
            if entry is None:
                continue
            n = records.at(offset)
            if n is None:
                continue            # already a fault of the .idx
            if entry[0] != key:
                report.fault(n, offset, f"{name} entry {line} is for id {entry[0]}, but {idx}:{line} has key {key}")
            elif entry[2] != records.digest[n]:
                report.fault(n, offset, f"the record's bytes are not those packed (its fingerprint differs from "
                                        f"{name} entry {line}, id {key}): it was altered or swapped; pack it again")
    if count != lines:
        report.fault(None, None, f"{name} holds {count} entries for {lines} .idx lines")
    if odd is not None:
        report.fault(None, None, f"{idx}:{odd}: not written as pack writes it (`key<TAB>offset<LF>`)")


def _skipped_paths(path: str) -> list[str]:
    """The item paths of a .skipped.tsv (first field of each line)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return [line.split("\t", 1)[0] for line in f if line.strip()]


def _labels(header) -> tuple[float, ...]:
    return tuple(float(x) for x in header.label) if header.flag > 0 else (float(header.label),)


def _listed_labels(labels, packed: tuple[float, ...]) -> tuple[float, ...]:
    """The labels a record of this list item holds, as float32: all of them when the record holds
    several (--pack-label), else the first (as im2rec writes them)."""
    return tuple(array.array("f", labels if len(packed) > 1 else labels[:1]).tolist())


def _check_list(report: Report, base: str, records: _RecordTable) -> None:
    """Every list item is a record (in list order) with the list's labels, or a skip line; nothing
    else is in the .rec. The list is walked, not loaded; records are matched by id through sorted
    arrays, so memory is a few bytes a record whatever the pack's size."""
    import numpy as np

    with_id = np.frombuffer(records.has_id, dtype=np.uint8).astype(bool)
    ids = np.frombuffer(records.ids, dtype=np.uint64)[with_id] if len(records.ids) else np.zeros(0, np.uint64)
    numbers = np.flatnonzero(with_id)                   # record number of each entry of `ids`
    unique, first, left = np.unique(ids, return_index=True, return_counts=True)   # left: not yet matched
    skipped_tsv = base + ".skipped.tsv"
    skipped = collections.Counter(_skipped_paths(skipped_tsv) if _regular_beside(report, skipped_tsv) else ())
    report.skipped = sum(skipped.values())
    wanted = array.array("Q")                            # ids of the items that are records, in list order
    count = missing = 0
    first_missing: list[tuple[int, object]] = []         # the first five (line, item)
    present_after_missing = False                        # an item found after a missing one
    lst = base + ".lst"
    rules = ListRules(skip_bad_lines=True, allow_outside_root=True)   # containment is pack's check, not the outputs'
    for line, item in enumerate(read_list(lst, rules, duplicate_lines(lst)), 1):
        count = line
        if isinstance(item, BadLine):
            if skipped[item.path] > 0:      # packed with --skip-bad-lines: a named skip
                skipped[item.path] -= 1
                continue
            if item.reason == DUPLICATE_ID:   # packed as im2rec packs it (--allow-duplicate-ids)
                k = int(np.searchsorted(unique, np.uint64(item.id)))
                if k < len(unique) and int(unique[k]) == item.id and left[k] > 0:
                    left[k] -= 1
                    wanted.append(item.id)
                report.fault(None, None, f"line {item.line} of {os.path.basename(lst)} {item.message}: MXNet's "
                                         f"readers by id return one image for both; give it its own id and "
                                         f"pack it again")
                continue
            report.fault(None, None, f"line {item.line} of {os.path.basename(lst)} is not a list item "
                                     f"({item.message}) and is not in {os.path.basename(base)}.skipped.tsv; fix "
                                     f"the line and pack it again (or pack with --skip-bad-lines)")
            continue
        k = int(np.searchsorted(unique, np.uint64(item.id))) if 0 <= item.id < 1 << 64 else len(unique)
        if k < len(unique) and int(unique[k]) == item.id and left[k] > 0:
            left[k] -= 1
            wanted.append(item.id)
            found = records.labels(int(numbers[first[k]]))
            if found != _listed_labels(item.labels, found):
                report.fault(None, None, f"the record with id {item.id} has label(s) {list(found)}, but line "
                                         f"{line} of the list gives {list(item.labels)}; pack it again")
        elif skipped[item.path] > 0:
            skipped[item.path] -= 1
        else:
            missing += 1
            if len(first_missing) < 5:
                first_missing.append((line, item))
            continue
        present_after_missing = present_after_missing or missing > 0
    report.expected, report.missing = count, missing
    for k in sorted(np.flatnonzero(left), key=lambda k: first[k]):    # in the order the .rec holds them
        report.fault(None, None, f"{int(left[k])} record(s) with id {int(unique[k])} that the list does not hold")
    for path, extra in skipped.items():
        if extra > 0:
            report.fault(None, None, f"{base}.skipped.tsv names {path!r}, which the list does not hold")
    listed = np.frombuffer(wanted, dtype=np.uint64) if len(wanted) else np.zeros(0, np.uint64)
    if not np.array_equal(ids[np.isin(ids, listed)], listed):
        report.fault(None, None, "the records are not in list order")
    if missing:
        first_line, first_item = first_missing[0]
        what = (f"{missing} of {count} list items are missing (neither a record nor in "
                f"{os.path.basename(base)}.skipped.tsv), from item {first_line} (id {first_item.id}, "
                f"{first_item.path}) on")
        if not present_after_missing:     # the pack stopped early
            what += f"; the pack stopped early: continue it with {_resume_hint(base)}"
        else:
            what += ("; first missing: " + ", ".join(f"item {ln} (id {it.id})" for ln, it in first_missing)
                     + "; pack it again (`fastrec pack`)")
        report.fault(None, None, what)


def _check_manifest(report: Report, rec: str) -> None:
    """The counts the pack recorded about itself match what is on disk, and it finished."""
    path = manifest_path(rec)
    try:
        manifest = read_manifest(path)
    except ValueError as err:   # ManifestError: says which file and why
        report.fault(None, None, str(err))
        return
    if manifest is None:
        return
    name = os.path.basename(path)
    counts = [("list items", manifest.expected, report.expected)]
    if not manifest.complete:   # its counts are the start's (0 written): only the list's size is known
        report.fault(None, None, f"{name} says the pack did not finish; continue it with "
                                 f"{_resume_hint(os.path.splitext(rec)[0])}")
    else:
        counts.append(("records", manifest.written, report.records))
        if report.expected is not None:   # the list and skip file were read
            counts.append(("skips", manifest.skipped, report.skipped))
    counts = [c for c in counts if c[2] is not None]
    if manifest.fingerprints:
        sidecar = os.path.join(os.path.dirname(path), manifest.fingerprints)
        if not os.path.isfile(sidecar):
            report.fault(None, None, f"{name} names {manifest.fingerprints}, which is not there: the pack "
                                     f"cannot be proven; pack it again")
        elif manifest.complete and file_digest(sidecar) != manifest.fingerprints_digest:
            report.fault(None, None, f"{manifest.fingerprints} changed since the pack finished ({name} "
                                     f"records another digest); pack it again")
    for what, recorded, found in counts:
        if recorded != found:
            report.fault(None, None, f"{name} records {recorded} {what}, the pack holds {found}")
    lst = os.path.splitext(rec)[0] + ".lst"
    if os.path.isfile(lst):   # anything else by that name is already a fault
        digest = ListDigest()
        for item in read_list(lst, LENIENT):
            digest.update(item.id, item.labels, item.path)
        if digest.hexdigest() != manifest.list_digest:
            report.fault(None, None, f"{os.path.basename(lst)} changed since it was packed ({name} has another "
                                     f"digest); pack it again")


def _pack_command(base: str, resume: bool) -> str:
    """The `fastrec pack` line that (re)packs `base`, with the image root or archives its manifest
    recorded (ROOT when there is no readable manifest to say)."""
    source = "ROOT"
    try:
        manifest = read_manifest(manifest_path(base + ".rec"))
    except (ValueError, OSError):
        manifest = None
    if manifest is not None and "root" in manifest.source:
        source = shlex.quote(manifest.source["root"])
    elif manifest is not None and manifest.source.get("archives"):
        paths = [path for path, _ in manifest.source["archives"]]
        folders = {os.path.dirname(path) for path in paths}
        if len(paths) > 3 and len(folders) == 1:    # e.g. one tar per class: their folder
            paths = list(folders)                   # (--resume refuses it if it holds other tars)
        source = " ".join(f"--from-tar {shlex.quote(path)}" for path in paths)
    return f"fastrec pack {'--resume ' if resume else ''}{shlex.quote(base)} {source}"


def _resume_hint(base: str) -> str:
    return f"`{_pack_command(base, resume=True)}` and the flags it was packed with (--resume checks them)"


def find_recs(prefix: str) -> list[str]:
    """A .rec path, or every .rec whose path starts with PREFIX (like pack's .lst matching)."""
    return prefix_files(prefix, ".rec")[1]


def verify(prefix: str, decode: bool = False, resize: int | None = None,
           require_fingerprints: bool = False) -> list[Report]:
    """Verify every .rec PREFIX names; a .lst it names that has no .rec is a failed report too."""
    reports = [verify_rec(rec, decode=decode, resize=resize, require_fingerprints=require_fingerprints)
               for rec in find_recs(prefix)]
    packed = {os.path.splitext(r.rec)[0] for r in reports}
    for lst in prefix_files(prefix, ".lst")[1]:
        base = os.path.splitext(lst)[0]
        if base not in packed:
            report = Report(base + ".rec")
            report.fault(None, None, f"no .rec for {os.path.basename(lst)}: it was never packed "
                                     f"(`{_pack_command(base, resume=False)}`)")
            reports.append(report)
    return reports
