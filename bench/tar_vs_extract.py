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


def outputs(work: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (work / "lists").iterdir() if p.suffix in (".lst", ".rec", ".idx")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=HERE / ".cache" / "trees" / "imagenet-300-s0")
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    if not a.tree.is_dir():
        subprocess.run([sys.executable, str(HERE / "images.py"), str(a.tree), "--kind", "imagenet",
                        "--count", "300", "--classes", "4", "--seed", "0"], check=True)
    with tempfile.TemporaryDirectory(dir=HERE / ".cache") as tmp:
        tmp = Path(tmp)
        archive = tmp / "imagenet.tar"
        n, size = build_archive(a.tree, archive, a.copies)
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
