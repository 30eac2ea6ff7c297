"""The pack's record of itself (`<list>.manifest.json`) and the guard against a quietly thin
dataset (`--max-skipped`): what a finished pack says about itself, and when it exits non-zero."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fastrec._version import __version__
from fastrec.demo.samples import make_odd_files, make_tree
from fastrec.engine.options import BYTE_SETTINGS
from fastrec.formats.lists import ListOptions, make_lists, read_list
from fastrec.formats.manifest import manifest_path, read_manifest
from helpers_pack import fastrec_subprocess

BAD = ("truncated", "empty", "text_as_jpg")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Two classes of 9 to 11 good images and a class of 3 files that must be skipped."""
    base = tmp_path_factory.mktemp("manifest")
    make_tree(base / "images", classes=2, per_class=(9, 11), sizes="imagenet", seed=5)
    odd = make_odd_files(base / "odd")
    (base / "images" / "zz_bad").mkdir()
    for key in BAD:
        shutil.copy(odd[key], base / "images" / "zz_bad" / f"{key}.jpg")
    make_lists(str(base / "data"), str(base / "images"), ListOptions(recursive=True))
    return base


def _pack(tree: Path, *flags: str):
    return fastrec_subprocess(["pack", tree / "data", tree / "images", "--resize", "48", "--num-thread", "2",
                               "--progress", "off", *flags])


def test_finished_pack_describes_itself(tree):
    proc = _pack(tree, "--max-skipped", "50%")
    assert proc.returncode == 0, proc.stderr
    m = read_manifest(manifest_path(str(tree / "data.rec")))
    items = list(read_list(str(tree / "data.lst")))
    assert m.fastrec == __version__ and m.complete
    assert set(m.settings) == set(BYTE_SETTINGS) and m.settings["resize"] == 48
    assert m.list == str(tree / "data.lst") and m.source == {"root": str(tree / "images")}
    assert (m.expected, m.written, m.skipped) == (len(items), len(items) - 3, 3)
    assert (tree / "data.idx").read_bytes().count(b"\n") == m.written
    assert sum(m.reasons.values()) == 3
    folders = sorted({p.name for p in (tree / "images").iterdir()})
    assert sorted(m.classes.values()) == folders                 # label -> class folder
    by_label = {}
    for item in items:
        by_label.setdefault(str(int(item.labels[0])), []).append(item.path)
    bad_label = next(k for k, v in m.classes.items() if v == "zz_bad")
    assert m.per_class == {k: len(v) for k, v in by_label.items() if k != bad_label}
    assert json.loads((tree / "data.manifest.json").read_text())["list_digest"] == m.list_digest


def test_too_many_skips_end_non_zero_with_everything_written(tree):
    n = len(list(read_list(str(tree / "data.lst"))))
    proc = _pack(tree)                          # default --max-skipped 1 %: 3 of about 25 is too many
    assert proc.returncode == 1, proc.stderr
    assert f"3 of {n} images were skipped" in proc.stderr and "--max-skipped" in proc.stderr
    assert "Traceback" not in proc.stderr
    m = read_manifest(manifest_path(str(tree / "data.rec")))
    assert m.complete and m.written == n - 3   # the outputs are whole all the same


def test_max_skipped_share_and_strict(tree):
    share = 3 / len(list(read_list(str(tree / "data.lst"))))
    assert _pack(tree, "--max-skipped", f"{100 * share - 0.5:.2f}%").returncode == 1
    assert _pack(tree, "--max-skipped", f"{share + 0.005:.4f}").returncode == 0
    assert _pack(tree, "--max-skipped", "100%", "--strict").returncode == 1
    bad = _pack(tree, "--max-skipped", "120%")
    assert bad.returncode == 2 and "from 0% to 100%" in bad.stderr


def test_strict_counts_the_skips_of_the_resumed_part(tree):
    """--strict judges the whole pack, not only what this run added: resuming a pack whose skips
    were all written before (here: a finished one) still fails."""
    assert _pack(tree, "--max-skipped", "100%").returncode == 0
    proc = _pack(tree, "--max-skipped", "100%", "--resume", "--strict")
    assert proc.returncode == 1, proc.stderr
    assert "3 of" in proc.stderr and "--strict" in proc.stderr and "Traceback" not in proc.stderr


def test_json_still_describes_a_pack_that_fails_on_its_skips(tree):
    """The outputs of a pack over --max-skipped are whole; --json prints them (exit 1 all the same)."""
    proc = _pack(tree, "--json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    [lst] = doc["lists"]
    assert doc["skipped"] == lst["skipped"] == 3 and lst["manifest"]["complete"]
