"""Provable packs: every record has fingerprints (formats/fingerprints.py) and `verify` proves a
pack with them; `--resume` checks the part it keeps, and refuses another fastrec's pack.

The cases issue 21 found (a duplicated .idx line; two records' images swapped with consistent
headers; one byte flipped inside a JPEG) fail `verify` without --decode, and a generator damages
one byte or line of the .rec/.idx/sidecar of a pack made here and expects `verify` to fail."""
from __future__ import annotations

import array
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from fastrec._native.core import Worker, fingerprint
from fastrec.demo.samples import make_odd_files, make_tree
from fastrec.engine import PackOptions, pack_prefix
from fastrec.formats.fingerprints import ENTRY, HEADER, read_entries
from fastrec.formats.lists import ListOptions, make_lists
from fastrec.formats.recordio import frame, pack, read_index, unpack, walk_records
from fastrec.reports.verify import verify_rec

FILES = ("data.rec", "data.idx", "data.fingerprints", "data.lst", "data.manifest.json", "data.skipped.tsv")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A small pack, made once: JPEGs, one PNG (the Pillow fallback path) and one skip."""
    base = tmp_path_factory.mktemp("fingerprints")
    make_tree(base / "images", classes=2, per_class=(4, 5), sizes="imagenet", seed=21)
    odd = make_odd_files(base / "odd")
    (base / "images" / "zz").mkdir()
    shutil.copy(odd["png_as_jpeg"], base / "images" / "zz" / "png.jpg")
    shutil.copy(odd["truncated"], base / "images" / "zz" / "truncated.jpg")
    make_lists(str(base / "data"), str(base / "images"), ListOptions(recursive=True))
    pack_prefix(str(base / "data"), str(base / "images"),
                PackOptions(resize=48, quality=80, progress="off", max_skipped=1.0))
    return base


def _copy(good: Path, to: Path) -> Path:
    for name in FILES:
        if (good / name).exists():
            shutil.copy(good / name, to / name)
    return to


def _records(rec: Path) -> list[tuple[int, int, bytes]]:
    with open(rec, "rb") as f:
        return [(r.offset, r.end, r.payload) for r in walk_records(f, rec.stat().st_size)]


def _verify_cli(prefix: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastrec", "verify", str(prefix), *flags],
                          capture_output=True, text=True)


def test_every_record_has_the_fingerprints_of_its_bytes(good):
    """One entry per .idx line, in order: the id, the source file's bytes, the framed record."""
    entries = list(read_entries(str(good / "data.fingerprints")))
    index = read_index(good / "data.idx")
    rec = (good / "data.rec").read_bytes()
    ends = [off for _, off in index[1:]] + [len(rec)]
    paths = {int(line.split("\t")[0]): line.rstrip("\n").split("\t")[-1]
             for line in (good / "data.lst").read_text().splitlines()}
    assert [e[0] for e in entries] == [key for key, _ in index] and len(entries) >= 9
    for (key, off), end, (_, source, record) in zip(index, ends, entries):
        assert record == fingerprint(rec[off:end])
        assert source == fingerprint((good / "images" / paths[key]).read_bytes())
    manifest = json.loads((good / "data.manifest.json").read_text())
    assert manifest["fingerprints"] == "data.fingerprints" and manifest["fingerprints_digest"]
    assert _verify_cli(good / "data").returncode == 0


def test_the_core_digests_in_the_packing_call(tmp_path):
    """pack_bytes fills (source, record) fingerprints per item; a skip has no record digest."""
    datas = [Path(p).read_bytes() for p in make_tree(tmp_path, 1, (2, 2))]
    slots = array.array("Q", bytes(16 * 3))
    blob, results = Worker(resize=32).pack_bytes([0, 1, 2], [0.0] * 3, datas + [b"not an image"], digests=slots)
    assert slots[0] == fingerprint(datas[0]) and slots[1] == fingerprint(blob[:results[0][1]])
    assert slots[3] == fingerprint(blob[results[0][1]:results[1][1]])
    assert slots[4] == fingerprint(b"not an image") and slots[5] == 0
    with pytest.raises(ValueError):
        Worker().pack_bytes([0], [0.0], datas[:1], digests=array.array("Q", [0]))


