"""`fastrec pack` against the real `im2rec.py` on the parts of pack mode that are not pixels
(shared/SPEC.md §4.2 list discovery, §4.3 .lst parsing, §4.4.1 paths, §7.1.6-7, §7.1.11).

Everything here runs with --pass-through, so the outputs are fully deterministic and must be
byte-identical to im2rec's. im2rec runs with 2 threads: at 1 it crashes on the first item it
cannot pack (SPEC §4.5), at 2 it skips it, which is what fastrec does at any thread count.
"""
from __future__ import annotations

import collections
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers_pack import (
    fastrec_main, fastrec_subprocess, output_files, read_with_mxnet, run_im2rec_batch, skipped_lines,
    write_lst,
)
from fastrec.formats.lists import LENIENT, read_list

IM2REC_FLAGS = ["--pass-through", "--num-thread", "2"]
# fastrec's flags that restore what im2rec.py does on purpose otherwise (README, "How fastrec differs"):
# these cases hold bad lines, a repeated id, paths outside ROOT and fake image bytes on purpose
AS_IM2REC = ["--skip-bad-lines", "--allow-duplicate-ids", "--allow-outside-root", "--pass-through-unchecked"]

# .lst lines that im2rec.py's read_list drops or parses in unusual ways (SPEC §4.3)
EDGE_LINES = [
    "0\t1.000000\ta.jpg",                 # ordinary
    "",                                   # blank: < 3 fields
    "1\ta.jpg",                           # 2 fields
    "   ",                                # whitespace only
    "x\t1\ta.jpg",                        # non-int index
    "1.0\t1\ta.jpg",                      # float index: int() refuses it
    "2\tabc\ta.jpg",                      # non-float label
    "  3 \t 2.5 \t b.jpg  ",              # extra whitespace around fields
    "4\t1\t2\t3\tc.jpg",                  # three labels (first one kept without --pack-label)
    "5\tnan\td.jpg",                      # float() accepts nan ...
    "6\t-inf\te.jpg",                     # ... and inf
    "7\t-1e3\tsub/f.jpg",                 # exponent, path in a sub-folder
    "3\t0\tb.jpg",                        # duplicate id: written twice
    "+8\t1_0\ta.jpg",                     # int('+8') and float('1_0') are valid Python
    "9\t1\tmissing.jpg",                  # no such file: skipped
    "-3\t1\ta.jpg",                       # negative id: struct.error in im2rec, skipped
    "11\t0.1\tname with spaces.jpg",      # spaces inside a path are kept
    "12\t3\t\tc.jpg",                     # an empty label field: float('') fails
    "13\t1\tc.jpg\t",                     # a trailing tab is stripped with the line
    "\t14\t2\ta.jpg",                     # a leading tab is too
    "15 \t 4 \t 5\t b.jpg",               # two labels, spaces around them
    "16\t1\ta.jpg\r",                     # CR before the newline
    "17\t2\tmagic.jpg",                   # payload holds RecordIO's magic word: split segments
    "18\t3\tcafé.jpg",                    # a non-ASCII (UTF-8) name
]
# labels beyond float32's range: im2rec.py packs the header with struct's *native* 'IfQQ',
# which casts without a range check (only the standard '<f' raises OverflowError), so they
# are stored as +-inf -- or as FLT_MAX where the value rounds to it; np.float32 does the same
# for --pack-label lists. SPEC §2.2 says OverflowError: true only for standard-size struct.
OVERFLOW_LINES = [
    "0\t1\ta.jpg",
    "1\t1e39\ta.jpg",
    "2\t-1e39\tb.jpg",
    "3\t3.40282356e38\tc.jpg",      # above FLT_MAX, but rounds to it
    "4\t1e39\t2\td.jpg",             # two labels, one out of range
    "5\t2\te.jpg",
]


