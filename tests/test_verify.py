"""`fastrec verify` catches each kind of damage made on purpose to a good pack; `fastrec inspect`
reports what is inside and draws a contact sheet."""
from __future__ import annotations

import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fastrec.reports.inspect import collect, contact_sheet
from fastrec.formats.lists import ListOptions, make_lists
from fastrec.engine import PackOptions, pack_prefix
from fastrec.formats.recordio import MAGIC, read_index
from fastrec.demo.samples import make_tree
from fastrec.reports.verify import verify_rec


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("verify")
    make_tree(base / "images", classes=3, per_class=(4, 6), sizes="imagenet", seed=6)
    make_lists(str(base / "data"), str(base / "images"), ListOptions(recursive=True))
    pack_prefix(str(base / "data"), str(base / "images"), PackOptions(resize=64, quality=80, progress="off"))
    return base


def _copy(good: Path, tmp_path: Path) -> tuple[Path, Path, list[tuple[int, int]]]:
    rec, idx = tmp_path / "data.rec", tmp_path / "data.idx"
    shutil.copy(good / "data.rec", rec)
    shutil.copy(good / "data.idx", idx)
    return rec, idx, read_index(idx)


def _faults(rec: Path, decode: bool = False) -> list[str]:
    report = verify_rec(str(rec), decode=decode)
    return [str(f) for f in report.faults]


def test_good_pack_is_clean(good):
    report = verify_rec(str(good / "data.rec"), decode=True, resize=64)
    assert report.ok and report.records == len(read_index(good / "data.idx")) == report.decoded


def test_flipped_magic(good, tmp_path):
    rec, _, entries = _copy(good, tmp_path)
    offset = entries[3][1]
    data = bytearray(rec.read_bytes())
    data[offset] ^= 0xFF
    rec.write_bytes(bytes(data))
    faults = _faults(rec)
    assert any(f"byte {offset}: bad magic" in f for f in faults), faults
    assert any("does not point at the start of a record" in f for f in faults)


def test_truncated_tail(good, tmp_path):
    rec, _, entries = _copy(good, tmp_path)
    data = rec.read_bytes()
    rec.write_bytes(data[:entries[-1][1] + 40])
    faults = _faults(rec)
    assert any(f"byte {entries[-1][1]}" in f and "past the end" in f for f in faults), faults


def test_idx_pointing_past_the_end(good, tmp_path):
    rec, idx, _ = _copy(good, tmp_path)
    size = rec.stat().st_size
    with open(idx, "a") as f:
        f.write(f"999\t{size + 64}\n")
    faults = _faults(rec)
    assert any("points past the end" in f and f"byte {size + 64}" in f for f in faults), faults


def test_bad_header_flag(good, tmp_path):
    """A flag promising more labels than the record holds."""
    rec, _, entries = _copy(good, tmp_path)
    offset = entries[2][1]
    data = bytearray(rec.read_bytes())
    struct.pack_into("<I", data, offset + 8, 1 << 28)    # the IRHeader's flag, after the 8-byte segment head
    rec.write_bytes(bytes(data))
    faults = _faults(rec)
    assert any("record 2" in f and "bad image header" in f for f in faults), faults


def test_idx_key_mismatch_and_missing_line(good, tmp_path):
    rec, idx, entries = _copy(good, tmp_path)
    lines = idx.read_text().splitlines()
    key, off = lines[1].split("\t")
    lines[1] = f"{int(key) + 1000}\t{off}"
    del lines[4]
    idx.write_text("\n".join(lines) + "\n")
    faults = _faults(rec)
    assert any("header id is" in f for f in faults) and any("is not in" in f for f in faults), faults


def test_corrupt_image_needs_decode(good, tmp_path):
    rec, _, entries = _copy(good, tmp_path)
    start, end = entries[1][1], entries[2][1]
    data = bytearray(rec.read_bytes())
    noise = random.Random(0).randbytes(end - 40 - (start + 700))   # over the entropy-coded data
    data[start + 700:end - 40] = noise.replace(struct.pack("<I", MAGIC), b"\0\0\0\0")
    rec.write_bytes(bytes(data))
    assert verify_rec(str(rec)).ok                       # framing is intact
    faults = _faults(rec, decode=True)
    assert any("record 1" in f and "does not decode" in f for f in faults), faults


def test_cli_exit_codes(good, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "fastrec", "verify", *a], capture_output=True, text=True)
    ok = run(str(good / "data"))
    assert ok.returncode == 0 and ": OK" in ok.stdout
    rec, _, entries = _copy(good, tmp_path)
    data = bytearray(rec.read_bytes())
    data[entries[0][1]] ^= 1
    rec.write_bytes(bytes(data))
    bad = run(str(rec))
    assert bad.returncode == 1 and "FAULT" in bad.stdout and "byte 0" in bad.stdout
    missing = run(str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no .rec file" in missing.stderr


def test_inspect_reports_and_draws(good, tmp_path):
    first, stats = collect(str(good / "data.rec"), head=3)
    entries = read_index(good / "data.idx")
    assert stats.count == len(entries) and len(first) == 3
    assert [r.offset for r in first] == [off for _, off in entries[:3]]
    assert sum(stats.labels.values()) == stats.count and len(stats.labels) == 3
    assert all(min(w, h) == 64 for w, h in stats.sizes)
    sheet = tmp_path / "sheet.png"
    n = contact_sheet(str(good / "data.rec"), str(sheet), count=6)
    assert n == 6 and sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(sheet) as im:
        assert im.size[0] >= 6 * 100
    out = subprocess.run([sys.executable, "-m", "fastrec", "inspect", str(good / "data"), "--head", "2"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "records" in out.stdout and "labels: 3 distinct" in out.stdout
