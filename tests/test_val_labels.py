"""ImageNet-1k's validation set is flat (ILSVRC2012_img_val.tar) and its labels live in a
ground-truth file (issue 15 item 10): `fastrec list --labels FILE --classes TRAIN` labels a flat
folder or tar with the labels the train lists give the same classes."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from helpers_pack import fastrec_subprocess, read_with_mxnet
from fastrec.demo.samples import make_tree


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """A train tree, a flat val folder + tar holding copies of train images (so each val image's
    true class is known), its ground truth in three forms, and the train lists."""
    base = tmp_path_factory.mktemp("val")
    make_tree(base / "train", classes=4, per_class=(3, 4), seed=6)
    classes = sorted(p.name for p in (base / "train").iterdir())
    devkit_order = list(reversed(classes))            # the devkit numbers classes otherwise
    (base / "flat").mkdir()
    truth = []
    for i, src in enumerate(sorted((base / "train").rglob("*.JPEG"), key=lambda p: p.name[::-1])):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        shutil.copyfile(src, base / "flat" / name)
        truth.append((name, src.parent.name))
    with tarfile.open(base / "ILSVRC2012_img_val.tar", "w") as t:
        for name, _ in truth:
            t.add(base / "flat" / name, arcname=name)
    (base / "val.txt").write_text("".join(f"{n} {c}\n" for n, c in truth))
    (base / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(f"{n[:-5]},{c} 1 2 30 40\n" for n, c in reversed(truth)))
    (base / "ground_truth.txt").write_text("".join(f"{devkit_order.index(c) + 1}\n" for _, c in truth))
    (base / "devkit_synsets.txt").write_text("".join(f"{c} a name, another\n" for c in devkit_order))
    (base / "synsets.txt").write_text("".join(f"{c}\n" for c in classes))
    r = fastrec_subprocess(["list", base / "train_list", base / "train", "--recursive"])
    assert r.returncode == 0, r.stderr
    train = {line.split("\t")[2].split("/")[0]: line.split("\t")[1]
             for line in (base / "train_list.lst").read_text().splitlines()}
    return base, dict(truth), train


FORMS = {
    "val.txt + train tree": ["--labels", "val.txt", "--classes", "train"],
    "LOC_val_solution.csv + synsets": ["--labels", "LOC_val_solution.csv", "--classes", "synsets.txt"],
    "devkit ground truth + ids": ["--labels", "ground_truth.txt", "--classes", "train", "--ids", "devkit_synsets.txt"],
}


@pytest.mark.parametrize("source", ["folder", "tar"])
@pytest.mark.parametrize("form", FORMS)
def test_flat_val_set_gets_the_train_labels(imagenet, tmp_path, source, form):
    base, truth, train = imagenet
    where = [base / "flat"] if source == "folder" else ["--from-tar", base / "ILSVRC2012_img_val.tar"]
    flags = [base / f if i % 2 else f for i, f in enumerate(FORMS[form])]
    r = fastrec_subprocess(["list", tmp_path / "val", *where, *flags])
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "val.lst").read_text().splitlines()
    assert len(lines) == len(truth)
    for line in lines:
        _, label, path = line.split("\t")
        assert label == train[truth[path.split("/")[-1]]], line
    pack = ["pack", tmp_path / "val", "--progress", "off"]
    pack += [base / "flat"] if source == "folder" else ["--from-tar", base / "ILSVRC2012_img_val.tar"]
    r = fastrec_subprocess(pack)
    assert r.returncode == 0, r.stderr
    assert sorted(float(rec.label) for rec in read_with_mxnet(tmp_path / "val.rec")) == \
           sorted(float(train[c]) for c in truth.values())


def test_missing_or_unknown_labels_are_errors(imagenet, tmp_path):
    base, truth, _ = imagenet
    short = tmp_path / "short.txt"
    short.write_text("".join(f"{n} {c}\n" for n, c in list(truth.items())[:-1]))
    r = fastrec_subprocess(["list", tmp_path / "v", base / "flat", "--labels", short, "--classes", base / "train"])
    assert r.returncode == 2 and "1 of" in r.stderr and "have no label" in r.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("".join(f"{n} n99999999\n" for n in truth))
    r = fastrec_subprocess(["list", tmp_path / "v", base / "flat", "--labels", bad, "--classes", base / "train"])
    assert r.returncode == 2 and "'n99999999' is not a class of --classes" in r.stderr
    r = fastrec_subprocess(["list", tmp_path / "v", base / "flat", "--labels", base / "ground_truth.txt",
                            "--classes", base / "train"])
    assert r.returncode == 2 and "--ids" in r.stderr
    r = fastrec_subprocess(["list", tmp_path / "v", base / "flat", "--labels", base / "val.txt"])
    assert r.returncode == 2 and "--labels needs --classes" in r.stderr
    assert not list(tmp_path.glob("*.lst"))


@pytest.mark.parametrize("source", ["folder", "tar"])
def test_flat_val_set_names_the_train_classes(imagenet, tmp_path, source):
    """The synset file and the manifest of a labelled flat val set name the train classes (they
    named the archive, `ILSVRC2012_img_val`, or nothing: the folder of a flat set is no class)."""
    from fastrec.formats.manifest import manifest_path, read_manifest
    base, truth, train = imagenet
    where = [base / "flat"] if source == "folder" else ["--from-tar", base / "ILSVRC2012_img_val.tar"]
    r = fastrec_subprocess(["list", tmp_path / "val", *where, "--labels", base / "val.txt",
                            "--classes", base / "train"])
    assert r.returncode == 0, r.stderr
    classes = sorted(p.name for p in (base / "train").iterdir())
    assert (tmp_path / "val.synset.txt").read_text().splitlines() == classes
    r = fastrec_subprocess(["pack", tmp_path / "val", *where, "--progress", "off"])
    assert r.returncode == 0, r.stderr
    manifest = read_manifest(manifest_path(str(tmp_path / "val.rec")))
    assert manifest.classes == {str(int(float(train[c]))): c for c in set(truth.values())}
    r = fastrec_subprocess(["inspect", tmp_path / "val", "--json"])
    assert r.returncode == 0 and json.loads(r.stdout)["classes"] == manifest.classes, r.stderr
