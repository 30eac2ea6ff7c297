"""Edges around the images: special files never hang a pack, the Pillow fallback never starts an
external program nor ends the run, and fastrec leaves Pillow's global settings alone."""
from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from conftest import PYTHON, REPO, subprocess_env
from fastrec._native.core import STATUS_NAMES, Worker
from fastrec.demo.samples import make_tree
from fastrec.engine import fallback
from fastrec.engine.options import PackOptions
from helpers_pack import skipped_lines, write_lst


def pack_cli(lst, root, env=None, timeout=60) -> subprocess.CompletedProcess:
    """`fastrec pack` in a child with a timeout: a hang fails the test instead of stalling it.
    The lists hold odd files on purpose (also /dev/null, outside ROOT), so any share of skips is accepted."""
    return subprocess.run([PYTHON, "-m", "fastrec", "pack", str(lst.with_suffix("")), str(root),
                           "--num-thread", "2", "--progress", "off", "--max-skipped", "100%",
                           "--allow-outside-root"], capture_output=True, text=True,
                          env=env or subprocess_env(), cwd=REPO, timeout=timeout)


@contextlib.contextmanager
def no_hang(seconds: int = 20):
    """Fail (instead of stalling the suite) if the block blocks, e.g. on opening a FIFO."""
    def timeout(*_):
        raise TimeoutError(f"blocked for {seconds} s")
    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_status_names_include_the_new_reasons():
    assert "not-a-regular-file" in STATUS_NAMES


@pytest.fixture
def special_tree(tmp_path):
    root = tmp_path / "r"
    good = [p.relative_to(root) for p in make_tree(root, classes=1, per_class=(3, 3), seed=5)]
    cls = good[0].parent
    os.mkfifo(root / cls / "fifo.JPEG")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / cls / "sock.JPEG"))
    (root / cls / "dir.JPEG").mkdir()
    names = [str(good[0]), f"{cls}/fifo.JPEG", str(good[1]), f"{cls}/sock.JPEG", str(good[2]),
             f"{cls}/dir.JPEG", "/dev/null"]
    yield root, names
    sock.close()


def test_fifo_socket_folder_device_in_a_list_are_skipped(special_tree, tmp_path):
    root, names = special_tree
    lst = write_lst(tmp_path / "out" / "data.lst", [f"{i}\t{i % 2}.000000\t{n}" for i, n in enumerate(names)])
    r = pack_cli(lst, root)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    skipped = {path: reason for path, reason, _ in skipped_lines(lst.with_suffix(".rec"))}
    assert skipped == {n: "not-a-regular-file" for n in names[1::2] + names[-1:]}
    keys = [line.split("\t")[0] for line in (tmp_path / "out" / "data.idx").read_text().splitlines()]
    assert keys == ["0", "2", "4"]


def test_worker_refuses_special_files_without_opening_them(special_tree):
    root, names = special_tree
    paths = [os.fsencode(root / n) for n in names]
    with no_hang():
        blob, results = Worker(resize=32).pack_files(list(range(len(paths))), [0.0] * len(paths), paths)
    assert [STATUS_NAMES[r[0]] for r in results] == ["ok", "not-a-regular-file"] * 3 + ["not-a-regular-file"]
    assert [r[2] for r in results[1::2] + results[-1:]] == ["a FIFO", "a socket", "a folder", "a device"]


def test_fallback_refuses_special_files(special_tree):
    root, names = special_tree
    with no_hang():
        for n in names[1::2] + names[-1:]:
            out = fallback.pack(Worker(), os.fsencode(root / n), 0, 0.0, PackOptions())
            assert (out.record, out.reason) == (None, "not-a-regular-file"), n