def test_a_duplicated_idx_line_fails_verify(good, tmp_path):
    """Issue 21 #3: gluon's ImageRecordDataset would serve the record twice an epoch."""
    work = _copy(good, tmp_path)
    lines = (work / "data.idx").read_bytes().splitlines(keepends=True)
    (work / "data.idx").write_bytes(b"".join(lines[:5] + [lines[3]] + lines[5:]))
    r = _verify_cli(work / "data")
    assert r.returncode == 1 and "names the same record as an earlier line" in r.stdout, r.stdout


def test_two_swapped_images_fail_verify_without_decode(good, tmp_path):
    """Issue 21 #4: records 1 and 2 keep their headers (ids, labels) but hold each other's image;
    the .rec is re-framed and the .idx rewritten to match, so everything but the bytes agrees."""
    work = _copy(good, tmp_path)
    records = _records(work / "data.rec")
    parts = [unpack(p) for _, _, p in records]
    parts[1], parts[2] = (parts[1][0], parts[2][1]), (parts[2][0], parts[1][1])
    rec, idx = bytearray(), []
    for header, image in parts:
        idx.append(b"%d\t%d\n" % (header.id, len(rec)))
        rec += frame(pack(header, image))
    (work / "data.rec").write_bytes(bytes(rec))
    (work / "data.idx").write_bytes(b"".join(idx))
    r = _verify_cli(work / "data")
    assert r.returncode == 1 and r.stdout.count("it was altered or swapped") == 2, r.stdout


def test_one_flipped_byte_inside_a_jpeg_fails_verify_without_decode(good, tmp_path):
    """Issue 21 #4: the image still decodes (--decode passes it); the fingerprint does not match."""
    work = _copy(good, tmp_path)
    offset, end, payload = _records(work / "data.rec")[3]
    data = bytearray((work / "data.rec").read_bytes())
    middle = offset + 8 + (len(payload) * 3) // 4     # in the entropy-coded data, not a marker
    data[middle] ^= 0x01
    (work / "data.rec").write_bytes(bytes(data))
    report = verify_rec(str(work / "data.rec"))
    assert not report.ok and any("fingerprint differs" in str(f) for f in report.faults), report.lines()


def test_a_pack_without_fingerprints_is_checked_as_before_with_a_note(good, tmp_path):
    """im2rec's packs (and older fastrec's) have no sidecar and no manifest naming one."""
    work = _copy(good, tmp_path)
    (work / "data.fingerprints").unlink()
    (work / "data.manifest.json").unlink()
    report = verify_rec(str(work / "data.rec"))
    assert report.ok and any("not that each record holds the bytes it was packed with" in n
                             for n in report.notes), report.lines()


def test_require_fingerprints_fails_a_pack_that_carries_no_proof(good, tmp_path):
    """With both the sidecar and the manifest gone, the pack looks like im2rec's and plain verify
    passes it with a note; --require-fingerprints fails it (and a lone .rec), and passes a whole pack."""
    work = _copy(good, tmp_path)
    assert _verify_cli(work / "data", "--require-fingerprints").returncode == 0
    (work / "data.fingerprints").unlink()
    (work / "data.manifest.json").unlink()
    assert _verify_cli(work / "data").returncode == 0
    strict = _verify_cli(work / "data", "--require-fingerprints")
    assert strict.returncode == 1 and "--require-fingerprints: no data.fingerprints" in strict.stdout, strict.stdout
    (work / "data.idx").unlink()
    no_idx = _verify_cli(work / "data", "--require-fingerprints")
    assert no_idx.returncode == 1 and "cannot prove its records" in no_idx.stdout, no_idx.stdout
    (work / "data.lst").unlink()
    assert _verify_cli(work / "data").returncode == 0
    lone = _verify_cli(work / "data", "--require-fingerprints")
    assert lone.returncode == 1 and "cannot prove its records" in lone.stdout, lone.stdout


