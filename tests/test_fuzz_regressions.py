"""The decoder path never crashes: replays saved fuzz findings and runs a seeded mutation
campaign (truncations, bit flips, splices of real JPEGs) through the native core."""
from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest

from fastrec._native.core import OK, STATUS_NAMES, Worker
from fastrec.formats.recordio import _read_record, unpack
from fastrec.demo.samples import make_odd_files, make_tree

REGRESSIONS = sorted(p for p in (Path(__file__).parent / "fuzz_regressions").iterdir() if p.name != "README.md")
SIZES = (0, 1, 7, 32, 64, 100, 255, 480)


def harness_worker(opts: bytes) -> Worker:
    """The options fuzz/fuzz_pack.c derives from an input's first 4 bytes."""
    a, b, c, d = opts
    return Worker(resize=SIZES[a & 7], center_crop=bool(a >> 3 & 1), no_upscale=bool(a >> 4 & 1),
                  pass_through=(a >> 5 & 7) == 7, color=b % 3 - 1,
                  filter=("triangle", "bicubic", "lanczos", "auto")[b >> 2 & 3], raw=bool(b >> 4 & 1),
                  fast_dct=bool(b >> 5 & 1), quality=1 + c % 100, subsampling=(420, 422, 444)[d % 3],
                  max_pixels=1 << 22, max_bytes=1 << 24, max_scans=1 + d % 64)


def check(worker: Worker, data: bytes, raw: bool = False, path=None) -> str:
    """Pack `data` (from memory, or from the file `path` holding it): a record or a clean skip."""
    if path is None:
        blob, [(status, end, message, *_)] = worker.pack_bytes([42], [7.0], [data])
    else:
        blob, [(status, end, message, *_)] = worker.pack_files([42], [7.0], [path])
    assert 0 <= status < len(STATUS_NAMES)
    if status != OK:
        assert blob == b"", "a skipped image must add no bytes"
        return STATUS_NAMES[status]
    assert end == len(blob)
    if not raw:
        header, image = unpack(_read_record(io.BytesIO(blob)))
        assert header.id == 42
    return "ok"


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_saved_fuzz_inputs(path, tmp_path):
    data = path.read_bytes()
    if len(data) < 4:
        return
    worker = harness_worker(data[:4])
    if data[3] >= 240 and len(data) >= 8:        # the harness's raw-pixel (fallback) entry
        ch, width = (1, 3, 4)[data[3] % 3], 1 + data[4] % 64
        height = (len(data) - 5) // (width * ch)
        if height:
            px = np.frombuffer(data, np.uint8, count=width * height * ch, offset=5)
            px = px.reshape((height, width) if ch == 1 else (height, width, ch))
            record, (status, *_) = worker.pack_pixels(np.ascontiguousarray(px), 42, 7.0)
            assert 0 <= status < len(STATUS_NAMES) and (status == OK) == bool(record)
    elif data[1] >> 6 & 1:                        # the harness's file entry (fr_pack_file)
        f = tmp_path / "input.JPEG"
        f.write_bytes(data[4:])
        check(worker, data[4:], raw=bool(data[1] >> 4 & 1), path=f)
    else:
        check(worker, data[4:], raw=bool(data[1] >> 4 & 1))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[bytes]:
    base = tmp_path_factory.mktemp("fuzzseeds")
    odd = make_odd_files(base / "odd")
    files = [odd[k] for k in ("gray", "cmyk", "progressive", "restart", "exif_orient_6", "tiny_5x7")]
    files += make_tree(base / "tree", classes=1, per_class=(2, 2), sizes="imagenet", seed=9)
    return [p.read_bytes() for p in files]


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:                                   # truncate
        return bytes(buf[:rng.randrange(len(buf) + 1)])
    if kind == 1:                                   # flip bits, mostly after the headers
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        return bytes(buf)
    if kind == 2:                                   # overwrite header bytes (sizes, tables, markers)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(min(len(buf), 700))
            buf[i] = rng.randrange(256)
        return bytes(buf)
    other = rng.choice(seeds)                       # splice two files
    return bytes(buf[:rng.randrange(len(buf))]) + other[rng.randrange(len(other)):]


def test_mutated_jpegs_never_crash(seeds):
    rng = random.Random(8)
    workers = [Worker(resize=r, color=c, quality=70, max_pixels=1 << 22, max_scans=20)
               for r, c in ((0, 1), (64, 1), (480, 0), (32, -1))]
    outcomes = {}
    for i in range(600):
        data = mutate(rng, rng.choice(seeds), seeds)
        result = check(workers[i % len(workers)], data)
        outcomes[result] = outcomes.get(result, 0) + 1
    # The campaign must exercise both sides: clean packs and rejections.
    assert outcomes.get("ok", 0) > 50 and sum(v for k, v in outcomes.items() if k != "ok") > 50, outcomes
