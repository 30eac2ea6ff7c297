"""fastrec.stages.split (seeded, manifest-driven, resumable, undoable), and the chain extract -> filter -> split."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from fastrec.cli import main
from fastrec.stages.extract import ExtractOptions, extract
from fastrec.stages.filter import filter_classes
from fastrec.stages.split import SplitError, choose, read_manifest, split_classes, undo_split
from stage_fixtures import image_counts, make_outer_tar, run_cli, tree, without_record

COUNTS = {f"c{i:02d}": 6 + (i * 5) % 11 for i in range(12)}


def make_tree(root, counts=COUNTS):
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            (root / cls / f"{cls}_{i:03d}.jpg").write_bytes(f"{cls}{i}".encode() * 7)
        (root / cls / "meta.xml").write_text("stays")
    return root


@pytest.fixture
def root(tmp_path):
    return make_tree(tmp_path / "train")


def test_split_counts_and_manifest(root, tmp_path):
    val = tmp_path / "val"
    (root / "empty").mkdir()   # no images: not a class, neither refused nor split
    before = tree(str(root))
    s = split_classes(str(root), str(val), 4, seed=7)
    assert (s.classes, s.moved, s.already, len(s.moves)) == (12, 48, 0, 48)
    assert image_counts(str(val)) == {c: 4 for c in COUNTS}
    assert image_counts(str(root)) == {**{c: n - 4 for c, n in COUNTS.items()}, "empty": 0}
    assert without_record({**tree(str(root)), **{k: v for k, v in tree(str(val)).items() if not k.startswith(".")}}) == before
    lines = [json.loads(x) for x in open(s.manifest)]
    assert lines[0]["seed"] == 7 and lines[0]["per_class"] == 4
    assert lines[-1] == {"complete": True, "moves": 48}
    assert s.manifest == str(val / ".fastrec-split.jsonl")
    # a rerun with the same arguments changes nothing
    snap = tree(str(tmp_path), with_times=True)
    s2 = split_classes(str(root), str(val), 4, seed=7)
    assert (s2.moved, s2.already, s2.resumed) == (0, 48, True)
    assert tree(str(tmp_path), with_times=True) == snap


def test_same_seed_same_split_and_classes_independent(tmp_path):
    a = make_tree(tmp_path / "a")
    b = make_tree(tmp_path / "b", {c: n for c, n in COUNTS.items() if c != "c03"})
    sa = split_classes(str(a), str(tmp_path / "va"), 3, seed=1)
    sb = split_classes(str(b), str(tmp_path / "vb"), 3, seed=1)
    pick = lambda s: {os.path.relpath(d, os.path.dirname(os.path.dirname(d))) for _, d in s.moves}
    assert pick(sb) == pick(sa) - {p for p in pick(sa) if p.startswith("c03")}
    c = make_tree(tmp_path / "c")
    sc = split_classes(str(c), str(tmp_path / "vc"), 3, seed=2)
    assert pick(sc) != pick(sa)
    names = [f"x{i}.jpg" for i in range(20)]
    assert choose(names, 5, 1, "k") == choose(list(reversed(names)), 5, 1, "k")


def test_too_few_refused_by_name_before_anything_moves(root, tmp_path):
    snap = tree(str(tmp_path), with_times=True)
    with pytest.raises(SplitError) as e:
        split_classes(str(root), str(tmp_path / "val"), 7, seed=0)   # c00 has 6, c02 has 16 ...
    small = sorted(c for c, n in COUNTS.items() if n <= 7)
    for c in small:
        assert c in str(e.value)
    assert "nothing was moved" in str(e.value) and "--min-images 8" in str(e.value)
    assert tree(str(tmp_path), with_times=True) == snap


def test_dry_run_changes_nothing(root, tmp_path, capsys):
    snap = tree(str(tmp_path), with_times=True)
    s = split_classes(str(root), str(tmp_path / "val"), 2, seed=0, dry_run=True)
    assert len(s.moves) == 24 and s.moved == 0
    assert main(["split", str(root), "--val-root", str(tmp_path / "val"), "--per-class", "2", "--dry-run"]) == 0
    assert "would move 24 images of 12 classes" in capsys.readouterr().out
    assert tree(str(tmp_path), with_times=True) == snap


def files_with_times(root):
    """Files with size and mtime (folders' times change when entries come and go)."""
    return {k: v for k, v in tree(str(root), with_times=True).items() if not v.startswith("dir")}


def test_undo_puts_everything_back(root, tmp_path, capsys):
    before = files_with_times(root)
    val = tmp_path / "val"
    s = split_classes(str(root), str(val), 5, seed=3)
    u = undo_split(s.manifest)
    assert (u.restored, u.already) == (60, 0)
    assert files_with_times(root) == before        # renames keep times too
    assert os.listdir(val) == [".fastrec-split.jsonl.undone"]
    with pytest.raises(SplitError, match="already undone"):
        undo_split(s.manifest)
    s2 = split_classes(str(root), str(val), 5, seed=4)         # the tree can be split again
    assert s2.moved == 60
    assert main(["split", "--undo", s2.manifest]) == 0
    assert "moved 60 images back" in capsys.readouterr().out
    assert files_with_times(root) == before


def test_refusals(root, tmp_path):
    val = tmp_path / "val"
    with pytest.raises(SplitError, match="overlap"):
        split_classes(str(root), str(root / "val"), 2)
    (val / "c01").mkdir(parents=True)
    (val / "c01" / "c01_000.jpg").write_bytes(b"old")
    with pytest.raises(SplitError, match="already exist in the validation tree"):
        for seed in range(50):   # some seed picks c01_000.jpg
            split_classes(str(root), str(val), 5, seed=seed, dry_run=True)
    shutil.rmtree(val)
    s = split_classes(str(root), str(val), 2, seed=0)
    with pytest.raises(SplitError, match=r"other arguments \(seed differs\)"):
        split_classes(str(root), str(val), 2, seed=1)
    lines = open(s.manifest).read().splitlines()
    open(s.manifest, "w").write("\n".join(lines[:-1]) + "\n")   # no completion line
    with pytest.raises(SplitError, match="incomplete or damaged"):
        read_manifest(s.manifest)
    assert main(["split", str(root)]) == 2


def test_cli_crash_mid_split_then_resume_or_undo(root, tmp_path):
    ref_root = tmp_path / "ref_train"
    shutil.copytree(root, ref_root)
    ref = split_classes(str(ref_root), str(tmp_path / "ref_val"), 4, seed=9)
    original = tree(str(root))
    val = tmp_path / "val"
    args = ["split", str(root), "--val-root", str(val), "--per-class", "4", "--seed", "9"]
    r = run_cli(*args, env={"FASTREC_TEST_CRASH_AFTER": "20"})
    assert r.returncode == 137, r.stderr
    header, moves = read_manifest(str(val / ".fastrec-split.jsonl"))   # whole before any move
    assert len(moves) == 48
    assert sum(image_counts(str(val)).values()) == 20
    # undo straight after the crash, itself interrupted, then finished
    r = run_cli("split", "--undo", str(val / ".fastrec-split.jsonl"), env={"FASTREC_TEST_CRASH_AFTER": "7"})
    assert r.returncode == 137
    r = run_cli("split", "--undo", str(val / ".fastrec-split.jsonl"))
    assert r.returncode == 0 and "moved 13 images back (35 were already back)" in r.stdout
    assert tree(str(root)) == original
    # crash again, then a plain rerun finishes the same split an uninterrupted run makes
    assert run_cli(*args, env={"FASTREC_TEST_CRASH_AFTER": "31"}).returncode == 137
    r = run_cli(*args)
    assert r.returncode == 0 and "(31 moved by an earlier run)" in r.stdout
    strip = lambda t: {k: v for k, v in t.items() if not k.startswith(".")}
    assert without_record(tree(str(root))) == without_record(tree(str(ref_root)))  # records name their val trees
    assert strip(tree(str(val))) == strip(tree(str(tmp_path / "ref_val")))
    assert [os.path.basename(d) for _, d in read_manifest(str(val / ".fastrec-split.jsonl"))[1]] == \
        [os.path.basename(d) for _, d in ref.moves]


def test_chain_extract_filter_split(tmp_path):
    """A generated ImageNet-style archive through extract -> filter -> split, counted at each step."""
    ds = make_outer_tar(str(tmp_path / "train.tar"))
    train, small, val = tmp_path / "train", tmp_path / "small", tmp_path / "val"
    e = extract([ds.outer], str(train), ExtractOptions(jobs=2, fsync=False))
    assert image_counts(str(train)) == ds.counts
    assert (len(e.refused), len(e.corrupt)) == (ds.refused, len(ds.corrupt))
    f = filter_classes(str(train), 12, str(small))
    kept = {c: n for c, n in ds.counts.items() if n >= 12}
    assert image_counts(str(train)) == kept
    assert image_counts(str(small)) == {c: n for c, n in ds.counts.items() if n < 12}
    assert f.kept_images + f.moved_images == sum(ds.counts.values())
    s = split_classes(str(train), str(val), 5, seed=42)
    assert image_counts(str(val)) == {c: 5 for c in kept}
    assert image_counts(str(train)) == {c: n - 5 for c, n in kept.items()}
    assert s.moved == 5 * len(kept)
    # the whole chain again: extract skips the classes filter recorded as moved away, filter
    # counts the images split moved as their class's, split finds its manifest: nothing changes
    snap = tree(str(tmp_path))
    e2 = extract([ds.outer], str(train), ExtractOptions(fsync=False))
    assert e2.files == 0 and len(e2.skipped) == len(ds.counts)
    assert len(e2.filtered) == len(ds.counts) - len(kept)
    assert filter_classes(str(train), 12, str(small)).moved == []
    assert split_classes(str(train), str(val), 5, seed=42).moved == 0
    assert tree(str(tmp_path)) == snap
