"""`fastrec verify`: prove a .rec/.idx pair is sound before training starts on it.

Checks, per file: the framing of every record (magic, cflag sequence, lengths, padding, 4-byte
alignment), the IRHeader of every record (long enough, label bytes present, finite labels),
that the .idx names exactly the records in the .rec (same offsets, keys equal to header ids,
nothing past the end), and with `decode=True` that every image decodes, optionally to the
expected shorter edge. Every fault names the record number and byte offset.
"""
from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass, field

from fastrec.formats.lists import prefix_files
from fastrec.formats.recordio import (CFLAG_FIRST, CFLAG_FULL, CFLAG_LAST, CFLAG_MIDDLE, LEN_BITS,
                                      MAGIC, MAGIC_BYTES, MAX_RECORD_LEN, RecordIOError, read_index, unpack)

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
        out += [f"  {f}" for f in self.faults]
        if self.fault_count > len(self.faults):
            out.append(f"  ... and {self.fault_count - len(self.faults)} more")
        return out


def _scan(f: io.BufferedReader, size: int, report: Report):
    """Yield (record number, offset, payload) of each well-framed record; faults go to report.

    After a framing fault the scan resynchronises at the next aligned magic that starts a
    record (cflag 0 or 1), as dmlc's splitter would.
    """
    pos, n = 0, 0
    if size % 4:
        report.fault(None, size, f"file length {size} is not a multiple of 4 (dmlc refuses it)")
    while pos + 8 <= size:
        start, parts, first = pos, [], True
        try:
            while True:
                f.seek(pos)
                head = f.read(8)
                magic, lrec = struct.unpack("<II", head)
                if magic != MAGIC:
                    raise RecordIOError(f"bad magic 0x{magic:08x}")
                cflag, length = lrec >> LEN_BITS, lrec & MAX_RECORD_LEN
                expected = (CFLAG_FULL, CFLAG_FIRST) if first else (CFLAG_MIDDLE, CFLAG_LAST)
                if cflag not in expected:
                    raise RecordIOError(f"cflag {cflag} where {' or '.join(map(str, expected))} belongs")
                last = cflag in (CFLAG_FULL, CFLAG_LAST)
                padded = length + (-length % 4 if last else 0)
                if pos + 8 + padded > size:
                    raise RecordIOError(f"segment of {length} bytes runs past the end of the file ({size})")
                data = f.read(padded)
                if last and any(data[length:]):
                    raise RecordIOError("non-zero padding")
                parts.append(data[:length])
                pos += 8 + padded
                first = False
                if last:
                    break
        except RecordIOError as err:
            report.fault(n, pos, str(err))
            pos = _next_head(f, pos + 4, size)
            continue
        yield n, start, MAGIC_BYTES.join(parts)
        n += 1
    if pos < size:
        report.fault(n, pos, f"{size - pos} trailing bytes after the last record")


def _next_head(f, pos: int, size: int) -> int:
    """The next aligned offset that holds a magic word followed by a record-start cflag."""
    pos = (pos + 3) & ~3
    while pos + 8 <= size:
        f.seek(pos)
        magic, lrec = struct.unpack("<II", f.read(8))
        if magic == MAGIC and (lrec >> LEN_BITS) in (CFLAG_FULL, CFLAG_FIRST):
            return pos
        pos += 4
    return size


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


def verify_rec(rec: str, idx: str | None = None, decode: bool = False, resize: int | None = None) -> Report:
    """Check one .rec (and its .idx, by default the same name with .idx)."""
    report = Report(rec)
    idx = idx if idx is not None else os.path.splitext(rec)[0] + ".idx"
    size = os.path.getsize(rec)
    report.bytes = size
    offsets: dict[int, tuple[int, int | None]] = {}
    worker = None
    if decode:
        from fastrec._native.core import Worker
        worker = Worker(color=-1, raw=True)  # raw: decode only, no re-encode
    with open(rec, "rb") as f:
        for n, offset, payload in _scan(f, size, report):
            header, image = _check_header(report, n, offset, payload)
            offsets[offset] = (n, header.id if header else None)
            report.records += 1
            if decode and image is not None:
                _check_image(report, n, offset, image, resize, worker)
    if not os.path.exists(idx):
        report.fault(None, None, f"no index file {idx}")
        return report
    try:
        entries = read_index(idx)
    except RecordIOError as err:
        report.fault(None, None, str(err))
        return report
    seen = set()
    for line, (key, offset) in enumerate(entries, 1):
        if offset >= size:
            report.fault(None, offset, f"{idx}:{line}: points past the end of the .rec ({size} bytes)")
        elif offset not in offsets:
            report.fault(None, offset, f"{idx}:{line}: does not point at the start of a record")
        else:
            n, header_id = offsets[offset]
            seen.add(offset)
            if header_id is not None and header_id != key:
                report.fault(n, offset, f"{idx}:{line}: key {key} but the record's header id is {header_id}")
    for offset, (n, _) in offsets.items():
        if offset not in seen:
            report.fault(n, offset, f"record is not in {idx}")
    return report


def find_recs(prefix: str) -> list[str]:
    """A .rec path, or every .rec whose path starts with PREFIX (like pack's .lst matching)."""
    return prefix_files(prefix, ".rec")[1]


def verify(prefix: str, decode: bool = False, resize: int | None = None) -> list[Report]:
    return [verify_rec(rec, decode=decode, resize=resize) for rec in find_recs(prefix)]
