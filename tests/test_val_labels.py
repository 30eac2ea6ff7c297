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


def test_a_first_line_with_an_unknown_class_is_named_as_the_header_it_was_taken_for(imagenet, tmp_path):
    """A typo in line 1's class reads as a header line (it is passed over); the error then named
    only the unlabelled image, not the line (found by review22)."""
    base, truth, _ = imagenet
    (name, _), *rest = truth.items()
    typo = tmp_path / "typo.txt"
    typo.write_text(f"{name} n0l440764\n" + "".join(f"{n} {c}\n" for n, c in rest))
    r = _list(tmp_path, base, typo)
    assert r.returncode == 2 and f"e.g. {name!r}; line 1 ('{name} n0l440764') was taken for a header" in r.stderr


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


# ---------------------------------------------------------------- labels mean one thing (issue 22 item 5)
def _list(tmp_path, base, labels, *extra):
    return fastrec_subprocess(["list", tmp_path / "v", base / "flat", "--labels", labels,
                               "--classes", base / "train", *extra])


def test_an_image_with_two_classes_is_an_error_naming_both_lines(imagenet, tmp_path):
    base, truth, _ = imagenet
    names, classes = list(truth), sorted(set(truth.values()))
    other = next(c for c in classes if c != truth[names[2]])
    lines = [f"{n} {c}\n" for n, c in truth.items()]
    for twice in (f"{names[2]} {other}\n",              # the same file twice
                  f"{names[2][:-5]} {other}\n"):        # and without its extension
        labels = tmp_path / "two.txt"
        labels.write_text("".join(lines) + twice)
        r = _list(tmp_path, base, labels)
        assert r.returncode == 2, r.stderr
        assert f"has two classes: line 3 says {truth[names[2]]!r}, line {len(lines) + 1} says {other!r}" in r.stderr
        assert not list(tmp_path.glob("*.lst"))
    # the same class twice is one label
    labels.write_text("".join(lines) + lines[2] + f"{names[2][:-5]} {truth[names[2]]}\n")
    assert _list(tmp_path, base, labels).returncode == 0


def test_labelled_images_missing_from_the_folder(imagenet, tmp_path):
    """As after a partial extraction: an error listing the first few and the count, unless
    --partial-labels, which lists the images that are there with a warning and the count."""
    base, truth, train = imagenet
    part = tmp_path / "part"
    part.mkdir()
    names = sorted(truth)
    for n in names[:4]:
        shutil.copyfile(base / "flat" / n, part / n)
    for where in ([part], ["--from-tar", _tar_of(part, tmp_path / "part.tar")]):
        r = fastrec_subprocess(["list", tmp_path / "v", *where, "--labels", base / "val.txt", "--classes", base / "train"])
        assert r.returncode == 2, r.stderr
        assert f"{len(names) - 4} labelled images of" in r.stderr and repr(names[4]) in r.stderr
        assert "--partial-labels" in r.stderr and not list(tmp_path.glob("*.lst"))
        r = fastrec_subprocess(["list", tmp_path / "v", *where, "--labels", base / "val.txt",
                                "--classes", base / "train", "--partial-labels"])
        assert r.returncode == 0, r.stderr
        assert f"{len(names) - 4} labelled images" in r.stderr and "listing the 4 that are there" in r.stderr
        lines = (tmp_path / "v.lst").read_text().splitlines()
        assert sorted((line.split("\t")[2].split("/")[-1], line.split("\t")[1]) for line in lines) == \
            [(n, train[truth[n]]) for n in names[:4]]
        for made in tmp_path.glob("v.*"):
            made.unlink()


def _tar_of(folder, path):
    with tarfile.open(path, "w") as t:
        for p in sorted(folder.iterdir()):
            t.add(p, arcname=p.name)
    return path
