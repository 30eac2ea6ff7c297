"""The feed (engine/reader.py): reads ahead of the decoders change nothing but the speed.

Latency and faults are injected by replacing the reader's system calls (`reader.open_file`,
`reader.read_at`); descriptor limits by `resource.setrlimit` in a child process.
"""
from __future__ import annotations

import errno
import io
import os
import random
import resource
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fastrec.demo.samples import make_tree
from fastrec.engine import PackOptions, pack_prefix
from fastrec.engine import reader
from fastrec.engine.local import Job, ListFile, finish_manifest, pack_jobs, resume_point
from fastrec.engine.sources import build_index, index_for, load_index
from fastrec.errors import EXIT_ENVIRONMENT, EnvironmentFault
from fastrec.formats.manifest import Manifest
from fastrec.formats.lists import ListOptions, make_lists

from conftest import subprocess_env
from helpers_pack import fastrec_main

FILES = (".rec", ".idx", ".skipped.tsv")


def outputs(prefix: Path) -> dict[str, bytes]:
    """The outputs by suffix; no skip file (nothing skipped) reads as an empty one."""
    return {s: p.read_bytes() if (p := prefix.with_name(prefix.name + s)).exists() else b"" for s in FILES}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("feed") / "images"
    make_tree(root, classes=3, per_class=(12, 16), sizes="mixed", seed=7)
    (root / "n0").mkdir(exist_ok=True)
    (root / "n0" / "empty.jpg").write_bytes(b"")
    (root / "n0" / "folder.jpg").mkdir()
    return root