# ---------------------------------------------------------------- the fallback's formats
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n"
PS = b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 16 16\n/Times findfont 8 scalefont setfont\nshowpage\n"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def test_eps_ps_pdf_never_start_ghostscript(tmp_path):
    bin_dir, marker = tmp_path / "bin", tmp_path / "gs-was-run"
    bin_dir.mkdir()
    gs = bin_dir / "gs"
    gs.write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\nexit 1\n")
    gs.chmod(gs.stat().st_mode | stat.S_IEXEC)
    root = tmp_path / "r"
    good = [p.relative_to(root) for p in make_tree(root, classes=1, per_class=(2, 2), seed=6)]
    cls = good[0].parent
    for name, data in (("eps", EPS), ("ps", PS), ("pdf", PDF)):
        (root / cls / f"{name}.JPEG").write_bytes(data)
    names = [str(good[0]), f"{cls}/eps.JPEG", f"{cls}/ps.JPEG", f"{cls}/pdf.JPEG", str(good[1])]
    lst = write_lst(tmp_path / "out" / "data.lst", [f"{i}\t0.000000\t{n}" for i, n in enumerate(names)])
    env = dict(subprocess_env(), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    r = pack_cli(lst, root, env=env)
    assert not marker.exists(), "Ghostscript was started on an untrusted file"
    assert r.returncode == 0, r.stderr
    skipped = {path: (reason, detail) for path, reason, detail in skipped_lines(lst.with_suffix(".rec"))}
    assert {p: reason for p, (reason, _) in skipped.items()} == {n: "unsupported-format" for n in names[1:4]}
    assert "EPS" in skipped[names[1]][1] and "PDF" in skipped[names[3]][1]
    assert (tmp_path / "out" / "data.idx").read_text().count("\n") == 2


def test_any_decoding_failure_is_the_images_skip(monkeypatch):
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")

    def explode(*a, **k):
        raise RuntimeError("a decoder bug")
    monkeypatch.setattr(fallback.Image, "open", explode)
    assert fallback.decode(io.BytesIO(png.getvalue()), 1, 1 << 20) == ("corrupt", "RuntimeError: a decoder bug")


def test_fallback_pixel_limit_is_local(tmp_path):
    png = io.BytesIO()
    Image.new("RGB", (40, 30)).save(png, "PNG")
    assert fallback.decode(io.BytesIO(png.getvalue()), 1, 40 * 30 - 1)[0] == "too-many-pixels"
    assert isinstance(fallback.decode(io.BytesIO(png.getvalue()), 1, 40 * 30), np.ndarray)


def test_pillow_global_settings_untouched(tmp_path):
    root = tmp_path / "r"
    (root / "c").mkdir(parents=True)
    Image.new("RGB", (8, 6), (10, 200, 30)).save(root / "c" / "a.png")
    write_lst(tmp_path / "data.lst", ["0\t0.000000\tc/a.png"])
    script = textwrap.dedent(f"""
        from PIL import Image
        before = Image.MAX_IMAGE_PIXELS
        import fastrec, fastrec.engine, fastrec.engine.fallback
        after_import = Image.MAX_IMAGE_PIXELS
        from fastrec.cli import main
        assert main(["pack", {str(tmp_path / "data")!r}, {str(root)!r}, "--progress", "off"]) == 0
        print(before, after_import, Image.MAX_IMAGE_PIXELS)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                       timeout=120)
    assert r.returncode == 0, r.stderr
    before, after_import, after_pack = r.stdout.split()
    assert before == after_import == after_pack != "None"
    assert (tmp_path / "data.idx").read_text().count("\n") == 1


# ---------------------------------------------------------------- JPEG's largest side
def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims width x height."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 8), (90, 20, 200)).save(buf, "JPEG", quality=80)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("side", [65501, 65535])
def test_sides_above_libjpegs_limit(side):
    def reason(worker, data):
        _, [(status, _, message, *_)] = worker.pack_bytes([0], [0.0], [data])
        return STATUS_NAMES[status], message
    status, message = reason(Worker(resize=0), jpeg_claiming(side, 8))
    assert status == "output-too-large" and "65500" in message
    assert reason(Worker(resize=0), jpeg_claiming(8, side))[0] == "output-too-large"
    # a smaller output is possible, but libjpeg cannot read the source: not "corrupt" either
    assert reason(Worker(resize=32), jpeg_claiming(side, 400))[0] == "unsupported"
    assert reason(Worker(resize=0), jpeg_claiming(65500, 8))[0] != "output-too-large"
    # pixels from the fallback obey the same limit
    assert STATUS_NAMES[Worker(resize=0).pack_pixels(np.zeros((1, side), np.uint8), 0, 0.0)[1][0]] == "output-too-large"
