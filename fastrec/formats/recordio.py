"""MXNet RecordIO: the dmlc framing, the image record header (IRHeader) and the .idx index.

The writer frames records in C (fastrec._native.recordio); `frame_py` and the readers here are
the small pure-Python reference that tests check the C code and MXNet against. The format is
described in shared/SPEC.md §1-2; in short:

    segment  = magic(u32 LE) lrec(u32 LE: cflag<<29 | length) payload zero-pad-to-4
    record   = one segment (cflag 0) or a chain 1, 2..., 3 split around aligned magic words
    payload  = IRHeader '<IfQQ' (flag, label, id, id2) [flag x float32 labels] image bytes
    .idx     = "<key>\\t<offset of the record's first segment>\\n" per record
"""
from __future__ import annotations

import numbers
import os
import struct
from typing import BinaryIO, Iterator, NamedTuple, Sequence

from fastrec._native.recordio import NativeRecordFile, frame
from fastrec.fsutil import NotRegularFile, open_regular

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LEN_BITS = 29
MAX_RECORD_LEN = (1 << LEN_BITS) - 1
CFLAG_FULL, CFLAG_FIRST, CFLAG_MIDDLE, CFLAG_LAST = 0, 1, 2, 3

_HEADER = struct.Struct("<IfQQ")
HEADER_SIZE = _HEADER.size  # 24
# mxnet packs a scalar label with native 'IfQQ', which casts like C (a finite label beyond
# float32 becomes inf, where '<f' would raise); same 24 bytes on the little-endian hosts
# MXNet runs on.
_HEADER_NATIVE = struct.Struct("@IfQQ")
assert _HEADER_NATIVE.size == HEADER_SIZE

__all__ = [
    "IRHeader", "pack", "unpack", "frame", "frame_py", "RecordIOError",
    "RecordWriter", "RecordReader", "IndexedRecordReader", "read_index", "iter_index", "record_end",
    "record_end_in_file", "read_record_at", "walk_records", "Framed", "FramingFault",
]


class RecordIOError(ValueError):
    """A .rec or .idx file is not valid RecordIO; the message names the byte offset."""

    def __init__(self, what: str, offset: int | None = None):
        super().__init__(what if offset is None else f"{what} at byte {offset}")
        self.what, self.offset = what, offset


class IRHeader(NamedTuple):
    """MXNet's image record header; `label` is a float or, with flag > 0, a float32 array."""

    flag: int
    label: object
    id: int
    id2: int


def pack(header: IRHeader, s: bytes) -> bytes:
    """Pack a header and payload exactly like `mxnet.recordio.pack`.

    A scalar label (any numbers.Number) forces flag 0; any other label (list, array) is stored
    as float32 values after the header, with flag = their count and a 0.0 header label.
    """
    flag, label, id_, id2 = header
    if isinstance(label, numbers.Number):
        return _HEADER_NATIVE.pack(0, label, id_, id2) + s
    import numpy as np  # only multi-label records need it; keeps `import fastrec` light

    labels = np.asarray(label, dtype=np.float32)
    return _HEADER.pack(labels.size, 0.0, id_, id2) + labels.astype("<f4").tobytes() + s


def unpack(s: bytes) -> tuple[IRHeader, bytes]:
    """Split a record payload into its IRHeader and the image bytes (`mxnet.recordio.unpack`)."""
    if len(s) < HEADER_SIZE:
        raise RecordIOError(f"record of {len(s)} bytes is shorter than the 24-byte IRHeader")
    flag, label, id_, id2 = _HEADER.unpack_from(s)
    s = s[HEADER_SIZE:]
    if flag > 0:
        if len(s) < 4 * flag:
            raise RecordIOError(f"header flag {flag} promises {4 * flag} label bytes, record has {len(s)}")
        import numpy as np

        label = np.frombuffer(s, dtype="<f4", count=flag)
        s = s[4 * flag:]
    return IRHeader(flag, label, id_, id2), s


