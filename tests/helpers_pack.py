"""Shared helpers for the pack tests (test_pack*.py, test_im2rec_compat.py): running the real
im2rec.py and fastrec, reading .rec/.idx back with the real MXNet, and comparing pixels.

Not a conftest: tests import it by name. im2rec runs in batches: one child interpreter runs
the unmodified script as `__main__` (runpy) once per argument vector, so MXNet is imported
once per batch instead of once per run (its pack mode forks its workers from that child).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from conftest import PYTHON, REPO, run_im2rec, subprocess_env
from fastrec import cli
from fastrec.formats.recordio import RecordReader, read_index

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"


# ------------------------------------------------------------------ running the tools
def run_im2rec_batch(runs: list[tuple[Path, list[str]]]) -> list[dict]:
    """Run `im2rec.py ARGV` for each (cwd, argv) in one child; returns [{status, stdout}]."""
    return [{"status": status, "stdout": out.decode("utf-8", "replace")} for status, out in run_im2rec(runs)]


def fastrec_main(argv: list[str | os.PathLike]) -> int:
    """The real CLI entry point, in this process (no interpreter start-up per run)."""
    return cli.main([str(a) for a in argv])


def fastrec_subprocess(argv: list[str | os.PathLike], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m fastrec ARGV` in a child, for exit statuses and stderr as a user sees them."""
    return subprocess.run([PYTHON, "-m", "fastrec", *map(str, argv)], capture_output=True, text=True,
                          env=subprocess_env(), cwd=cwd or REPO, timeout=300)


def stage_list(lst: Path, dest_dir: Path, name: str | None = None) -> Path:
    """Copy a .lst into a fresh folder (one folder per tool and variant); returns the copy."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (name or lst.name)
    shutil.copyfile(lst, dest)
    return dest


def write_lst(path: Path, lines: list[str]) -> Path:
    """Write .lst text exactly as given (lines joined by '\\n', final newline added)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


# ------------------------------------------------------------------ reading outputs back
@dataclass
class Record:
    key: int          # from the .idx
    offset: int       # from the .idx
    flag: int
    label: object     # float, or float32 array when flag > 0
    id: int
    id2: int
    image: bytes      # the encoded image (or raw file bytes with --pass-through)


def read_with_mxnet(rec: Path) -> list[Record]:
    """Every record of REC (with its .idx), read by the real MXNet, in .idx order.

    Also checks the .idx against the .rec: mxnet's sequential reader finds exactly one record
    per .idx line, in order; mxnet's read_idx(key) reads that same record; and the offsets are
    where the records start, back to back, filling the file.
    """
    import mxnet as mx
    idx = rec.with_suffix(".idx")
    entries = read_index(idx)
    seq = mx.recordio.MXRecordIO(str(rec), "r")
    payloads = []
    while (s := seq.read()) is not None:
        payloads.append(s)
    seq.close()
    assert len(payloads) == len(entries), f"{rec}: {len(payloads)} records, {len(entries)} .idx lines"
    reader = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
    try:
        assert list(reader.keys) == [k for k, _ in entries]
        out, last = [], {}
        for (key, off), s in zip(entries, payloads):
            header, img = mx.recordio.unpack(s)
            out.append(Record(key, off, header.flag, header.label, header.id, header.id2, img))
            last[key] = s
        for key, s in last.items():    # mxnet's index keeps the last line of a repeated key
            assert reader.read_idx(key) == s, f"{idx}: the offset of key {key} is not its record"
    finally:
        reader.close()
    with RecordReader(rec) as rr:       # offsets are where each record starts, back to back
        starts = []
        while True:
            starts.append(rr.tell())
            if rr.read() is None:
                break
        assert starts[:-1] == [off for _, off in entries]
        assert starts[-1] == rec.stat().st_size
    return out


def decode(img: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """cv2.imdecode of record image bytes (what mx.recordio.unpack_img does)."""
    arr = cv2.imdecode(np.frombuffer(img, np.uint8), flags)
    assert arr is not None, f"record image does not decode ({img[:8]!r}...)"
    return arr


def skipped_lines(rec: Path) -> list[tuple[str, str, str]]:
    """(path, reason, detail) rows of the .skipped.tsv beside REC."""
    text = rec.with_suffix(".skipped.tsv").read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines():
        path, reason, detail = line.split("\t")
        rows.append((path, reason, detail))
    return rows


def output_files(folder: Path, suffixes=(".rec", ".idx")) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in suffixes}


# ------------------------------------------------------------------ raw (pre-encode) records
def parse_raw(blob: bytes, results: list[tuple]) -> list[tuple[tuple, np.ndarray | None]]:
    """Split a `Worker(raw=True)` blob into (result, pixels HxWxC RGB / HxW gray) per item."""
    out, start = [], 0
    for r in results:
        status, end, _, _, _, ow, oh = r[:7]
        if status != 0:
            out.append((r, None))
            continue
        rec = blob[start:end]
        start = end
        flag = int.from_bytes(rec[:4], "little")
        px = rec[24 + 4 * flag:]
        ch = len(px) // (ow * oh)
        assert ch in (1, 3) and len(px) == ow * oh * ch, (len(px), ow, oh)
        out.append((r, np.frombuffer(px, np.uint8).reshape((oh, ow, 3) if ch == 3 else (oh, ow))))
    return out


# ------------------------------------------------------------------ pixels
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def imread_rgb(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """cv2.imread (what im2rec reads), colour converted to RGB (what fastrec's raw rows hold)."""
    img = cv2.imread(str(path), flags)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def reference_resize(full: np.ndarray, size: tuple[int, int], method: str = "lanczos") -> np.ndarray:
    """A high-quality resize of a full-resolution decode to (width, height)."""
    if method == "area":
        return cv2.resize(full, size, interpolation=cv2.INTER_AREA)
    mode = "RGB" if full.ndim == 3 else "L"
    return np.asarray(Image.fromarray(full, mode).resize(size, Image.LANCZOS))


def im2rec_geometry(h: int, w: int, resize: int, center_crop: bool = False) -> tuple[int, int]:
    """(rows, cols) im2rec.py produces for an image read as h rows x w cols (SPEC §4.4)."""
    if center_crop:
        h = w = min(h, w)
    if resize:
        if h > w:
            return h * resize // w, resize
        return resize, w * resize // h
    return h, w
