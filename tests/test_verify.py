"""`fastrec verify` catches each kind of damage made on purpose to a good pack; `fastrec inspect`
reports what is inside and draws a contact sheet."""
from __future__ import annotations

import os
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
    n = len(contact_sheet(str(good / "data.rec"), str(sheet), count=6))
    assert n == 6 and sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(sheet) as im:
        assert im.size[0] >= 6 * 100
    out = subprocess.run([sys.executable, "-m", "fastrec", "inspect", str(good / "data"), "--head", "2"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "records" in out.stdout and "labels: 3 distinct" in out.stdout


# ---------------------------------------------------------------- the pack against its list
def _copy_pack(good: Path, dest: Path, keep=None) -> tuple[Path, list[tuple[int, int]]]:
    """Copy the good pack (.lst, .rec, .idx) to DEST, keeping only the records whose positions
    `keep(i)` accepts (offsets in the .idx are recomputed, as pack would have written them)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(good / "data.lst", dest / "data.lst")
    entries = read_index(good / "data.idx")
    data = (good / "data.rec").read_bytes()
    ends = [off for _, off in entries[1:]] + [len(data)]
    rec, idx, pos = bytearray(), [], 0
    for i, ((key, off), end) in enumerate(zip(entries, ends)):
        if keep is None or keep(i):
            idx.append(f"{key}\t{len(rec)}\n")
            rec += data[off:end]
    (dest / "data.rec").write_bytes(bytes(rec))
    (dest / "data.idx").write_text("".join(idx))
    return dest / "data.rec", entries


def _verify_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastrec", "verify", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_whole_pack_checks_against_its_list(good):
    report = verify_rec(str(good / "data.rec"))
    assert report.ok, report.lines()
    assert report.expected == report.records == len(read_index(good / "data.idx")) and report.missing == 0


def test_killed_pack_fails_naming_the_missing_items(good, tmp_path):
    """What `kill -9` leaves (the .rec and .idx stop after some records: pack writes records
    before the index lines that name them) fails, counting the missing items and naming --resume."""
    rec, entries = _copy_pack(good, tmp_path, keep=lambda i: i < 5)
    report = verify_rec(str(rec))
    assert not report.ok and report.records == 5 and report.missing == len(entries) - 5
    cli = _verify_cli(tmp_path / "data")
    assert cli.returncode == 1, cli.stdout
    assert f"{len(entries) - 5} of {len(entries)} list items are missing" in cli.stdout
    assert "fastrec pack --resume" in cli.stdout


def test_really_killed_pack_fails_verify(good, tmp_path):
    """A pack that dies like `kill -9` after 3 batches of 2 (os._exit, no clean-up) fails verify."""
    shutil.copy(good / "data.lst", tmp_path / "data.lst")
    env = {**os.environ, "FASTREC_TEST_CRASH_AFTER": "3"}
    killed = subprocess.run([sys.executable, "-m", "fastrec", "pack", str(tmp_path / "data"), str(good / "images"),
                             "--resize", "64", "--batch-size", "2", "--progress", "off"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 137, killed.stderr
    total = len((tmp_path / "data.lst").read_text().splitlines())
    cli = _verify_cli(tmp_path / "data")
    assert cli.returncode == 1 and f"{total - 6} of {total} list items are missing" in cli.stdout, cli.stdout
    # the hint names the image root the manifest recorded, and resuming as it says completes the pack
    hint = cli.stdout.split("continue it with `", 1)[1].split("`", 1)[0].split()
    assert hint == ["fastrec", "pack", "--resume", str(tmp_path / "data"), str(good / "images")], cli.stdout
    resumed = subprocess.run([sys.executable, "-m", "fastrec", *hint[1:], "--resize", "64", "--batch-size", "2",
                              "--progress", "off"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert _verify_cli(tmp_path / "data").returncode == 0


def test_pack_killed_before_its_first_record_fails(good, tmp_path):
    rec, entries = _copy_pack(good, tmp_path, keep=lambda i: False)
    report = verify_rec(str(rec))
    assert not report.ok and report.missing == len(entries)
    assert any("no records" in str(f) for f in report.faults)
    (tmp_path / "data.rec").unlink()
    (tmp_path / "data.idx").unlink()
    cli = _verify_cli(tmp_path / "data")
    assert cli.returncode == 1 and "never packed" in cli.stdout


def test_missing_middle_record_fails(good, tmp_path):
    rec, entries = _copy_pack(good, tmp_path, keep=lambda i: i != 3)
    report = verify_rec(str(rec))
    assert not report.ok and report.missing == 1
    assert any(f"id {entries[3][0]}" in str(f) and "--resume" not in str(f) for f in report.faults), report.lines()


def test_skipped_items_are_accounted_for(good, tmp_path):
    """A record that is missing but named in .skipped.tsv is a skip, not a fault."""
    rec, entries = _copy_pack(good, tmp_path, keep=lambda i: i != 3)
    path = {item_id: p for item_id, p in (
        (int(line.split("\t")[0]), line.rstrip("\n").split("\t")[-1])
        for line in (tmp_path / "data.lst").read_text().splitlines())}[entries[3][0]]
    (tmp_path / "data.skipped.tsv").write_text(f"{path}\tdecode-error\tbroken\n")
    report = verify_rec(str(rec))
    assert report.ok and report.skipped == 1 and report.missing == 0, report.lines()


def test_records_out_of_list_order_fail(good, tmp_path):
    rec, _ = _copy_pack(good, tmp_path)
    lines = (tmp_path / "data.lst").read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    (tmp_path / "data.lst").write_text("\n".join(lines) + "\n")
    assert any("not in list order" in str(f) for f in verify_rec(str(rec)).faults)


def test_lone_rec_verifies_without_idx_or_list(good, tmp_path):
    """The tutorial's `mv train_meta/*.rec train/`: a .rec alone is checked for framing and headers."""
    shutil.copy(good / "data.rec", tmp_path / "x.rec")
    cli = _verify_cli(tmp_path / "x.rec")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert ": OK" in cli.stdout and "no x.idx or x.lst" in cli.stdout


def test_manifest_counts_and_completion_are_checked(good, tmp_path):
    from fastrec.formats.manifest import ListDigest, Manifest, manifest_path, write_manifest
    from fastrec.formats.lists import read_list
    rec, entries = _copy_pack(good, tmp_path)
    digest = ListDigest()
    for item in read_list(str(tmp_path / "data.lst")):
        digest.update(item.id, item.labels, item.path)
    made = dict(fastrec="0", settings={}, list=str(tmp_path / "data.lst"), list_digest=digest.hexdigest(),
                source={}, expected=len(entries), written=len(entries), complete=True)
    write_manifest(manifest_path(str(rec)), Manifest(**made))
    assert verify_rec(str(rec)).ok
    write_manifest(manifest_path(str(rec)), Manifest(**{**made, "written": len(entries) + 1}))
    faults = [str(f) for f in verify_rec(str(rec)).faults]
    assert faults == [f"file: data.manifest.json records {len(entries) + 1} records, the pack holds {len(entries)}"]
    # an unfinished pack's manifest has the start's counts (0 written): "did not finish", no count noise
    write_manifest(manifest_path(str(rec)), Manifest(**{**made, "written": 0, "complete": False}))
    faults = [str(f) for f in verify_rec(str(rec)).faults]
    assert len(faults) == 1 and "did not finish" in faults[0], faults
    write_manifest(manifest_path(str(rec)), Manifest(**{**made, "list_digest": "0" * 64}))
    assert any("changed since it was packed" in str(f) for f in verify_rec(str(rec)).faults)


def test_records_labelled_otherwise_than_their_list_fail(good, tmp_path):
    """A pack without a manifest (im2rec's, or resumed after a relisting) whose record labels are
    not the list's: verify names the record (it used to say OK)."""
    rec, _ = _copy_pack(good, tmp_path)
    lines = [line.split("\t") for line in (tmp_path / "data.lst").read_text().splitlines()]
    lines[2][1] = f"{float(lines[2][1]) + 1:f}"
    (tmp_path / "data.lst").write_text("".join("\t".join(fields) + "\n" for fields in lines))
    faults = [str(f) for f in verify_rec(str(rec)).faults]
    assert len(faults) == 1 and f"record with id {lines[2][0]} has label(s)" in faults[0], faults


@pytest.mark.parametrize("pack_label", [False, True])
def test_multi_label_packs_verify_clean(good, tmp_path, pack_label):
    """Two labels per line: the record holds both (--pack-label) or the first (as im2rec)."""
    lines = [line.split("\t") for line in (good / "data.lst").read_text().splitlines()]
    (tmp_path / "data.lst").write_text("".join("\t".join([f[0], f[1], f"{0.25 + n:f}", f[2]]) + "\n"
                                               for n, f in enumerate(lines)))
    pack_prefix(str(tmp_path / "data"), str(good / "images"),
                PackOptions(resize=32, pack_label=pack_label, progress="off"))
    report = verify_rec(str(tmp_path / "data.rec"))
    assert report.ok and report.records == len(lines), report.lines()


def test_verify_memory_is_a_few_bytes_a_record(tmp_path):
    """verify keeps flat arrays per record and walks the list and the .idx: 20 000 records take
    ~3 MiB of Python allocations (it was ~15 MiB: dicts and tuples per record, the list and the
    .idx loaded whole); a missing tail is still found and named."""
    import io
    import tracemalloc

    import numpy as np

    (tmp_path / "img").mkdir()
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(buf, "JPEG")
    (tmp_path / "img" / "x.jpg").write_bytes(buf.getvalue())
    n = 20_000
    (tmp_path / "data.lst").write_text("".join(f"{i}\t{i % 7}.000000\tx.jpg\n" for i in range(n)))
    pack_prefix(str(tmp_path / "data"), str(tmp_path / "img"), PackOptions(pass_through=True, progress="off"))
    tracemalloc.start()
    try:
        report = verify_rec(str(tmp_path / "data.rec"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.ok and report.records == report.expected == n, report.lines()
    assert peak < 6 << 20, f"{peak / 2**20:.1f} MiB"
    with open(tmp_path / "data.lst", "a") as f:      # 3 more items that were never packed
        f.writelines(f"{i}\t0.000000\tx.jpg\n" for i in range(n, n + 3))
    report = verify_rec(str(tmp_path / "data.rec"))
    assert report.missing == 3 and any("stopped early" in str(f) for f in report.faults), report.lines()


def _synthetic_pack(tmp_path: Path, listed: list[int], packed: list[int], idx_lines: list[str] | None = None) -> Path:
    """A .lst of `listed` ids, a .rec of records with `packed` ids (in that order) and its .idx
    (or the given lines)."""
    from fastrec.formats.recordio import IRHeader, frame_py, pack

    (tmp_path / "data.lst").write_text("".join(f"{i}\t0.000000\tc/{i}.jpg\n" for i in listed))
    rec, lines = bytearray(), []
    for i in packed:
        lines.append(f"{i}\t{len(rec)}\n")
        rec += frame_py(pack(IRHeader(0, 0.0, i, 0), b"\xff\xd8\xff" + bytes(13)))
    (tmp_path / "data.rec").write_bytes(bytes(rec))
    (tmp_path / "data.idx").write_text("".join(idx_lines if idx_lines is not None else lines))
    return tmp_path / "data.rec"


def test_a_bad_idx_line_is_the_one_fault_however_late(tmp_path):
    """A .idx line that is not 'key<TAB>offset' is the fault reported, alone, even after 150
    lines that would each be a fault (they must not push it out of the 100 listed)."""
    rec = _synthetic_pack(tmp_path, [0, 1], [0, 1], [f"{i}\t999999\n" for i in range(150)] + ["bad\n"])
    report = verify_rec(str(rec))
    assert report.fault_count == 1 and "not a 'key<TAB>offset' line" in str(report.faults[0]), report.lines()


def test_records_the_list_does_not_hold_are_named_in_file_order(tmp_path):
    rec = _synthetic_pack(tmp_path, list(range(5)), list(range(5)) + list(range(1000, 850, -1)))
    report = verify_rec(str(rec))
    extra = [str(f) for f in report.faults if "that the list does not hold" in str(f)]
    assert len(extra) == 100 and report.fault_count >= 150
    assert "with id 1000 " in extra[0] and "with id 901 " in extra[-1], (extra[0], extra[-1])


def test_a_doubled_record_fails(tmp_path):
    """A record packed twice (the list holds its id once) is a fault naming the id, never OK."""
    report = verify_rec(str(_synthetic_pack(tmp_path, [0, 1, 2, 3], [0, 1, 2, 2, 3])))
    assert not report.ok and report.missing == 0
    assert any("1 record(s) with id 2 that the list does not hold" in str(f) for f in report.faults), report.lines()
