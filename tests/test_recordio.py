"""fastrec.formats.recordio against the dmlc RecordIO format and the real MXNet 1.9.1 (shared/SPEC.md §1-2, §7.1).

What is checked, in order:
- the SPEC §1.2 byte vectors (C framer, Python reference, RecordWriter, and MXNet's own writer);
- properties on random payloads: C == Python framing, round trips through every reader,
  `record_end`, no false record heads, 4-byte alignment, byte equality with MXNet's writer;
- cross-reading: MXNet reads fastrec files and fastrec reads MXNet files;
- IRHeader pack/unpack against mxnet.recordio, including the error types;
- ImageRecordIter partitions (num_parts 1/2/3/7, with and without .idx) of files with escaped magics;
- the 2^29 length limit, and the readers' errors on damaged files.
"""
from __future__ import annotations

import mmap
import re
import struct
import subprocess
import tempfile
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import PYTHON, REPO, subprocess_env
from fastrec.formats.recordio import (
    IndexedRecordReader, IRHeader, RecordIOError, RecordReader, RecordWriter, frame, frame_py,
    pack, read_index, record_end, unpack)

MAGIC = bytes.fromhex("0a23d7ce")  # 0xCED7230A, little-endian (SPEC §1.1)
LIMIT = 1 << 29                     # a record must be strictly shorter than this


# ------------------------------------------------------------------ helpers
def segments(buf: bytes) -> list[tuple[int, int, int]]:
    """Walk a .rec by its length fields: (offset, cflag, length) of every segment, in order."""
    out, pos = [], 0
    while pos < len(buf):
        magic, lrec = struct.unpack_from("<II", buf, pos)
        assert magic == struct.unpack("<I", MAGIC)[0], f"no segment head at byte {pos}"
        cflag, length = lrec >> 29, lrec & (LIMIT - 1)
        out.append((pos, cflag, length))
        pos += 8 + length + (-length % 4 if cflag in (0, 3) else 0)
    assert pos == len(buf)
    return out


def record_heads(buf: bytes) -> list[int]:
    """Offsets of the first segment of each logical record (cflag 0 or 1)."""
    return [pos for pos, cflag, _ in segments(buf) if cflag in (0, 1)]


def aligned_magics(buf: bytes) -> list[int]:
    """Every 4-byte-aligned file offset holding the magic word: what dmlc's splitters look at."""
    return [i for i in range(0, len(buf) - 3, 4) if buf[i:i + 4] == MAGIC]


def seek_record_begin(buf: bytes, pos: int) -> int:
    """dmlc RecordIOSplitter::SeekRecordBegin: the first aligned magic at or after `pos` whose
    next word has cflag 0 or 1 (SPEC §1.3); the end of the data if there is none."""
    while pos + 8 <= len(buf):
        if buf[pos:pos + 4] == MAGIC and struct.unpack_from("<I", buf, pos + 4)[0] >> 29 in (0, 1):
            return pos
        pos += 4
    return len(buf)


def write_fastrec(directory: Path, payloads, name="f") -> tuple[Path, Path, list[int]]:
    """Write payloads with keys 0..n-1 through RecordWriter; returns (rec, idx, offsets)."""
    rec, idx = directory / f"{name}.rec", directory / f"{name}.idx"
    with RecordWriter(rec, idx) as w:
        offsets = [w.write_idx(k, p) for k, p in enumerate(payloads)]
    return rec, idx, offsets


def write_mxnet(directory: Path, payloads, name="m") -> tuple[Path, Path]:
    """Write payloads with keys 0..n-1 through mxnet.recordio.MXIndexedRecordIO."""
    rec, idx = directory / f"{name}.rec", directory / f"{name}.idx"
    w = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    for k, p in enumerate(payloads):
        w.write_idx(k, bytes(p))
    w.close()
    return rec, idx


def read_mxnet(rec: Path) -> list[bytes]:
    """All records of a .rec through MXRecordIO.read (which returns None at the end)."""
    r = mx.recordio.MXRecordIO(str(rec), "r")
    out = []
    while (p := r.read()) is not None:
        out.append(p)
    assert r.read() is None  # stays at the end
    r.close()
    return out


