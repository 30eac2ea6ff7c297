"""Packing straight from tar archives gives the same bytes as extracting and packing."""
from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from fastrec.stages.extract import ExtractOptions, extract
from fastrec.stages.filter import filter_classes
from fastrec.formats.lists import ListOptions, make_lists
from fastrec.engine import PackOptions, pack_prefix
from fastrec.stages.split import split_classes
from fastrec.engine.sources import TarError, build_index
from fastrec.stages.tarlists import make_lists_from_tar, walk_entries

from test_prepare import make_archive

MIN, VAL, SEED = 5, 2, 3


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    path = make_archive(tmp_path_factory.mktemp("tar") / "imagenet.tar", seed=4)
    # a non-image member inside a class tar, appended as its own class tar
    with tarfile.open(path, "a") as outer:
        inner = io.BytesIO()
        with tarfile.open(fileobj=inner, mode="w") as t:
            for name, data in (("notes.txt", b"not an image"), ("real.JPEG", b"not a jpeg either")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("n07777777.tar")
        info.size = len(inner.getvalue())
        outer.addfile(info, io.BytesIO(inner.getvalue()))
    return path


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.suffix in (".lst", ".rec", ".idx") or p.name.endswith(".skipped.tsv")}


@pytest.fixture(scope="module")
def extracted(archive, tmp_path_factory) -> Path:
    """The extracting pipeline: extract, filter, split, list, pack."""
    base = tmp_path_factory.mktemp("extracted")
    extract([str(archive)], str(base / "train"), ExtractOptions(jobs=2))
    filter_classes(str(base / "train"), MIN, str(base / "small"))
    split_classes(str(base / "train"), str(base / "val"), VAL, SEED)
    out = base / "out"
    out.mkdir()
    make_lists(str(out / "train"), str(base / "train"), ListOptions(recursive=True, chunks=2))
    make_lists(str(out / "val"), str(base / "val"), ListOptions(recursive=True))
    opts = PackOptions(resize=48, quality=85, progress="off")
    pack_prefix(str(out / "train"), str(base / "train"), opts)
    pack_prefix(str(out / "val"), str(base / "val"), opts)
    return out


def test_pack_from_tar_equals_extract_then_pack(archive, extracted, tmp_path):
    make_lists_from_tar(str(tmp_path / "train"), [str(archive)], ListOptions(recursive=True, chunks=2),
                        min_images=MIN, val_per_class=VAL, seed=SEED, val_prefix=str(tmp_path / "val"))
    opts = PackOptions(resize=48, quality=85, progress="off")
    pack_prefix(str(tmp_path / "train"), None, opts, archives=[str(archive)])
    pack_prefix(str(tmp_path / "val"), None, opts, archives=[str(archive)])
    ours = _outputs(tmp_path)
    theirs = _outputs(extracted)
    assert set(ours) == set(theirs)
    for name in theirs:
        assert ours[name] == theirs[name], name


def test_cli_from_tar(archive, extracted, tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "fastrec", *args], capture_output=True, text=True)
    r = run("list", str(tmp_path / "train"), "--from-tar", str(archive), "--recursive", "--chunks", "2",
            "--min-images", str(MIN), "--val-per-class", str(VAL), "--seed", str(SEED),
            "--val-prefix", str(tmp_path / "val"))
    assert r.returncode == 0, r.stderr
    assert "notes.txt" in r.stderr          # the non-image member is reported
    for prefix in ("train", "val"):
        r = run("pack", str(tmp_path / prefix), "--from-tar", str(archive), "--resize", "48", "--quality", "85")
        assert r.returncode == 0, r.stderr
    assert _outputs(tmp_path) == _outputs(extracted)


def test_non_image_members_are_reported_and_skipped(archive, tmp_path):
    index = build_index([str(archive)])
    rejected = dict(index.rejected)
    assert "n07777777/notes.txt" in rejected
    assert any("escape" in name for name in rejected)               # unsafe path
    assert any("corrupt inner tar" in why for why in rejected.values())
    # a member with an image name that is not an image is listed, then skipped by the packer
    make_lists_from_tar(str(tmp_path / "all"), [str(archive)], ListOptions(recursive=True, shuffle=False))
    summary = pack_prefix(str(tmp_path / "all"), None, PackOptions(resize=32, progress="off", max_skipped=1.0),
                          archives=[str(archive)])
    assert summary.reasons == {"not-an-image": 1}
    assert b"n07777777/real.JPEG\tnot-an-image" in (tmp_path / "all.skipped.tsv").read_bytes()


def test_truncated_archive_names_the_last_good_member(archive, tmp_path):
    cut = tmp_path / "cut.tar"
    data = archive.read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 1000])
    with pytest.raises(TarError, match=r"last good member is 'n0000200\d\.tar'.*--resume"):
        build_index([str(cut)])
    (tmp_path / "x.lst").write_text("0\t0.000000\tn00002000/n00002000_0.JPEG\n")
    with pytest.raises(TarError, match="damaged or truncated"):
        pack_prefix(str(tmp_path / "x"), None, PackOptions(progress="off"), archives=[str(cut)])


