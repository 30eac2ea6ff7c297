"""Shared helpers for the preparation-stage tests: generated ImageNet-style archives, tree
snapshots, and running the CLI in a subprocess. (Not a conftest: tests import it by name.)"""
from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field

from fastrec.formats.lists import DEFAULT_EXTS

# A few dozen classes with uneven counts (3..40 images), names like ImageNet's wnids.
CLASS_COUNTS = {f"n{1000 + i:08d}": 3 + (i * 17) % 38 for i in range(30)}
TRUNCATED = "n09000001"   # inner tar cut off in the middle of a member's data
GARBLED = "n09000002"     # inner tar with a damaged header in the middle
EVIL = "n09000003"        # a normal class that also carries hostile members
EVIL_GOOD = 6             # its ordinary images
# Hostile members of the EVIL inner tar: each must be refused.
EVIL_MEMBERS = ["../escape.JPEG", "/abs.JPEG", "up.JPEG -> ../../outside.JPEG",
                "etc -> /etc", "fifo", "chardev", "hard.JPEG => ../x.JPEG"]
# Hostile members of the outer tar itself.
OUTER_EVIL = ["../n09999999.tar", "/n09999998.tar"]


def payload(rng: random.Random, name: str) -> bytes:
    """Small distinct bytes standing in for a JPEG (extraction never decodes)."""
    return name.encode() + b"\0" + rng.randbytes(rng.randint(50, 600))


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int = 1_600_000_000) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = len(data), mtime, 0o644
    tar.addfile(ti, io.BytesIO(data))


def _special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mtime = kind, linkname, 1_600_000_000
    tar.addfile(ti)


def class_tar(cls: str, n: int, rng: random.Random, compress: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + compress) as t:
        for i in range(n):
            name = f"{cls}_{i:05d}.JPEG"
            _add(t, name, payload(rng, f"{cls}/{name}"))
    return buf.getvalue()


def evil_tar(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for i in range(EVIL_GOOD):
            name = f"{EVIL}_{i:05d}.JPEG"
            _add(t, name, payload(rng, f"{EVIL}/{name}"))
        _add(t, "../escape.JPEG", b"escape")
        _add(t, "/abs.JPEG", b"abs")
        _special(t, "up.JPEG", tarfile.SYMTYPE, "../../outside.JPEG")
        _special(t, "etc", tarfile.SYMTYPE, "/etc")
        _special(t, "fifo", tarfile.FIFOTYPE)
        _special(t, "chardev", tarfile.CHRTYPE)
        _special(t, "hard.JPEG", tarfile.LNKTYPE, "../x.JPEG")
    return buf.getvalue()


def truncated_tar(rng: random.Random) -> bytes:
    data = class_tar(TRUNCATED, 8, rng)
    return data[: 512 * 9 + 100]   # inside the 5th member's data (each member: header + 1-2 blocks)


def garbled_tar(rng: random.Random) -> bytes:
    """Valid start, then a header whose checksum is wrong: tarfile alone would stop silently."""
    good = class_tar(GARBLED, 3, rng)
    end = good.rstrip(b"\0")
    end = end + b"\0" * (-len(end) % 512)
    return end + b"\x7f" * 512 + class_tar(GARBLED, 2, rng)


@dataclass
class Dataset:
    outer: str                              # path of the outer tar
    counts: dict[str, int] = field(default_factory=dict)  # class -> images expected after extract
    refused: int = 0                        # members extract must refuse
    corrupt: set[str] = field(default_factory=set)        # inner tars extract must report


def make_outer_tar(path: str, counts: dict[str, int] | None = None, seed: int = 0,
                   hostile: bool = True) -> Dataset:
    """An ImageNet-style outer tar of per-class tars (plus corrupt and hostile ones)."""
    rng = random.Random(seed)
    counts = dict(CLASS_COUNTS if counts is None else counts)
    ds = Dataset(outer=path, counts=dict(counts))
    with tarfile.open(path, "w") as outer:
        for cls, n in counts.items():
            _add(outer, f"{cls}.tar", class_tar(cls, n, rng))
        if hostile:
            _add(outer, f"{TRUNCATED}.tar", truncated_tar(rng))
            _add(outer, f"{GARBLED}.tar", garbled_tar(rng))
            _add(outer, f"{EVIL}.tar", evil_tar(rng))
            for name in OUTER_EVIL:
                _add(outer, name, class_tar("x", 1, rng))
            ds.counts[EVIL] = EVIL_GOOD
            ds.refused = len(EVIL_MEMBERS) + len(OUTER_EVIL)
            ds.corrupt = {f"{TRUNCATED}.tar", f"{GARBLED}.tar"}
    return ds


def tree(root: str, *, with_times: bool = False) -> dict[str, str]:
    """Relative path -> content hash (files), "link:TARGET" (links) or "dir", for a whole tree.

    with_times adds size and mtime, so a snapshot also notices touched files (dry runs)."""
    out = {}
    if not os.path.exists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if os.path.islink(p):
                v = "link:" + os.readlink(p)
            elif os.path.isdir(p):
                v = "dir"
            else:
                with open(p, "rb") as f:
                    v = hashlib.sha256(f.read()).hexdigest()
            if with_times:
                v += f" {st.st_size} {st.st_mtime_ns}"
            out[rel] = v
    return out


def without_record(snapshot: dict[str, str]) -> dict[str, str]:
    """A `tree` snapshot without the stages' record of what they moved (`.fastrec-stages.json`)."""
    return {k: v for k, v in snapshot.items() if os.path.basename(k) != ".fastrec-stages.json"}


def image_counts(root: str) -> dict[str, int]:
    """Class -> number of image names directly inside, for the visible class folders of root."""
    return {d: sum(1 for n in os.listdir(os.path.join(root, d)) if os.path.splitext(n)[1].lower() in DEFAULT_EXTS)
            for d in sorted(os.listdir(root))
            if not d.startswith(".") and os.path.isdir(os.path.join(root, d))}


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m fastrec ARGS` in a subprocess (so it can crash or be killed on its own)."""
    e = dict(os.environ)
    e.pop("FASTREC_TEST_CRASH_AFTER", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "fastrec", *args], capture_output=True, text=True,
                          env=e, timeout=timeout)


def popen_cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    e = dict(os.environ)
    e.pop("FASTREC_TEST_CRASH_AFTER", None)
    e.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "fastrec", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)
