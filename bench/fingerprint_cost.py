"""What the fingerprints cost a pack: the C digest (XXH3-64, `fastrec._native.core.fingerprint`)
over the same sources and records a pack reads and writes, timed against that pack.

    python bench/fingerprint_cost.py [--count 300] [--resize 480] [--threads 1] [--repeat 5]

Builds (once, cached in bench/.cache/) an ImageNet-like tree, lists and packs it in-process,
then times, single-threaded, the digests of every source file's bytes and every framed record
of the .rec (the work the pack core adds per item). Best of `--repeat` for both. The ratio is
digest time / pack wall time, and digest time / pack CPU time: the first is an upper bound of
what fingerprints add to a pack's wall time (the core digests in its worker threads, in
parallel), the second what they add to its CPU. Also a pass-through pack (no decoding: the
cheapest pack, where the digests weigh most). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from fastrec._native.core import fingerprint  # noqa: E402
from fastrec.demo.samples import make_tree  # noqa: E402
from fastrec.engine import PackOptions, pack_prefix  # noqa: E402
from fastrec.formats.lists import ListOptions, make_lists  # noqa: E402
from fastrec.formats.recordio import read_index  # noqa: E402


def tree_of(count: int) -> Path:
    root = HERE / ".cache" / f"fingerprint-tree-{count}"
    if not root.is_dir():
        per = max(1, count // 4)
        make_tree(root, classes=4, per_class=(per, per), sizes="imagenet", seed=21)
    return root


def time_pack(root: Path, work: Path, opts: PackOptions, repeat: int) -> tuple[float, float]:
    """(best wall, its CPU) of packing the tree's list `repeat` times."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        for p in work.glob("data.*"):
            if p.suffix != ".lst":
                p.unlink()
        t0, c0 = time.perf_counter(), time.process_time()
        pack_prefix(str(work / "data"), str(root), opts)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        best = min(best, (wall, cpu))
    return best


def time_digests(root: Path, work: Path, repeat: int) -> tuple[float, int, int]:
    """(best seconds, bytes, items) of digesting every source and every record once."""
    paths = [line.rstrip("\n").split("\t")[-1] for line in (work / "data.lst").read_text().splitlines()]
    sources = [(root / p).read_bytes() for p in paths]
    rec = (work / "data.rec").read_bytes()
    offsets = [off for _, off in read_index(work / "data.idx")] + [len(rec)]
    records = [memoryview(rec)[a:b] for a, b in zip(offsets, offsets[1:])]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for data in sources:
            fingerprint(data)
        for data in records:
            fingerprint(data)
        best = min(best, time.perf_counter() - t0)
    return best, sum(map(len, sources)) + len(rec), len(sources) + len(records)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--resize", type=int, default=480)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    root = tree_of(a.count)
    rows = []
    for name, opts in (("resize %d q90" % a.resize, PackOptions(resize=a.resize, quality=90, num_thread=a.threads,
                                                                 progress="off")),
                       ("pass-through", PackOptions(pass_through=True, num_thread=a.threads, progress="off"))):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            make_lists(str(work / "data"), str(root), ListOptions(recursive=True))
            wall, cpu = time_pack(root, work, opts, a.repeat)
            digest, nbytes, items = time_digests(root, work, a.repeat)
        rows.append((name, items, nbytes, wall, cpu, digest))
    print(f"fingerprints' cost: {a.count} ImageNet-like JPEGs, --num-thread {a.threads}, best of {a.repeat}\n")
    print("| pack | digests | MB digested | pack wall s | pack CPU s | digest s | GB/s | digest/wall | digest/CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, items, nbytes, wall, cpu, digest in rows:
        print(f"| {name} | {items} | {nbytes / 1e6:.1f} | {wall:.3f} | {cpu:.3f} | {digest * 1e3:.2f} ms | "
              f"{nbytes / digest / 1e9:.1f} | {digest / wall:.3%} | {digest / cpu:.3%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
