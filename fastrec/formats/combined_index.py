"""One index over the .rec files of a chunked pack, the form NVIDIA DALI's `readers.mxnet` takes
for several `path`s ("RecordIOReader supports only a single index file").

DALI reads the files as if concatenated: an index offset is the record's offset in its own file
plus the sizes of the files before it, in the order of `path` (tests/test_dali.py reads a chunked
pack through such an index with DALI 2.4.0, every record in order). The files are taken in the order pack packs
their lists (`find_lists`' sorted order, which is `sorted(glob.glob(PREFIX + "*.rec"))` within one
folder); each line keeps the record's own key (its .lst id).
"""
from __future__ import annotations

import bisect
import os
import struct
from typing import Iterator, NamedTuple

from fastrec.errors import DataError, EnvironmentFault, UsageError
from fastrec.formats.lists import find_lists, prefix_files
from fastrec.formats.recordio import (HEADER_SIZE, MAX_RECORD_LEN, RecordIOError, iter_index,
                                      read_record_at, record_end_in_file, unpack)
from fastrec.fsutil import atomic_write

__all__ = ["combined_index_path", "packed_files", "write_combined_index", "check_combined_index", "IndexFault"]


def combined_index_path(prefix: str) -> str:
    """Where `fastrec index PREFIX` writes by default: PREFIX.idx (never a chunk's own .idx)."""
    if os.path.isdir(prefix) or prefix.endswith(os.sep):
        raise UsageError(f"{prefix!r} is a folder: give the combined index a name with --output")
    if os.path.exists(prefix + ".rec"):
        raise UsageError(f"{prefix}.rec is a single-file pack whose {os.path.basename(prefix)}.idx already "
                         "indexes it; give a chunk prefix (e.g. data for data_0..data_7), or --output")
    return prefix + ".idx"


def packed_files(prefix: str) -> list[tuple[str, str]]:
    """The (.rec, .idx) pairs of PREFIX in pack's list order: the .rec beside each .lst it names,
    or, with no .lst (the lists moved away), the .rec files it names, sorted the same way."""
    lists = find_lists(prefix)[1]
    bases = [os.path.splitext(p)[0] for p in lists] or [os.path.splitext(p)[0] for p in prefix_files(prefix, ".rec")[1]]
    if not bases:
        raise UsageError(f"no .lst or .rec file matches {prefix!r}")
    for base in bases:
        for path in (base + ".rec", base + ".idx"):
            if not os.path.isfile(path):
                raise DataError(f"{path} is missing: pack {prefix!r} first (`fastrec pack {prefix} ROOT`)")
    return [(base + ".rec", base + ".idx") for base in bases]


def _lines(files: list[tuple[str, str]]) -> Iterator[str]:
    base = 0
    for rec, idx in files:
        size = os.path.getsize(rec)
        try:
            for key, offset in iter_index(idx):
                if not 0 <= offset < size:
                    raise DataError(f"{idx}: offset {offset} lies outside {rec} ({size} bytes): "
                                    f"run `fastrec verify {os.path.splitext(rec)[0]}`")
                yield f"{key}\t{base + offset}\n"
        except RecordIOError as err:
            raise DataError(f"{idx}: {err}: run `fastrec verify {os.path.splitext(rec)[0]}`") from None
        base += size


def write_combined_index(prefix: str, output: str | None = None) -> tuple[str, list[str], int]:
    """Write one index over PREFIX's .rec files, atomically; returns (path, the .rec files in the
    order DALI must be given them, records indexed)."""
    path = output or combined_index_path(prefix)
    files = packed_files(prefix)
    if os.path.abspath(path) in {os.path.abspath(p) for pair in files for p in pair}:
        raise UsageError(f"--output {path} is a file of the pack itself; name another file")
    try:
        text = "".join(_lines(files))
    except OSError as err:
        raise DataError(f"cannot read {err.filename}: {err.strerror}") from None
    try:
        atomic_write(path, text)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as err:
        raise UsageError(f"cannot write {path}: {err.strerror}") from None
    except OSError as err:   # a full disk, an I/O error: nothing half-written is left
        raise EnvironmentFault(f"cannot write {path}: {err.strerror}; run the same command again "
                               "once that is fixed") from None
    return path, [rec for rec, _ in files], text.count("\n")


class IndexFault(NamedTuple):
    line: int | None      # 1-based line of the combined index (None: the whole file)
    what: str


def _record_id(f, offset: int, size: int) -> int | None:
    """The IRHeader id of the record that starts at `offset`, or None if no whole record does."""
    end = record_end_in_file(f, offset, size)
    if end is None:
        return None
    f.seek(offset + 4)
    (lrec,) = struct.unpack("<I", f.read(4))
    if lrec & MAX_RECORD_LEN >= HEADER_SIZE:   # the header lies in the first segment (unless split in it)
        payload = f.read(HEADER_SIZE)
    else:
        payload = read_record_at(f, offset, size, padding=False).payload   # rejoined from its segments
    try:
        return unpack(payload)[0].id
    except RecordIOError:
        return None


def check_combined_index(prefix: str, index: str, limit: int = 100) -> tuple[int, list[IndexFault]]:
    """Check a combined index against PREFIX's .rec files: every line's offset lands on a whole
    record whose header id is the line's key, and the lines index each record of each file's .idx
    once (as many lines as records, offsets increasing). Returns (lines, first `limit` faults)."""
    files = packed_files(prefix)
    try:
        return _check(files, index, limit)
    except OSError as err:
        raise DataError(f"cannot read {err.filename}: {err.strerror}") from None


def _check(files: list[tuple[str, str]], index: str, limit: int) -> tuple[int, list[IndexFault]]:
    sizes = [os.path.getsize(rec) for rec, _ in files]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    total = sum(sizes)
    try:
        expected = sum(1 for _, idx in files for _ in iter_index(idx))
    except RecordIOError as err:
        raise DataError(f"a .idx of the pack is damaged ({err}): run `fastrec verify` on its files") from None
    faults: list[IndexFault] = []
    handles = [open(rec, "rb") for rec, _ in files]
    lines, last = 0, -1
    try:
        for lines, (key, offset) in enumerate(iter_index(index), 1):
            if len(faults) >= limit:
                break
            if offset <= last:
                faults.append(IndexFault(lines, f"offset {offset} does not follow the previous line's {last}"))
            last = offset
            if not 0 <= offset < total:
                faults.append(IndexFault(lines, f"offset {offset} lies past the {total} bytes of the .rec files"))
                continue
            n = bisect.bisect_right(starts, offset) - 1
            local = offset - starts[n]
            rec_id = _record_id(handles[n], local, sizes[n])
            if rec_id is None:
                faults.append(IndexFault(lines, f"offset {offset} ({files[n][0]} byte {local}) is not the start "
                                                f"of a record"))
            elif rec_id != key:
                faults.append(IndexFault(lines, f"key {key} points at the record of id {rec_id} "
                                                f"({files[n][0]} byte {local})"))
    except RecordIOError as err:
        faults.append(IndexFault(None, str(err)))
    finally:
        for h in handles:
            h.close()
    if not faults and lines != expected:
        faults.append(IndexFault(None, f"{lines} lines for the {expected} records of {len(files)} .rec file(s)"))
    return lines, faults