def test_walk_order_matches_os_walk(tmp_path):
    """Folder-before-file traps: 'a/x' is visited before 'a-b', files before sub-folders."""
    paths = ["a-b/1.jpg", "a/x/2.jpg", "a/3.jpg", "b.jpg", "A/4.jpg", "a/x/y/5.jpg"]
    for p in paths:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b"")
    from fastrec.formats.lists import list_images
    expected, _ = list_images(str(tmp_path), True, (".jpg",))
    assert walk_entries(paths) == expected


def test_index_agrees_with_extract_on_hostile_archives(tmp_path):
    """Truncated and garbled inner tars, '..' and absolute names, links and devices: the index
    holds exactly the files `fastrec extract` writes (same classes, same names, same bytes)."""
    from stage_fixtures import make_outer_tar

    ds = make_outer_tar(str(tmp_path / "outer.tar"), seed=2)
    extract([ds.outer], str(tmp_path / "x"), ExtractOptions(jobs=2))
    written = {str(p.relative_to(tmp_path / "x")): p.read_bytes()
               for p in (tmp_path / "x").rglob("*") if p.is_file() and not p.is_symlink()}
    index = build_index([ds.outer], exts=(".jpeg",))
    assert set(index.members) == set(written)
    assert all(index.read(rel) == data for rel, data in written.items())


def test_index_cache_is_keyed_by_the_extensions(archive, tmp_path):
    """A second `list --from-tar --exts` in the same folder lists what those extensions name (the
    cached index of the first listing held JPEGs only, and was reused)."""
    make_lists_from_tar(str(tmp_path / "jpegs"), [str(archive)], ListOptions(recursive=True, shuffle=False))
    make_lists_from_tar(str(tmp_path / "texts"), [str(archive)],
                        ListOptions(recursive=True, shuffle=False, exts=(".txt",)))
    assert [line.split("\t")[-1] for line in (tmp_path / "texts.lst").read_text().splitlines()] \
        == ["n07777777/notes.txt"]
    # packing reads whichever index its lists were made from
    pack_prefix(str(tmp_path / "texts"), None, PackOptions(progress="off", max_skipped=1.0), archives=[str(archive)])
    assert (tmp_path / "texts.skipped.tsv").read_text().split("\t")[1] == "not-an-image"


def test_max_bytes_applies_to_archive_members(archive, tmp_path):
    """--max-bytes on the tar path: every member above it is skipped before it is read, as a file is."""
    make_lists_from_tar(str(tmp_path / "all"), [str(archive)], ListOptions(recursive=True, shuffle=False))
    summary = pack_prefix(str(tmp_path / "all"), None, PackOptions(max_bytes=10, progress="off", max_skipped=1.0),
                          archives=[str(archive)])
    assert summary.images == 0 and set(summary.reasons) == {"file-too-large"}


def _one_jpeg_tars(folder: Path, n: int) -> Path:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 30, 30)).save(buf, "JPEG")
    folder.mkdir()
    for c in range(n):
        with tarfile.open(folder / f"c{c:04d}.tar", "w") as t:
            info = tarfile.TarInfo(f"c{c:04d}_0.JPEG")
            info.size = len(buf.getvalue())
            t.addfile(info, io.BytesIO(buf.getvalue()))
    return folder


def test_descriptors_do_not_grow_with_threads_times_archives(tmp_path):
    """120 class tars, 8 threads, a process limited to 64 descriptors: every image packed, the
    same bytes as without the limit (each thread used to keep every archive it touched open)."""
    tars = _one_jpeg_tars(tmp_path / "tars", 120)
    make_lists_from_tar(str(tmp_path / "x"), [str(tars)], ListOptions(recursive=True))
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)); "
            "from fastrec.cli import main; sys.exit(main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", code, "pack", str(tmp_path / "x"), "--from-tar", str(tars),
                          "--num-thread", "8", "--batch-size", "1", "--progress", "off"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    limited = (tmp_path / "x.rec").read_bytes()
    pack_prefix(str(tmp_path / "x"), None, PackOptions(num_thread=8, progress="off"), archives=[str(tars)])
    assert (tmp_path / "x.rec").read_bytes() == limited and limited.count(b"\xff\xd8") >= 120


def test_top_folder_entry_of_tar_c_dot_is_not_a_refusal(tmp_path):
    """`tar -C DIR .` starts with a `./` folder entry: it makes nothing, and is no warning."""
    tars = _one_jpeg_tars(tmp_path / "tars", 1)
    with tarfile.open(tmp_path / "val.tar", "w") as t:
        t.add(tars, arcname=".", recursive=False)
        t.add(tars / "c0000.tar", arcname="./c0000.tar")
    index = build_index([str(tmp_path / "val.tar")])
    assert index.rejected == [] and list(index.members) == ["c0000/c0000_0.JPEG"]
