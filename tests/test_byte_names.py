"""Class folders whose names are not valid UTF-8 are classes like any other, in every stage."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import tarfile

from fastrec.demo.samples import make_tree
from fastrec.formats.lists import read_list
from fastrec.stages.split import choose
from stage_fixtures import image_counts

ODD = os.fsdecode(b"cls\xff\xfe")   # not UTF-8: a surrogate-escaped str on POSIX


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; its output may name the class in its own bytes."""
    return subprocess.run([sys.executable, "-m", "fastrec", *args], capture_output=True, text=True,
                          errors="surrogateescape", timeout=120)


def test_choice_is_todays_for_utf8_names():
    names = [f"img{i}.jpg" for i in range(30)]
    for cls in ("n01440764", "Müller", "日本"):
        old = sorted(random.Random(f"5:{cls}").sample(sorted(names), 4))
        assert choose(names, 4, 5, cls) == old
    assert len(choose(names, 4, 5, ODD)) == 4


def _tree(root):
    make_tree(root, classes=3, per_class=(4, 4), sizes="imagenet", seed=3)
    first = sorted(os.listdir(root))[1]
    os.rename(os.path.join(root, first), os.path.join(root, ODD))
    return root


def test_split_filter_list_pack_on_a_non_utf8_class(tmp_path):
    root = _tree(str(tmp_path / "train"))
    (tmp_path / "train" / "tiny").mkdir()
    make_tree(tmp_path / "t", classes=1, per_class=(1, 1), seed=4)
    for p in (tmp_path / "t").rglob("*.JPEG"):
        os.rename(p, tmp_path / "train" / "tiny" / p.name)
    r = run_cli("filter", root, "--min-images", "2", "--move-to", str(tmp_path / "small"), "--progress", "off")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "small")) == ["tiny"]
    r = run_cli("split", root, "--val-root", str(tmp_path / "val"), "--per-class", "1", "--progress", "off")
    assert r.returncode == 0, r.stderr
    assert image_counts(str(tmp_path / "val")) == {c: 1 for c in image_counts(root)}
    assert image_counts(root)[ODD] == 3
    r = run_cli("list", str(tmp_path / "data"), root, "--recursive", "--no-shuffle")
    assert r.returncode == 0, r.stderr
    entries = list(read_list(str(tmp_path / "data.lst")))
    assert len(entries) == 9 and sum(e.path.startswith(ODD + "/") for e in entries) == 3
    r = run_cli("pack", str(tmp_path / "data"), root, "--resize", "32", "--num-thread", "1")
    assert r.returncode == 0, r.stderr
    assert open(tmp_path / "data.idx").read().count("\n") == 9   # every image packed, none skipped


def test_list_from_tar_val_per_class_on_a_non_utf8_class(tmp_path):
    root = _tree(str(tmp_path / "train"))
    archive = tmp_path / "train.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as t:
        for cls in sorted(os.listdir(root)):
            t.add(os.path.join(root, cls), arcname=cls)
    r = run_cli("list", str(tmp_path / "tr"), "--from-tar", str(archive), "--recursive", "--no-shuffle",
                "--val-per-class", "1", "--val-prefix", str(tmp_path / "va"))
    assert r.returncode == 0, r.stderr
    train = list(read_list(str(tmp_path / "tr.lst")))
    val = list(read_list(str(tmp_path / "va.lst")))
    assert (len(train), len(val)) == (9, 3)
    assert sum(e.path.startswith(ODD + "/") for e in val) == 1