# ------------------------------------------------------------------ SPEC §1.2 vectors
SPEC_PAYLOADS = [b"", b"abc", b"abcd", MAGIC, b"xy" + MAGIC + b"zz", b"1234" + MAGIC + MAGIC + b"56789",
                 MAGIC + b"q"]
SPEC_FRAMES = [  # verified with mxnet 1.9.1 (SPEC §1.2); "…" there is the magic word
    "0a23d7ce00000000",
    "0a23d7ce0300000061626300",
    "0a23d7ce0400000061626364",
    "0a23d7ce00000020" "0a23d7ce00000060",
    "0a23d7ce0800000078790a23d7ce7a7a",
    "0a23d7ce0400002031323334" "0a23d7ce00000040" "0a23d7ce050000603536373839000000",
    "0a23d7ce00000020" "0a23d7ce0100006071000000",
]
SPEC_OFFSETS, SPEC_END = [0, 8, 20, 32, 48, 64, 100], 120


@pytest.mark.parametrize("payload,expected", list(zip(SPEC_PAYLOADS, SPEC_FRAMES)), ids=range(len(SPEC_PAYLOADS)))
def test_spec_vectors_frame(payload, expected):
    """C `frame` and `frame_py` give exactly the SPEC §1.2 bytes for each payload."""
    assert frame(payload).hex() == expected
    assert frame_py(payload).hex() == expected


def test_spec_vectors_file_matches_mxnet(tmp_path):
    """The SPEC payload sequence written by RecordWriter is the 120-byte file with idx offsets
    0, 8, 20, 32, 48, 64, 100, and is byte-identical (.rec and .idx) to MXIndexedRecordIO's."""
    rec, idx, offsets = write_fastrec(tmp_path, SPEC_PAYLOADS)
    data = rec.read_bytes()
    assert offsets == SPEC_OFFSETS
    assert data.hex() == "".join(SPEC_FRAMES) and len(data) == SPEC_END
    assert read_index(idx) == list(enumerate(SPEC_OFFSETS))
    mrec, midx = write_mxnet(tmp_path, SPEC_PAYLOADS)
    assert data == mrec.read_bytes()
    assert idx.read_bytes() == midx.read_bytes()
    assert list(RecordReader(rec)) == SPEC_PAYLOADS
    assert read_mxnet(rec) == SPEC_PAYLOADS


def test_writer_tell_and_offsets(tmp_path):
    """`write` returns each record's offset, `tell` the end so far; plain writes need no idx."""
    with RecordWriter(tmp_path / "a.rec") as w:
        assert w.tell() == 0
        got = []
        for p in SPEC_PAYLOADS:
            got.append(w.write(p))
            assert w.tell() == got[-1] + len(frame_py(p))
        with pytest.raises(ValueError):
            w.write_idx(0, b"x")  # opened without an idx_path
    assert got == SPEC_OFFSETS
    assert (tmp_path / "a.rec").stat().st_size == SPEC_END


def test_writer_tell_after_close_raises():
    """`tell()` on a closed RecordWriter raises ValueError, like `write()` does (no crash).

    Run in a child process: a NULL FILE* dereference would kill the test runner.
    """
    code = ("import tempfile, os\n"
            "from fastrec.formats.recordio import RecordWriter\n"
            "w = RecordWriter(os.path.join(tempfile.mkdtemp(), 'a.rec'))\n"
            "w.close()\n"
            "try:\n    w.tell()\nexcept ValueError:\n    print('ValueError')\n")
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env=subprocess_env(), timeout=60)
    assert r.returncode == 0, f"child died with status {r.returncode}: {r.stderr[-500:]}"
    assert r.stdout.strip() == "ValueError"


# ------------------------------------------------------------------ payload strategies
def _big_payload(seed: int, size: int, n_magic: int) -> bytes:
    """~1 MB of random bytes with magic words planted at aligned and unaligned offsets."""
    rng = np.random.default_rng(seed)
    buf = bytearray(rng.bytes(size))
    for pos in rng.integers(0, size - 4, n_magic):
        buf[pos:pos + 4] = MAGIC
    buf[0:4] = MAGIC  # an aligned head and an aligned tail word, always
    buf[(size - 4) & ~3:((size - 4) & ~3) + 4] = MAGIC
    return bytes(buf)


