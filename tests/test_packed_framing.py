"""What `fastrec pack` itself writes, read by the real MXNet 1.9.1 (not RecordWriter output):

- re-framed by `mxnet.recordio.MXIndexedRecordIO` from its own payloads and .idx keys, the pack's
  .rec/.idx come out byte-identical (several threads, skips in the list, payloads holding the
  magic word at aligned offsets, so records split into many segments);
- `mx.io.ImageRecordIter` with num_parts 1/2/3/7, with and without the .idx, sees every packed
  record exactly once, in file order.
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastrec.formats.recordio import MAGIC_BYTES, RecordReader, read_index
from helpers_pack import fastrec_main
from test_recordio import expected_parts_bytes, expected_parts_idx, read_part

mx = pytest.importorskip("mxnet")

N_IMAGES = 25            # ceil(25/7) * 6 < 25: no ImageRecordIter part is empty (MXNet crashes on one)
SKIPS = {3: "empty", 11: "missing", 20: "empty"}    # list positions that become skips
MAGIC_F32 = struct.unpack("<f", MAGIC_BYTES)[0]     # a label whose float32 bits are the magic word


def _jpeg_with_magic(i: int, rng: np.random.Generator) -> bytes:
    """A 16x16 JPEG with a comment segment right after SOI holding `i % 5 * 3` magic words that
    land at aligned payload offsets (the payload is a 24-byte IRHeader, 3 labels, then the file;
    the comment's text starts at file offset 6, so 2 bytes of lead-in align it)."""
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    text = b"zz" + MAGIC_BYTES * (i % 5 * 3) + b"end"
    com = b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text
    return jpg.tobytes()[:2] + com + jpg.tobytes()[2:]


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple[Path, list[int]]:
    """A pass-through pack (3 threads, batches of 2) of N_IMAGES records and 3 skips; returns
    (the .rec, the first labels of the packed records in list order)."""
    base = tmp_path_factory.mktemp("packed_framing")
    root = base / "images"
    root.mkdir()
    rng = np.random.default_rng(16)
    lines, labels = [], []
    for pos in range(N_IMAGES + len(SKIPS)):
        name = f"im{pos:03d}.jpg"
        if SKIPS.get(pos) == "empty":
            (root / name).write_bytes(b"")
        elif pos not in SKIPS:
            (root / name).write_bytes(_jpeg_with_magic(pos, rng))
            labels.append(pos)
        extra = MAGIC_F32 if pos % 2 else 1.0     # magic words in the labels of every other record
        lines.append(f"{pos}\t{pos:f}\t{extra!r}\t{MAGIC_F32!r}\t{name}")
    (base / "data.lst").write_text("\n".join(lines) + "\n")
    assert fastrec_main(["pack", base / "data", root, "--pass-through", "--pack-label", "--num-thread", "3",
                         "--batch-size", "2", "--max-skipped", "100%", "--progress", "off"]) == 0
    assert (base / "data.skipped.tsv").read_text().count("\n") == len(SKIPS)
    return base / "data.rec", labels


def _segment_count(buf: bytes) -> int:
    return sum(1 for i in range(0, len(buf) - 3, 4) if buf[i:i + 4] == MAGIC_BYTES)


def test_mxnet_reframes_packed_output_byte_identically(packed, tmp_path):
    rec, labels = packed
    idx = rec.with_suffix(".idx")
    buf = rec.read_bytes()
    assert _segment_count(buf) > 3 * N_IMAGES            # really multi-segment records
    reader = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
    writer = mx.recordio.MXIndexedRecordIO(str(tmp_path / "re.idx"), str(tmp_path / "re.rec"), "w")
    for key, _ in read_index(idx):
        writer.write_idx(key, reader.read_idx(key))
    reader.close()
    writer.close()
    assert (tmp_path / "re.rec").read_bytes() == buf
    assert (tmp_path / "re.idx").read_bytes() == idx.read_bytes()
    with RecordReader(rec) as ours:                        # and the payloads are the files' bytes
        heads = [mx.recordio.unpack(p)[0] for p in ours]
    assert [int(h.label[0]) for h in heads] == labels == [h.id for h in heads]


@pytest.mark.parametrize("use_idx", [False, True], ids=["byte-ranges", "indexed"])
@pytest.mark.parametrize("num_parts", [1, 2, 3, 7])
def test_image_record_iter_partitions_of_packed_output(packed, num_parts, use_idx):
    rec, labels = packed
    buf = rec.read_bytes()
    offsets = [off for _, off in read_index(rec.with_suffix(".idx"))]
    got = [read_part(rec, rec.with_suffix(".idx") if use_idx else None, num_parts, k) for k in range(num_parts)]
    want = (expected_parts_idx(len(offsets), num_parts) if use_idx
            else expected_parts_bytes(buf, offsets, num_parts))
    assert got == [[labels[i] for i in part] for part in want]
    assert sum(got, []) == labels                          # every record once, in file order
