"""`list --from-tar` + `pack --from-tar` give exactly what `extract` + `list --recursive` + `pack`
give (byte-identical lists and records), or refuse where extract refuses, naming the member:
links, sub-folders, class-prefixed inner members, hidden classes, a class in two archives."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from fastrec.demo.samples import make_tree
from fastrec.engine import PackOptions, pack_prefix
from fastrec.engine.sources import TarError, build_index
from fastrec.formats.lists import ListOptions, make_lists
from fastrec.stages.extract import ExtractOptions, extract
from fastrec.stages.tarlists import make_lists_from_tar


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> list[bytes]:
    paths = make_tree(tmp_path_factory.mktemp("jpegs"), classes=1, per_class=(8, 8), seed=11)
    return [p.read_bytes() for p in paths]


def add_file(t: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime = len(data), 1_600_000_000
    t.addfile(ti, io.BytesIO(data))


def add_link(t: tarfile.TarFile, name: str, kind: bytes, target: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mtime = kind, target, 1_600_000_000
    t.addfile(ti)


def tar_bytes(fill) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        fill(t)
    return buf.getvalue()


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".lst", ".rec", ".idx")}


def both_ways(tmp_path: Path, archives: list[str]) -> tuple[dict, dict]:
    """(extract + list + pack, list --from-tar + pack --from-tar) outputs."""
    opts = PackOptions(resize=32, quality=80, progress="off")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    extract(archives, str(tmp_path / "x"), ExtractOptions(jobs=1, fsync=False))
    make_lists(str(a / "train"), str(tmp_path / "x"), ListOptions(recursive=True))
    pack_prefix(str(a / "train"), str(tmp_path / "x"), opts)
    make_lists_from_tar(str(b / "train"), archives, ListOptions(recursive=True))
    pack_prefix(str(b / "train"), None, opts, archives=archives)
    return outputs(a), outputs(b)


def test_links_subfolders_prefixes_and_hidden_classes(tmp_path, jpegs):
    def class_folders(t):     # a top-level tar of class folders
        add_file(t, "ca/a1.JPEG", jpegs[0])
        add_file(t, "ca/a2.JPEG", jpegs[1])
        add_link(t, "ca/hard.JPEG", tarfile.LNKTYPE, "ca/a1.JPEG")       # a copy of a1
        add_link(t, "ca/soft.JPEG", tarfile.SYMTYPE, "a2.JPEG")           # a link to a2
        add_file(t, "ca/sub/deep.JPEG", jpegs[2])                         # its own label
        add_link(t, "ca/sub/up.JPEG", tarfile.SYMTYPE, "../a1.JPEG")
        add_link(t, "ca/out.JPEG", tarfile.SYMTYPE, "../../x.JPEG")       # refused: outside
        add_file(t, ".hidden/h.JPEG", jpegs[3])                           # refused: hidden class

    def inner(t):             # a class tar, some members written with the class prefix
        add_file(t, "cb/b1.JPEG", jpegs[4])
        add_file(t, "b2.JPEG", jpegs[5])
        add_file(t, "cb/sub/b3.JPEG", jpegs[6])
        add_link(t, "b4.JPEG", tarfile.LNKTYPE, "cb/b2.JPEG")
        add_link(t, "b5.JPEG", tarfile.SYMTYPE, "sub/b3.JPEG")

    def outer(t):
        add_file(t, "cb.tar", tar_bytes(inner))
        add_file(t, ".hid.tar", tar_bytes(lambda i: add_file(i, "z.JPEG", jpegs[7])))   # refused: hidden

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "folders.tar").write_bytes(tar_bytes(class_folders))
    (tmp_path / "in" / "outer.tar").write_bytes(tar_bytes(outer))
    archives = [str(tmp_path / "in" / "folders.tar"), str(tmp_path / "in" / "outer.tar")]
    extracted, from_tar = both_ways(tmp_path, archives)
    assert from_tar == extracted
    listed = extracted["train.lst"].decode()
    for path in ("ca/hard.JPEG", "ca/soft.JPEG", "ca/sub/deep.JPEG", "ca/sub/up.JPEG", "cb/b1.JPEG",
                 "cb/sub/b3.JPEG", "cb/b4.JPEG", "cb/b5.JPEG"):
        assert path in listed
    assert "cb/cb/" not in listed and "hidden" not in listed and ".hid" not in listed
    index = build_index(archives)
    assert index.read("ca/hard.JPEG") == jpegs[0] and index.read("cb/b5.JPEG") == jpegs[6]
    rejected = dict(index.rejected)
    assert "points outside" in rejected[f"{archives[0]}:ca/out.JPEG"]
    assert any(".hidden" in where for where in rejected) and any(".hid.tar" in where for where in rejected)


def test_a_class_in_two_archives_is_refused(tmp_path, jpegs):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cc.tar").write_bytes(tar_bytes(lambda t: add_file(t, "c1.JPEG", jpegs[0])))
    (tmp_path / "in" / "more.tar").write_bytes(tar_bytes(lambda t: add_file(t, "cc/c2.JPEG", jpegs[1])))
    s = extract([str(tmp_path / "in")], str(tmp_path / "x"), ExtractOptions(jobs=1, fsync=False))
    assert [p.reason for p in s.refused] == ["class 'cc' already comes from " + str(tmp_path / "in" / "cc.tar")]
    with pytest.raises(TarError, match=r"class 'cc' comes from both .*cc\.tar and .*more\.tar"):
        make_lists_from_tar(str(tmp_path / "train"), [str(tmp_path / "in")], ListOptions(recursive=True))


def test_filter_and_split_keep_sub_folders_with_their_class(tmp_path, jpegs):
    """`list --from-tar --min-images --val-per-class` = extract, filter, split, list: sub-folder
    files stay in train with their class (split picks among a class's own files only)."""
    from fastrec.stages.filter import filter_classes
    from fastrec.stages.split import split_classes

    def fill(t):
        for i, name in enumerate(["ca/a1.JPEG", "ca/a2.JPEG", "ca/a3.JPEG", "ca/sub/s1.JPEG", "cb/b1.JPEG",
                                  "cb/sub/s2.JPEG", "cc/sub/s3.JPEG"]):
            add_file(t, name, jpegs[i])
    archive = tmp_path / "in.tar"
    archive.write_bytes(tar_bytes(fill))
    extract([str(archive)], str(tmp_path / "x"), ExtractOptions(jobs=1, fsync=False))
    filter_classes(str(tmp_path / "x"), 2, str(tmp_path / "small"))
    split_classes(str(tmp_path / "x"), str(tmp_path / "v"), 1, seed=4)
    (tmp_path / "a").mkdir()
    make_lists(str(tmp_path / "a" / "train"), str(tmp_path / "x"), ListOptions(recursive=True))
    make_lists(str(tmp_path / "a" / "val"), str(tmp_path / "v"), ListOptions(recursive=True))
    (tmp_path / "b").mkdir()
    made = make_lists_from_tar(str(tmp_path / "b" / "train"), [str(archive)], ListOptions(recursive=True),
                               min_images=2, val_per_class=1, seed=4, val_prefix=str(tmp_path / "b" / "val"))
    assert made.split.small_classes == [("cb", 1), ("cc", 0)]
    assert outputs(tmp_path / "b") == outputs(tmp_path / "a")
    assert b"ca/sub/s1.JPEG" in (tmp_path / "b" / "train.lst").read_bytes()


def test_a_link_to_a_folder_is_left_out_both_ways(tmp_path, jpegs):
    """`ca/alias -> sub`: a listing of the extracted tree walked through it (two more classes,
    every later label shifted); the index leaves it out, and now so does extract, naming it."""
    def fill(t):
        add_file(t, "ca/a1.JPEG", jpegs[0])
        add_file(t, "ca/sub/s1.JPEG", jpegs[1])
        add_link(t, "ca/alias", tarfile.SYMTYPE, "sub")
        add_file(t, "cb/b1.JPEG", jpegs[2])

    (tmp_path / "t.tar").write_bytes(tar_bytes(fill))
    extracted, from_tar = both_ways(tmp_path, [str(tmp_path / "t.tar")])
    assert from_tar == extracted and b"alias" not in extracted["train.lst"]
    assert not (tmp_path / "x" / "ca" / "alias").exists()


def test_links_resolve_as_on_the_extracted_file_system(tmp_path, jpegs):
    """Issue 21 item 9: `c0/link.jpg -> nosuch/../img0.jpg` dangles once extracted (`nosuch` is no
    folder), so the index must not list it (it resolved it lexically: 5 items for 4, every later id
    shifted). Likewise a link through a link to a folder (extract does not keep that one), links to
    links, a hard link to itself, and members under a file or a link: both ways list the same."""
    def fill(t):
        for i in range(4):
            add_file(t, f"c0/img{i}.jpg", jpegs[i])
        add_link(t, "c0/link.jpg", tarfile.SYMTYPE, "nosuch/../img0.jpg")       # dangles
        add_file(t, "c1/sub/s.jpg", jpegs[4])
        add_link(t, "c1/d", tarfile.SYMTYPE, "sub")                             # a folder: removed
        add_link(t, "c1/via.jpg", tarfile.SYMTYPE, "d/s.jpg")                   # so this dangles
        add_link(t, "c1/up.jpg", tarfile.SYMTYPE, "sub/../sub/s.jpg")           # real folders: fine
        add_link(t, "c1/l2.jpg", tarfile.SYMTYPE, "up.jpg")                     # a link to a link
        add_link(t, "c1/l3.jpg", tarfile.SYMTYPE, "l2.jpg/")                    # not a folder
        add_link(t, "c1/self.jpg", tarfile.LNKTYPE, "c1/up.jpg")                # not a file: refused
        add_file(t, "c2/a.jpg", jpegs[5])
        add_link(t, "c2/a.jpg", tarfile.LNKTYPE, "c2/a.jpg")                    # a hard link to itself
        add_file(t, "c2/a.jpg/b.jpg", jpegs[6])                                 # under a file: refused
        add_link(t, "c2/loop.jpg", tarfile.SYMTYPE, "loop.jpg")

    (tmp_path / "t.tar").write_bytes(tar_bytes(fill))
    extracted, from_tar = both_ways(tmp_path, [str(tmp_path / "t.tar")])
    assert from_tar == extracted
    assert [line.split("\t")[-1] for line in sorted(extracted["train.lst"].decode().splitlines(),
                                                     key=lambda l: int(l.split("\t")[0]))] == [
        "c0/img0.jpg", "c0/img1.jpg", "c0/img2.jpg", "c0/img3.jpg", "c1/l2.jpg", "c1/up.jpg", "c1/sub/s.jpg",
        "c2/a.jpg"]
