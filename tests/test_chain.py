"""The README's step-by-step chain (extract, filter, split, list) is rerunnable (issue 22 item 6):
run twice, as after a failed later stage, it leaves the trees and lists of one run. Each stage
records what it did in the tree (`fastrec.stages.treestate`)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from stage_fixtures import image_counts, make_outer_tar, tree

README = Path(__file__).resolve().parent.parent / "README.md"
# Classes near the threshold: 30 and 28 fall to 25 and 23 once split takes 5 (issue 22's case).
COUNTS = {"n00000001": 30, "n00000002": 28, "n00000003": 40, "n00000004": 26,
          "n00000005": 20, "n00000006": 25}
SMALL = {"n00000005", "n00000006"}   # 25 or fewer: `--more-than 25` moves them


def readme_chain() -> list[str]:
    """The seed workflow's commands from extract to the lists, as the README writes them."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## The seed workflow, with fastrec\n\n```sh\n(.*?)```", text, re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    chain = [line for line in lines if re.match(r"(fastrec (extract|filter|split|list)|mkdir) ", line)]
    assert [line.split()[1] for line in chain] == ["extract", "filter", "split", "-p", "list", "list"], chain
    return chain


def run_chain(base: Path) -> list[str]:
    """The README's chain in `base` (its /data), scaled to a small tree: --more-than 25,
    --val-per-class 5; every other word as written. Returns each command's stdout."""
    out = []
    for line in readme_chain():
        line = line.replace("--more-than 500", "--more-than 25").replace("--val-per-class 50", "--val-per-class 5")
        argv = [w.replace("/data", str(base / "data")) for w in shlex.split(line)]
        if argv[0] == "mkdir":
            os.makedirs(argv[-1], exist_ok=True)
            continue
        r = subprocess.run([sys.executable, "-m", "fastrec", *argv[1:], *(["--progress", "off"] if argv[1] != "list" else [])],
                           cwd=base, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (line, r.stdout, r.stderr)
        out.append(r.stdout)
    return out


def visible(snapshot: dict[str, str]) -> dict[str, str]:
    """A tree without the stages' hidden records (they hold absolute paths)."""
    return {k: v for k, v in snapshot.items() if not os.path.basename(k).startswith(".")}


def outputs(base: Path) -> dict:
    data = base / "data"
    return {"train": visible(tree(str(data / "train"))), "val": visible(tree(str(data / "val"))),
            "small": visible(tree(str(data / "small"))), "lists": tree(str(data / "lists"))}


def test_readme_chain_twice_gives_one_runs_trees_and_lists(tmp_path):
    once, twice = tmp_path / "once", tmp_path / "twice"
    for base in (once, twice):
        base.mkdir()
        make_outer_tar(str(base / "ILSVRC-full.tar"), COUNTS, seed=3, hostile=False)
    run_chain(once)
    run_chain(twice)
    again = run_chain(twice)
    assert "0 classes extracted" in again[0] and "(2 moved away by filter)" in again[0], again[0]
    assert "0 classes" in again[1] and "moved to" in again[1], again[1]
    assert "(20 moved by an earlier run)" in again[2], again[2]
    assert outputs(twice) == outputs(once)
    data = twice / "data"
    kept = {c: n for c, n in COUNTS.items() if c not in SMALL}
    assert image_counts(str(data / "train")) == {c: n - 5 for c, n in kept.items()}
    assert image_counts(str(data / "val")) == {c: 5 for c in kept}
    assert image_counts(str(data / "small")) == {c: COUNTS[c] for c in SMALL}
    # train and val number the classes alike
    train = (data / "lists" / "train.synset.txt").read_text()
    assert train == (data / "lists" / "val.synset.txt").read_text() == "".join(f"{c}\n" for c in sorted(kept))


def test_filter_refuses_to_move_a_class_with_validation_images(tmp_path):
    """A rerun with a higher threshold would leave validation classes that training lacks."""
    base = tmp_path
    make_outer_tar(str(base / "ILSVRC-full.tar"), COUNTS, seed=3, hostile=False)
    run_chain(base)
    data = base / "data"
    before = tree(str(data))
    r = subprocess.run([sys.executable, "-m", "fastrec", "filter", "data/train", "--more-than", "28",
                        "--move-to", "data/small"], cwd=base, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "n00000002 (5)" in r.stderr and "split --undo" in r.stderr, r.stderr
    assert tree(str(data)) == before
