"""Reads from tar archives check themselves (issue 21): every member read takes the member's own
header blocks with its bytes and compares them with the index; sparse members are refused by name
on both paths; a compressed tar named `.tar` is named as compressed."""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from helpers_pack import fastrec_subprocess
from fastrec.engine.sources import INDEX_NAME, build_index
from fastrec.errors import EnvironmentFault
from fastrec.formats.recordio import RecordReader
from fastrec.stages.extract import ExtractOptions, extract


def jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16 + i, 12), (20 * i % 256, 90, 200 - 10 * i)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def same_size_jpegs(n: int) -> list[bytes]:
    """n distinct JPEGs padded (COM segment) to one size, so reordering keeps every offset valid."""
    raw = [jpeg(i) for i in range(n)]
    size = max(len(r) for r in raw) + 8
    return [r[:2] + b"\xff\xfe" + (size - len(r)).to_bytes(2, "big") + b"\0" * (size - len(r) - 2) + r[2:]
            for r in raw]


def write_tar(path: Path, members: list[tuple[str, bytes]], fmt=tarfile.GNU_FORMAT) -> None:
    with tarfile.open(path, "w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_600_000_000
            t.addfile(info, io.BytesIO(data))


def payloads(rec: Path) -> list[bytes]:
    """Each record's image bytes (pass-through: the source file as it was read)."""
    with RecordReader(rec) as r:
        return [p[24:] for p in r]   # IRHeader: flag, label, id, id2 (24 bytes)


def listed(lst: Path) -> list[str]:
    return [line.split("\t")[-1] for line in lst.read_text().splitlines()]


@pytest.fixture()
def reordered(tmp_path) -> tuple[Path, dict[str, bytes], list]:
    """a.tar listed, then replaced by a tar of the same size with the same members in another
    order and the old mtime restored (what `touch -r`, `cp -p` or `rsync -t` leave)."""
    data = same_size_jpegs(8)
    names = {f"c0/img{i}.jpg": d for i, d in enumerate(data)}
    archive = tmp_path / "a.tar"
    write_tar(archive, list(names.items()))
    r = fastrec_subprocess(["list", tmp_path / "x", "--from-tar", archive, "--recursive", "--no-shuffle"])
    assert r.returncode == 0, r.stderr
    before = archive.stat()
    write_tar(tmp_path / "b.tar", list(reversed(names.items())))
    os.replace(tmp_path / "b.tar", archive)
    os.utime(archive, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert archive.stat().st_size == before.st_size and archive.stat().st_mtime_ns == before.st_mtime_ns
    return archive, names, before


def test_a_reordered_archive_with_its_mtime_restored_never_packs_other_bytes(tmp_path, reordered):
    """The issue's reproduction: the index cache is keyed by inode and ctime too, so the pack indexes
    the archive as it is now, and every record holds the member its list line names (before, 8 of 8
    records held another member's bytes, exit 0)."""
    archive, names, _ = reordered
    r = fastrec_subprocess(["pack", tmp_path / "x", "--from-tar", archive, "--pass-through"])
    assert r.returncode == 0, r.stderr
    assert payloads(tmp_path / "x.rec") == [names[p] for p in listed(tmp_path / "x.lst")]


def test_a_stale_index_the_cache_key_cannot_see_stops_the_pack(tmp_path, reordered):
    """Where the stamps do not show the rewrite (a file system with coarse or unreliable ctime, an
    index copied along), each read finds the member's own tar header changed: the pack stops
    (exit 75) naming the archive, drops the stale index, and listing again packs the right bytes."""
    archive, names, before = reordered
    cache = tmp_path / INDEX_NAME
    raw = cache.read_bytes()
    magic, header, rest = raw.split(b"\n", 2)
    head = json.loads(header)
    now = archive.stat()
    head["key"]["archives"][0][3:] = [now.st_ctime_ns, now.st_ino]   # as if nothing showed it
    new_header = json.dumps(head, ensure_ascii=True).encode()
    assert len(new_header) <= len(header)
    cache.write_bytes(magic + b"\n" + new_header + b" " * (len(header) - len(new_header)) + b"\n" + rest)
    r = fastrec_subprocess(["pack", tmp_path / "x", "--from-tar", archive, "--pass-through"])
    assert r.returncode == 75, r.stderr
    assert f"{archive} changed since it was indexed" in r.stderr and "list --from-tar` again" in r.stderr
    assert "Traceback" not in r.stderr and not cache.exists()
    for argv in (["list", tmp_path / "x", "--from-tar", archive, "--recursive", "--no-shuffle"],
                 ["pack", tmp_path / "x", "--from-tar", archive, "--pass-through"]):
        r = fastrec_subprocess(argv)
        assert r.returncode == 0, r.stderr
    assert payloads(tmp_path / "x.rec") == [names[p] for p in listed(tmp_path / "x.lst")]


def test_an_archive_rewritten_in_place_under_a_loaded_index(tmp_path):
    """Same inode, same size, the index already in memory (a long pack, a Dask worker): the read
    compares the header blocks, including a GNU long name's and a pax header's."""
    data = same_size_jpegs(3)
    long = "c0/" + "n" * 120 + ".jpg"
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        archive = tmp_path / f"{fmt}.tar"
        write_tar(archive, [(long, data[0]), ("c0/b.jpg", data[1])], fmt)
        index = build_index([str(archive)])
        assert index.read(long) == data[0] and index.read("c0/b.jpg") == data[1]
        with open(archive, "r+b") as f:      # the same member, renamed in place: only the name differs
            other = io.BytesIO()
            write_tar_to(other, [(long[:-5] + "x.jpg", data[0]), ("c0/b.jpg", data[1])], fmt)
            f.write(other.getvalue())
        with pytest.raises(EnvironmentFault, match=f"{archive} changed since it was indexed"):
            index.read(long)
        assert index.read("c0/b.jpg") == data[1]


def write_tar_to(f, members, fmt) -> None:
    with tarfile.open(fileobj=f, mode="w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_600_000_000
            t.addfile(info, io.BytesIO(data))


# ---------------------------------------------------------------- sparse members
SPARSE_FORMATS = {"gnu": ["--sparse"], "pax-0.0": ["--format=posix", "--sparse-version=0.0"],
                  "pax-0.1": ["--format=posix", "--sparse-version=0.1"],
                  "pax-1.0": ["--format=posix", "--sparse-version=1.0"]}


def sparse_tree(root: Path) -> list[str]:
    """c0/ with two whole JPEGs and a JPEG-ish file with a 192 KiB hole (GNU tar -S stores it sparse)."""
    (root / "c0").mkdir(parents=True)
    (root / "c0" / "a.jpg").write_bytes(jpeg(1))
    (root / "c0" / "z.jpg").write_bytes(jpeg(2))
    with open(root / "c0" / "s.jpg", "wb") as f:
        body = jpeg(3)
        f.write(body[:-2] + b"\0" * 5000)
        f.seek(200_000)
        f.write(b"\0" * 3000 + body[-2:])
    return ["c0/a.jpg", "c0/s.jpg", "c0/z.jpg"]


@pytest.mark.parametrize("fmt", sorted(SPARSE_FORMATS))
@pytest.mark.parametrize("order", ["middle", "last"])
def test_sparse_members_are_refused_by_name_on_both_paths(tmp_path, fmt, order):
    """A sparse member's bytes are not one byte range: the index and extract both refuse it by name
    and keep the rest; as the last member it no longer makes the valid archive 'damaged' (before:
    with --pass-through its record held the next members' bytes; last, the archive was refused)."""
    names = sparse_tree(tmp_path / "src")
    if order == "last":
        names = [names[0], names[2], names[1]]
    archive = tmp_path / "s.tar"
    subprocess.run(["tar", *SPARSE_FORMATS[fmt], "-cf", str(archive), "-C", str(tmp_path / "src"), *names],
                   check=True)
    assert any(m.sparse for m in tarfile.open(archive))
    index = build_index([str(archive)])
    assert sorted(index.members) == ["c0/a.jpg", "c0/z.jpg"]
    assert [why for where, why in index.rejected if where.endswith(":c0/s.jpg")] \
        == ["a sparse member (GNU tar --sparse): fastrec reads each image as one byte range; make the "
            "archive again without --sparse"]
    assert index.read("c0/z.jpg") == jpeg(2)
    s = extract([str(archive)], str(tmp_path / "x"), ExtractOptions(jobs=1, fsync=False))
    assert [p.where.endswith(":c0/s.jpg") and "sparse" in p.reason for p in s.refused] == [True]
    assert sorted(p.name for p in (tmp_path / "x" / "c0").iterdir()) == ["a.jpg", "z.jpg"]
    if (fmt, order) != ("gnu", "last"):
        return                     # the command line once: the rules above are the same code
    for argv in (["list", tmp_path / "t", "--from-tar", archive, "--recursive"],
                 ["pack", tmp_path / "t", "--from-tar", archive, "--pass-through"]):
        r = fastrec_subprocess(argv)
        assert r.returncode == 0, r.stderr
    assert sorted(payloads(tmp_path / "t.rec")) == sorted([jpeg(1), jpeg(2)])


# ---------------------------------------------------------------- compressed, named .tar
@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz"])
def test_a_compressed_tar_named_tar_is_named_compressed(tmp_path, kind):
    """`list`/`pack --from-tar` say the archive is compressed and what to do (before: 'damaged or
    truncated ... replace the archive'); `extract` streams it."""
    import bz2
    import lzma
    plain = tmp_path / "plain.tar"
    write_tar(plain, [("c0/a.jpg", jpeg(1)), ("c0/b.jpg", jpeg(2))])
    squeeze = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}[kind]
    archive = tmp_path / "c0.tar"
    archive.write_bytes(squeeze(plain.read_bytes()))
    r = fastrec_subprocess(["list", tmp_path / "t", "--from-tar", archive, "--recursive"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"fastrec list: error: {archive} is a {kind}-compressed archive: --from-tar reads each image at "
        f"its offset, which needs an uncompressed tar; decompress it first (or use `fastrec extract`, "
        f"which streams it)")
    s = extract([str(archive)], str(tmp_path / "x"), ExtractOptions(jobs=1, fsync=False))
    assert s.files == 2 and not s.refused and not s.corrupt
    assert (tmp_path / "x" / "c0" / "b.jpg").read_bytes() == jpeg(2)


def test_list_from_tar_into_a_missing_folder_is_one_line(tmp_path):
    """Issue 22 item 8: `list lists/train --from-tar X.tar --more-than 25` with lists/ missing was
    a traceback (the index is cached beside the lists); now plain list's line, exit 2."""
    write_tar(tmp_path / "c0.tar", [("a.jpg", jpeg(1))])
    r = fastrec_subprocess(["list", tmp_path / "lists" / "train", "--from-tar", tmp_path / "c0.tar",
                            "--recursive", "--more-than", "0"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith("does not exist; create it first")
    assert not (tmp_path / "lists").exists()