def test_a_removed_sidecar_of_a_fastrec_pack_fails_verify(good, tmp_path):
    work = _copy(good, tmp_path)
    (work / "data.fingerprints").unlink()
    assert _verify_cli(work / "data").returncode == 1


def _damages(good: Path):
    """Every kind of one-place damage, drawn: (file, op, where)."""
    sizes = {name: (good / name).stat().st_size for name in ("data.rec", "data.idx", "data.fingerprints")}
    lines = (good / "data.idx").read_bytes().count(b"\n")
    flip = st.sampled_from(sorted(sizes)).flatmap(
        lambda name: st.tuples(st.just(name), st.just("flip"), st.integers(0, sizes[name] - 1),
                               st.integers(1, 255)))
    line_ops = st.tuples(st.just("data.idx"), st.sampled_from(["drop", "dup"]), st.integers(0, lines - 1),
                         st.just(0))
    entry_ops = st.tuples(st.just("data.fingerprints"), st.sampled_from(["drop", "dup"]),
                          st.integers(0, lines - 1), st.just(0))
    swap = st.tuples(st.just("data.rec"), st.just("swap"), st.integers(0, lines - 2), st.integers(1, lines - 1))
    return st.one_of(flip, line_ops, entry_ops, swap)


def _damage(work: Path, name: str, op: str, where: int, arg: int) -> None:
    path = work / name
    data = bytearray(path.read_bytes())
    if op == "flip":
        data[where] ^= arg
    elif name == "data.idx":
        lines = data.splitlines(keepends=True)
        lines[where:where + 1] = [] if op == "drop" else [lines[where]] * 2
        data = bytearray(b"".join(lines))
    elif name == "data.fingerprints":
        at = HEADER.size + where * ENTRY.size
        entry = data[at:at + ENTRY.size]
        data[at:at + ENTRY.size] = b"" if op == "drop" else entry * 2
    else:   # swap two whole records in the .rec (the .idx left as it was)
        records = _records(path)
        i, j = where, min(where + arg, len(records) - 1)
        if i == j:
            i = j - 1
        chunks = [bytes(data[o:e]) for o, e, _ in records]
        chunks[i], chunks[j] = chunks[j], chunks[i]
        data = bytearray(b"".join(chunks))
    path.write_bytes(bytes(data))


def test_any_one_damage_fails_verify(good, tmp_path_factory):
    """A property: damaging any one byte or line of .rec/.idx/.fingerprints (flip a byte, drop or
    duplicate an .idx line or a sidecar entry, swap two records) makes verify fail. In-process
    (verify_rec's report is what `fastrec verify` exits by), bounded to ~20 s."""
    work = tmp_path_factory.mktemp("damage")

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(damage=_damages(good))
    @example(damage=("data.idx", "dup", 0, 0))
    @example(damage=("data.fingerprints", "flip", HEADER.size + 9, 1))    # a source fingerprint
    @example(damage=("data.idx", "flip", (good / "data.idx").stat().st_size - 1, 0x2A))   # the last LF
    def check(damage):
        _copy(good, work)
        _damage(work, *damage)
        report = verify_rec(str(work / "data.rec"))
        assert not report.ok, (damage, report.lines())

    check()


