"""Benchmark `fastrec pack` against MXNet's im2rec.py and against a libjpeg-turbo ceiling.

For every image tree it writes one .lst (`fastrec list --recursive`) and then, for each
thread count and in interleaved rounds, times whole processes:

* ``im2rec``         python im2rec.py PREFIX ROOT --resize R --quality Q --num-thread T
* ``fastrec``        fastrec pack PREFIX ROOT --resize R --quality Q --num-thread T
* ``fastrec-noup``   the same with --no-upscale (ImageNet-sized trees only)
* start-up          each of the above on an empty .lst
* ``fastrec 3x``     fastrec on a list that repeats the entries 3 times (peak RSS must not grow)
* sizes             the .rec bytes of each tool on the same list, and fastrec's ÷ im2rec's
* ``ceiling``        bench/ceiling.c: one thread, files preloaded, decode-at-scale + resize +
                     encode in a tight C loop (compiled here with gcc -O3 against -ljpeg and
                     csrc/resize.c, csrc/buffer.c)

Wall time, CPU time (user+sys of the child and its reaped children) and peak RSS (ru_maxrss,
the largest single process) come from os.wait4.  Steady-state images/s subtracts the start-up
time measured in the same round: N / (t_run - t_empty).  Ratios are medians of per-round ratios
(each round runs every configuration once, in a rotated order), so slow phases of a noisy,
shared machine hit both sides of a ratio.

    .venv/bin/python bench/pack_vs_im2rec.py                    # both trees, threads 1,2, 3 rounds
    .venv/bin/python bench/pack_vs_im2rec.py --tree imagenet --repeat 5
    .venv/bin/python bench/pack_vs_im2rec.py --tree /data/photos --threads 1,2,4

Prints a markdown table and writes bench/results/pack_vs_im2rec-<time>.json (+ .md).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results"
TREE_DEFAULTS = {"imagenet": 300, "camera": 16}


# --------------------------------------------------------------------------- processes


@dataclass
class Run:
    wall: float
    cpu: float          # user + sys seconds of the child and the children it reaped
    maxrss_mb: float    # largest resident set of any single process in the tree
    stdout: str


ENV: dict | None = None   # environment of fastrec runs (PYTHONPATH -> the snapshot)


def timed(cmd: list[str], cwd: Path | None = None) -> Run:
    """Run cmd to completion; wall time, CPU time and peak RSS of it via os.wait4."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
    out = p.stdout.read()   # the pipe closes when every process holding it has exited
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    text = out.decode(errors="replace")
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {p.returncode}:\n{text[-3000:]}")
    return Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, text)


