"""Bounded resources: bombs, scan floods and oversized files are refused before they cost
memory or minutes, and memory stays flat however many images go through."""
from __future__ import annotations

import io
import resource
import struct
import subprocess
import sys
import time

import pytest
from PIL import Image

from fastrec._native.core import OK, STATUS_NAMES, Worker
from fastrec.demo.samples import make_image, make_odd_files

import numpy as np


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    return make_odd_files(tmp_path_factory.mktemp("limits"))


def status_of(worker: Worker, data: bytes) -> tuple[str, str]:
    _, [(status, _, message, *_)] = worker.pack_bytes([0], [0.0], [data])
    return STATUS_NAMES[status], message


def test_bomb_is_refused_before_any_allocation(odd):
    """60000x60000 claimed by a 1 KB file: refused from the header, even in a process that
    could not allocate a single full-size row buffer of that image (RLIMIT_AS = 1 GiB)."""
    code = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from fastrec._native.core import Worker, STATUS_NAMES
_, [(s, _, m, *_)] = Worker(resize=480).pack_bytes([0], [0.0], [open({str(odd['bomb'])!r}, 'rb').read()])
print(STATUS_NAMES[s], m)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("too-many-pixels"), out.stdout
    assert "60000x60000" in out.stdout


def test_pixel_limit_is_configurable():
    data = io.BytesIO()
    Image.new("RGB", (300, 200), "gray").save(data, "JPEG")
    assert status_of(Worker(max_pixels=300 * 200), data.getvalue())[0] == "ok"
    assert status_of(Worker(max_pixels=300 * 200 - 1), data.getvalue())[0] == "too-many-pixels"


def test_byte_limit(tmp_path):
    path = tmp_path / "big.jpg"
    make_image(np.random.default_rng(0), 400, 300).save(path, "JPEG", quality=95)
    size = path.stat().st_size
    blob, [(status, *_)] = Worker(max_bytes=size - 1).pack_files([0], [0.0], [bytes(path)])
    assert STATUS_NAMES[status] == "file-too-large" and blob == b""
    _, [(status, *_)] = Worker(max_bytes=size).pack_files([0], [0.0], [bytes(path)])
    assert status == OK


def _split_scans(jpeg: bytes) -> tuple[bytes, list[bytes]]:
    """(everything before the first SOS, [each SOS segment with its entropy data]); EOI dropped."""
    pos = jpeg.index(b"\xff\xda")
    head, body = jpeg[:pos], jpeg[pos:-2]
    scans, start = [], 0
    i = 2
    while True:
        j = body.find(b"\xff\xda", i)
        if j < 0:
            scans.append(body[start:])
            return head, scans
        scans.append(body[start:j])
        start, i = j, j + 2


def test_scan_flood_is_cut_short(odd):
    """A progressive JPEG whose last scan is repeated 5000 times (the 'thousands of scans'
    attack) is rejected at the scan limit, quickly; a real progressive file passes."""
    jpeg = odd["progressive"].read_bytes()
    head, scans = _split_scans(jpeg)
    assert len(scans) >= 5
    flood = head + b"".join(scans) + scans[-1] * 5000 + b"\xff\xd9"
    worker = Worker(resize=64)
    assert status_of(worker, jpeg)[0] == "ok"
    start = time.perf_counter()
    reason, message = status_of(worker, flood)
    elapsed = time.perf_counter() - start
    assert reason in ("too-many-scans", "corrupt"), (reason, message)
    assert elapsed < 2.0, f"rejecting the flood took {elapsed:.2f} s"
    assert status_of(Worker(max_scans=len(scans) - 1), jpeg)[0] == "too-many-scans"
    assert status_of(Worker(max_scans=len(scans)), jpeg)[0] == "ok"


def test_huge_marker_data_is_bounded():
    """Thousands of 64 KiB APP1 segments: libjpeg keeps at most what the file holds, and the
    file is bounded by --max-bytes, so memory is bounded by the byte limit."""
    data = io.BytesIO()
    Image.new("RGB", (64, 48), "gray").save(data, "JPEG")
    jpeg = data.getvalue()
    app1 = b"\xff\xe1" + struct.pack(">H", 0xFFFF) + b"Exif\0\0" + b"\0" * (0xFFFF - 8)
    big = jpeg[:2] + app1 * 300 + jpeg[2:]            # ~19 MB of markers
    assert status_of(Worker(max_bytes=1 << 20), big)[0] == "ok"  # pack_bytes: data already in memory
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(5):
        assert status_of(Worker(), big)[0] == "ok"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, f"peak RSS grew by {grown_mb:.0f} MB for a 19 MB file"


def test_memory_is_flat_over_many_images(tmp_path):
    """Peak RSS after 2000 more images is what it was after the first 200 (buffers are reused)."""
    rng = np.random.default_rng(1)
    files = []
    for i in range(8):
        p = tmp_path / f"{i}.jpg"
        make_image(rng, 500 - 20 * i, 375).save(p, "JPEG", quality=90)
        files.append(bytes(p))
    code = f"""
import resource
from fastrec._native.core import Worker
w = Worker(resize=480, quality=90)
files = {files!r}
def run(n):
    for _ in range(n // len(files)):
        w.pack_files(list(range(len(files))), [0.0] * len(files), files)
run(200)
a = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run(2000)
b = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(a, b)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    a, b = map(int, out.stdout.split())
    assert b - a < 8 * 1024, f"peak RSS grew from {a} to {b} KiB"