def listed(tree: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    make_lists(str(dest / "data"), str(tree), ListOptions(recursive=True))
    with open(dest / "data.lst", "a") as f:      # a missing file and a folder: skips of one item
        f.write("900\t0.000000\tn0/missing.jpg\n901\t0.000000\tn0/folder.jpg\n")
    return dest / "data"


def pack(prefix: Path, tree: Path, **kw) -> dict[str, bytes]:
    pack_prefix(str(prefix), str(tree), PackOptions(resize=40, quality=80, progress="off", max_skipped=1.0, **kw))
    return outputs(prefix)


@pytest.fixture(scope="module")
def plain(tree, tmp_path_factory) -> dict[str, bytes]:
    return pack(listed(tree, tmp_path_factory.mktemp("plain")), tree, num_thread=1, batch_size=4)


def test_latency_changes_nothing(tree, plain, tmp_path, monkeypatch):
    """Random per-open latency (reads finish out of order) at several depths: identical outputs."""
    rng = random.Random(3)
    real = reader.open_file

    def slow_open(path, flags):
        time.sleep(rng.random() * 0.004)
        return real(path, flags)

    monkeypatch.setattr(reader, "open_file", slow_open)
    for depth in (0, 1, 7):
        got = pack(listed(tree, tmp_path / f"d{depth}"), tree, num_thread=2, batch_size=3, io_depth=depth)
        assert got == plain
    assert b"not-a-regular-file" in plain[".skipped.tsv"] and b"read-error" in plain[".skipped.tsv"]


def test_failed_reads_are_skips_of_those_images_only(tree, plain, tmp_path, monkeypatch):
    """EACCES on some opens: those items are skipped (read-error), every other record is the same."""
    real = reader.open_file
    names = sorted(str(p) for p in tree.rglob("*.JPEG"))[::5]

    def flaky_open(path, flags):
        if path in names:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real(path, flags)

    monkeypatch.setattr(reader, "open_file", flaky_open)
    got = pack(listed(tree, tmp_path / "x"), tree, num_thread=2, batch_size=3, io_depth=4)
    skips = [line.split("\t") for line in got[".skipped.tsv"].decode().splitlines()]
    denied_rel = {os.path.relpath(n, tree) for n in names}
    assert {s[0] for s in skips if s[0] in denied_rel} == denied_rel
    assert all(s[1] == "read-error" for s in skips if s[0] in denied_rel)
    assert [s for s in skips if s[0] not in denied_rel] == \
        [line.split("\t") for line in plain[".skipped.tsv"].decode().splitlines()]

    def records(out):   # id -> record bytes
        idx = [line.split("\t") for line in out[".idx"].decode().splitlines()]
        ends = [int(o) for _, o in idx[1:]] + [len(out[".rec"])]
        return {k: out[".rec"][int(o):e] for (k, o), e in zip(idx, ends)}

    mine, theirs = records(got), records(plain)
    assert len(theirs) - len(mine) == len(names)
    assert all(theirs[k] == v for k, v in mine.items())


def test_fifo_does_not_stall_the_pipeline(tree, plain, tmp_path):
    """A FIFO in the list (no writer: a blocking open would wait forever) is refused at once."""
    prefix = listed(tree, tmp_path / "fifo")
    os.mkfifo(tree / "n0" / "pipe.jpg")
    try:
        with open(prefix.with_suffix(".lst"), "a") as f:
            f.write("902\t0.000000\tn0/pipe.jpg\n")
        done = threading.Event()
        result = {}

        def run():
            result["out"] = pack(prefix, tree, num_thread=2, batch_size=2)
            done.set()

        threading.Thread(target=run, daemon=True).start()
        assert done.wait(120), "the pack stalled on a FIFO"
    finally:
        os.unlink(tree / "n0" / "pipe.jpg")
    skips = result["out"][".skipped.tsv"].decode().splitlines()
    assert skips[-1].split("\t")[:2] == ["n0/pipe.jpg", "not-a-regular-file"]
    assert result["out"][".rec"] == plain[".rec"]


def test_read_ahead_stays_within_its_byte_budget(tmp_path):
    """Large files, a slow decoder: the bytes read and not yet packed never pass the budget."""
    rng = np.random.default_rng(0)
    sizes = [int(s) for s in rng.integers(200_000, 900_000, 40)]
    for i, s in enumerate(sizes):
        (tmp_path / f"{i}.bin").write_bytes(rng.bytes(s))
    budget = 3_000_000
    feed = reader.Feed(str(tmp_path), max_bytes=1 << 30, budget=budget, depth=8)
    try:
        paths = [f"{i}.bin" for i in range(len(sizes))]
        batches = [feed.submit(paths[i:i + 3]) for i in range(0, len(paths), 3)]   # all submitted at once
        for start, b in zip(range(0, len(paths), 3), batches):
            got = b.wait()
            assert [len(x) for x in got] == sizes[start:start + 3]
            assert got[0] == (tmp_path / paths[start]).read_bytes()
            time.sleep(0.01)               # the decoder is slower than the readers
            b.release()
        assert 0 < feed.peak <= budget and feed.held == 0
    finally:
        feed.close()


def test_batch_larger_than_the_budget_still_completes(tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.bin").write_bytes(bytes(1000))
    feed = reader.Feed(str(tmp_path), max_bytes=1 << 30, budget=1500, depth=3)
    try:
        b = feed.submit([f"{i}.bin" for i in range(4)])
        assert [len(x) for x in b.wait()] == [1000] * 4
        b.release()
    finally:
        feed.close()


@pytest.mark.parametrize("code", [errno.EMFILE, errno.EIO])
def test_environment_fault_stops_then_resume_completes(tree, plain, tmp_path, monkeypatch, code):
    """EMFILE/EIO are the machine's fault: exit 75 naming the cause; --resume then gives the
    bytes of an uninterrupted run."""
    prefix = listed(tree, tmp_path / "env")
    real = reader.open_file
    victim = str(sorted(tree.rglob("*.JPEG"))[20])

    def failing_open(path, flags):
        if path == victim:
            raise OSError(code, os.strerror(code), path)
        return real(path, flags)

    argv = ["pack", prefix, tree, "--resize", "40", "--quality", "80", "--num-thread", "2",
            "--batch-size", "4", "--progress", "off", "--max-skipped", "100%"]
    monkeypatch.setattr(reader, "open_file", failing_open)
    with pytest.raises(EnvironmentFault, match=errno.errorcode[code]):
        pack_prefix(str(prefix), str(tree), PackOptions(resize=40, quality=80, num_thread=2,
                                                        batch_size=4, progress="off", max_skipped=1.0))
    assert fastrec_main(argv) == EXIT_ENVIRONMENT
    assert victim not in prefix.with_name("data.skipped.tsv").read_text()
    monkeypatch.setattr(reader, "open_file", real)
    assert fastrec_main(argv + ["--resume"]) == 0
    assert outputs(prefix) == plain


def test_vanished_root_is_an_environment_fault(tree, tmp_path):
    root = tmp_path / "mnt"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"x")
    feed = reader.Feed(str(root), max_bytes=1 << 30, budget=1 << 20, depth=1)
    try:
        assert feed.submit(["a.jpg"]).wait() == [b"x"]
        os.rename(root, tmp_path / "gone")
        with pytest.raises(EnvironmentFault, match="image root"):
            feed.submit(["a.jpg"]).wait()
    finally:
        feed.close()


def test_streamed_list_is_not_loaded(tmp_path):
    """A list is walked, not held: slices and len read the file, and the pack takes a window."""
    lst = tmp_path / "d.lst"
    lst.write_text("".join(f"{i}\t0.000000\tx{i}.jpg\n" for i in range(1000)) + " \n")   # a blank line is no item
    items = ListFile(str(lst))
    assert len(items) == 1000 and [i.id for i in items[10:13]] == [10, 11, 12]
    assert not hasattr(items, "items") and sum(1 for _ in items) == 1000


def test_outputs_are_walked_not_loaded(tmp_path):
    """Finishing a pack (counting the .idx, matching skip lines) and finding where to resume read
    the outputs as they walk them: memory stays flat whatever the pack's length."""
    import tracemalloc

    n = 80_000
    lst = tmp_path / "d.lst"
    lst.write_text("".join(f"{i}\t0.000000\tc/x{i}.jpg\n" for i in range(n)))
    (tmp_path / "d.idx").write_text("".join(f"{i}\t{24 * i}\n" for i in range(n - 2)))
    (tmp_path / "d.skipped.tsv").write_text(f"c/x{n - 2}.jpg\tcorrupt\tbad\nc/x{n - 1}.jpg\tcorrupt\tbad\n")
    (tmp_path / "d.rec").write_bytes(b"")
    job = Job.for_list(str(lst), str(tmp_path))
    tracemalloc.start()
    try:
        done = finish_manifest(job, Manifest(fastrec="t", settings={}, list=str(lst), list_digest="",
                                             source={}, expected=n))
        resume_point(job)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (done.written, done.skipped, done.reasons, done.complete) == (n - 2, 2, {"corrupt": 2}, True)
    assert peak < 4 << 20, f"{peak / 2**20:.1f} MiB"    # 2.1 MiB; loading the outputs took 10 MiB


# ---------------------------------------------------------------- archives
def _jpeg(rng, side=16) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _add(t: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))