def frame_py(payload: bytes) -> bytes:
    """Reference framing of one record (the C `frame` must give the same bytes)."""
    n = len(payload)
    if n > MAX_RECORD_LEN:
        raise ValueError("RecordIO only accepts records shorter than 2^29 bytes")
    out, start = [], 0
    for i in range(0, n - n % 4, 4):
        if payload[i:i + 4] == MAGIC_BYTES:
            cflag = CFLAG_FIRST if start == 0 else CFLAG_MIDDLE
            out.append(_segment_head(cflag, i - start) + payload[start:i])
            start = i + 4  # the magic is implied by the segment boundary
    rest = payload[start:]
    cflag = CFLAG_FULL if start == 0 else CFLAG_LAST
    out.append(_segment_head(cflag, len(rest)) + rest + b"\0" * (-len(rest) % 4))
    return b"".join(out)


def _segment_head(cflag: int, length: int) -> bytes:
    return struct.pack("<II", MAGIC, cflag << LEN_BITS | length)


class Framed(NamedTuple):
    """One record found by the framing walk: where it starts and ends, and its payload."""

    offset: int
    end: int
    payload: bytes | None    # None when walked with payload=False


class FramingFault(NamedTuple):
    """A framing fault met by `walk_records`: the byte offset and what is wrong there."""

    offset: int
    what: str


def _file_reads(f: BinaryIO):
    def read(pos: int, n: int) -> bytes:
        f.seek(pos)
        return f.read(n)
    return read


def _buffer_reads(buf: bytes | memoryview):
    return lambda pos, n: bytes(buf[pos:pos + n])


def _frame(read, offset: int, size: int, payload: bool, padding: bool) -> Framed:
    """The one framing walk: the record whose first segment starts at `offset` of data of `size`
    bytes, read through `read(pos, n)`. Checks each segment's magic, the cflag sequence (0, or 1
    2... 3), that it ends within the data and (payload and padding) that its padding is zero;
    raises RecordIOError naming the offending segment's byte offset."""
    pos, parts, first = offset, [], True
    while True:
        head = read(pos, 8) if pos + 8 <= size else b""
        if len(head) < 8:
            raise RecordIOError("truncated segment header", pos)
        magic, lrec = struct.unpack("<II", head)
        if magic != MAGIC:
            raise RecordIOError(f"bad magic 0x{magic:08x}", pos)
        cflag, length = lrec >> LEN_BITS, lrec & MAX_RECORD_LEN
        expected = (CFLAG_FULL, CFLAG_FIRST) if first else (CFLAG_MIDDLE, CFLAG_LAST)
        if cflag not in expected:
            raise RecordIOError(f"cflag {cflag} where {' or '.join(map(str, expected))} belongs", pos)
        last = cflag in (CFLAG_FULL, CFLAG_LAST)
        padded = length + (-length % 4 if last else 0)
        if pos + 8 + padded > size:
            raise RecordIOError(f"segment of {length} bytes runs past the end of the data ({size} bytes)", pos)
        if payload:
            data = read(pos + 8, padded)
            if len(data) < padded:
                raise RecordIOError(f"segment is truncated ({len(data)} of {padded} bytes)", pos)
            if padding and last and any(data[length:]):
                raise RecordIOError("non-zero padding", pos)
            parts.append(data[:length])
        pos += 8 + padded
        first = False
        if last:
            return Framed(offset, pos, MAGIC_BYTES.join(parts) if payload else None)


def record_end(buf: bytes | memoryview, offset: int) -> int:
    """Offset just past the record that starts at `offset` in `buf` (validating its framing)."""
    return _frame(_buffer_reads(buf), offset, len(buf), payload=False, padding=False).end


def record_end_in_file(f: BinaryIO, offset: int, size: int) -> int | None:
    """End of the record starting at `offset` in an open file of `size` bytes, or None when the
    record is not whole there (bad head, wrong cflag sequence, or running past the end)."""
    try:
        return _frame(_file_reads(f), offset, size, payload=False, padding=False).end
    except RecordIOError:
        return None


def read_record_at(f: BinaryIO, offset: int, size: int, padding: bool = True) -> Framed:
    """The record starting at `offset` of an open file of `size` bytes, payload included."""
    return _frame(_file_reads(f), offset, size, payload=True, padding=padding)