_pieces = st.one_of(
    st.binary(max_size=9),
    st.just(MAGIC),
    st.integers(1, 5).map(lambda k: MAGIC * k),
    st.binary(min_size=1, max_size=3).map(lambda b: b + MAGIC),   # usually unaligned
    st.just(MAGIC[:2]), st.just(MAGIC[2:]),                       # halves that may meet
)
small_payloads = st.lists(_pieces, max_size=10).map(b"".join)
big_payloads = st.builds(_big_payload, st.integers(0, 2**32 - 1),
                         st.integers(1_000_000, 1_050_000), st.integers(0, 300))
payloads = st.one_of(small_payloads, st.just(b""), st.binary(max_size=64))
record_lists = st.lists(payloads, max_size=12)
mixed_lists = st.lists(st.one_of(payloads, big_payloads), min_size=1, max_size=4).filter(
    lambda ps: sum(map(len, ps)) < 3_000_000)


# ------------------------------------------------------------------ framing properties
@settings(max_examples=300)
@given(payloads)
def test_c_frame_equals_python_reference(payload):
    """C `frame` and `frame_py` agree on every payload, also via memoryview/bytearray input."""
    expected = frame_py(payload)
    assert frame(payload) == expected
    assert frame(bytearray(payload)) == expected
    assert frame(memoryview(payload)) == expected


@settings(max_examples=8)
@given(big_payloads)
def test_c_frame_equals_python_reference_large(payload):
    """The same agreement on ~1 MB payloads with hundreds of planted magic words."""
    assert frame(payload) == frame_py(payload)


@settings(max_examples=300)
@given(payloads)
def test_frame_structure(payload):
    """A framed record is aligned, splits exactly at the aligned magics, and reassembles.

    Segment cflags are 0 alone or 1, 2..., 3; the number of splits equals the number of
    aligned magic words in the payload; joining the segment bodies with the magic gives the
    payload back; only the last segment is padded, with zeros; `record_end` finds the end.
    """
    buf = frame(payload)
    assert len(buf) % 4 == 0
    segs = segments(buf)
    splits = sum(payload[i:i + 4] == MAGIC for i in range(0, len(payload) - len(payload) % 4, 4))
    flags = [c for _, c, _ in segs]
    assert flags == ([0] if not splits else [1] + [2] * (splits - 1) + [3])
    bodies = [buf[pos + 8:pos + 8 + n] for pos, _, n in segs]
    assert MAGIC.join(bodies) == payload
    last_pos, _, last_len = segs[-1]
    assert buf[last_pos + 8 + last_len:] == b"\0" * (-last_len % 4)
    assert record_end(buf, 0) == len(buf)
    assert aligned_magics(buf) == [pos for pos, _, _ in segs]


def check_roundtrip(payloads_: list[bytes]) -> None:
    """RecordWriter -> RecordReader / IndexedRecordReader gives the payloads back; offsets from
    `write_idx`, the .idx and `record_end` all agree; the file is the concatenation of
    `frame_py` outputs, its length a multiple of 4, and every aligned magic word in it is a
    segment head (no false heads inside payloads), the record heads being exactly the
    offsets where a splitter's SeekRecordBegin would stop."""
    with tempfile.TemporaryDirectory() as d:
        rec, idx, offsets = write_fastrec(Path(d), payloads_)
        buf = rec.read_bytes()
        assert buf == b"".join(frame_py(p) for p in payloads_)
        assert len(buf) % 4 == 0
        assert read_index(idx) == list(enumerate(offsets))
        assert list(RecordReader(rec)) == payloads_
        ends = offsets[1:] + [len(buf)] if offsets else []
        assert [record_end(buf, o) for o in offsets] == ends
        assert [record_end(memoryview(buf), o) for o in offsets] == ends
        assert aligned_magics(buf) == [pos for pos, _, _ in segments(buf)]
        assert record_heads(buf) == offsets
        if len(buf) < 100_000:  # the pure-Python scan is slow on megabytes
            assert sorted({seek_record_begin(buf, p) for p in range(0, len(buf) + 1, 4)}) == offsets + [len(buf)]
        with IndexedRecordReader(idx, rec) as r:
            assert list(r.keys) == list(range(len(payloads_)))
            assert r.idx == dict(enumerate(offsets))
            for k in reversed(range(len(payloads_))):  # random access, not file order
                assert r.read_idx(k) == payloads_[k]
        with RecordReader(rec) as r:  # seek/tell follow record offsets
            for k in reversed(range(len(payloads_))):
                r.seek(offsets[k])
                assert r.read() == payloads_[k]
                assert r.tell() == ends[k]


