"""`fastrec index PREFIX`: one index over the .rec files of a chunked pack (DALI's form, read by
DALI itself in tests/test_dali.py), and `fastrec verify`'s check of it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from helpers_pack import fastrec_main, fastrec_subprocess
from fastrec.demo.samples import make_tree
from fastrec.formats.combined_index import check_combined_index
from fastrec.formats.recordio import unpack, walk_records


@pytest.fixture(scope="module")
def chunked(tmp_path_factory) -> Path:
    """data_0 .. data_3 of a small tree, packed, with data.idx written by `fastrec index data`."""
    work = tmp_path_factory.mktemp("combined")
    make_tree(work / "images", classes=3, per_class=(3, 5), seed=5)
    assert fastrec_main(["list", work / "data", work / "images", "--recursive", "--chunks", "4"]) == 0
    assert fastrec_main(["pack", work / "data", work / "images", "--resize", "24"]) == 0
    r = fastrec_subprocess(["index", "data"], cwd=work)
    assert r.returncode == 0, r.stderr
    assert "data_0.rec data_1.rec data_2.rec data_3.rec" in r.stdout
    return work


def _lines(path: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split("\t"))) for line in path.read_text().splitlines()]


def test_index_is_the_records_of_the_concatenated_files(chunked):
    """Independently: walk the .rec files joined in list order; every record's offset in the join
    and its header id are the index's lines, in order."""
    joined = chunked / "joined.rec"
    joined.write_bytes(b"".join((chunked / f"data_{i}.rec").read_bytes() for i in range(4)))
    with open(joined, "rb") as f:
        walked = [(unpack(r.payload)[0].id, r.offset) for r in walk_records(f, joined.stat().st_size)]
    assert len(walked) == sum(1 for i in range(4) for _ in open(chunked / f"data_{i}.lst"))
    assert _lines(chunked / "data.idx") == walked
    r = fastrec_subprocess(["verify", "data"], cwd=chunked)
    assert r.returncode == 0 and "data.idx: " in r.stdout, r.stdout
    assert not list(chunked.glob(".*partial*"))   # written atomically: no temporary left


@settings(max_examples=40)
@given(data=st.data())
def test_verify_names_the_line_of_a_wrong_entry(chunked, data):
    """Any one line moved off its record (another offset) or given another record's key is a fault
    naming that line, however the offset moves; the intact index has none."""
    good = _lines(chunked / "data.idx")
    line = data.draw(st.integers(0, len(good) - 1), label="line")
    key, offset = good[line]
    if data.draw(st.booleans(), label="move offset"):
        offset += data.draw(st.integers(-offset, 5000).filter(lambda d: d != 0), label="by")
    else:
        key = data.draw(st.sampled_from([k for k, _ in good if k != key]), label="key")
    bad = list(good)
    bad[line] = (key, offset)
    path = chunked / f"bad-{os.getpid()}.idx"
    path.write_text("".join(f"{k}\t{o}\n" for k, o in bad))
    lines, faults = check_combined_index(str(chunked / "data"), str(path))
    assert lines == len(good)
    assert faults and faults[0].line in (line, line + 1, line + 2), faults   # 1-based; or the order fault after it
    assert check_combined_index(str(chunked / "data"), str(chunked / "data.idx")) == (len(good), [])


def test_verify_fails_an_index_missing_a_record(chunked, tmp_path):
    idx = (chunked / "data.idx").read_text().splitlines(keepends=True)
    short = tmp_path / "short.idx"
    short.write_text("".join(idx[:-1]))
    r = fastrec_subprocess(["verify", chunked / "data", "--index", short])
    assert r.returncode == 1 and f"{len(idx) - 1} lines for the {len(idx)} records" in r.stdout, r.stdout


def test_index_refuses_what_is_not_a_combined_index(chunked, tmp_path):
    r = fastrec_subprocess(["index", "data_0"], cwd=chunked)         # a single-file pack has its .idx
    assert r.returncode == 2 and "data_0.idx already indexes it" in r.stderr, r.stderr
    r = fastrec_subprocess(["index", "data", "--output", "data_1.idx"], cwd=chunked)
    assert r.returncode == 2 and "a file of the pack itself" in r.stderr, r.stderr
    assert (chunked / "data_1.idx").read_text().count("\n") > 0
    r = fastrec_subprocess(["index", tmp_path / "nothing"])
    assert r.returncode == 2 and "no .lst or .rec file matches" in r.stderr, r.stderr
    (tmp_path / "x_0.lst").write_text("0\t0\ta.jpg\n")
    r = fastrec_subprocess(["index", tmp_path / "x"])                 # listed, never packed
    assert r.returncode == 1 and "x_0.rec is missing" in r.stderr, r.stderr
    assert not (tmp_path / "x.idx").exists()