def test_resume_refuses_altered_kept_records(good, tmp_path):
    """A record whose bytes no longer match its fingerprint: the outputs were altered after they
    were written; --resume refuses in one line and cuts nothing."""
    work = _copy(good, tmp_path)
    offset, end, _ = _records(work / "data.rec")[2]
    data = bytearray((work / "data.rec").read_bytes())
    data[end - 20] ^= 0x10
    (work / "data.rec").write_bytes(bytes(data))
    before = {n: (work / n).read_bytes() for n in ("data.rec", "data.idx", "data.fingerprints")}
    r = subprocess.run([sys.executable, "-m", "fastrec", "pack", str(work / "data"), str(good / "images"),
                        "--resize", "48", "--quality", "80", "--resume", "--max-skipped", "100%"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "were altered after they were written" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and [ln for ln in r.stderr.splitlines() if "error" in ln] == \
        [r.stderr.strip().splitlines()[-1]]
    assert {n: (work / n).read_bytes() for n in before} == before


@pytest.mark.parametrize("field,value", [("fastrec", "0.0.9"), ("format", 1)])
def test_resume_refuses_another_fastrecs_pack(good, tmp_path, field, value):
    """Issue 21 #6: a manifest edited to another fastrec version (or pack format) is refused, not
    resumed silently and rewritten with this version."""
    work = _copy(good, tmp_path)
    manifest = json.loads((work / "data.manifest.json").read_text())
    manifest[field] = value
    (work / "data.manifest.json").write_text(json.dumps(manifest))
    before = {n: (work / n).read_bytes() for n in FILES if (work / n).exists()}
    r = subprocess.run([sys.executable, "-m", "fastrec", "pack", str(work / "data"), str(good / "images"),
                        "--resize", "48", "--quality", "80", "--resume", "--max-skipped", "100%"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "cannot --resume" in r.stderr and "packed by fastrec" in r.stderr, r.stderr
    assert {n: (work / n).read_bytes() for n in before} == before


def test_verify_sources_names_a_changed_source(good, tmp_path):
    """`verify --sources` re-reads every packed image under the manifest's root."""
    images = tmp_path / "images"
    shutil.copytree(good / "images", images)
    work = tmp_path / "pack"
    work.mkdir()
    make_lists(str(work / "data"), str(images), ListOptions(recursive=True))
    pack_prefix(str(work / "data"), str(images), PackOptions(resize=48, progress="off", max_skipped=1.0))
    r = _verify_cli(work / "data", "--sources")
    assert r.returncode == 0 and "0 changed" in r.stdout, r.stdout
    victim = sorted(images.glob("*/*.JPEG"))[2]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\xd8")
    r = _verify_cli(work / "data", "--sources")
    rel = victim.relative_to(images).as_posix()
    assert r.returncode == 1 and f"source {rel} " in r.stdout and "changed since it was packed" in r.stdout, r.stdout
    victim.unlink()
    assert "cannot be read" in _verify_cli(work / "data", "--sources").stdout


def test_verify_sources_of_a_tar_whose_members_changed(tmp_path):
    """The archive rewritten with two members' contents exchanged (the names kept): read afresh
    (not through the cached index), both are named."""
    import tarfile

    images = tmp_path / "images"
    make_tree(images, classes=1, per_class=(4, 4), sizes="imagenet", seed=5)
    names = sorted(p.relative_to(images).as_posix() for p in images.rglob("*.JPEG"))
    with tarfile.open(tmp_path / "a.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for n in names:
            tar.add(images / n, arcname=n)
    subprocess.run([sys.executable, "-m", "fastrec", "list", str(tmp_path / "data"), "--from-tar",
                    str(tmp_path / "a.tar"), "--recursive"], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "fastrec", "pack", str(tmp_path / "data"), "--from-tar",
                    str(tmp_path / "a.tar"), "--pass-through"], check=True, capture_output=True)
    assert _verify_cli(tmp_path / "data", "--sources").returncode == 0
    first = (images / names[0]).read_bytes()
    (images / names[0]).write_bytes((images / names[1]).read_bytes())    # the archive's member changes
    (images / names[1]).write_bytes(first)
    with tarfile.open(tmp_path / "a.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for n in names:
            tar.add(images / n, arcname=n)
    r = _verify_cli(tmp_path / "data", "--sources")
    assert r.returncode == 1 and r.stdout.count("changed since it was packed") == 2, r.stdout


@pytest.mark.parametrize("opts", [dict(encoding=".png", resize=24), dict(pass_through=True)],
                         ids=["png", "pass-through"])
def test_every_record_path_gets_fingerprints(good, tmp_path, opts):
    """PNG records (made in Python after the core) and pass-through records prove out too."""
    shutil.copy(good / "data.lst", tmp_path / "data.lst")
    pack_prefix(str(tmp_path / "data"), str(good / "images"), PackOptions(progress="off", max_skipped=1.0, **opts))
    report = verify_rec(str(tmp_path / "data.rec"))
    entries = list(read_entries(str(tmp_path / "data.fingerprints")))
    assert report.ok and not report.notes and len(entries) == report.records >= 9, report.lines()