@settings(max_examples=150)
@given(record_lists)
def test_roundtrip_writer_readers(payloads_):
    """check_roundtrip on lists of small payloads full of magic words."""
    check_roundtrip(payloads_)


@settings(max_examples=4)
@given(mixed_lists)
def test_roundtrip_writer_readers_large(payloads_):
    """check_roundtrip on lists mixing ~1 MB payloads with small ones."""
    check_roundtrip(payloads_)


# ------------------------------------------------------------------ MXNet cross-reading
def check_mxnet_compat(payloads_: list[bytes]) -> None:
    """fastrec and MXIndexedRecordIO write byte-identical .rec and .idx files, and each side
    reads the other's file: MXRecordIO.read returns the payloads (b"" for empty ones) then None;
    MXIndexedRecordIO.read_idx finds every key; fastrec's readers read MXNet's multi-segment
    records."""
    with tempfile.TemporaryDirectory() as d:
        rec, idx, _ = write_fastrec(Path(d), payloads_)
        mrec, midx = write_mxnet(Path(d), payloads_)
        assert rec.read_bytes() == mrec.read_bytes()
        assert idx.read_bytes() == midx.read_bytes()
        assert read_mxnet(rec) == payloads_
        r = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
        assert r.keys == list(range(len(payloads_)))
        assert [r.read_idx(k) for k in reversed(r.keys)] == payloads_[::-1]
        r.close()
        assert list(RecordReader(mrec)) == payloads_
        with IndexedRecordReader(midx, mrec) as fr:
            assert [fr.read_idx(k) for k in fr.keys] == payloads_


@settings(max_examples=60)
@given(record_lists)
def test_same_bytes_as_mxnet_and_cross_read(payloads_):
    """check_mxnet_compat on lists of small payloads full of magic words."""
    check_mxnet_compat(payloads_)


@settings(max_examples=4)
@given(mixed_lists)
def test_same_bytes_as_mxnet_and_cross_read_large(payloads_):
    """check_mxnet_compat on lists mixing ~1 MB payloads with small ones."""
    check_mxnet_compat(payloads_)


def test_cross_read_empty_records_and_eof(tmp_path):
    """Empty records come back as b"" and the end of file as None, on both sides."""
    payloads_ = [b"", MAGIC, b"", MAGIC * 2, b""]
    rec, _, _ = write_fastrec(tmp_path, payloads_)
    r = mx.recordio.MXRecordIO(str(rec), "r")
    assert [r.read() for _ in range(6)] == payloads_ + [None]
    mrec, _ = write_mxnet(tmp_path, payloads_)
    with RecordReader(mrec) as fr:
        assert [fr.read() for _ in range(6)] == payloads_ + [None]


# ------------------------------------------------------------------ IRHeader
HEADER_CASES = {
    "float": IRHeader(0, 3.5, 7, 0),
    "int": IRHeader(0, 3, 1, 2),
    "scalar-flag-ignored": IRHeader(5, 1.25, 0, 0),
    "list-flag-ignored": IRHeader(99, [1, 2.5], 7, 5),
    "tuple": IRHeader(0, (1.0, -2.0, 3.0), 3, 0),
    "ndarray-float64": IRHeader(0, np.array([0.1, 0.2, 0.3]), 11, 0),
    "ndarray-2d": IRHeader(0, np.arange(6, dtype=np.int32).reshape(2, 3), 1, 1),
    "ndarray-0d": IRHeader(0, np.array(2.5), 4, 0),
    "empty-list": IRHeader(3, [], 9, 0),
    "numpy-float32": IRHeader(0, np.float32(0.1), 6, 0),
    "numpy-int64": IRHeader(0, np.int64(42), 6, 0),
    "bool": IRHeader(0, True, 0, 0),
    "float32-rounding": IRHeader(0, 0.1, 2, 0),
    "id2-nonzero": IRHeader(0, 1.0, 2**64 - 1, 2**63 + 5),
    "nan": IRHeader(0, float("nan"), 0, 0),
}