def put_images(root: Path) -> None:
    """Small files with distinct bytes (pass-through never decodes them)."""
    for i, rel in enumerate(["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "sub/f.jpg", "name with spaces.jpg"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\xff\xd8\xff\xe0" + bytes([i]) * (37 + 5 * i))
    magic = bytes.fromhex("0a23d7ce")   # at file offsets 0, 4, 12, 16: aligned in the payload
    (root / "magic.jpg").write_bytes(magic * 2 + b"abcd" + magic * 2 + b"tail!")
    (root / "café.jpg").write_bytes(b"\xff\xd8\xff\xe0caf\xc3\xa9" * 5)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Set up every case, run im2rec.py on all of them in one batch, and fastrec on each."""
    base = tmp_path_factory.mktemp("compat")
    root = base / "root"
    put_images(root)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "abs.jpg").write_bytes(b"\xff\xd8\xff\xe1absolute" * 3)
    empty_root = base / "empty_root"
    empty_root.mkdir()
    c = SimpleNamespace(base=base, root=root, runs={})

    def case(name: str, prefix: str, lists: dict[str, list[str]], flags=(), root_dir: Path = root,
             also: dict[str, str] | None = None) -> None:
        """Two copies of a folder of .lst files (and `also`: extra names -> kinds), one per tool."""
        for tool in ("fr", "im"):
            d = base / name / tool
            d.mkdir(parents=True)
            for lst, lines in lists.items():
                write_lst(d / lst, lines)
            for extra, kind in (also or {}).items():
                (d / extra).mkdir() if kind == "dir" else (d / extra).write_text("0\t1\ta.jpg\n")
        c.runs[name] = (prefix, list(flags), root_dir)

    case("edge", "train", {"train.lst": EDGE_LINES})
    case("edge_label", "train", {"train.lst": EDGE_LINES}, ["--pack-label"])
    one = ["0\t1\ta.jpg", "1\t2\tb.jpg"]
    case("prefix", "train", {n: one for n in ["train.lst", "train_0.lst", "train_val.lst", "trainX.lst",
                                              "other.lst", "xtrain.lst", "train.lst.lst"]},
         also={"train.lst.bak": "file", "train_dir.lst": "dir", "train.txt": "file"})
    case("folder", "", {n: one for n in ["a.lst", "b.lst", "train.lst"]}, also={"c.lst.bak": "file"})
    case("dotlst", "train.lst", {n: one for n in ["train.lst", "train.lst_more.lst", "train_0.lst"]})
    case("overflow", "train", {"train.lst": OVERFLOW_LINES})
    case("overflow_label", "train", {"train.lst": OVERFLOW_LINES}, ["--pack-label"])
    case("absolute", "train", {"train.lst": [f"0\t1\t{elsewhere / 'abs.jpg'}", "1\t2\ta.jpg",
                                             f"2\t3\t{root / 'b.jpg'}"]}, root_dir=empty_root)

    im_runs = []
    for name, (prefix, flags, root_dir) in c.runs.items():
        im_dir = base / name / "im"
        im_runs.append((im_dir, [im_dir / prefix if prefix else im_dir, root_dir, *IM2REC_FLAGS, *flags]))
    c.im2rec = dict(zip(c.runs, run_im2rec_batch(im_runs)))
    c.fastrec = {}
    for name, (prefix, flags, root_dir) in c.runs.items():
        fr_dir = base / name / "fr"
        c.fastrec[name] = fastrec_main(["pack", fr_dir / prefix if prefix else fr_dir, root_dir,
                                        "--pass-through", *AS_IM2REC, *flags, "--max-skipped", "100%",
                                        "--progress", "off"])   # edge-case lists hold skips on purpose
    return c


def outputs(c, name: str, tool: str) -> dict[str, bytes]:
    return output_files(c.base / name / tool)


def assert_same_outputs(c, name: str) -> dict[str, bytes]:
    assert c.im2rec[name]["status"] == 0, c.im2rec[name]
    assert c.fastrec[name] == 0
    ours, theirs = outputs(c, name, "fr"), outputs(c, name, "im")
    assert sorted(ours) == sorted(theirs)
    for fname in theirs:
        assert ours[fname] == theirs[fname], fname
    return ours


# ------------------------------------------------------------------ .lst parsing
@pytest.mark.parametrize("name", ["edge", "edge_label"])
def test_lst_edge_cases_pack_like_im2rec(cases, name):
    """Same items (ids, labels, order, duplicates) and byte-identical .rec/.idx."""
    assert_same_outputs(cases, name)
    d = cases.base / name / "fr"
    records = read_with_mxnet(d / "train.rec")
    ids = [r.id for r in records]
    assert ids == [0, 3, 4, 5, 6, 7, 3, 8, 11, 13, 14, 15, 16, 17, 18]
    labels = {}
    for r in records:
        labels.setdefault(r.id, r.label)          # the first of a repeated id
    assert labels[3] == 2.5 and labels[7] == -1000.0 and labels[8] == 10.0
    if name == "edge_label":
        assert [r.flag for r in records if r.id in (4, 15)] == [3, 2]
        assert list(next(r for r in records if r.id == 4).label) == [1.0, 2.0, 3.0]
    else:
        assert {r.flag for r in records} == {0} and labels[4] == 1.0
    for id_, fname in [(11, "name with spaces.jpg"), (17, "magic.jpg"), (18, "café.jpg")]:
        assert next(r for r in records if r.id == id_).image == (cases.root / fname).read_bytes()
    rec = (cases.base / name / "fr" / "train.rec").read_bytes()
    assert rec.count(bytes.fromhex("0a23d7ce")) > len(records)    # the split segments are there


@pytest.mark.parametrize("name", ["edge", "edge_label"])
def test_lst_edge_cases_skips_are_explained(cases, name):
    """What im2rec drops silently (or crashes on at 1 thread) is in .skipped.tsv with a reason:
    with --skip-bad-lines each line that does not parse (or has a negative id) is a
    `bad-list-line` skip naming its line; blank lines are not list lines."""
    rows = skipped_lines(cases.base / name / "fr" / "train.rec")
    assert collections.Counter(r for _, r, _ in rows) == {"read-error": 1, "bad-list-line": 6}
    assert ("missing.jpg", "read-error") in {(p, r) for p, r, _ in rows}
    bad = {d.split(":")[0] for _, r, d in rows if r == "bad-list-line"}
    assert bad == {f"line {EDGE_LINES.index(line) + 1}" for line in
                   ["1\ta.jpg", "x\t1\ta.jpg", "1.0\t1\ta.jpg", "2\tabc\ta.jpg", "-3\t1\ta.jpg", "12\t3\t\tc.jpg"]}
    parsed = list(read_list(str(cases.base / name / "fr" / "train.lst"), LENIENT))
    assert len(parsed) == len(read_with_mxnet(cases.base / name / "fr" / "train.rec")) + len(rows)


@pytest.mark.parametrize("name", ["overflow", "overflow_label"])
def test_labels_beyond_float32_are_packed_like_im2rec(cases, name):
    """Labels beyond float32 are stored as im2rec.py stores them (+-inf, or FLT_MAX), not skipped."""
    assert_same_outputs(cases, name)
    records = read_with_mxnet(cases.base / name / "fr" / "train.rec")
    assert [r.id for r in records] == [0, 1, 2, 3, 4, 5]
    first = [float(r.label[0]) if r.flag else r.label for r in records]
    assert first[1:4] == [float("inf"), float("-inf"), 3.4028234663852886e38]


# ------------------------------------------------------------------ which lists get packed
def test_prefix_matching(cases):
    """Prefix `train` packs train.lst, train_0.lst, train_val.lst, trainX.lst and train.lst.lst;
    not other.lst, xtrain.lst, train.lst.bak, train.txt or a folder named train_dir.lst."""
    ours = assert_same_outputs(cases, "prefix")
    stems = {Path(n).stem for n in ours}
    assert stems == {"train", "train_0", "train_val", "trainX", "train.lst"}
    for stem in stems:
        assert {f"{stem}.rec", f"{stem}.idx"} <= set(ours)
        skips = cases.base / "prefix" / "fr" / f"{stem}.skipped.tsv"
        assert not skips.exists() or skips.stat().st_size   # a skip file only where something was skipped


def test_folder_prefix_packs_every_list(cases):
    ours = assert_same_outputs(cases, "folder")
    assert {Path(n).stem for n in ours} == {"a", "b", "train"}


def test_prefix_ending_in_lst(cases):
    ours = assert_same_outputs(cases, "dotlst")
    assert {Path(n).stem for n in ours} == {"train", "train.lst_more"}


def test_absolute_path_overrides_root(cases):
    """An absolute path in the .lst is used as is (os.path.join semantics); a relative one is
    joined to ROOT (here an empty folder, so it is skipped by both)."""
    assert_same_outputs(cases, "absolute")
    records = read_with_mxnet(cases.base / "absolute" / "fr" / "train.rec")
    assert [r.id for r in records] == [0, 2]
    assert records[0].image == (cases.base / "elsewhere" / "abs.jpg").read_bytes()
    assert records[1].image == (cases.root / "b.jpg").read_bytes()
    assert [(p, r) for p, r, _ in skipped_lines(cases.base / "absolute" / "fr" / "train.rec")] == \
        [("a.jpg", "read-error")]


def test_no_matching_list_is_a_user_error(tmp_path):
    """im2rec.py prints 'Did not find and list file' and exits 0; fastrec says what is wrong
    and exits 2 (a deliberate difference: a typo in a prefix must not look like success)."""
    (tmp_path / "root").mkdir()
    r = fastrec_subprocess(["pack", tmp_path / "nothing", tmp_path / "root"])
    assert r.returncode == 2
    assert r.stderr.startswith("fastrec pack: error:") and "nothing" in r.stderr
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "root"]
