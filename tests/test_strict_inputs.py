"""Strict inputs (issue 22): every .lst line is an item or a named refusal, ids are unique, list
paths stay under ROOT, and --pass-through stores only whole images.

Each case is one the issue found on main 229cf32, where it packed quietly and exited 0.
"""
from __future__ import annotations

import ast
import io
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from PIL import Image

from helpers_pack import fastrec_main, fastrec_subprocess, read_with_mxnet, skipped_lines, write_lst
from fastrec._native.core import STATUS_NAMES, Worker
from fastrec.engine.cluster import plan_shards
from fastrec.engine.local import Job, pack_jobs
from fastrec.engine.options import PackOptions
from fastrec.formats.lists import LENIENT, BadLine, ListItem, ListLineError, ListRules, read_list

QUIET = ["--progress", "off"]


def jpeg(seed: int, size=(16, 12), **save) -> bytes:
    im = Image.new("RGB", size, ((seed * 40) % 256, (seed * 90) % 256, (seed * 15) % 256))
    im.putpixel((seed % size[0], 0), (255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, "JPEG", **save)
    return buf.getvalue()


def png(seed: int, size=(16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (seed % 256, 3, 200)).save(buf, "PNG")
    return buf.getvalue()


def tree(root: Path, n: int) -> list[str]:
    """n small JPEGs under root/c0..c2; their relative paths."""
    names = []
    for i in range(n):
        rel = f"c{i % 3}/img{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(jpeg(i))
        names.append(rel)
    return names


def lines_for(names: list[str]) -> list[str]:
    return [f"{i}\t{i % 3}.000000\t{rel}" for i, rel in enumerate(names)]


# ------------------------------------------------------------------ item 1: unparseable lines
@pytest.fixture
def bad_list(tmp_path) -> Path:
    """The issue's case: 15 images, one line with id `8.0`, one with label `1,000000`."""
    names = tree(tmp_path / "img", 15)
    lines = lines_for(names)
    lines[8] = "8.0\t2.000000\t" + names[8]
    lines[11] = "11\t1,000000\t" + names[11]
    write_lst(tmp_path / "data.lst", lines)
    return tmp_path


def test_a_bad_line_stops_the_pack_naming_file_and_lines(bad_list):
    r = fastrec_subprocess(["pack", bad_list / "data", bad_list / "img", *QUIET])
    assert r.returncode == 1, r.stderr
    assert f"{bad_list / 'data.lst'}: 2 lines that are not list items" in r.stderr
    assert "line 9: the id '8.0' is not a whole number" in r.stderr
    assert "line 12: the label '1,000000' is not a number" in r.stderr
    assert "--skip-bad-lines" in r.stderr and "Traceback" not in r.stderr
    assert not (bad_list / "data.rec").exists()       # refused before anything is written


def test_a_byte_order_mark_is_named(tmp_path):
    """An editor's BOM makes line 1's id unparseable (as in im2rec.py); the error says why, since
    the mark is invisible (found by review22)."""
    (tmp_path / "data.lst").write_bytes("\ufeff0\t0\ta.jpg\n".encode("utf-8"))
    with pytest.raises(ListLineError, match="line 1: the id '\\\\ufeff0' is not a whole number \\(it starts "
                                             "with a byte-order mark"):
        list(read_list(str(tmp_path / "data.lst")))


def test_skip_bad_lines_counts_each_as_a_named_skip(bad_list):
    args = ["pack", bad_list / "data", bad_list / "img", "--skip-bad-lines", *QUIET]
    assert fastrec_main(args) == 1                    # 2 of 15 skipped: above --max-skipped 1 %
    assert fastrec_main(args + ["--max-skipped", "20%"]) == 0
    rows = skipped_lines(bad_list / "data.rec")
    assert [(p, r, d.split(":")[0]) for p, r, d in rows] == [
        ("c2/img8.jpg", "bad-list-line", "line 9"), ("c2/img11.jpg", "bad-list-line", "line 12")]
    assert len(read_with_mxnet(bad_list / "data.rec")) == 13
    r = fastrec_subprocess(["verify", bad_list / "data"])
    assert r.returncode == 0 and "15 items, 13 packed, 2 skipped, 0 missing" in r.stdout, r.stdout


def test_verify_names_a_bad_line_the_pack_did_not_skip(bad_list):
    """A list edited after a clean pack to hold a bad line: verify fails naming the line (it
    reported OK on main, logging "cannot parse")."""
    lst = bad_list / "data.lst"
    good = lst.read_text().splitlines()
    good[8], good[11] = "8\t2.000000\tc2/img8.jpg", "11\t1.000000\tc2/img11.jpg"
    lst.write_text("\n".join(good) + "\n")
    assert fastrec_main(["pack", bad_list / "data", bad_list / "img", *QUIET]) == 0
    lst.write_text(lst.read_text().replace("8\t2.000000\tc2/img8.jpg", "8.0\t2.000000\tc2/img8.jpg"))
    r = fastrec_subprocess(["verify", bad_list / "data"])
    assert r.returncode == 1
    assert "line 9 of data.lst is not a list item (the id '8.0' is not a whole number)" in r.stdout


def test_resume_and_dask_planning_read_the_same_grammar(bad_list):
    """--resume and the Dask planner walk the list through the same reader: the same refusal."""
    job = Job.for_list(str(bad_list / "data.lst"), str(bad_list / "img"))
    with pytest.raises(ListLineError, match="line 9: the id '8.0'"):
        pack_jobs([job], PackOptions(resume=True, progress="off"))
    with pytest.raises(ListLineError, match="line 12: the label"):
        plan_shards(Job.for_list(str(bad_list / "data.lst"), str(bad_list / "img")), PackOptions(), 4)
    skipping = Job.for_list(str(bad_list / "data.lst"), str(bad_list / "img"), ListRules(skip_bad_lines=True))
    assert [stop - start for start, stop, _ in plan_shards(skipping, PackOptions(), 4)] == [4, 4, 4, 3]


def test_blank_lines_and_crlf_are_read_as_im2rec_reads_them(tmp_path):
    """CRLF ends a line like LF and a blank (or whitespace-only) line is no list line: both as
    im2rec.py's read_list (universal newlines, stripped lines)."""
    names = tree(tmp_path / "img", 3)
    (tmp_path / "data.lst").write_bytes(("\r\n\r\n".join(lines_for(names)) + "\r\n \t \n").encode())
    assert fastrec_main(["pack", tmp_path / "data", tmp_path / "img", *QUIET]) == 0
    assert [r.id for r in read_with_mxnet(tmp_path / "data.rec")] == [0, 1, 2]


# ------------------------------------------------------------------ item 2: duplicate ids
@pytest.fixture
def twice(tmp_path) -> Path:
    names = tree(tmp_path / "img", 4)
    lines = lines_for(names)
    lines[3] = f"1\t2.000000\t{names[3]}"      # id 1 again, another image and label
    write_lst(tmp_path / "data.lst", lines)
    return tmp_path


def test_a_repeated_id_is_refused_naming_both_lines(twice):
    r = fastrec_subprocess(["pack", twice / "data", twice / "img", *QUIET])
    assert r.returncode == 1 and "line 4: repeats the id 1 of line 2" in r.stderr, r.stderr
    assert "--allow-duplicate-ids" in r.stderr


def test_skip_bad_lines_skips_the_later_line_of_a_repeated_id(twice):
    assert fastrec_main(["pack", twice / "data", twice / "img", "--skip-bad-lines", "--max-skipped", "50%",
                         *QUIET]) == 0
    assert [r for _, r, _ in skipped_lines(twice / "data.rec")] == ["duplicate-id"]
    assert [r.id for r in read_with_mxnet(twice / "data.rec")] == [0, 1, 2]
    assert fastrec_main(["verify", twice / "data"]) == 0


def test_allow_duplicate_ids_packs_both_and_verify_names_the_lines(twice):
    """As im2rec: both records. verify then says why a reader by id gets one image for both
    (main said "pack it again", which gives the same)."""
    assert fastrec_main(["pack", twice / "data", twice / "img", "--allow-duplicate-ids", *QUIET]) == 0
    assert [r.id for r in read_with_mxnet(twice / "data.rec")] == [0, 1, 2, 1]
    r = fastrec_subprocess(["verify", twice / "data"])
    assert r.returncode == 1
    assert "line 4 of data.lst repeats the id 1 of line 2: MXNet's readers by id return one image" in r.stdout
    assert "pack it again" in r.stdout and "label" not in r.stdout


# ------------------------------------------------------------------ item 3: paths outside ROOT
@pytest.fixture
def escaping(tmp_path) -> Path:
    names = tree(tmp_path / "img", 3)
    (tmp_path / "secret.txt").write_text("the password is swordfish\n")
    (tmp_path / "img" / "inside").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "linked.jpg").write_bytes(jpeg(9))
    write_lst(tmp_path / "data.lst", lines_for(names) + [
        "3\t0\t../secret.txt", f"4\t0\t{tmp_path / 'secret.txt'}",
        "5\t1\tinside/linked.jpg", "6\t1\tc0/../c1/img1.jpg"])
    return tmp_path


def test_paths_leaving_the_root_are_refused(escaping):
    r = fastrec_subprocess(["pack", escaping / "data", escaping / "img", "--pass-through", *QUIET])
    assert r.returncode == 1
    assert "line 4: the path '../secret.txt' leaves the image root" in r.stderr
    assert f"line 5: the path '{escaping / 'secret.txt'}' leaves the image root" in r.stderr
    assert "--allow-outside-root" in r.stderr and "inside/linked" not in r.stderr
    assert not (escaping / "data.rec").exists()


def test_paths_leaving_the_root_as_named_skips(escaping):
    """With --skip-bad-lines they are skips, never read; a link inside the tree and a `..` that
    stays inside are followed, as im2rec follows them."""
    assert fastrec_main(["pack", escaping / "data", escaping / "img", "--pass-through", "--skip-bad-lines",
                         "--max-skipped", "50%", *QUIET]) == 0
    assert [(p, r) for p, r, _ in skipped_lines(escaping / "data.rec")] == [
        ("../secret.txt", "outside-root"), (str(escaping / "secret.txt"), "outside-root")]
    images = {r.id: r.image for r in read_with_mxnet(escaping / "data.rec")}
    assert images[5] == jpeg(9) and images[6] == (escaping / "img/c1/img1.jpg").read_bytes()
    assert fastrec_main(["verify", escaping / "data"]) == 0


def test_allow_outside_root_reads_them_and_pass_through_still_checks(escaping):
    """--allow-outside-root reads them as im2rec does; the text file is still no image."""
    assert fastrec_main(["pack", escaping / "data", escaping / "img", "--pass-through", "--allow-outside-root",
                         "--max-skipped", "50%", *QUIET]) == 0
    assert [(p, r) for p, r, _ in skipped_lines(escaping / "data.rec")] == [
        ("../secret.txt", "not-an-image"), (str(escaping / "secret.txt"), "not-an-image")]
    assert fastrec_main(["pack", escaping / "data", escaping / "img", "--pass-through-unchecked",
                         "--allow-outside-root", *QUIET]) == 0      # im2rec's behaviour, asked for by name
    assert read_with_mxnet(escaping / "data.rec")[3].image == b"the password is swordfish\n"


def test_dotdot_after_a_link_is_judged_where_it_leads(tmp_path):
    """`link/../x.jpg` reads as ROOT/x.jpg, but the OS opens x.jpg beside the link's target,
    outside ROOT (found by review22: it was packed, exit 0). A `..` that stays inside still reads."""
    (tmp_path / "img" / "c0").mkdir(parents=True)
    (tmp_path / "img" / "c0" / "a.jpg").write_bytes(jpeg(1))
    (tmp_path / "img" / "x.jpg").write_bytes(jpeg(2))              # what the path appears to name
    (tmp_path / "outside" / "sub").mkdir(parents=True)
    (tmp_path / "outside" / "x.jpg").write_bytes(jpeg(3))          # what it opened
    (tmp_path / "img" / "link").symlink_to(tmp_path / "outside" / "sub", target_is_directory=True)
    write_lst(tmp_path / "data.lst", ["0\t0\tc0/a.jpg", "1\t0\tlink/../x.jpg", "2\t0\tc0/../x.jpg"])
    r = fastrec_subprocess(["pack", tmp_path / "data", tmp_path / "img", "--pass-through", *QUIET])
    assert r.returncode == 1 and "line 2: the path 'link/../x.jpg' leaves the image root" in r.stderr
    assert "line 3" not in r.stderr
    assert fastrec_main(["pack", tmp_path / "data", tmp_path / "img", "--pass-through", "--allow-outside-root",
                         *QUIET]) == 0     # im2rec's reading, asked for by name
    assert read_with_mxnet(tmp_path / "data.rec")[1].image == jpeg(3)


# ------------------------------------------------------------------ item 7: pass-through checks
def pass_through(data: bytes, check: bool = True) -> str:
    """The pass-through outcome of one file: "ok" or the skip reason."""
    _, [(status, *_)] = Worker(pass_through=True, check_whole=check).pack_bytes([0], [0.0], [data])
    return STATUS_NAMES[status]


def decoded(data: bytes) -> str:
    """The decoding path's outcome (libjpeg-turbo for JPEG): "ok", or its skip reason."""
    _, [(status, *_)] = Worker(resize=8).pack_bytes([0], [0.0], [data])
    return STATUS_NAMES[status]


def _oriented() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6      # an APP1 segment (EXIF orientation) before the frame header
    return jpeg(4, (64, 48), exif=exif.tobytes())


JPEGS = [jpeg(1), jpeg(2, (40, 30), progressive=True), jpeg(3, (33, 17), quality=30, subsampling=0), _oriented()]


@pytest.mark.parametrize("data", JPEGS + [png(1), png(7, (50, 3))])
def test_whole_images_pass_and_every_cut_is_truncated(data):
    """Every strict prefix of a JPEG (cut before its EOI) and of a PNG (before IEND) is skipped as
    truncated; the decoding path agrees that the cut file is no whole image."""
    assert pass_through(data) == "ok"
    for cut in range(2 if data[:2] == b"\xff\xd8" else 8, len(data)):
        assert pass_through(data[:cut]) == "truncated", cut
    if data[:2] == b"\xff\xd8":
        for cut in range(len(data) // 2, len(data), 7):
            assert decoded(data[:cut]) in ("truncated", "corrupt"), cut


def test_bytes_after_the_end_marker_are_accepted_as_libjpeg_accepts_them():
    """Trailing zero padding or other bytes after EOI / IEND: libjpeg (and OpenCV, and DALI's
    libjpeg-turbo path) decode the image and ignore them, so pass-through stores them."""
    import cv2
    import numpy as np
    for tail in (b"\0" * 64, b"\0", b"trailing junk \xff\xd9"):
        data = jpeg(5) + tail
        assert pass_through(data) == "ok" and decoded(data) == "ok"
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (12, 16, 3)
        assert pass_through(png(3) + tail) == "ok"


@settings(max_examples=150)
@given(which=st.sampled_from(range(len(JPEGS))), at=st.floats(0, 1), xor=st.integers(1, 255))
def test_a_jpeg_the_check_passes_is_never_truncated_for_libjpeg(which, at, xor):
    """One byte changed anywhere: whatever the check passes, the decoding path does not find
    truncated (a flipped bit inside the image data can still decode, as it does for libjpeg)."""
    data = bytearray(JPEGS[which])
    i = min(int(at * len(data)), len(data) - 1)
    data[i] ^= xor
    if pass_through(bytes(data)) == "ok":
        assert decoded(bytes(data)) != "truncated"


def test_broken_png_chunks_are_corrupt():
    good = png(4)
    idat = good.index(b"IDAT")
    flipped = good[:idat + 6] + bytes([good[idat + 6] ^ 1]) + good[idat + 7:]
    assert pass_through(flipped) == "corrupt"
    no_idat = good[:33] + good[good.index(b"IEND") - 4:]
    assert pass_through(no_idat) == "corrupt"
    assert pass_through(b"GIF89a" + bytes(20)) == "ok"             # other formats: their signature
    assert pass_through(b"hello, world\n") == "not-an-image"
    assert pass_through(b"hello, world\n", check=False) == "ok"     # --pass-through-unchecked


def test_pass_through_skips_a_truncated_jpeg(tmp_path):
    """The issue's case: main stored a truncated JPEG (DALI then stopped the training at it)."""
    names = tree(tmp_path / "img", 3)
    whole = (tmp_path / "img" / names[1]).read_bytes()
    (tmp_path / "img" / names[1]).write_bytes(whole[:len(whole) * 2 // 3])
    write_lst(tmp_path / "data.lst", lines_for(names))
    assert fastrec_main(["pack", tmp_path / "data", tmp_path / "img", "--pass-through", "--max-skipped", "50%",
                         *QUIET]) == 0
    [(path, reason, detail)] = skipped_lines(tmp_path / "data.rec")
    assert (path, reason) == (names[1], "truncated") and detail.startswith("the JPEG data ends")
    assert [r.id for r in read_with_mxnet(tmp_path / "data.rec")] == [0, 2]


# ------------------------------------------------------------------ the property over generated lists
def im2rec_read_list(script: Path):
    """im2rec.py's own read_list, taken from the script's source (its module imports mxnet and
    cv2; the function needs neither), printing nothing."""
    module = ast.parse(script.read_text())
    fn = next(n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "read_list")
    space: dict = {"print": lambda *a, **k: None}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(script), "exec"), space)
    return space["read_list"]


IDS = st.one_of(st.integers(0, 12).map(str), st.sampled_from(
    ["8.0", "-3", "+5", " 7 ", "1_0", "x", "", str(2 ** 64), str(2 ** 64 - 1), "0x1", "٣"]))
LABELS = st.sampled_from(["0", "1.000000", "1,000000", "nan", "inf", "-2.5", "abc", "", " 3 ", "1e39", "1_0.5"])
PATHS = st.sampled_from(["c0/img0.jpg", "c1/img1.jpg", "c2/img2.jpg", "c0/img3.jpg", "missing.jpg",
                         "../secret.txt", "c0/../c1/img1.jpg", " c2/img2.jpg "])
LINE = st.one_of(
    st.tuples(IDS, st.lists(LABELS, min_size=0, max_size=2), PATHS).map(
        lambda t: "\t".join([t[0], *t[1], t[2]])),
    st.sampled_from(["", "   ", "\t\t", "3\tc0/img0.jpg", "only-a-path.jpg"]))
EOL = st.sampled_from(["\n", "\r\n"])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(lines=st.lists(st.tuples(LINE, EOL), min_size=1, max_size=8), skip=st.booleans())
@example(lines=[("0\t1\tc0/img0.jpg", "\n"), ("0\t2\tc1/img1.jpg", "\r\n"), ("8.0\t1\tc2/img2.jpg", "\n")],
         skip=True)
def test_generated_lists_are_read_as_im2rec_reads_them(tmp_path_factory, im2rec_script, lines, skip):
    """Over generated .lst files (valid lines, bad ids and labels, huge and negative ids, CRLF,
    tabs, blank lines, repeats, paths out of ROOT): the items fastrec accepts are exactly those
    im2rec.py's read_list yields with an id its record header can hold; and `pack` and `verify`
    never both exit 0 unless every list line is a record or a named skip."""
    base = tmp_path_factory.mktemp("gen")
    tree(base / "img", 4)
    (base / "secret.txt").write_text("not an image")
    lst = base / "data.lst"
    lst.write_bytes("".join(text + eol for text, eol in lines).encode())
    theirs = [(i[0], i[1], tuple(i[2:])) for i in im2rec_read_list(im2rec_script)(str(lst))]
    ours = list(read_list(str(lst), LENIENT))
    key = lambda item: (item[0], item[1], tuple(repr(x) for x in item[2]))   # nan == nan by repr
    assert [key(i) for i in ours if isinstance(i, ListItem)] == [key(i) for i in theirs if 0 <= i[0] < 2 ** 64]
    listed = [text for text, _ in lines if text.strip()]
    assert len(ours) == len(listed)

    flags = ["--pass-through", "--max-skipped", "100%", *QUIET] + (["--skip-bad-lines"] if skip else [])
    packed = fastrec_main(["pack", base / "data", base / "img", *flags])
    verified = fastrec_main(["verify", base / "data"]) if packed == 0 else None
    if packed == 0 and verified == 0:
        records = read_with_mxnet(base / "data.rec")
        skips = skipped_lines(base / "data.rec") if (base / "data.skipped.tsv").exists() else []
        assert len(records) + len(skips) == len(listed)
        assert all(reason in STATUS_NAMES or reason in ("duplicate-id", "outside-root", "bad-list-line", "read-error")
                   for _, reason, _ in skips)
    if not skip and any(isinstance(i, BadLine) for i in read_list(str(lst), ListRules(skip_bad_lines=True))):
        assert packed == 1