def _same_header(a: IRHeader, b: IRHeader) -> None:
    assert (a.flag, a.id, a.id2) == (b.flag, b.id, b.id2)
    assert type(a.label) is type(b.label)
    if isinstance(a.label, np.ndarray):
        assert a.label.dtype == b.label.dtype and a.label.shape == b.label.shape
        assert a.label.tobytes() == b.label.tobytes()
    else:
        assert struct.pack("<f", a.label) == struct.pack("<f", b.label)


@pytest.mark.parametrize("header", HEADER_CASES.values(), ids=HEADER_CASES.keys())
def test_pack_unpack_like_mxnet(header):
    """`pack` gives mxnet.recordio.pack's bytes and `unpack` gives mxnet's header and payload."""
    packed = pack(header, b"JPEGDATA")
    assert packed == mx.recordio.pack(mx.recordio.IRHeader(*header), b"JPEGDATA")
    ours, rest = unpack(packed)
    theirs, mrest = mx.recordio.unpack(packed)
    assert rest == mrest == b"JPEGDATA"
    _same_header(ours, theirs)


def test_pack_spec_vectors():
    """The two SPEC §2.2 reference byte strings."""
    assert pack(IRHeader(0, 3.5, 7, 0), b"XY").hex() == (
        "00000000" "00006040" "0700000000000000" "0000000000000000" "5859")
    assert pack(IRHeader(99, [1, 2.5], 7, 5), b"XY").hex() == (
        "02000000" "00000000" "0700000000000000" "0500000000000000" "0000803f" "00002040" "5859")


finite_f32 = st.floats(width=32, allow_nan=False)
labels = st.one_of(finite_f32, st.integers(-2**24, 2**24),
                   st.lists(finite_f32, max_size=6), st.lists(st.integers(-1000, 1000), max_size=6))
u64 = st.integers(0, 2**64 - 1)


@settings(max_examples=200)
@given(labels, u64, u64, st.integers(0, 2**32 - 1), st.binary(max_size=40))
def test_pack_unpack_like_mxnet_random(label, id_, id2, flag, body):
    """Random labels, ids and caller flags: same bytes as MXNet, and `unpack` inverts `pack`."""
    h = IRHeader(flag, label, id_, id2)
    packed = pack(h, body)
    assert packed == mx.recordio.pack(mx.recordio.IRHeader(*h), body)
    ours, rest = unpack(packed)
    assert rest == body
    _same_header(ours, IRHeader(*mx.recordio.unpack(packed)[0]))


def _outcome(pack_fn, header):
    """What packing gives: ("bytes", packed) or ("raises", exception type)."""
    try:
        return "bytes", pack_fn(header, b"")
    except Exception as err:  # noqa: BLE001 - the type is what is compared
        return "raises", type(err)


@pytest.mark.parametrize("header", [
    IRHeader(0, 1.0, -1, 0), IRHeader(0, 1.0, 0, -5), IRHeader(0, 1.0, 2**64, 0),
    IRHeader(0, 10**400, 0, 0), IRHeader(0, 1e39, 0, 0), IRHeader(0, -1e39, 0, 0),
    IRHeader(0, 3.4028235e38, 0, 0), IRHeader(0, [1e39, -1e39], 0, 0), IRHeader(0, float("inf"), 0, 0)],
    ids=["negative-id", "negative-id2", "id-too-big", "int-too-big-for-double", "f32-overflow",
         "f32-overflow-negative", "rounds-to-FLT_MAX", "list-f32-overflow", "inf"])
