"""What the step-by-step stages did to a training tree, recorded in the tree itself.

`ROOT/.fastrec-stages.json` (hidden: no class, no image) holds

    {"fastrec_stages": 1,
     "filtered": {"CLASS": "/abs/MOVE_TO/CLASS", ...},   classes `filter` moved away
     "splits": ["/abs/VAL/.fastrec-split.jsonl", ...]}   manifests of splits taken from ROOT

so that a rerun of the README's chain (extract, filter, split) means the dataset of one run:
`extract` does not bring back a class filter moved away, and `filter` counts the images split
moved to validation as part of their class. Each stage records its intent before it moves
anything (written atomically), so a crash between the record and the moves leaves a record a
rerun finishes, never moves the record does not know of.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

from fastrec import fsutil
from fastrec.errors import UsageError

STATE_NAME = ".fastrec-stages.json"
VERSION = 1


def state_path(root: str) -> str:
    return os.path.join(os.path.abspath(root), STATE_NAME)


def read_state(root: str) -> dict:
    """The record of `root` ({"filtered": {}, "splits": []} when there is none)."""
    path = state_path(root)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            state = json.load(f)
    except FileNotFoundError:
        return {"fastrec_stages": VERSION, "filtered": {}, "splits": []}
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {path!r} (what filter and split did to this tree): {err}; "
                         f"restore it, or delete it to let extract and filter start afresh") from err
    if (not isinstance(state, dict) or state.get("fastrec_stages") != VERSION
            or not isinstance(state.get("filtered"), dict) or not isinstance(state.get("splits"), list)):
        raise UsageError(f"{path!r} is not a fastrec stage record (version {VERSION}); move it away")
    return state


def _write(root: str, state: dict) -> None:
    data = json.dumps(state, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    fsutil.atomic_write(state_path(root), data.encode("utf-8", "surrogateescape"))


def filtered_classes(root: str) -> dict[str, str]:
    """Class -> the folder `filter` moved it to, for every class filter moved out of `root`."""
    return dict(read_state(root)["filtered"])


def record_filtered(root: str, moves: dict[str, str], kept: Sequence[str] = ()) -> None:
    """Add classes `filter` is about to move out of `root` (class -> destination folder); classes
    it keeps in `root` are no longer moved away (a rerun with a lower minimum, after a crash
    between the record and the move)."""
    state = read_state(root)
    stale = [c for c in kept if c in state["filtered"]]
    if not stale and all(state["filtered"].get(c) == d for c, d in moves.items()):
        return
    for c in stale:
        del state["filtered"][c]
    state["filtered"].update(moves)
    _write(root, state)


def split_manifests(root: str) -> list[str]:
    """The manifests of the splits that moved images out of `root` (and are not undone)."""
    return [m for m in read_state(root)["splits"] if os.path.exists(m)]


def record_split(root: str, manifest: str) -> None:
    state = read_state(root)
    if manifest not in state["splits"]:
        state["splits"].append(manifest)
        _write(root, state)


def forget_split(root: str, manifest: str) -> None:
    """After `split --undo`: the images are back, the manifest no longer counts."""
    if not os.path.isdir(root):
        return
    state = read_state(root)
    if manifest in state["splits"]:
        state["splits"].remove(manifest)
        if state["filtered"] or state["splits"]:
            _write(root, state)
        else:   # nothing left to record: the tree is as it was before the split
            os.remove(state_path(root))
            fsutil.fsync_dir(os.path.abspath(root))
