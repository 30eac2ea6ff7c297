"""A pack's output files: how much of them an interrupted pack left (`resume_point`), and
`_Outputs`, which appends batches in the crash-safe order: the .rec bytes first, then the skip
lines, then the fingerprints, then the .idx lines, so the .idx never names a record that is not
wholly in the .rec nor one without its fingerprints."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

from fastrec._native.core import fingerprint
from fastrec.engine.job import Job
from fastrec.engine.options import PackError
from fastrec.engine.outcome import Outcome
from fastrec.errors import DataError, EnvironmentFault
from fastrec.formats.fingerprints import (HEADER_BYTES, FingerprintsError, entries_bytes, iter_entries,
                                          open_entries, size_for)
from fastrec.formats.lists import ListItem
from fastrec.formats.recordio import record_end_in_file

WRITEBACK_EVERY = 8 << 20


@dataclass
class ResumePoint:
    items_done: int = 0
    rec_bytes: int = 0
    idx_bytes: int = 0
    skip_bytes: int = 0
    records: int = 0
    skips: int = 0


def _complete_lines(path: str) -> Iterator[bytes]:
    """The lines of a file that end with a newline, read as they are walked (a torn last line is
    dropped): a 14 M-line .idx is never held in memory."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            if line.endswith(b"\n"):
                yield line


def _count_lines(path: str) -> int:
    """Complete lines of a file (newlines), counted in 1 MiB reads."""
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def resume_point(job: Job) -> ResumePoint:
    """How much of `job` its outputs already hold, by walking the list against them.

    Item by item: if the next skip line names the item's path, it was skipped; else if the next
    .idx line has the item's id, its record is whole, directly follows the previous one and has
    its fingerprints entry, it was packed; otherwise the work stops here. Whatever follows is a
    torn tail to cut. A kept record whose bytes or id disagree with its fingerprints was altered
    after it was written: DataError, and nothing is cut.
    """
    point = ResumePoint()
    idx_lines, skip_lines = _complete_lines(job.idx), _complete_lines(job.skipped)
    idx_line, skip_line = next(idx_lines, None), next(skip_lines, None)
    rec_size = os.path.getsize(job.rec) if os.path.exists(job.rec) else 0
    try:
        sidecar, entries = open_entries(job.fingerprints)
    except FileNotFoundError:    # im2rec's outputs, or a crash before the first write: redo them
        sidecar, entries = open(os.devnull, "rb"), 0
    except FingerprintsError:
        if os.path.getsize(job.fingerprints) >= len(HEADER_BYTES):
            raise            # not a torn header (a crash before the first flush) but another file
        sidecar, entries = open(os.devnull, "rb"), 0
    with sidecar, open(job.rec, "rb") if rec_size else open(os.devnull, "rb") as rec:
        kept = iter_entries(sidecar, entries)
        for item in job.items:
            if skip_line is not None and skip_line.split(b"\t", 1)[0] == os.fsencode(item.path):
                point.skip_bytes += len(skip_line)
                point.skips += 1
                point.items_done += 1
                skip_line = next(skip_lines, None)
                continue
            if idx_line is None:
                break
            fields = idx_line.split(b"\t")
            try:
                key, offset = int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                break
            if key != item.id or offset != point.rec_bytes:
                break
            end = record_end_in_file(rec, offset, rec_size)
            entry = next(kept, None)
            if end is None or entry is None or entry == (0, 0, 0):   # zeros: a power cut's unwritten tail
                break
            rec.seek(offset)
            if entry[0] != key or entry[2] != fingerprint(rec.read(end - offset)):
                raise DataError(f"cannot --resume {job.rec}: record {point.records} (id {key}, at byte {offset}) "
                                f"does not match {job.fingerprints}, so the outputs were altered after they "
                                f"were written; pack again without --resume")
            point.rec_bytes = end
            point.idx_bytes += len(idx_line)
            point.records += 1
            point.items_done += 1
            idx_line = next(idx_lines, None)
    return point


def _truncate(path: str, size: int) -> None:
    with open(path, "ab") as f:
        f.truncate(size)



def _refuse_odd_outputs(job: Job) -> None:
    """An output's name taken by a folder, FIFO, socket or device is refused before anything is
    read or opened (opening a FIFO blocks forever; a folder fails halfway through a resume)."""
    for path in job.outputs:
        if os.path.exists(path) and not os.path.isfile(path):   # a dangling link is written through
            raise PackError(f"cannot write {path}: it is there but is not a regular file; move it away and rerun")


