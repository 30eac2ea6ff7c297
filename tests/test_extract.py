"""fastrec.stages.extract: the three input forms, safety, corruption, resumability, interruption."""
from __future__ import annotations

import io
import os
import random
import shutil
import signal
import tarfile
import time

import pytest

from fastrec.stages import extract as ex
from fastrec.stages.extract import ExtractOptions, extract
from stage_fixtures import (CLASS_COUNTS, EVIL, EVIL_GOOD, EVIL_MEMBERS, GARBLED, OUTER_EVIL,
                            TRUNCATED, _add, _special, class_tar, image_counts, make_outer_tar,
                            popen_cli, run_cli, tree)

FAST = ExtractOptions(jobs=1, fsync=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("archive")
    return make_outer_tar(str(d / "ILSVRC2012_img_train.tar"))


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """One uninterrupted extraction everything else is compared with."""
    dest = tmp_path_factory.mktemp("reference") / "train"
    summary = extract([dataset.outer], str(dest), FAST)
    return str(dest), summary, tree(str(dest))


def test_outer_tar_counts_refusals_and_corruption(dataset, reference):
    dest, s, _ = reference
    assert image_counts(dest) == dataset.counts
    assert sorted(s.extracted) == sorted(dataset.counts)
    assert s.files == sum(dataset.counts.values())
    assert s.bytes == sum(os.path.getsize(os.path.join(dest, c, n))
                          for c in dataset.counts for n in os.listdir(os.path.join(dest, c)))
    # every hostile member is refused, by name, and nothing escaped DEST or its class folder
    assert len(s.refused) == dataset.refused
    wheres = " ".join(p.where for p in s.refused)
    for m in EVIL_MEMBERS + OUTER_EVIL:
        assert m.split(" ")[0] in wheres
    parent = os.path.dirname(dest)
    assert sorted(os.listdir(parent)) == ["train"]
    assert sorted(os.listdir(os.path.join(dest, EVIL))) == [f"{EVIL}_{i:05d}.JPEG" for i in range(EVIL_GOOD)]
    # both corrupt inner tars are reported with their names; their classes are absent, no leftovers
    assert {p.where.rsplit(":", 1)[-1] for p in s.corrupt} == dataset.corrupt
    assert TRUNCATED not in os.listdir(dest) and GARBLED not in os.listdir(dest)
    assert not [n for n in os.listdir(dest) if n.startswith(".")]
    garbled = next(p for p in s.corrupt if GARBLED in p.where)
    assert "damaged header" in garbled.reason and "after member" in garbled.reason


def test_parallel_jobs_give_the_same_tree(dataset, reference, tmp_path):
    _, ref_summary, ref_tree = reference
    s = extract([dataset.outer], str(tmp_path / "t"), ExtractOptions(jobs=4, fsync=True, buffer_bytes=20_000))
    assert tree(str(tmp_path / "t")) == ref_tree
    assert (s.files, s.bytes, len(s.refused), len(s.corrupt)) == \
        (ref_summary.files, ref_summary.bytes, len(ref_summary.refused), len(ref_summary.corrupt))


def test_folder_of_class_tars_and_plain_tars(tmp_path):
    rng = random.Random(1)
    folder = tmp_path / "classes"
    folder.mkdir()
    (folder / "n001.tar").write_bytes(class_tar("n001", 4, rng))
    (folder / "n002.tar.gz").write_bytes(class_tar("n002", 3, rng, compress="gz"))
    (folder / "README").write_text("not a tar")
    plain = tmp_path / "flowers.tar.gz"   # a tarball of class folders
    with tarfile.open(plain, "w:gz") as t:
        for cls in ("daisy", "rose"):
            _special(t, cls, tarfile.DIRTYPE)
            for i in range(3):
                _add(t, f"./{cls}/{i}.jpg", f"{cls}{i}".encode())
        _add(t, "rose/sub/deep.jpg", b"deep")
        _special(t, "rose/alias.jpg", tarfile.SYMTYPE, "0.jpg")       # a link inside: kept
        _special(t, "rose/copy.jpg", tarfile.LNKTYPE, "rose/1.jpg")   # a hard link: a copy
    s = extract([str(folder), str(plain)], str(tmp_path / "out"), ExtractOptions(jobs=3))
    out = tmp_path / "out"
    assert image_counts(str(out)) == {"n001": 4, "n002": 3, "daisy": 3, "rose": 5}
    assert sorted(os.listdir(out / "rose")) == ["0.jpg", "1.jpg", "2.jpg", "alias.jpg", "copy.jpg", "sub"]
    assert os.readlink(out / "rose" / "alias.jpg") == "0.jpg"
    assert (out / "rose" / "copy.jpg").read_bytes() == b"rose1"
    assert not os.path.islink(out / "rose" / "copy.jpg")
    assert (out / "rose" / "sub" / "deep.jpg").read_bytes() == b"deep"
    assert s.refused == [] and s.corrupt == [] and s.files == 4 + 3 + 3 + 5   # the link is not a file


def test_rerun_skips_done_classes_and_redoes_partial(dataset, reference, tmp_path):
    ref_dest, _, ref_tree = reference
    dest = tmp_path / "train"
    shutil.copytree(ref_dest, dest, symlinks=True)
    # a half-written class: the partial folder with one stray file, the class folder missing
    victim = sorted(CLASS_COUNTS)[3]
    os.rename(dest / victim, dest / f".{victim}.partial")
    (dest / f".{victim}.partial" / "stray.JPEG").write_bytes(b"half")
    s = extract([dataset.outer], str(dest), FAST)
    assert s.extracted == [victim]
    assert len(s.skipped) == len(dataset.counts) - 1
    assert tree(str(dest)) == ref_tree
    s2 = extract([dataset.outer], str(dest), FAST)   # everything done: nothing written
    assert s2.extracted == [] and s2.files == 0 and tree(str(dest)) == ref_tree


@pytest.mark.parametrize("use_data_filter", [True, False])
def test_hostile_members_refused_with_and_without_data_filter(tmp_path, monkeypatch, use_data_filter):
    if use_data_filter and ex._DATA_FILTER is None:
        pytest.skip("this Python has no tarfile.data_filter")
    if not use_data_filter:
        monkeypatch.setattr(ex, "_DATA_FILTER", None)
    arch = tmp_path / "c.tar"
    with tarfile.open(arch, "w") as t:
        _add(t, "c/ok.jpg", b"ok")
        _add(t, "c/../../escape.jpg", b"x")
        _add(t, "/c/abs.jpg", b"x")
        _special(t, "c/out", tarfile.SYMTYPE, "../../outside")
        _special(t, "c/abs", tarfile.SYMTYPE, "/etc/passwd")
        _special(t, "c/dir", tarfile.SYMTYPE, ".")                  # inside, but a folder: left out ...
        _add(t, "c/dir/through.jpg", b"x")                           # ... but never written through
        _special(t, "c/blk", tarfile.BLKTYPE)
        _special(t, "c/pipe", tarfile.FIFOTYPE)
        _special(t, "c/hard", tarfile.LNKTYPE, "d/other.jpg")        # hard link into another class
        _special(t, "c/hard2", tarfile.LNKTYPE, "c/missing.jpg")     # to nothing extracted
        _special(t, "c/trick", tarfile.SYMTYPE, "dir/../..")         # lexically fine? physically out
    s = extract([str(arch)], str(tmp_path / "out"), FAST)
    t = tree(str(tmp_path / "out" / "c"))
    assert set(t) == {"ok.jpg"}   # `dir -> .` is made, then left out when the class is done: a link to a folder
    assert sorted(os.listdir(tmp_path)) == ["c.tar", "out"]
    assert len(s.refused) == 11
    reasons = {p.where.split(":", 1)[1]: p.reason for p in s.refused}
    assert reasons["c/../../escape.jpg"] == "'..' in the path"
    assert reasons["/c/abs.jpg"] == "absolute path"
    assert "special" in reasons["c/blk"] and "special" in reasons["c/pipe"]
    assert "link" in reasons["c/dir/through.jpg"]
    assert "link to a folder" in reasons["dir"]   # named inside its class, as found when the class is done
    assert "another class" in reasons["c/hard"]
    assert s.checks.startswith("tarfile.data_filter" if use_data_filter else "fastrec's own")


def test_corrupt_top_level_archive_and_missing_inputs(tmp_path):
    bad = tmp_path / "n1.tar"
    bad.write_bytes(b"this is not a tar at all" * 100)
    good = tmp_path / "n2.tar"
    good.write_bytes(class_tar("n2", 2, random.Random(0)))
    s = extract([str(bad), str(good)], str(tmp_path / "out"), FAST)
    assert [p.where for p in s.corrupt] == [str(bad)] and s.extracted == ["n2"]
    with pytest.raises(ex.TarError, match="does not exist"):
        extract([str(tmp_path / "nope.tar")], str(tmp_path / "out"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ex.TarError, match="holds no tar files"):
        extract([str(empty)], str(tmp_path / "out"))


def test_streams_inner_tars_without_writing_them(dataset, tmp_path, monkeypatch):
    """The outer tar is read once, in stream mode, and no inner .tar reaches the disk."""
    seen_modes = []
    real_open = tarfile.open

    def spy(*a, **k):
        seen_modes.append(k.get("mode"))
        return real_open(*a, **k)
    monkeypatch.setattr(tarfile, "open", spy)
    extract([dataset.outer], str(tmp_path / "out"), FAST)
    assert set(seen_modes) == {"r|*"}
    assert not [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".tar")]


def test_cli_crash_mid_extract_then_rerun(dataset, reference, tmp_path):
    _, _, ref_tree = reference
    dest = str(tmp_path / "train")
    r = run_cli("extract", dataset.outer, dest, "--jobs", "1", env={"FASTREC_TEST_CRASH_AFTER": "100"})
    assert r.returncode == 137, r.stderr
    names = os.listdir(dest)
    assert [n for n in names if n.endswith(".partial")], names   # crashed inside a class
    assert 0 < len([n for n in names if not n.startswith(".")]) < len(dataset.counts)
    r = run_cli("extract", dataset.outer, dest, "--jobs", "3")
    assert r.returncode == 1   # refusals and corrupt tars are reported in the exit status
    assert "corrupt" in r.stdout and "refused" in r.stdout
    assert tree(dest) == ref_tree


def test_cli_sigkill_mid_extract_then_rerun(tmp_path):
    """A real SIGKILL at an arbitrary moment (with fsync on, so the run takes a while)."""
    counts = {f"n{i:03d}": 30 for i in range(24)}
    ds = make_outer_tar(str(tmp_path / "big.tar"), counts, seed=5, hostile=False)
    dest = tmp_path / "train"
    p = popen_cli("extract", ds.outer, str(dest), "--jobs", "2")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.poll() is None:
        if dest.is_dir() and any(not n.startswith(".") for n in os.listdir(dest)):
            break
        time.sleep(0.002)
    interrupted = p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.communicate()
    r = run_cli("extract", ds.outer, str(dest))
    assert r.returncode == 0, r.stderr
    assert image_counts(str(dest)) == counts
    assert not [n for n in os.listdir(dest) if n.startswith(".")]
    ref = tmp_path / "ref"
    extract([ds.outer], str(ref), FAST)
    assert tree(str(dest)) == tree(str(ref))
    if not interrupted:
        pytest.skip("the first run finished before it could be killed (machine too fast)")


def test_budget_never_deadlocks_on_a_large_inner_tar(tmp_path):
    rng = random.Random(3)
    outer = tmp_path / "o.tar"
    with tarfile.open(outer, "w") as t:
        _add(t, "big.tar", class_tar("big", 50, rng))
        _add(t, "small.tar", class_tar("small", 2, rng))
    s = extract([str(outer)], str(tmp_path / "out"), ExtractOptions(jobs=2, buffer_bytes=1000, fsync=False))
    assert s.extracted == ["big", "small"] and s.files == 52


def test_progress_bar_renders(dataset, tmp_path, capsys):
    s = extract([dataset.outer], str(tmp_path / "out"), ExtractOptions(jobs=2, fsync=False, progress="on"))
    assert s.files > 0
    assert "extract" in capsys.readouterr().err


def test_end_checked_info_flags_missing_end_marker(tmp_path):
    data = class_tar("n", 2, random.Random(0))
    body = data.rstrip(b"\0")
    body += b"\0" * (-len(body) % 512)   # members intact, end-of-archive marker gone
    arch = tmp_path / "n.tar"
    arch.write_bytes(body)
    s = extract([str(arch)], str(tmp_path / "out"), FAST)
    assert s.extracted == [] and "end-of-archive" in s.corrupt[0].reason
    assert not os.path.exists(tmp_path / "out" / "n")


def test_inner_tar_layouts_and_compression(tmp_path):
    """Inner tars may repeat their class folder, use ./ names, nest, or be gzipped."""
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as t:
        _special(t, "n5", tarfile.DIRTYPE)
        _add(t, "n5/a.jpg", b"a")
        _add(t, "./b.jpg", b"b")
        _add(t, "sub/c.jpg", b"c")
    outer = tmp_path / "o.tar"
    with tarfile.open(outer, "w") as t:
        _add(t, "train/n5.tar.gz", inner.getvalue())
    for jobs in (1, 2):
        dest = tmp_path / f"out{jobs}"
        s = extract([str(outer)], str(dest), ExtractOptions(jobs=jobs, fsync=False))
        assert s.extracted == ["n5"] and s.files == 3
        assert tree(str(dest / "n5")).keys() == {"a.jpg", "b.jpg", "sub", os.path.join("sub", "c.jpg")}
