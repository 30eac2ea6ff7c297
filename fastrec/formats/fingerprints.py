"""A pack's proof of what it holds: `<list>.fingerprints`, beside the `.rec`/`.idx`.

A 16-byte header (magic `FRFP`, format version, entry size), then one 24-byte entry per record,
in `.idx` order: the record's id, the fingerprint of its source's bytes as read (the file or the
tar member), and the fingerprint of the framed record as written to the `.rec` (framing, header,
labels and image). Fingerprints are XXH3-64 (`fastrec._native.core.fingerprint`, the digest the
pack core computes without the GIL). All integers little-endian. The pack appends entries after
the `.rec` bytes they describe and before the `.idx` lines that name them, so the sidecar has at
least as many whole entries as the `.idx` has lines; `--resume` cuts it back with the `.idx`.
The `.rec`/`.idx` stay exactly im2rec's: a reader that knows nothing of the sidecar is unaffected.
"""
from __future__ import annotations

import hashlib
import os
import struct
from typing import BinaryIO, Iterator

from fastrec.errors import DataError

SUFFIX = ".fingerprints"
MAGIC = b"FRFP"
VERSION = 1
HEADER = struct.Struct("<4sHH8x")     # magic, version, entry size, reserved
ENTRY = struct.Struct("<QQQ")         # id, source fingerprint, record fingerprint
HEADER_BYTES = HEADER.pack(MAGIC, VERSION, ENTRY.size)
READ_ENTRIES = 1 << 14                # entries per read: a walk holds 384 KiB, whatever the pack


class FingerprintsError(DataError, ValueError):
    """A sidecar that is there but is not one (damaged header, other version, torn entry)."""


def fingerprints_path(rec: str) -> str:
    """`x.rec` -> `x.fingerprints` (named after the list, like the .idx)."""
    return os.path.splitext(rec)[0] + SUFFIX


def size_for(records: int) -> int:
    """Bytes of a sidecar holding `records` entries."""
    return HEADER.size + records * ENTRY.size


def entries_bytes(entries) -> bytes:
    """Entries [(id, source fingerprint, record fingerprint), ...] as the sidecar stores them."""
    return b"".join(ENTRY.pack(*e) for e in entries)


def check_header(head: bytes, path: str) -> None:
    if len(head) < HEADER.size:
        raise FingerprintsError(f"{path} is cut short: {len(head)} bytes, no whole header")
    magic, version, size = HEADER.unpack(head[:HEADER.size])
    if magic != MAGIC:
        raise FingerprintsError(f"{path} is not a fastrec fingerprints file (it starts {magic!r})")
    if version != VERSION or size != ENTRY.size:
        raise FingerprintsError(f"{path} is fingerprints format {version} (entries of {size} bytes); this "
                                f"fastrec reads format {VERSION}: verify it with the fastrec that made it")


def open_entries(path: str) -> tuple[BinaryIO, int]:
    """The sidecar opened past its checked header, and how many whole entries it holds (a torn
    last entry, from a crash mid-write, is not counted)."""
    f = open(path, "rb")
    try:
        check_header(f.read(HEADER.size), path)
        count = (os.fstat(f.fileno()).st_size - HEADER.size) // ENTRY.size
    except BaseException:
        f.close()
        raise
    return f, count


def iter_entries(f: BinaryIO, count: int) -> Iterator[tuple[int, int, int]]:
    """(id, source fingerprint, record fingerprint) of the next `count` entries of an open
    sidecar, read in blocks (memory stays flat)."""
    left = count
    while left:
        n = min(left, READ_ENTRIES)
        block = f.read(n * ENTRY.size)
        if len(block) != n * ENTRY.size:
            raise FingerprintsError(f"{f.name} ended while it was read (it changed meanwhile)")
        yield from ENTRY.iter_unpack(block)
        left -= n


def read_entries(path: str) -> Iterator[tuple[int, int, int]]:
    """Every whole entry of the sidecar at `path`, in order."""
    f, count = open_entries(path)
    with f:
        yield from iter_entries(f, count)


def file_digest(path: str) -> str:
    """A digest of the whole sidecar, read in blocks (the manifest records it when the pack
    finishes, so a changed source fingerprint, which nothing else checks, is found too)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
