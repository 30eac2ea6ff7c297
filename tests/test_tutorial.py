"""The MXNet ImageNet tutorial's own command lines, verbatim, with `fastrec im2rec` in place of
`python im2rec.py` (issue 15 item 1). The tutorial was written for an im2rec.py whose switches
were `type=bool` (`--list True --recursive True`); MXNet 1.9.1's are store_true, so the
reference runs 1.9.1's im2rec.py with the bare switches and the same everything else."""
from __future__ import annotations

import cv2
import pytest

from helpers_pack import decode, fastrec_subprocess, read_with_mxnet, run_im2rec_batch
from fastrec.demo.samples import make_tree

NAME = "imagenet1k"


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory, im2rec_script):
    base = tmp_path_factory.mktemp("tutorial")
    make_tree(base / "train", classes=3, per_class=(4, 7), seed=3)
    make_tree(base / "val", classes=3, per_class=(2, 3), seed=4)
    runs = {}
    for tool in ("fastrec", "im2rec"):
        for meta in ("train_meta", "val_meta"):
            (base / tool / meta).mkdir(parents=True)
    train_fr, val_fr = base / "fastrec" / "train_meta" / NAME, base / "fastrec" / "val_meta" / NAME
    train_im, val_im = base / "im2rec" / "train_meta" / NAME, base / "im2rec" / "val_meta" / NAME
    for argv in (["--list", "True", "--chunks", "8", "--recursive", "True", train_fr, base / "train"],
                 ["--resize", "480", "--quality", "90", "--num-thread", "16", train_fr, base / "train"],
                 ["--list", "True", "--recursive", "True", val_fr, base / "val"],
                 ["--resize", "480", "--quality", "90", "--num-thread", "16", val_fr, base / "val"]):
        r = fastrec_subprocess(["im2rec", *argv])
        runs[tuple(map(str, argv))] = r
        assert r.returncode == 0, r.stderr
    im = run_im2rec_batch([
        (None, ["--list", "--chunks", "8", "--recursive", train_im, base / "train"]),
        (None, ["--resize", "480", "--quality", "90", "--num-thread", "16", train_im, base / "train"]),
        (None, ["--list", "--recursive", val_im, base / "val"]),
        (None, ["--resize", "480", "--quality", "90", "--num-thread", "16", val_im, base / "val"]),
    ])
    assert all(r["status"] == 0 for r in im), im
    return base, runs, im


@pytest.mark.parametrize("meta", ["train_meta", "val_meta"])
def test_tutorial_lists_are_im2rec_lists(tutorial, meta):
    base, runs, im = tutorial
    ours = sorted((base / "fastrec" / meta).glob("*.lst"))
    theirs = sorted((base / "im2rec" / meta).glob("*.lst"))
    assert [p.name for p in ours] == [p.name for p in theirs]
    assert len(ours) == (8 if meta == "train_meta" else 1)
    for a, b in zip(ours, theirs):
        assert a.read_bytes() == b.read_bytes(), a.name
    # the folder -> label mapping printed, as im2rec prints it
    argv = next(k for k in runs if k[0] == "--list" and meta in k[-2])
    assert runs[argv].stdout == im[0 if meta == "train_meta" else 2]["stdout"]


@pytest.mark.parametrize("meta", ["train_meta", "val_meta"])
def test_tutorial_records_have_im2recs_ids_labels_and_sizes(tutorial, meta):
    base, _, _ = tutorial
    theirs = sorted((base / "im2rec" / meta).glob("*.rec"))
    assert theirs
    for rec_im in theirs:
        rec_fr = base / "fastrec" / meta / rec_im.name
        ours, ref = read_with_mxnet(rec_fr), read_with_mxnet(rec_im)
        assert [(r.key, r.id, r.flag, float(r.label)) for r in ours] == \
               [(r.key, r.id, r.flag, float(r.label)) for r in ref]
        assert [decode(r.image, cv2.IMREAD_COLOR).shape for r in ours] == \
               [decode(r.image, cv2.IMREAD_COLOR).shape for r in ref]


def test_switch_values_mean_what_they_say(tmp_path):
    """`--list False` is pack mode and `--recursive no` is a flat listing (here: nothing, an error)."""
    make_tree(tmp_path / "root", classes=2, per_class=(2, 2), seed=1)
    r = fastrec_subprocess(["im2rec", "--list", "yes", "--recursive", "NO", tmp_path / "p", tmp_path / "root"])
    assert r.returncode == 2 and "add --recursive" in r.stderr
    r = fastrec_subprocess(["im2rec", "--list", "1", "--recursive", "TRUE", "--no-shuffle",
                            tmp_path / "p", tmp_path / "root"])
    assert r.returncode == 0 and (tmp_path / "p.lst").read_text().startswith("0\t0.000000\t")
    sorted_list = (tmp_path / "p.lst").read_bytes()
    r = fastrec_subprocess(["im2rec", "--list", "True", "--recursive", "True", "--shuffle", "False",
                            tmp_path / "p", tmp_path / "root"])
    assert r.returncode == 0 and (tmp_path / "p.lst").read_bytes() == sorted_list    # = --no-shuffle
    r = fastrec_subprocess(["im2rec", "--list", "False", "--pass-through", "false", tmp_path / "p", tmp_path / "root"])
    assert r.returncode == 0 and (tmp_path / "p.rec").stat().st_size > 0    # pack mode, not listing


def test_wrong_command_line_shows_the_subcommands_usage_and_a_hint(tmp_path):
    r = fastrec_subprocess(["im2rec", "--list", "True", tmp_path / "p", tmp_path / "root", "extra"])
    assert r.returncode == 2
    assert r.stderr.startswith("usage: fastrec im2rec ")
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("fastrec im2rec: error: unrecognized arguments: extra") and "--help" in last
    r = fastrec_subprocess(["im2rec", "--list=maybe", tmp_path / "p", tmp_path / "root"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "argument --list: expected True/False/1/0/yes/no, got 'maybe'" in r.stderr