def walk_records(f: BinaryIO, size: int, payload: bool = True):
    """Walk a whole .rec from its start: yield a Framed per well-framed record and a FramingFault
    per fault. After a fault the walk resynchronises at the next aligned magic word that starts a
    record (cflag 0 or 1), as dmlc's splitter would; bytes too few for a segment at the end are a
    fault too."""
    read = _file_reads(f)
    pos = 0
    while pos + 8 <= size:
        try:
            rec = _frame(read, pos, size, payload=payload, padding=payload)
        except RecordIOError as err:
            yield FramingFault(err.offset, err.what)
            pos = _next_record_head(read, pos + 4, size)
            continue
        yield rec
        pos = rec.end
    if pos < size:
        yield FramingFault(pos, f"{size - pos} trailing bytes after the last record")


def _next_record_head(read, pos: int, size: int) -> int:
    """The next aligned offset that holds a magic word followed by a record-start cflag."""
    pos = (pos + 3) & ~3
    while pos + 8 <= size:
        magic, lrec = struct.unpack("<II", read(pos, 8))
        if magic == MAGIC and (lrec >> LEN_BITS) in (CFLAG_FULL, CFLAG_FIRST):
            return pos
        pos += 4
    return size


def _read_record(f: BinaryIO) -> bytes | None:
    """Read one logical record from a file positioned at a record head; None at end of file.

    Like dmlc's reader it does not look at the padding bytes (`verify` does)."""
    pos = f.tell()
    size = f.seek(0, os.SEEK_END)   # files and in-memory buffers alike
    if pos >= size:
        return None
    rec = read_record_at(f, pos, size, padding=False)
    f.seek(rec.end)
    return rec.payload


class RecordWriter:
    """Write a .rec file (and, given `idx_path`, its .idx), byte-identical to MXIndexedRecordIO."""

    def __init__(self, path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self._rec = NativeRecordFile(path, "wb")
        self._idx = open(idx_path, "w", encoding="utf-8", newline="\n") if idx_path else None

    def write(self, payload: bytes) -> int:
        """Append one record; returns its byte offset."""
        return self._rec.write(payload)

    def write_idx(self, key: int, payload: bytes) -> int:
        """Append one record and its index line `key<TAB>offset`."""
        if self._idx is None:
            raise ValueError("RecordWriter was opened without an idx_path")
        pos = self._rec.write(payload)
        self._idx.write(f"{int(key)}\t{pos}\n")
        return pos

    def tell(self) -> int:
        return self._rec.tell()

    def close(self) -> None:
        self._rec.close()
        if self._idx:
            self._idx.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RecordReader:
    """Sequential reader of a .rec file; iterating yields each record's payload."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._f = open(self.path, "rb")

    def read(self) -> bytes | None:
        """The next record's payload, or None at end of file."""
        return _read_record(self._f)

    def seek(self, offset: int) -> None:
        self._f.seek(offset)

    def tell(self) -> int:
        return self._f.tell()

    def __iter__(self) -> Iterator[bytes]:
        while (rec := self.read()) is not None:
            yield rec

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_index(idx_path: str | os.PathLike) -> Iterator[tuple[int, int]]:
    """The (key, offset) pairs of a .idx file in file order, read as they are walked; a line that
    is not 'key<TAB>offset' raises RecordIOError when it is reached."""
    try:
        f = open_regular(idx_path)   # a FIFO would block, a device never end
    except NotRegularFile as err:
        raise RecordIOError(str(err)) from None
    with f:
        for lineno, line in enumerate(f, 1):   # bytes: a binary file is a bad line, not a decode error
            fields = line.strip().split(b"\t")
            try:
                yield int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                raise RecordIOError(f"{idx_path}:{lineno}: not a 'key<TAB>offset' line: {line!r}") from None


def read_index(idx_path: str | os.PathLike) -> list[tuple[int, int]]:
    """Parse a .idx file into (key, offset) pairs in file order."""
    return list(iter_index(idx_path))


class IndexedRecordReader(RecordReader):
    """Random access through the .idx: `read_idx(key)`, `keys` in file order (MXIndexedRecordIO)."""

    def __init__(self, idx_path: str | os.PathLike, path: str | os.PathLike):
        super().__init__(path)
        entries = read_index(idx_path)
        self.keys: Sequence[int] = [k for k, _ in entries]
        self.idx = dict(entries)

    def read_idx(self, key: int) -> bytes:
        self.seek(self.idx[key])
        rec = self.read()
        if rec is None:
            raise RecordIOError(f"index entry {key} points at the end of {self.path}")
        return rec
