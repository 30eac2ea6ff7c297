"""Slow storage: `fastrec pack` vs im2rec.py when every image open costs a round trip.

A cold disk, NFS/Lustre or an object-store gateway charges each small file a lookup before its
bytes come; a packer that reads in its decode threads then waits instead of decoding. This
benchmark injects that latency with a preload shim (bench/slowopen.c, built here with gcc): every
open of a path under the image tree sleeps N ms first, in fastrec's reads (os.open) and in
im2rec.py's (OpenCV's fopen) alike, on the page-cache-warm files, so only the latency differs.

* latency 0, 1, 5, 20 ms x `--num-thread` 2 and 16 x {fastrec, im2rec.py}: images/s (start-up
  subtracted: (N - 1) / (t - t_one), t_one a run over a one-image list) and peak RSS, in interleaved rounds; ratios to fastrec's own
  0 ms rate at the same thread count, per round, then the median;
* memory vs the dataset: peak RSS of `--pass-through` over one tiny file listed 200 000 and
  1 000 000 times, and of `--from-tar` over archives of 50 000 and 250 000 members.

    .venv/bin/python bench/slow_storage.py                 # 600 ImageNet-sized images, 2 rounds
    .venv/bin/python bench/slow_storage.py --latency 0,5 --threads 2 --no-memory

Prints markdown tables and writes bench/results/slow_storage-<time>.{json,md,png}.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pack_vs_im2rec as pvi  # noqa: E402  (the process timing, trees and im2rec location)

BENCH = Path(__file__).resolve().parent


def build_shim(work: Path) -> Path:
    out = work / "slowopen.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", str(BENCH / "slowopen.c"), "-o", str(out),
                    "-ldl"], check=True)
    return out


def run(cmd: list[str], env: dict) -> pvi.Run:
    pvi.ENV = env
    return pvi.timed(cmd)


def latency_rounds(args, tree: Path, n: int, shim: Path, base_env: dict, work: Path) -> dict:
    im2rec = pvi.im2rec_path()
    lst = work / "full.lst"
    raw: dict = {}
    combos = [(tool, T, ms) for T in args.threads for ms in args.latency for tool in ("fastrec", "im2rec")]
    for r in range(args.repeat):
        order = combos if r % 2 == 0 else combos[::-1]
        for tool, T, ms in order + [(tool, T, "empty") for tool in ("fastrec", "im2rec") for T in args.threads]:
            d = work / f"{tool}-{T}-{ms}"
            d.mkdir(exist_ok=True)
            prefix = d / "data"
            if ms == "empty":   # start-up: one image (an empty list is refused); subtracted below
                prefix.with_suffix(".lst").write_text(lst.read_text().splitlines(keepends=True)[0])
            else:
                shutil.copyfile(lst, prefix.with_suffix(".lst"))
            for ext in (".rec", ".idx"):
                prefix.with_suffix(ext).unlink(missing_ok=True)
            common = ["--resize", str(args.resize), "--quality", str(args.quality), "--num-thread", str(T)]
            cmd = ([sys.executable, str(im2rec), str(prefix), str(tree)] + common if tool == "im2rec" else
                   pvi.fastrec_cmd() + ["pack", str(prefix), str(tree), "--progress", "off"] + common)
            env = dict(base_env, LD_PRELOAD=str(shim), SLOW_OPEN_MS=str(0 if ms == "empty" else ms),
                       SLOW_OPEN_MATCH=str(tree))
            res = run(cmd, env)
            got = pvi.record_count(prefix)
            if ms != "empty" and got != n:
                raise SystemExit(f"{tool} T={T} {ms} ms: {got} records, expected {n}")
            raw.setdefault((tool, T, ms), []).append({"round": r, "wall_s": res.wall, "cpu_s": res.cpu,
                                                      "maxrss_mb": res.maxrss_mb})
            print(f"# round {r} {tool:8s} T={T:2d} {ms!s:>5} ms {res.wall:7.2f} s rss {res.maxrss_mb:6.1f} MB",
                  file=sys.stderr)
    return raw


def latency_table(args, raw: dict, n: int) -> tuple[list[dict], str]:
    def rate(tool, T, ms, r):
        wall, empty = raw[(tool, T, ms)][r]["wall_s"], raw[(tool, T, "empty")][r]["wall_s"]
        return (n - 1) / max(wall - empty, 0.25 * wall)   # start-up subtracted (never below a quarter: noise)

    rows = []
    for T in args.threads:
        for ms in args.latency:
            row = {"threads": T, "latency_ms": ms}
            for tool in ("fastrec", "im2rec"):
                rates = [rate(tool, T, ms, r) for r in range(args.repeat)]
                own = [rate(tool, T, ms, r) / rate(tool, T, 0, r) for r in range(args.repeat)] if 0 in args.latency else []
                vs_fastrec = [rate(tool, T, ms, r) / rate("fastrec", T, 0, r) for r in range(args.repeat)] \
                    if 0 in args.latency else []
                row[tool] = {"images_per_s": statistics.median(rates),
                             "of_own_warm": statistics.median(own) if own else None,
                             "of_fastrec_warm": statistics.median(vs_fastrec) if vs_fastrec else None,
                             "peak_rss_mb": max(x["maxrss_mb"] for x in raw[(tool, T, ms)])}
            rows.append(row)
    pct = lambda x: "–" if x is None else f"{100 * x:.0f} %"   # noqa: E731
    md = ["| `--num-thread` | latency per open | im2rec.py img/s | (of its 0 ms) | fastrec img/s | "
          "(of its 0 ms) | im2rec peak RSS | fastrec peak RSS |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        i, f = row["im2rec"], row["fastrec"]
        md.append(f"| {row['threads']} | {row['latency_ms']} ms | {i['images_per_s']:.0f} | {pct(i['of_own_warm'])} "
                  f"| {f['images_per_s']:.0f} | **{pct(f['of_own_warm'])}** | {i['peak_rss_mb']:.0f} MB "
                  f"| {f['peak_rss_mb']:.0f} MB |")
    return rows, "\n".join(md)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for tool, style in (("fastrec", "-o"), ("im2rec", "--s")):
        for T in sorted({r["threads"] for r in rows}):
            pts = [(r["latency_ms"], r[tool]["images_per_s"]) for r in rows if r["threads"] == T]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{tool} --num-thread {T}")
    ax.set_xlabel("latency per open (ms)")
    ax.set_ylabel("images/s")
    ax.set_title("Packing from slow storage (2 vCPUs)")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


# ---------------------------------------------------------------- memory vs the dataset
def tiny_jpeg() -> bytes:
    import numpy as np
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


TAR_WRITER = """
import io, sys, tarfile
path, n, data = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
with tarfile.open(path, "w") as t:
    info = tarfile.TarInfo()
    info.size = len(data)
    for i in range(n):
        info.name = f"c/{i:07d}.jpg"
        t.addfile(info, io.BytesIO(data))
