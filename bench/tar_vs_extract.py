"""Packing straight from the archive vs extracting first, on the same ImageNet-style archive.

    python bench/tar_vs_extract.py [--tree DIR] [--copies 4] [--threads 2] [--repeat 3]

Builds an outer tar of per-class tars from an image tree (by default the cached bench
ImageNet-like tree; `--copies` repeats it under other class names to make the archive larger),
then times, interleaved, each path to the same train .rec:

  extract + pack : fastrec extract (fsync on, as a real run) -> fastrec list --recursive -> fastrec pack
  from tar       : fastrec list --from-tar -> fastrec pack --from-tar

Both give byte-identical .lst/.rec/.idx (checked). The archive is in the page cache for both
(a cold-cache run on a disk would favour the tar path further: one sequential read instead of
writing and re-reading every image as its own file). Prints a markdown table with the ratio.

`--cold` (root only: it drops the page cache with /proc/sys/vm/drop_caches before each run)
instead measures reads from the disk: the archive read front to back (the disk's streaming rate),
`fastrec pack --from-tar --pass-through` (no decoding: the pack is I/O only) over the shuffled list,
and the same from the extracted files, as MB/s of image bytes, interleaved rounds.
"""
from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FASTREC = [sys.executable, "-m", "fastrec"]


def build_archive(tree: Path, out: Path, copies: int) -> tuple[int, int]:
    """Outer tar of class tars; returns (images, bytes)."""
    images = size = 0
    with tarfile.open(out, "w") as outer:
        for copy in range(copies):
            for cls_dir in sorted(p for p in tree.iterdir() if p.is_dir()):
                inner = io.BytesIO()
                cls = f"{cls_dir.name}{copy:02d}"
                with tarfile.open(fileobj=inner, mode="w") as t:
                    for f in sorted(cls_dir.iterdir()):
                        t.add(f, arcname=f"{cls}_{f.name}")
                        images += 1
                        size += f.stat().st_size
                info = tarfile.TarInfo(f"{cls}.tar")
                info.size = len(inner.getvalue())
                outer.addfile(info, io.BytesIO(inner.getvalue()))
    return images, size


def run(*args: str) -> None:
    subprocess.run([*FASTREC, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def extract_then_pack(archive: Path, work: Path, threads: int) -> float:
    start = time.perf_counter()
    run("extract", str(archive), str(work / "train"), "--jobs", str(threads))
    run("list", str(work / "lists" / "train"), str(work / "train"), "--recursive")
    run("pack", str(work / "lists" / "train"), str(work / "train"), "--resize", "480", "--quality", "90",
        "--num-thread", str(threads))
    return time.perf_counter() - start


def from_tar(archive: Path, work: Path, threads: int) -> float:
    start = time.perf_counter()
    run("list", str(work / "lists" / "train"), "--from-tar", str(archive), "--recursive")
    run("pack", str(work / "lists" / "train"), "--from-tar", str(archive), "--resize", "480", "--quality", "90",
        "--num-thread", str(threads))
    return time.perf_counter() - start


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("1\n")


def cold_rounds(archive: Path, tmp: Path, n: int, size: int, a) -> None:
    """Disk reads: the archive's streaming rate vs packing (pass-through) from it and from files.
    The outputs go to /dev/shm when there is one, so the packs' writes do not compete with the
    reads being measured; the warm rows (page cache kept) give each pack's rate without the disk."""
    work = tmp / "cold"
    shm = Path("/dev/shm")
    lists = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else work / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    try:
        run("extract", str(archive), str(work / "train"), "--jobs", str(a.threads))
        run("list", str(lists / "files"), str(work / "train"), "--recursive")
        run("list", str(lists / "tar"), "--from-tar", str(archive), "--recursive")
        pack = ["--pass-through", "--num-thread", str(a.threads)]
        tar = lambda: run("pack", str(lists / "tar"), "--from-tar", str(archive), *pack)   # noqa: E731
        files = lambda: run("pack", str(lists / "files"), str(work / "train"), *pack)   # noqa: E731
        runs = {   # name -> (what, drop the page cache first)
            "read the archive front to back (the disk's rate)":
                (lambda: subprocess.run(["dd", f"if={archive}", "of=/dev/null", "bs=4M"], check=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), True),
            "fastrec pack --from-tar --pass-through": (tar, True),
            "fastrec pack --pass-through, extracted files": (files, True),
            "fastrec pack --from-tar --pass-through, page cache warm": (tar, False),
            "fastrec pack --pass-through, extracted files, page cache warm": (files, False),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(a.repeat):
            for name, (fn, cold) in runs.items():
                for f in lists.glob("*.rec"):
                    f.unlink()
                if cold:
                    drop_caches()
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    finally:
        if lists.parent == shm:
            shutil.rmtree(lists, ignore_errors=True)
    print(f"{n} images, {size / 1e6:.0f} MB of images, {archive.stat().st_size / 1e6:.0f} MB archive, "
          f"page cache dropped before each cold run, outputs in {lists.parent}, {a.threads} threads, "
          f"median of {a.repeat}; pack times include start-up\n")
    print("| read | seconds (median) | MB/s of images | ÷ the disk's rate |")
    print("|---|---:|---:|---:|")
    disk = statistics.median(next(iter(times.values())))
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"| {name} | {t:.2f} | {size / 1e6 / t:.0f} | {disk / t:.2f} |")


def outputs(work: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (work / "lists").iterdir() if p.suffix in (".lst", ".rec", ".idx")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=HERE / ".cache" / "trees" / "imagenet-300-s0")
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cold", action="store_true", help="read from the disk (root: drops the page cache)")
    a = p.parse_args()
    if not a.tree.is_dir():
        subprocess.run([sys.executable, str(HERE / "images.py"), str(a.tree), "--kind", "imagenet",
                        "--count", "300", "--classes", "4", "--seed", "0"], check=True)
    with tempfile.TemporaryDirectory(dir=HERE / ".cache") as tmp:
        tmp = Path(tmp)
        archive = tmp / "imagenet.tar"
        n, size = build_archive(a.tree, archive, a.copies)
        if a.cold:
            cold_rounds(archive, tmp, n, size, a)
            return 0
        times = {"extract + pack": [], "from tar": []}
        results = {}
        for _ in range(a.repeat):
            for name, fn in (("extract + pack", extract_then_pack), ("from tar", from_tar)):
                work = tmp / name.replace(" ", "").replace("+", "_")
                shutil.rmtree(work, ignore_errors=True)
                (work / "lists").mkdir(parents=True)
                times[name].append(fn(archive, work, a.threads))
                results[name] = outputs(work)
        assert results["extract + pack"] == results["from tar"], "the two paths must give the same bytes"
        base = statistics.median(times["extract + pack"])
        print(f"{n} images, {size / 1e6:.0f} MB archive, {a.threads} threads, median of {a.repeat}; "
              f"outputs byte-identical\n")
        print("| path | seconds (median) | images/s | time vs extract + pack |")
        print("|---|---:|---:|---:|")
        for name, ts in times.items():
            t = statistics.median(ts)
            print(f"| {name} | {t:.2f} | {n / t:.0f} | {t / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