def test_pack_out_of_range_like_mxnet(header):
    """Out-of-range ids and labels behave as in MXNet's pack: the same exception type
    (struct.error for ids, OverflowError for an int beyond a double) or the same bytes.

    MXNet packs with native-mode struct 'IfQQ', which casts the label to float like C, so a
    finite double beyond float32 is stored as +-inf (not OverflowError, as standard '<f' would).
    """
    theirs = _outcome(lambda h, s: mx.recordio.pack(mx.recordio.IRHeader(*h), s), header)
    assert _outcome(pack, header) == theirs
    if header.id < 0 or header.id2 < 0 or header.id >= 2**64:
        assert theirs == ("raises", struct.error)


# ------------------------------------------------------------------ ImageRecordIter partitions
N_IMAGES = 25  # ceil(25/7) * 6 < 25: no part is empty (MXNet crashes on an empty part)
MAGIC_F32 = struct.unpack("<f", MAGIC)[0]  # a float label whose bit pattern is the magic word


def _image_payload(i: int, rng: np.random.Generator) -> bytes:
    """Record i: IRHeader with labels [i, a, b] and a 16x16 JPEG; most records hold aligned
    magic words (in the labels at payload offsets 28/32, or as raw words after the JPEG's EOI,
    which decoders ignore), so the file has many multi-segment records."""
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    kind = i % 4
    lab = [i, MAGIC_F32 if kind in (0, 3) else 0.0, MAGIC_F32 if kind == 0 else 1.0]
    payload = pack(IRHeader(0, lab, i, 0), jpg.tobytes())
    if kind == 1:    # pad to a word boundary, then a run of aligned magics (many segments)
        payload += b"\0" * (-len(payload) % 4) + MAGIC * (10 + 7 * i)
    elif kind == 3:  # an unaligned magic: no escaping
        payload += b"\0" * (-len(payload) % 4) + b"zz" + MAGIC
    return payload


@pytest.fixture(scope="module")
def image_rec(tmp_path_factory):
    """A fastrec-written .rec/.idx of N_IMAGES real JPEG records; returns (rec, idx, offsets, buf)."""
    rng = np.random.default_rng(1234)
    rec, idx, offsets = write_fastrec(tmp_path_factory.mktemp("images"),
                                      [_image_payload(i, rng) for i in range(N_IMAGES)], "img")
    buf = rec.read_bytes()
    assert sum(c == 2 for _, c, _ in segments(buf)) > 100  # the fixture really is multi-segment
    return rec, idx, offsets, buf


