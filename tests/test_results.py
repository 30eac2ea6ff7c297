"""Machine-readable results (`--json` on list, pack, verify, inspect), the synset file `fastrec list`
writes, and `inspect` across all the files of a prefix (per-class counts, contact sheet)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastrec.demo.samples import make_tree
from fastrec.formats.lists import ListOptions, make_lists, read_list
from fastrec.stages.tarlists import make_lists_from_tar
from stage_fixtures import make_outer_tar, run_cli

CHUNKS = 8


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """A 3-class tree listed in 8 chunks with --json and packed with --json (outputs kept)."""
    base = tmp_path_factory.mktemp("results")
    make_tree(base / "images", classes=3, per_class=(5, 7), sizes="imagenet", seed=2)
    (base / "images" / make_tree_classes(base)[0] / "broken.jpg").write_bytes(b"not a jpeg")
    listed = run_cli("list", str(base / "data"), str(base / "images"), "--recursive", "--chunks", str(CHUNKS),
                     "--json")
    assert listed.returncode == 0, listed.stderr
    (base / "list.json").write_text(listed.stdout)
    packed = run_cli("pack", str(base / "data"), str(base / "images"), "--resize", "32", "--progress", "on",
                     "--max-skipped", "100%", "--json")   # the broken file is a skip on purpose
    assert packed.returncode == 0, packed.stderr
    (base / "pack.json").write_text(packed.stdout)
    return base


def make_tree_classes(base: Path) -> list[str]:
    return sorted(p.name for p in (base / "images").iterdir() if p.is_dir())


def _lines(base: Path) -> list:
    return [item for n in range(CHUNKS) for item in read_list(str(base / f"data_{n}.lst"))]


def test_list_json_carries_lists_counts_and_classes(packed):
    doc = json.loads((packed / "list.json").read_text())["train"]
    assert [Path(x["path"]).name for x in doc["lists"]] == [f"data_{n}.lst" for n in range(CHUNKS)]
    assert doc["images"] == len(_lines(packed)) == sum(x["images"] for x in doc["lists"])
    assert list(doc["classes"].values()) == make_tree_classes(packed)


def test_synset_file_matches_the_class_folders(packed):
    """Line N of PREFIX.synset.txt is the folder whose images have label N."""
    synset = (packed / "data.synset.txt").read_text().splitlines()
    assert synset == make_tree_classes(packed)
    for item in _lines(packed):
        assert Path(item.path).parent.name == synset[int(item.labels[0])]


def test_synset_file_from_tar_lists(tmp_path):
    counts = {"n02000001": 4, "n01000002": 3, "n03000003": 5}
    make_outer_tar(str(tmp_path / "train.tar"), counts, hostile=False)
    made = make_lists_from_tar(str(tmp_path / "train"), [str(tmp_path / "train.tar")], ListOptions(recursive=True))
    assert made.train.synset == str(tmp_path / "train.synset.txt")
    assert (tmp_path / "train.synset.txt").read_text().splitlines() == sorted(counts)


def test_flat_list_writes_no_synset(tmp_path):
    make_tree(tmp_path / "images", classes=1, per_class=(3, 3), seed=1)
    folder = next((tmp_path / "images").iterdir())
    assert make_lists(str(tmp_path / "flat"), str(folder), ListOptions()).synset is None
    assert not (tmp_path / "flat.synset.txt").exists()


def test_pack_json_carries_counts_and_skip_reasons_per_list(packed):
    doc = json.loads((packed / "pack.json").read_text())   # stdout is the document alone: bar and logs on stderr
    assert doc["images"] + doc["skipped"] == len(_lines(packed)) and doc["skipped"] == 1
    assert len(doc["lists"]) == CHUNKS
    assert sum(x["records"] for x in doc["lists"]) == doc["images"]
    assert sum(x["reasons"].get("decode-error", 0) + x["reasons"].get("not-an-image", 0)
               for x in doc["lists"]) == sum(doc["reasons"].values()) == 1


def test_verify_json(packed):
    r = run_cli("verify", str(packed / "data"), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["ok"] and len(doc["files"]) == CHUNKS
    assert sum(f["records"] + f["skipped"] for f in doc["files"]) == sum(f["expected"] for f in doc["files"])
    assert all(f["missing"] == 0 for f in doc["files"])


def test_inspect_counts_per_class_across_files_as_integers(packed):
    r = run_cli("inspect", str(packed / "data"), "--json")
    doc = json.loads(r.stdout)
    want: dict[str, int] = {}
    for item in _lines(packed):
        want[str(int(item.labels[0]))] = want.get(str(int(item.labels[0])), 0) + 1
    want["0"] -= 1   # the broken file of class 0 was skipped
    assert doc["per_class"] == want and doc["records"] == sum(want.values())
    assert doc["classes"] == {str(i): c for i, c in enumerate(make_tree_classes(packed))}
    text = run_cli("inspect", str(packed / "data")).stdout
    assert f"all {CHUNKS} files: {sum(want.values())} records in 3 classes" in text
    assert ".0:" not in text and "0.0" not in text.split("all ")[1]


def test_contact_sheet_draws_from_all_files(packed, tmp_path):
    r = run_cli("inspect", str(packed / "data"), "--json", "--contact-sheet", str(tmp_path / "s.png"),
                "--sample", "16")
    sheet = json.loads(r.stdout)["contact_sheet"]
    assert sheet["images"] == 16 and sheet["files"] >= CHUNKS - 1, sheet
    # each image is captioned with its class name, from the manifest or the synset file (issue 22)
    classes = make_tree_classes(packed)
    for text in sheet["captions"]:
        label = int(text.split(" label ")[1].split()[0])
        assert text.endswith(f" {classes[label]}"), text