def test_many_archives_under_a_descriptor_limit(tmp_path):
    """2000 per-class tars, 8 threads, 256 descriptors: every image packed, as without the limit."""
    rng = np.random.default_rng(1)
    tars = tmp_path / "tars"
    tars.mkdir()
    for c in range(2000):
        with tarfile.open(tars / f"c{c:04d}.tar", "w") as t:
            _add(t, f"c{c:04d}_0.JPEG", _jpeg(rng, 8))
    runs = {}
    for name, limit in (("free", None), ("limited", 256)):
        out = tmp_path / name
        out.mkdir()
        prefix = out / "data"
        assert fastrec_main(["list", prefix, "--from-tar", tars, "--recursive"]) == 0

        def preexec(limit=limit):
            if limit:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        r = subprocess.run([sys.executable, "-m", "fastrec", "pack", str(prefix), "--from-tar", str(tars),
                            "--num-thread", "8", "--batch-size", "16", "--progress", "off"],
                           capture_output=True, text=True, env=subprocess_env(), preexec_fn=preexec,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[name] = outputs(prefix)
    assert runs["limited"] == runs["free"]
    assert runs["free"][".skipped.tsv"] == b"" and runs["free"][".idx"].count(b"\n") == 2000


@pytest.fixture
def archive(tmp_path) -> Path:
    rng = np.random.default_rng(2)
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as t:
        for i in range(6):
            _add(t, f"cls/img{i}.JPEG", _jpeg(rng, 16 + 8 * i))
        _add(t, "cls/pic.bmp", b"BM not really")
    return path


def test_max_bytes_on_the_tar_path(archive, tmp_path):
    """--max-bytes is checked from the index, before the member is read."""
    prefix = tmp_path / "data"
    assert fastrec_main(["list", prefix, "--from-tar", archive, "--recursive", "--no-shuffle"]) == 0
    sizes = {m.name: m.size for m in tarfile.open(archive) if m.isfile()}
    limit = sorted(sizes.values())[3]
    assert fastrec_main(["pack", prefix, "--from-tar", archive, "--max-bytes", limit, "--progress", "off",
                         "--max-skipped", "100%"]) == 0
    skips = [line.split("\t")[:2] for line in prefix.with_name("data.skipped.tsv").read_text().splitlines()]
    assert skips == [[n, "file-too-large"] for n in sorted(sizes) if sizes[n] > limit and n.endswith(".JPEG")]


def test_archive_shorter_than_its_index_is_an_environment_fault(archive, tmp_path):
    index = build_index([str(archive)])
    lst = tmp_path / "d.lst"
    lst.write_text("".join(f"{i}\t0.000000\t{p}\n" for i, p in enumerate(sorted(index.members))))
    with open(archive, "r+b") as f:
        f.truncate(1024)
    job = Job(ListFile(str(lst)), "", str(tmp_path / "d.rec"), str(tmp_path / "d.idx"),
              str(tmp_path / "d.skipped.tsv"), index)
    with pytest.raises(EnvironmentFault, match="shorter than its index"):
        pack_jobs([job], PackOptions(progress="off"))


def test_index_cache_keyed_by_exts_and_memory_mapped(archive, tmp_path):
    cache = str(tmp_path / "fastrec.tarindex")
    jpegs = index_for([str(archive)], cache)
    assert sorted(jpegs.members) == [f"cls/img{i}.JPEG" for i in range(6)]
    bmps = index_for([str(archive)], cache, (".bmp",))
    assert list(bmps.members) == ["cls/pic.bmp"]
    loaded = load_index(cache, [str(archive)], (".bmp",))
    assert isinstance(loaded._cols["hi"], np.memmap) and loaded.members["cls/pic.bmp"].size == 13
    assert load_index(cache, [str(archive)]) is None            # made for other extensions
    assert load_index(cache, [str(archive)], any_exts=True) is not None
    assert "cls/img0.JPEG" in jpegs.members and "cls/nope.JPEG" not in jpegs.members
    assert jpegs.read("cls/img3.JPEG") == tarfile.open(archive).extractfile("cls/img3.JPEG").read()


def test_pack_walks_the_list_a_window_ahead(tmp_path, monkeypatch):
    """The writer's first batch is written while at most the in-flight window of items was read."""
    from fastrec.engine import local
    from fastrec.formats.lists import ListItem

    class Counted:
        def __init__(self, n):
            self.n, self.yielded = n, 0

        def __len__(self):
            return self.n

        def __iter__(self):
            for i in range(self.n):
                self.yielded += 1
                yield ListItem(i, f"missing{i}.jpg", (0.0,))

    items = Counted(2000)
    seen = []
    real_append = local._Outputs.append

    def append(self, batch, outcomes):
        seen.append(items.yielded)
        return real_append(self, batch, outcomes)

    monkeypatch.setattr(local._Outputs, "append", append)
    job = Job(items, str(tmp_path), str(tmp_path / "d.rec"), str(tmp_path / "d.idx"), str(tmp_path / "d.skipped.tsv"))
    summary = pack_jobs([job], PackOptions(num_thread=1, batch_size=8, progress="off"))
    assert summary.skipped == 2000 and len(seen) == 250
    assert seen[0] <= 3 * 8 and max(b - a for a, b in zip(seen, seen[1:])) <= 8


def test_a_list_edited_while_it_is_packed_is_refused(tmp_path, monkeypatch):
    """The .lst is read more than once (digest, pack, counts): a label edited in place while the
    pack runs would give outputs that mix old and new items. The pack fails (DataError, exit 1),
    its manifest stays unfinished, and verify fails it."""
    from fastrec.engine import local
    from fastrec.errors import DataError
    from fastrec.reports.verify import verify_rec

    (tmp_path / "img" / "c").mkdir(parents=True)
    (tmp_path / "img" / "c" / "x.jpg").write_bytes(_jpeg(np.random.default_rng(0)))
    lst = tmp_path / "data.lst"
    lst.write_text("".join(f"{i}\t0.000000\tc/x.jpg\n" for i in range(5000)))
    real = local.pack_batch
    edited = []

    def edit_then_pack(*args, **kwargs):
        if not edited:   # the pack has started: change the label of an item far ahead of it
            with open(lst, "r+b") as f:
                f.seek(lst.stat().st_size - 10)
                assert f.read(1) == b"0"
                f.seek(-1, os.SEEK_CUR)
                f.write(b"1")
            edited.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(local, "pack_batch", edit_then_pack)
    with pytest.raises(DataError, match="changed while it was being packed"):
        pack_prefix(str(tmp_path / "data"), str(tmp_path / "img"),
                    PackOptions(pass_through=True, batch_size=16, progress="off"))
    assert edited and not verify_rec(str(tmp_path / "data.rec")).ok