def _byte_step(total: int, num_parts: int) -> int:
    """dmlc InputSplitBase: ceil(total / num_parts), rounded up to a multiple of 4."""
    nstep = -(-total // num_parts)
    return -(-nstep // 4) * 4


def expected_parts_bytes(buf: bytes, offsets: list[int], num_parts: int) -> list[list[int]]:
    """SPEC §1.3 byte-range split (no .idx): raw ranges of ceil(total/num_parts) rounded up to 4,
    both ends snapped forward by SeekRecordBegin; a part holds the records starting inside it."""
    total = len(buf)
    nstep = _byte_step(total, num_parts)
    parts = []
    for k in range(num_parts):
        lo, hi = min(k * nstep, total), min((k + 1) * nstep, total)
        if lo == hi:
            parts.append([])
            continue
        lo, hi = seek_record_begin(buf, lo), seek_record_begin(buf, hi)
        parts.append([i for i, o in enumerate(offsets) if lo <= o < hi])
    return parts


def expected_parts_idx(n: int, num_parts: int) -> list[list[int]]:
    """SPEC §1.3 indexed split: ceil(n/num_parts) records per part, in offset order."""
    nstep = -(-n // num_parts)
    return [list(range(min(k * nstep, n), min((k + 1) * nstep, n))) for k in range(num_parts)]


def read_part(rec: Path, idx: Path | None, num_parts: int, part: int) -> list[int]:
    """The first labels (record numbers) ImageRecordIter yields for one part, pad excluded."""
    kw = dict(path_imgrec=str(rec), data_shape=(3, 16, 16), batch_size=1, label_width=3,
              num_parts=num_parts, part_index=part, round_batch=False, shuffle=False,
              preprocess_threads=1, prefetch_buffer=1)
    if idx is not None:
        kw["path_imgidx"] = str(idx)
    seen = []
    for batch in mx.io.ImageRecordIter(**kw):
        lab = batch.label[0].asnumpy()
        assert batch.data[0].shape == (1, 3, 16, 16)
        seen += [int(x) for x in lab[:lab.shape[0] - batch.pad, 0]]
    return seen


@pytest.mark.parametrize("use_idx", [False, True], ids=["byte-ranges", "indexed"])
@pytest.mark.parametrize("num_parts", [1, 2, 3, 7])
def test_image_record_iter_partitions(image_rec, num_parts, use_idx):
    """mx.io.ImageRecordIter reads a fastrec .rec with escaped magics: across all parts every
    record is seen exactly once, in file order, and each part holds exactly the records the
    dmlc splitting rules of SPEC §1.3 assign to it."""
    rec, idx, offsets, buf = image_rec
    got = [read_part(rec, idx if use_idx else None, num_parts, k) for k in range(num_parts)]
    want = (expected_parts_idx(len(offsets), num_parts) if use_idx
            else expected_parts_bytes(buf, offsets, num_parts))
    assert got == want
    assert sorted(sum(got, [])) == list(range(N_IMAGES))


def test_partition_boundaries_land_inside_multisegment_records(image_rec):
    """Self-check of the fixture: some raw byte-range boundary for num_parts 2/3/7 falls on a
    continuation segment (cflag 2/3), so the splitter's snapping past them is exercised."""
    _, _, _, buf = image_rec
    continuation = {pos for pos, c, _ in segments(buf) if c in (2, 3)}
    hits = 0
    for n in (2, 3, 7):
        nstep = _byte_step(len(buf), n)
        for k in range(1, n):
            nxt = next((p for p in aligned_magics(buf) if p >= k * nstep), None)
            hits += nxt in continuation
    assert hits >= 2


# ------------------------------------------------------------------ length limit
def test_length_limit_rejects_2_pow_29():
    """A 2^29-byte record is refused with ValueError by `frame`, `frame_py` and RecordWriter
    (which then still works); the input is a lazily zeroed mapping, so this costs no memory."""
    with mmap.mmap(-1, LIMIT) as m:
        view = memoryview(m)
        with pytest.raises(ValueError, match="2\\^29"):
            frame(view)
        with pytest.raises(ValueError, match="2\\^29"):
            frame_py(view)
        with tempfile.TemporaryDirectory() as d, RecordWriter(Path(d) / "a.rec") as w:
            with pytest.raises(ValueError):
                w.write(view)
            assert w.tell() == 0
            assert w.write(b"ok") == 0
        view.release()


def _mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.mark.skipif(_mem_available() < 4 << 30, reason="needs ~2 GB of free memory")
def test_length_limit_accepts_2_pow_29_minus_1():
    """A (2^29 - 1)-byte record is accepted by the C `frame`: one segment, lrec = 2^29 - 1,
    one zero pad byte. (`frame_py` would take minutes on it; its limit is checked above.)"""
    with mmap.mmap(-1, LIMIT - 1) as m:
        view = memoryview(m)
        out = frame(view)
        view.release()
    assert len(out) == 8 + LIMIT
    assert out[:8] == MAGIC + struct.pack("<I", LIMIT - 1)
    assert out[-16:] == b"\0" * 16
    del out


# ------------------------------------------------------------------ damaged files
DAMAGE_PAYLOADS = [b"first", b"ab" + MAGIC + b"cd", b"1234" + MAGIC + MAGIC + b"56789", b"last record!!"]


def _damaged_file(tmp_path: Path):
    rec, idx, offsets = write_fastrec(tmp_path, DAMAGE_PAYLOADS)
    return rec, idx, offsets, rec.read_bytes()


def _offset_named(err: Exception) -> list[int]:
    return [int(x) for x in re.findall(r"\bbyte (\d+)", str(err))]


@pytest.mark.parametrize("segment", range(6))
def test_flipped_magic_is_reported_with_its_offset(tmp_path, segment):
    """A corrupted magic in any segment (record head or continuation) makes RecordReader,
    IndexedRecordReader.read_idx and record_end raise RecordIOError naming that byte offset;
    records before it still read."""
    rec, idx, offsets, buf = _damaged_file(tmp_path)
    segs = segments(buf)
    assert len(segs) == 6
    pos = segs[segment][0]
    bad = bytearray(buf)
    bad[pos + 1] ^= 0xFF
    rec.write_bytes(bytes(bad))
    owner = max(i for i, o in enumerate(offsets) if o <= pos)
    with RecordReader(rec) as r:
        for k in range(owner):
            assert r.read() == DAMAGE_PAYLOADS[k]
        with pytest.raises(RecordIOError) as e:
            r.read()
    assert pos in _offset_named(e.value)
    with IndexedRecordReader(idx, rec) as r, pytest.raises(RecordIOError) as e:
        r.read_idx(owner)
    assert pos in _offset_named(e.value)
    with pytest.raises(RecordIOError) as e:
        record_end(bytes(bad), offsets[owner])
    assert pos in _offset_named(e.value)


def test_truncated_tail_is_reported(tmp_path):
    """Cutting the file anywhere inside its last record (header, payload or padding) makes the
    readers and record_end raise RecordIOError naming an offset inside that record; MXNet's
    reader rejects such a file too."""
    rec, idx, offsets, buf = _damaged_file(tmp_path)
    last = offsets[-1]
    for cut in range(last + 1, len(buf)):
        rec.write_bytes(buf[:cut])
        with RecordReader(rec) as r:
            assert [r.read() for _ in range(len(offsets) - 1)] == DAMAGE_PAYLOADS[:-1]
            with pytest.raises(RecordIOError) as e:
                r.read()
        named = _offset_named(e.value)
        assert named and all(last <= o < len(buf) for o in named), (cut, str(e.value))
        with IndexedRecordReader(idx, rec) as r, pytest.raises(RecordIOError):
            r.read_idx(len(offsets) - 1)
        with pytest.raises(RecordIOError) as e:
            record_end(buf[:cut], last)
        assert _offset_named(e.value), (cut, str(e.value))
    rec.write_bytes(buf[:-2])  # only padding missing: dmlc's reader refuses it as well
    r = mx.recordio.MXRecordIO(str(rec), "r")
    for _ in range(len(offsets) - 1):
        r.read()
    with pytest.raises(mx.base.MXNetError):
        r.read()
    r.close()


def _seg(cflag: int, body: bytes = b"") -> bytes:
    return MAGIC + struct.pack("<I", cflag << 29 | len(body)) + body + b"\0" * (-len(body) % 4)


@pytest.mark.parametrize("buf,start,bad_at", [
    (frame(MAGIC), 8, 8),                          # starts on a last segment (cflag 3)
    (frame(b"1234" + MAGIC * 2 + b"5"), 16, 16),   # starts on a middle segment (cflag 2)
    (_seg(1) + _seg(0, b"x"), 0, 8),               # a first segment followed by a new record
    (_seg(1) + _seg(1, b"x"), 0, 8),
    (_seg(2, b"ab") + _seg(3), 0, 0),
    (_seg(4, b"ab"), 0, 0),                        # cflag 4..7 do not exist
    (_seg(1) + _seg(7), 0, 8),
], ids=["starts-on-last", "starts-on-middle", "first-then-full", "first-then-first",
        "middle-first", "cflag-4", "cflag-7"])
def test_record_end_rejects_bad_cflag_sequences(buf, start, bad_at):
    """`record_end` accepts only 0, or 1 (2...) 3, like dmlc's splitter ("Invalid RecordIO
    Format"), and names the offending segment's offset."""
    with pytest.raises(RecordIOError) as e:
        record_end(buf, start)
    assert bad_at in _offset_named(e.value)


def test_bad_index_line_is_reported(tmp_path):
    """A blank or non-numeric .idx line is a RecordIOError (a ValueError, as in MXNet) naming
    the file and line."""
    rec, idx, _, _ = _damaged_file(tmp_path)
    idx.write_text(idx.read_text() + "\n")
    with pytest.raises(RecordIOError, match=r":5:"):
        read_index(idx)
    idx.write_text("0\t0\nx\t8\n")
    with pytest.raises(ValueError, match=r":2:"):
        IndexedRecordReader(idx, rec)