"""


def memory_runs(args, base_env: dict, work: Path) -> tuple[list[dict], str]:
    data = tiny_jpeg()
    (work / "mem" / "img" / "c").mkdir(parents=True, exist_ok=True)
    (work / "mem" / "img" / "c" / "x.jpg").write_bytes(data)
    rows = []
    for n in args.items:
        d = work / "mem" / f"items-{n}"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "data.lst", "w") as f:
            f.writelines(f"{i}\t0.000000\tc/x.jpg\n" for i in range(n))
        res = run(pvi.fastrec_cmd() + ["pack", str(d / "data"), str(work / "mem" / "img"), "--pass-through",
                                       "--num-thread", "2", "--progress", "off"], base_env)
        rows.append({"kind": "list items", "n": n, "peak_rss_mb": res.maxrss_mb, "wall_s": res.wall})
        print(f"# memory: {n} list items: {res.maxrss_mb:.1f} MB, {res.wall:.1f} s", file=sys.stderr)
        shutil.rmtree(d)
    for n in args.members:
        d = work / "mem" / f"tar-{n}"
        d.mkdir(parents=True, exist_ok=True)
        # written by a child: a TarFile keeps every member's TarInfo, and a child forked from a
        # big parent would count the parent's pages in its peak RSS
        subprocess.run([sys.executable, "-c", TAR_WRITER, str(d / "c.tar"), str(n), data.hex()], check=True)
        subprocess.run(pvi.fastrec_cmd() + ["list", str(d / "data"), "--from-tar", str(d / "c.tar"),
                                            "--recursive"], check=True, env=base_env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        res = run(pvi.fastrec_cmd() + ["pack", str(d / "data"), "--from-tar", str(d / "c.tar"), "--pass-through",
                                       "--num-thread", "2", "--progress", "off"], base_env)
        rows.append({"kind": "archive members (--from-tar)", "n": n, "peak_rss_mb": res.maxrss_mb,
                     "wall_s": res.wall})
        print(f"# memory: {n} archive members: {res.maxrss_mb:.1f} MB, {res.wall:.1f} s", file=sys.stderr)
        shutil.rmtree(d)
    md = ["| what grows | count | fastrec peak RSS |", "|---|---|---|"]
    md += [f"| {r['kind']} | {r['n']:,} | {r['peak_rss_mb']:.0f} MB |" for r in rows]
    return rows, "\n".join(md)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=600, help="ImageNet-sized images in the tree")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency", default="0,1,5,20", help="ms per open, comma-separated")
    p.add_argument("--threads", default="2,16", help="--num-thread values, comma-separated")
    p.add_argument("--repeat", type=int, default=2, help="interleaved rounds")
    p.add_argument("--resize", type=int, default=480)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--items", default="200000,1000000", help="list lengths for the memory runs")
    p.add_argument("--members", default="50000,250000", help="archive sizes for the memory runs")
    p.add_argument("--no-memory", action="store_true", help="skip the memory-vs-dataset runs")
    p.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    p.add_argument("--out", type=Path, default=pvi.RESULTS)
    args = p.parse_args(argv)
    args.latency = [int(x) for x in args.latency.split(",")]
    args.threads = [int(x) for x in args.threads.split(",")]
    args.items = [int(x) for x in args.items.split(",") if x]
    args.members = [int(x) for x in args.members.split(",") if x]

    tree = pvi.build_tree("imagenet", args.count, args.seed)
    with tempfile.TemporaryDirectory(prefix="fastrec-slow-") as tmp:
        work = Path(tmp)
        pvi.snapshot_fastrec(work)
        base_env = dict(pvi.ENV)
        shim = build_shim(work)
        subprocess.run(pvi.fastrec_cmd() + ["list", str(work / "full"), str(tree), "--recursive"], check=True,
                       env=base_env, stdout=subprocess.DEVNULL)
        n = sum(1 for _ in open(work / "full.lst"))
        raw = {} if args.no_latency else latency_rounds(args, tree, n, shim, base_env, work)
        rows, md = ([], "") if args.no_latency else latency_table(args, raw, n)
        mem_rows, mem_md = ([], "") if args.no_memory else memory_runs(args, base_env, work)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"slow_storage-{stamp}"
    if rows:
        plot(rows, base.with_suffix(".png"))
    text = (f"{n} ImageNet-sized images, --resize {args.resize} --quality {args.quality}, {args.repeat} rounds, "
            f"{pvi.machine()}\n\n{md}\n\n{mem_md}\n")
    base.with_suffix(".md").write_text(text)
    base.with_suffix(".json").write_text(json.dumps({"latency": rows, "memory": mem_rows, "git": pvi.git_state(),
                                                     "raw": {str(k): v for k, v in raw.items()}}, indent=1))
    print(text)
    print(f"# wrote {base}.md/.json/.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
