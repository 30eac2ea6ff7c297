"""fastrec.stages.filter and the move rules of fastrec.fsutil it relies on."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile

import pytest

from fastrec import fsutil
from fastrec.cli import main
from fastrec.stages.filter import FilterError, filter_classes
from fastrec.stages.treestate import filtered_classes
from stage_fixtures import image_counts, tree, without_record

COUNTS = {"a": 12, "b": 3, "c": 10, "d": 0, "e": 9, "f": 25}


def make_tree(root, counts=COUNTS):
    for cls, n in counts.items():
        d = root / cls
        d.mkdir(parents=True)
        for i in range(n):
            (d / f"{cls}{i}.JPEG").write_bytes(os.urandom(64) + bytes([i]))
        (d / "notes.txt").write_text("not an image")   # moves with its class, never counted
    (root / "b" / "sub").mkdir()
    (root / "b" / "sub" / "x.jpg").write_bytes(b"nested")
    (root / ".a.partial").mkdir()   # hidden: a temporary of another stage, not a class
    return root


@pytest.fixture
def trees(tmp_path):
    root = make_tree(tmp_path / "train")
    return root, tmp_path / "small", tree(str(root))


def test_moves_small_classes_whole_and_is_idempotent(trees):
    root, small, before = trees
    s = filter_classes(str(root), 10, str(small))
    assert s.moved == [("b", 3), ("d", 0), ("e", 9)]
    assert s.kept == [("a", 12), ("c", 10), ("f", 25)]
    assert (s.kept_images, s.moved_images) == (47, 12)
    assert image_counts(str(root)) == {"a": 12, "c": 10, "f": 25}
    assert image_counts(str(small)) == {"b": 3, "d": 0, "e": 9}
    # nothing lost, nothing changed: the union of both trees is the tree before
    after = {**tree(str(root)), **tree(str(small))}
    record = after.pop(".fastrec-stages.json")   # what filter moved, for extract and later filters
    assert record and after == before
    assert filtered_classes(str(root)) == {c: str(small / c) for c in ("b", "d", "e")}
    again = tree(str(root)), tree(str(small))
    s2 = filter_classes(str(root), 10, str(small))
    assert s2.moved == [] and (tree(str(root)), tree(str(small))) == again


def test_dry_run_changes_nothing(trees):
    root, small, _ = trees
    snap = tree(str(root.parent), with_times=True)
    s = filter_classes(str(root), 10, str(small), dry_run=True)
    assert [c for c, _ in s.moved] == ["b", "d", "e"]
    assert tree(str(root.parent), with_times=True) == snap
    assert not small.exists()


def test_exts_choose_what_counts(trees):
    root, small, _ = trees
    s = filter_classes(str(root), 1, str(small), exts=[".TXT"])
    assert s.moved == [] and len(s.kept) == 6
    s = filter_classes(str(root), 1, str(small), exts=[".jpg"])   # b/sub/x.jpg is nested: not counted
    assert len(s.moved) == 6


def test_refusals_name_the_path(trees, tmp_path):
    root, small, before = trees
    with pytest.raises(FilterError, match="overlap"):
        filter_classes(str(root), 10, str(root / "small"))
    with pytest.raises(FilterError, match="overlap"):
        filter_classes(str(root), 10, str(root))
    with pytest.raises(FilterError, match="does not exist"):
        filter_classes(str(tmp_path / "nope"), 10, str(small))
    (small / "e").mkdir(parents=True)
    (small / "e" / "other.JPEG").write_bytes(b"different")
    with pytest.raises(FilterError, match=r"small/e.*move one away"):
        filter_classes(str(root), 10, str(small))
    # b and d moved before e was refused; e is untouched and a fixed rerun finishes
    assert image_counts(str(root))["e"] == 9
    shutil.rmtree(small / "e")
    filter_classes(str(root), 10, str(small))
    assert without_record({**tree(str(root)), **tree(str(small))}) == before


def fake_cross_device(monkeypatch, root):
    """Make renames out of `root` fail with EXDEV, as across filesystems."""
    real = os.rename

    def rename(a, b):
        if fsutil.is_inside(a, str(root)):
            raise OSError(errno.EXDEV, "Invalid cross-device link", a)
        return real(a, b)
    monkeypatch.setattr(os, "rename", rename)


def test_cross_filesystem_move_copies_verifies_removes(trees, monkeypatch):
    root, small, before = trees
    fake_cross_device(monkeypatch, root)
    filter_classes(str(root), 10, str(small))
    assert without_record({**tree(str(root)), **tree(str(small))}) == before
    assert not [n for n in os.listdir(small) if n.startswith(".")]


def test_interrupted_cross_filesystem_moves_are_finished(trees, monkeypatch):
    root, small, before = trees
    fake_cross_device(monkeypatch, root)
    # 1: killed after the verified copy was renamed into place, before the source went
    real_remove = fsutil._remove_tree
    monkeypatch.setattr(fsutil, "_remove_tree", lambda p: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        filter_classes(str(root), 10, str(small))
    assert (root / "b").is_dir() and (small / "b").is_dir()
    # 2: killed while copying the next one: a stale partial copy
    shutil.copytree(root / "d", small / ".d.partial")
    (small / ".d.partial" / "junk").write_text("half")
    monkeypatch.setattr(fsutil, "_remove_tree", real_remove)
    s = filter_classes(str(root), 10, str(small))
    assert s.finished == ["b"]
    assert without_record({**tree(str(root)), **tree(str(small))}) == before
    assert sorted(os.listdir(small)) == ["b", "d", "e"]


def test_real_second_filesystem(trees):
    root, _, before = trees
    if not os.path.isdir("/dev/shm") or fsutil.same_filesystem(str(root), "/dev/shm"):
        pytest.skip("no second filesystem (/dev/shm) to move across")
    other = tempfile.mkdtemp(dir="/dev/shm")
    try:
        filter_classes(str(root), 10, other)
        assert without_record({**tree(str(root)), **tree(other)}) == before
    finally:
        shutil.rmtree(other)


def test_file_moves_resume_and_refuse(tmp_path, monkeypatch):
    a, b = tmp_path / "a.jpg", tmp_path / "x" / "b.jpg"
    a.write_bytes(b"123")
    assert fsutil.move(str(a), str(b)) is True and b.read_bytes() == b"123"
    assert fsutil.move(str(a), str(b)) is False          # done already
    with pytest.raises(fsutil.MoveError, match="neither exists"):
        fsutil.move(str(tmp_path / "p"), str(tmp_path / "q"))
    a.write_bytes(b"123")                                  # a verified copy in place: source goes
    assert fsutil.move(str(a), str(b)) is True and not a.exists()
    a.write_bytes(b"456")                                  # a different file in the way: refused
    with pytest.raises(fsutil.MoveError, match="differs"):
        fsutil.move(str(a), str(b))
    assert a.read_bytes() == b"456" and b.read_bytes() == b"123"
    fake_cross_device(monkeypatch, tmp_path / "a.jpg")
    c = tmp_path / "y" / "c.jpg"
    assert fsutil.move(str(a), str(c)) is True
    assert c.read_bytes() == b"456" and not a.exists()


def test_atomic_write(tmp_path):
    p = tmp_path / "f.txt"
    fsutil.atomic_write(str(p), "one")
    fsutil.atomic_write(str(p), b"two")
    assert p.read_text() == "two" and os.listdir(tmp_path) == ["f.txt"]


def test_cli(trees, capsys):
    root, small, _ = trees
    assert main(["filter", str(root), "--min-images", "10", "--move-to", str(small), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would move\tb\t3" in out and "3 classes would move" in out and not small.exists()
    assert main(["filter", str(root), "--min-images", "10", "--move-to", str(small)]) == 0
    assert "3 classes kept (47 images); 3 classes moved" in capsys.readouterr().out
    assert main(["filter", str(root), "--min-images", "10", "--move-to", str(root / "x")]) == 2
    assert "overlap" in capsys.readouterr().err


def test_record_follows_what_filter_leaves(trees):
    """A class recorded as moved but still in ROOT (a crash between the record and the move)
    that a rerun with a lower minimum keeps is no longer recorded: extract would not restore it."""
    root, small, _ = trees
    from fastrec.stages import treestate
    treestate.record_filtered(str(root), {"e": str(small / "e")})   # as if the crash came before the move
    filter_classes(str(root), 5, str(small))
    assert filtered_classes(str(root)) == {"b": str(small / "b"), "d": str(small / "d")}