def cpu_pressure() -> float | None:
    """Share of the last 10 s in which some runnable task waited for a CPU (Linux PSI)."""
    try:
        return float(Path("/proc/pressure/cpu").read_text().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------- inputs


def build_tree(kind: str, count: int, seed: int) -> Path:
    """A cached tree from bench/images.py (built once, reused)."""
    root = CACHE / "trees" / f"{kind}-{count}-s{seed}"
    stamp = root / ".complete"
    if not stamp.exists():
        if root.exists():
            shutil.rmtree(root)
        cmd = [sys.executable, str(BENCH / "images.py"), str(root), "--kind", kind,
               "--count", str(count), "--seed", str(seed)]
        if kind == "imagenet":
            cmd += ["--classes", "4"]
        print(f"# building {kind} tree: {' '.join(cmd)}", file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        stamp.write_text("ok\n")
    return root


def im2rec_path() -> Path:
    spec = importlib.util.find_spec("mxnet")   # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mxnet is not installed in this Python (its tools/im2rec.py is the baseline)")
    path = Path(list(spec.submodule_search_locations)[0]) / "tools" / "im2rec.py"
    if not path.exists():
        raise SystemExit(f"{path} not found")
    return path


def fastrec_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "fastrec"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("fastrec")
    return [found] if found else [sys.executable, "-m", "fastrec"]


def snapshot_fastrec(work: Path) -> None:
    """Benchmark a frozen copy of fastrec/ (built extensions included): the checkout may be
    edited or rebuilt while the rounds run, and one result must not mix two versions."""
    global ENV
    dst = work / "snapshot"
    shutil.copytree(REPO / "fastrec", dst / "fastrec",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    ENV = dict(os.environ, PYTHONPATH=str(dst) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def smoke_test(tree: "Tree", work: Path) -> None:
    """Pack two images with each tool before timing anything: fail in seconds, not minutes."""
    d = work / "smoke"
    d.mkdir(exist_ok=True)
    write_lst(d / "data.lst", lst_entries(tree.lists["full"])[:2])
    timed(fastrec_cmd() + ["pack", str(d / "data"), str(tree.root), "--resize", "64"])
    timed([sys.executable, str(im2rec_path()), str(d / "data"), str(tree.root), "--resize", "64"])


def git_state() -> dict:
    def git(*a):
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"),
            "dirty_files": [line[3:] for line in git("status", "--porcelain").splitlines()
                            if line[3:].startswith(("csrc/", "fastrec/"))]}


def has_auto_filter() -> bool:
    """Whether csrc/resize.h has FR_FILTER_AUTO (fastrec's default filter since it was added)."""
    return "FR_FILTER_AUTO" in (REPO / "csrc" / "resize.h").read_text()


def build_ceiling(work: Path) -> Path:
    exe = work / "ceiling"
    auto = ["-DHAVE_FR_FILTER_AUTO"] if has_auto_filter() else []
    cmd = ["gcc", "-O3", "-std=gnu11", "-Wall", *auto, "-DHAVE_FR_CORE", f"-I{REPO / 'csrc'}",
           str(BENCH / "ceiling.c"), *map(str, sorted((REPO / "csrc").glob("*.c"))), "-ljpeg", "-lm",
           "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"building the ceiling failed:\n{' '.join(cmd)}\n{res.stderr}")
    return exe


def lst_entries(lst: Path) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in lst.read_text().splitlines() if line.strip()]


def write_lst(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in rows))


def record_count(prefix: Path) -> int:
    idx = prefix.with_suffix(".idx")
    return sum(1 for _ in idx.open()) if idx.exists() else 0


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Tree:
    name: str
    root: Path
    n: int
    mean_kb: float
    lists: dict = field(default_factory=dict)   # variant -> Path of the .lst ("full", "empty", "x3")
    pathfile: Path | None = None                # absolute paths for the ceiling
    small: bool = False                         # ImageNet-sized (short edge < resize): also --no-upscale


def prepare_tree(name: str, root: Path, work: Path, resize: int) -> Tree:
    tdir = work / name
    full = tdir / "full" / "data.lst"
    full.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(fastrec_cmd() + ["list", str(full.with_suffix("")), str(root), "--recursive"],
                   check=True, stdout=subprocess.DEVNULL, env=ENV)
    rows = lst_entries(full)
    if not rows:
        raise SystemExit(f"no images found under {root}")
    # start-up: a one-image list (fastrec refuses an empty one); its image is subtracted below
    write_lst(tdir / "empty" / "data.lst", rows[:1])
    x3 = [[str(i), *r[1:]] for i, r in enumerate(rows * 3)]
    write_lst(tdir / "x3" / "data.lst", x3)
    paths = [str(root / r[-1]) for r in rows]
    pathfile = tdir / "paths.txt"
    pathfile.write_text("\n".join(paths) + "\n")
    sizes = [os.path.getsize(p) for p in paths]
    # ImageNet-sized: most images have a short edge below the target (im2rec upscales them).
    from PIL import Image   # header-only reads
    short = []
    for p in paths[:50]:
        with Image.open(p) as im:
            short.append(min(im.size))
    small = statistics.median(short) < resize
    t = Tree(name, root, len(rows), sum(sizes) / len(sizes) / 1024, pathfile=pathfile, small=small)
    t.lists = {"full": full, "empty": tdir / "empty" / "data.lst", "x3": tdir / "x3" / "data.lst"}
    return t


def job_list(trees: list[Tree], threads: list[int], args) -> list[tuple]:
    """Every (tree, tool, threads, list) run of one round."""
    jobs = []
    for t in trees:
        for T in threads:
            for tool in ["im2rec", "fastrec"] + (["fastrec-noup"] if t.small else []):
                jobs += [(t, tool, T, "full"), (t, tool, T, "x3")]
                if tool != "fastrec-noup":
                    jobs.append((t, tool, T, "empty"))
        jobs.append((t, "ceiling", 1, "full"))
        if t.small:
            jobs.append((t, "ceiling-noup", 1, "full"))
    return jobs


def command(job, args, im2rec: Path, ceiling: Path, work: Path) -> tuple[list[str], Path]:
    t, tool, T, variant = job
    lst = t.lists[variant]
    # Each tool packs into its own folder holding only this list: im2rec.py packs *every*
    # PREFIX*.lst it finds next to the prefix.
    run_dir = work / t.name / f"{tool}-{variant}"
    run_dir.mkdir(parents=True, exist_ok=True)
    prefix = run_dir / "data"
    shutil.copyfile(lst, prefix.with_suffix(".lst"))
    common = ["--resize", str(args.resize), "--quality", str(args.quality), "--num-thread", str(T)]
    if tool == "im2rec":
        return [sys.executable, str(im2rec), str(prefix), str(t.root)] + common, prefix
    if tool.startswith("fastrec"):
        extra = (["--no-upscale"] if tool == "fastrec-noup" else []) + ["--filter", args.filter]
        extra += shlex.split(args.fastrec_args)
        return fastrec_cmd() + ["pack", str(prefix), str(t.root)] + common + extra, prefix
    extra = (["--no-upscale"] if tool == "ceiling-noup" else []) + ["--filter", args.filter]
    return [str(ceiling), str(t.pathfile), "--core", "--resize", str(args.resize), "--quality",
            str(args.quality), "--passes", str(args.ceiling_passes)] + extra, prefix


def run_rounds(trees, threads, args, im2rec, ceiling, work) -> dict:
    jobs = job_list(trees, threads, args)
    raw: dict[tuple, list[dict]] = {}
    for r in range(args.repeat):
        k = (r * len(jobs)) // max(args.repeat, 1)
        order = jobs[k:] + jobs[:k]
        if r % 2:
            order.reverse()
        load = os.getloadavg()[0]
        pressure = cpu_pressure()
        print(f"# round {r}: load average {load:.2f}, CPU pressure avg10 {pressure}", file=sys.stderr)
        for job in order:
            t, tool, T, variant = job
            cmd, prefix = command(job, args, im2rec, ceiling, work)
            for ext in (".rec", ".idx"):
                prefix.with_suffix(ext).unlink(missing_ok=True)
            run = timed(cmd)
            rec = {"round": r, "load1": load, "cpu_pressure_avg10": pressure, "wall_s": run.wall, "cpu_s": run.cpu,
                   "maxrss_mb": run.maxrss_mb}
            if tool.startswith("ceiling"):
                c = json.loads(run.stdout.strip().splitlines()[-1])
                rec.update(ceiling=c, images_per_s=c["median_images_per_s"],
                           cpu_s_per_image=c["cpu_s_per_image"])
            else:
                n = {"full": t.n, "x3": 3 * t.n, "empty": 1}[variant]
                got = record_count(prefix)
                if got != n:
                    print(f"# warning: {tool} {t.name} T={T} {variant}: {got} records, expected {n}",
                          file=sys.stderr)
                rec["records"] = got
                rec["rec_bytes"] = prefix.with_suffix(".rec").stat().st_size if got else 0
            raw.setdefault((t.name, tool, T, variant), []).append(rec)
            print(f"# round {r} {t.name:9s} {tool:13s} T={T} {variant:5s} {run.wall:7.3f} s "
                  f"cpu {run.cpu:7.3f} s rss {run.maxrss_mb:6.1f} MB", file=sys.stderr)
    return raw


def summarize(trees, threads, raw) -> list[dict]:
    """Per (tree, tool, threads): medians over rounds, and medians of paired per-round ratios."""
    def rounds(tree, tool, T, variant):
        return {x["round"]: x for x in raw.get((tree.name, tool, T, variant), [])}

    def per_round(tree, tool, T):
        """round -> metrics of that round (whole run, steady state, start-up)."""
        base = "fastrec" if tool.startswith("fastrec") else tool
        full, x3 = rounds(tree, tool, T, "full"), rounds(tree, tool, T, "x3")
        empty = rounds(tree, base, T, "empty")
        n = tree.n
        out = {}
        for r, f in full.items():
            m = {"whole": n / f["wall_s"], "cpu_ms_whole": 1000 * f["cpu_s"] / n,
                 "cores_used": f["cpu_s"] / f["wall_s"]}
            if r in x3 and x3[r]["wall_s"] > f["wall_s"]:
                m["steady"] = 2 * n / (x3[r]["wall_s"] - f["wall_s"])
                m["cores_used_steady"] = (x3[r]["cpu_s"] - f["cpu_s"]) / (x3[r]["wall_s"] - f["wall_s"])
                m["cpu_ms_steady"] = 1000 * (x3[r]["cpu_s"] - f["cpu_s"]) / (2 * n)
            if r in empty and f["wall_s"] > empty[r]["wall_s"]:
                m["startup_corrected"] = (n - 1) / (f["wall_s"] - empty[r]["wall_s"])
            out[r] = m
        return out

    def ceil_round(tree, tool="ceiling"):
        return {r: {"steady": x["images_per_s"], "cpu_ms_steady": 1000 * x["cpu_s_per_image"]}
                for r, x in rounds(tree, tool, 1, "full").items()}

    def ratio(a: dict, b: dict, key="steady", invert=False):
        vals = [(b[r][key] / a[r][key] if invert else a[r][key] / b[r][key])
                for r in a if r in b and key in a[r] and key in b[r] and b[r][key] and a[r][key]]
        return med(vals)

    def col(pr: dict, key):
        return med([m.get(key) for m in pr.values()])

    rows = []
    for t in trees:
        for tool in ["im2rec", "fastrec"] + (["fastrec-noup"] if t.small else []):
            for T in threads:
                full = raw.get((t.name, tool, T, "full"), [])
                if not full:
                    continue
                base = "fastrec" if tool.startswith("fastrec") else tool
                emp = raw.get((t.name, base, T, "empty"), [])
                x3 = raw.get((t.name, tool, T, "x3"), [])
                pr = per_round(t, tool, T)
                row = {
                    "tree": t.name, "tool": tool, "threads": T, "images": t.n,
                    "images_per_s": col(pr, "whole"),
                    "steady_images_per_s": col(pr, "steady"),
                    "startup_corrected_images_per_s": col(pr, "startup_corrected"),
                    "cpu_ms_per_image": col(pr, "cpu_ms_whole"),
                    "steady_cpu_ms_per_image": col(pr, "cpu_ms_steady"),
                    "cores_used_steady": col(pr, "cores_used_steady"),
                    "peak_rss_mb": max(x["maxrss_mb"] for x in full),
                    "peak_rss_mb_3x": max((x["maxrss_mb"] for x in x3), default=None),
                    "startup_s": med([e["wall_s"] for e in emp]),
                    "startup_cpu_s": med([e["cpu_s"] for e in emp]),
                    "startup_rss_mb": max((e["maxrss_mb"] for e in emp), default=None),
                }
                row["rec_bytes"] = med([x.get("rec_bytes") for x in full])
                if tool.startswith("fastrec"):
                    theirs = med([x.get("rec_bytes") for x in raw.get((t.name, "im2rec", T, "full"), [])])
                    row["size_vs_im2rec"] = row["rec_bytes"] / theirs if theirs and row["rec_bytes"] else None
                    im = per_round(t, "im2rec", T)
                    row["vs_im2rec_steady"] = ratio(pr, im)
                    row["vs_im2rec_whole"] = ratio(pr, im, "whole")
                    row["vs_im2rec_cpu"] = ratio(pr, im, "cpu_ms_steady", invert=True)
                if T == 1 and tool in ("fastrec", "fastrec-noup"):
                    c = ceil_round(t, "ceiling" if tool == "fastrec" else "ceiling-noup")
                    row["vs_ceiling_steady"] = ratio(pr, c)
                    row["vs_ceiling_cpu"] = ratio(pr, c, "cpu_ms_steady", invert=True)
                if tool == "fastrec-noup":
                    row["vs_fastrec_upscale_steady"] = ratio(pr, per_round(t, "fastrec", T))
                if T != threads[0]:
                    one = per_round(t, tool, threads[0])
                    row["vs_1thread_steady"] = ratio(pr, one)
                    row["vs_1thread_whole"] = ratio(pr, one, "whole")
                rows.append(row)
        for tool in ["ceiling"] + (["ceiling-noup"] if t.small else []):
            xs = raw.get((t.name, tool, 1, "full"), [])
            if xs:
                c0 = xs[0]["ceiling"]
                rows.append({
                    "tree": t.name, "tool": tool, "threads": 1, "images": t.n,
                    "images_per_s": med([x["images_per_s"] for x in xs]),
                    "steady_images_per_s": med([x["images_per_s"] for x in xs]),
                    "steady_cpu_ms_per_image": 1000 * med([x["cpu_s_per_image"] for x in xs]),
                    "stage_ms": {s: med([x["ceiling"][f"ms_per_image_{s}"] for x in xs])
                                 for s in ("decode", "resize", "encode")},
                    "scales": {k: v for k, v in c0.items() if k.startswith("scale_")},
                })
    return rows


def fmt(x, spec=".0f", suffix=""):
    return "—" if x is None else f"{x:{spec}}{suffix}"


def table(rows) -> str:
    hdr = ["tree", "tool", "threads", "images/s whole run", "images/s steady", "CPU ms/img steady (whole run)",
           "cores busy",
           "peak RSS MB 1× / 3× list", "start-up s", "÷ im2rec steady (whole run)", "÷ 1 thread steady",
           "÷ ceiling steady (CPU)", ".rec MB (÷ im2rec)"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] * len(hdr)) + "|"]
    for r in rows:
        ceil = r["tool"].startswith("ceiling")
        if ceil:
            cells = [r["tree"], r["tool"] + " (C, 1 thread, preloaded)", "1", "—",
                     fmt(r["steady_images_per_s"], ".1f"), fmt(r["steady_cpu_ms_per_image"], ".2f"), "—",
                     "—", "—", "—", "—", "—", "—"]
        else:
            vs_im = "—"
            if r.get("vs_im2rec_steady") is not None:
                vs_im = f"**{r['vs_im2rec_steady']:.2f}×** ({fmt(r.get('vs_im2rec_whole'), '.2f', '×')})"
            vs_c = "—"
            if r.get("vs_ceiling_steady") is not None:
                vs_c = f"**{r['vs_ceiling_steady']:.0%}** ({fmt(r.get('vs_ceiling_cpu'), '.0%')})"
            cells = [r["tree"], r["tool"], str(r["threads"]), fmt(r["images_per_s"], ".1f"),
                     fmt(r["steady_images_per_s"], ".1f"),
                     f"{fmt(r['steady_cpu_ms_per_image'], '.2f')} ({fmt(r['cpu_ms_per_image'], '.2f')})",
                     fmt(r.get("cores_used_steady"), ".2f"),
                     f"{fmt(r['peak_rss_mb'], '.0f')} / {fmt(r.get('peak_rss_mb_3x'), '.0f')}",
                     fmt(r.get("startup_s"), ".3f"), vs_im, fmt(r.get("vs_1thread_steady"), ".2f", "×"), vs_c,
                     _size_cell(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _size_cell(r) -> str:
    size = r.get("rec_bytes")
    if not size:
        return "—"
    ratio = r.get("size_vs_im2rec")
    return f"{size / 1e6:.2f}" + (f" ({ratio:.3f}×)" if ratio else "")


def extras(rows) -> str:
    out = []
    for r in rows:
        if r.get("size_vs_im2rec") is not None and r["threads"] == min(x["threads"] for x in rows):
            out.append(f"- {r['tree']}, {r['tool']}: the .rec is {100 * (r['size_vs_im2rec'] - 1):+.1f}% "
                       f"the size of im2rec's ({r['rec_bytes'] / 1e6:.2f} MB), same list and settings.")
        if r.get("vs_fastrec_upscale_steady") is not None:
            out.append(f"- {r['tree']}, {r['threads']} thread(s): `--no-upscale` packs "
                       f"{r['vs_fastrec_upscale_steady']:.2f}× the images/s of the default (which upscales "
                       f"images smaller than --resize, as im2rec does), steady state.")
        if r["tool"].startswith("ceiling") and r.get("stage_ms"):
            s, sc = r["stage_ms"], r["scales"]
            out.append(f"- {r['tree']} {r['tool']}: per image decode {s['decode']:.2f} ms, resize "
                       f"{s['resize']:.2f} ms, encode {s['encode']:.2f} ms; DCT scales 1/1:{sc['scale_1']} "
                       f"1/2:{sc['scale_2']} 1/4:{sc['scale_4']} 1/8:{sc['scale_8']}.")
    return "\n".join(out)


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    jpeg = subprocess.run(["sh", "-c", "dpkg-query -W -f='${Version}' libjpeg62-turbo 2>/dev/null"],
                          capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "libjpeg_turbo": jpeg}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", action="append",
                   help="imagenet, camera or a folder of images (repeatable; default: imagenet and camera)")
    p.add_argument("--imagenet-count", type=int, default=TREE_DEFAULTS["imagenet"])
    p.add_argument("--camera-count", type=int, default=TREE_DEFAULTS["camera"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resize", type=int, default=480)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--filter", default="auto" if has_auto_filter() else "lanczos",
                   choices=["auto", "triangle", "bicubic", "lanczos"],
                   help="fastrec's --filter, also used by the ceiling (default: fastrec's default, "
                        "auto where csrc/resize.h has it, else lanczos)")
    p.add_argument("--fastrec-args", default="", help="extra arguments for every timed `fastrec pack`, "
                   "e.g. \"--batch-size 4\"")
    p.add_argument("--threads", default="1,2", help="comma-separated --num-thread values")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    p.add_argument("--ceiling-passes", type=int, default=3, help="passes over the files per ceiling run")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-snapshot", action="store_true",
                   help="run the checkout's fastrec/ directly instead of a copy taken at start")
    p.add_argument("--label", default="", help="text added to the results file name")
    args = p.parse_args(argv)
    threads = [int(x) for x in args.threads.split(",")]

    work = Path(tempfile.mkdtemp(prefix="fastrec-bench-")) if args.work is None else args.work
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not args.no_snapshot:
            snapshot_fastrec(work)
        trees = []
        for spec in args.tree or ["imagenet", "camera"]:
            if spec in TREE_DEFAULTS:
                count = args.imagenet_count if spec == "imagenet" else args.camera_count
                root = build_tree(spec, count, args.seed)
                name = spec
            else:
                root = Path(spec).resolve()
                name = root.name
            trees.append(prepare_tree(name, root, work, args.resize))
        im2rec = im2rec_path()
        ceiling = build_ceiling(work)
        smoke_test(trees[0], work)
        git = git_state()
        for t in trees:
            print(f"# tree {t.name}: {t.n} images, mean {t.mean_kb:.1f} KiB, {t.root}", file=sys.stderr)
        started = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.perf_counter()
        raw = run_rounds(trees, threads, args, im2rec, ceiling, work)
        rows = summarize(trees, threads, raw)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    md = table(rows)
    notes = extras(rows)
    info = machine()
    head = (f"Measured {started:%Y-%m-%d %H:%M} UTC on {info['cpus']} CPUs ({info['cpu']}), "
            f"libjpeg-turbo {info['libjpeg_turbo'] or '?'}, Python {info['python']}; "
            f"fastrec {git['commit'][:7]}{' + uncommitted changes' if git['dirty_files'] else ''}; "
            f"--resize {args.resize} --quality {args.quality} --filter {args.filter}"
            f"{' ' + args.fastrec_args if args.fastrec_args else ''}, {args.repeat} interleaved rounds, "
            f"{time.perf_counter() - t0:.0f} s in all.\n"
            + "".join(f"Tree {t.name}: {t.n} images, mean {t.mean_kb:.1f} KiB.\n" for t in trees))
    report = head + "\n" + md + "\n\n" + notes + "\n"
    print(report)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"pack_vs_im2rec-{started:%Y%m%dT%H%M%SZ}" + (f"-{args.label}" if args.label else "")
    payload = {
        "started_utc": started.isoformat(), "machine": info, "git": git,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "trees": [{"name": t.name, "root": str(t.root), "images": t.n, "mean_kib": t.mean_kb,
                   "imagenet_sized": t.small} for t in trees],
        "rows": rows,
        "raw": [{"tree": k[0], "tool": k[1], "threads": k[2], "list": k[3], "runs": v}
                for k, v in raw.items()],
    }
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(report)
    print(f"# wrote {args.out / stem}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