class _Outputs:
    """The output files of a list, appended in the crash-safe order. The .skipped.tsv exists
    only when something was skipped (it is opened at the first skip)."""

    def __init__(self, job: Job, point: ResumePoint | None):
        mode = "r+b" if point else "wb"
        if point:
            for path, size in ((job.rec, point.rec_bytes), (job.idx, point.idx_bytes)):
                if not os.path.exists(path):
                    open(path, "wb").close()
                _truncate(path, size)
            if point.records:
                _truncate(job.fingerprints, size_for(point.records))
            if os.path.exists(job.skipped):
                _truncate(job.skipped, point.skip_bytes)
        if os.path.exists(job.skipped) and not (point and point.skip_bytes):
            os.remove(job.skipped)   # an earlier pack's skips (or a torn first line) are not this one's
        self._skip_path = job.skipped
        self.skip = None
        try:
            self.rec = open(job.rec, mode)
            self.idx = open(job.idx, mode)
            self.fp = open(job.fingerprints, "r+b" if point and point.records else "wb")
            if self.fp.tell() == 0 and not (point and point.records):
                self.fp.write(HEADER_BYTES)
            if os.path.exists(job.skipped):
                self.skip = open(job.skipped, "ab")
        except OSError as err:
            raise PackError(f"cannot write {err.filename}: {err.strerror}") from err
        for f in (self.rec, self.idx, self.fp):
            f.seek(0, os.SEEK_END)
        self.pos = self.rec.tell()
        self._written_back = self.pos   # .rec bytes before this are already on their way to the disk

    def _files(self) -> list:
        return [f for f in (self.rec, self.idx, self.fp, self.skip) if f is not None]

    def append(self, items: Sequence[ListItem], outcomes: Sequence[Outcome]) -> tuple[int, int]:
        """Write a batch; returns (records, bytes written to the .rec)."""
        idx_lines, skip_lines, chunks, prints = [], [], [], []
        pos = self.pos
        for item, out in zip(items, outcomes):
            if out.record is None:
                message = out.message.replace("\t", " ").replace("\n", " ")
                skip_lines.append(f"{item.path}\t{out.reason}\t{message}\n")
            else:
                idx_lines.append(f"{item.id}\t{pos}\n")
                chunks.append(out.record)
                prints.append((item.id, out.source_digest, out.record_digest))
                pos += len(out.record)
        try:
            self.rec.write(b"".join(chunks))
            self.rec.flush()                       # records before the lines that name them
            if skip_lines:
                if self.skip is None:
                    self.skip = open(self._skip_path, "ab")
                self.skip.write("".join(skip_lines).encode("utf-8", "surrogateescape"))
                self.skip.flush()
            self.fp.write(entries_bytes(prints))   # fingerprints before the .idx lines, like the records
            self.fp.flush()
            self.idx.write("".join(idx_lines).encode())
            self.idx.flush()
        except OSError as err:   # the disk, not the images: stop, resumable
            raise EnvironmentFault(f"writing {err.filename or self.rec.name} failed: {err.strerror}; free "
                                   f"some space and rerun with --resume to continue where it stopped") from err
        written = pos - self.pos
        self.pos = pos
        self._start_writeback()
        return len(chunks), written

    def _start_writeback(self) -> None:
        """Every WRITEBACK_EVERY bytes, have the kernel start writing the .rec to disk and drop the
        pages once clean: the final fsync then waits for the last few MB, not the whole file
        (measured: 3 ms instead of 115 ms for a 232 MB .rec), and a 100 GB pack does not push
        the images it reads out of the page cache."""
        if self.pos - self._written_back < WRITEBACK_EVERY or not hasattr(os, "posix_fadvise"):
            return
        try:
            os.posix_fadvise(self.rec.fileno(), self._written_back, self.pos - self._written_back,
                             os.POSIX_FADV_DONTNEED)
        except OSError:
            pass    # a hint only
        self._written_back = self.pos

    def close(self, sync: bool = True) -> None:
        """Flush and fsync (sync=True), or, after a failure, just close: --resume cuts any torn tail."""
        for f in self._files():
            try:
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
                f.close()
            except OSError as err:
                if sync:
                    raise EnvironmentFault(f"closing {f.name} failed: {err.strerror}; rerun with --resume") from err
                try:
                    f.close()
                except OSError:
                    pass
