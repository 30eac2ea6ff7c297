"""fastrec against the tools a user would pick instead, on the same images and output geometry.

    .venv/bin/python bench/peers.py                         # both trees, 5 interleaved rounds
    .venv/bin/python bench/peers.py --tree camera --rounds 3 --label quiet

Every row makes the same thing from the same JPEG files: im2rec's geometry (short edge 480, long
edge long * 480 // short; smaller images enlarged, as im2rec does), JPEG quality 90, 4:2:0 (one
row shows libvips's own default beside its forced 4:2:0), one thread unless the row says so.

* per-image rows: a persistent child process per pipeline (bench/peer_pipelines.py) holds the
  tree's bytes in memory (no disk I/O) and runs one pass over them per command: fastrec's core
  (`Worker.pack_bytes`, 1 and 2 threads), im2rec.py's path (OpenCV), PyTurboJPEG, simplejpeg,
  stock Pillow and Pillow-SIMD (build/venv-simd: it replaces Pillow) with `draft()` and its
  box, pyvips `thumbnail_buffer` (Debian's libvips);
* whole-tool rows: a process from start to end on a .lst / the file list: `fastrec pack` and
  ffcv's `DatasetWriter` (bench/ffcv_writer.py in build/venv-ffcv), start-up included.

Before timing, each row's outputs are decoded and checked equal to im2rec's geometry (a row that
differs is dropped, with the reason printed), and scored: mean JPEG KiB per image and mean PSNR
against a full-resolution Pillow decode + Lanczos resize to the same size (`fastrec bench`'s
reference).  Then `--rounds` rounds: each runs every row once, in an order rotated (and reversed
on odd rounds) from round to round, so the machine's noisy moments are shared out; images/s is
the median round, and "÷ fastrec" is the median (and min–max) of the per-round ratios to
fastrec's core (per-image rows) or to `fastrec pack` (whole-tool rows), measured seconds apart.
Writes bench/results/peers-<UTC>[-label].{md,json} (every round's wall and CPU seconds).

MXNet's C++ im2rec is not a row: no registry package builds it here (bench/README.md cites a
measurement of it).  Needs: `make bench-peers` (the venvs, libvips, libturbojpeg).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CACHE = BENCH / ".cache" / "trees"
RESULTS = BENCH / "results"
RESIZE, QUALITY = 480, 90
VENV_MAIN = Path(sys.executable)
VENV_SIMD = REPO / "build" / "venv-simd" / "bin" / "python"
VENV_FFCV = REPO / "build" / "venv-ffcv" / "bin" / "python"
TREES = {"imagenet": dict(kind="imagenet", count=300, classes=4, seed=0),
         "camera": dict(kind="camera", count=16, classes=4, seed=0)}


@dataclass(frozen=True)
class Peer:
    name: str
    what: str
    python: Path
    threads: int = 1
    whole_tool: bool = False
    versus: str = "fastrec"   # the fastrec row its ratio divides by


PEERS = [
    Peer("fastrec", "fastrec core (`Worker.pack_bytes`: DCT-scaled decode, YCbCr-plane resize, encode, framing)",
         VENV_MAIN),
    Peer("fastrec-2t", "fastrec core, 2 threads", VENV_MAIN, threads=2),
    Peer("im2rec", "im2rec.py path (`cv2.imdecode` full + `cv2.resize` linear + `cv2.imencode`)", VENV_MAIN),
    Peer("pyturbojpeg", "PyTurboJPEG decode at fastrec's DCT scale + `cv2.resize` area + encode", VENV_MAIN),
    Peer("simplejpeg", "simplejpeg `min_width/min_height` decode + `cv2.resize` area + encode", VENV_MAIN),
    Peer("pillow-bilinear", "Pillow `draft` + `resize(box=)` bilinear + `save`", VENV_MAIN),
    Peer("pillow-lanczos", "Pillow `draft` + `resize(box=)` Lanczos + `save`", VENV_MAIN),
    Peer("pillow-simd-bilinear", "Pillow-SIMD `draft` + `resize(box=)` bilinear + `save`", VENV_SIMD),
    Peer("pillow-simd-lanczos", "Pillow-SIMD `draft` + `resize(box=)` Lanczos + `save`", VENV_SIMD),
    Peer("pyvips-420", "pyvips `thumbnail_buffer` + `jpegsave_buffer(subsample_mode='on')` (4:2:0)", VENV_MAIN),
    Peer("pyvips-default", "pyvips `thumbnail_buffer` + `jpegsave_buffer` default (4:4:4 at Q90)", VENV_MAIN),
    Peer("fastrec-pack", "`fastrec pack --num-thread 1` (whole process, .lst in, .rec out)", VENV_MAIN,
         whole_tool=True, versus="fastrec-pack"),
    Peer("ffcv", "ffcv 1.0.2 `DatasetWriter` (whole process, 1 worker; full decode + `cv2.resize` area + "
         "`cv2.imencode`)", VENV_FFCV, whole_tool=True, versus="fastrec-pack"),
]


# ---------------------------------------------------------------- trees and references
@dataclass
class Tree:
    name: str
    root: Path
    files: list[str]
    sizes: list[tuple[int, int]]
    targets: list[tuple[int, int]]
    refs: list[np.ndarray] = field(default_factory=list, repr=False)


def im2rec_size(width: int, height: int, resize: int = RESIZE) -> tuple[int, int]:
    """im2rec.py image_encode: the shorter edge becomes `resize`, the other scales (floor)."""
    if height > width:
        return resize, height * resize // width
    return width * resize // height, resize


def load_tree(name: str, count: int | None) -> Tree:
    """A tree of bench/images.py (built once into bench/.cache/trees), or any folder of JPEGs."""
    folder = os.path.isdir(name)
    if folder:
        root = Path(name).resolve()
        name = root.name
    else:
        spec = dict(TREES[name])
        if count:
            spec["count"] = count
        root = CACHE / f"{name}-{spec['count']}-c{spec['classes']}-s{spec['seed']}"
    if not folder and not (root / ".complete").exists():
        cmd = [sys.executable, str(BENCH / "images.py"), str(root), "--kind", spec["kind"],
               "--count", str(spec["count"]), "--classes", str(spec["classes"]), "--seed", str(spec["seed"])]
        print(f"# building the {name} tree: {' '.join(cmd)}", file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        (root / ".complete").write_text("ok\n")
    files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    sizes = []
    for f in files:
        with Image.open(f) as im:
            sizes.append(im.size)
    return Tree(name, root, files, sizes, [im2rec_size(w, h) for w, h in sizes])


def references(tree: Tree) -> list[np.ndarray]:
    from fastrec.reports.bench import reference_image
    if not tree.refs:
        tree.refs = [reference_image(Path(f).read_bytes(), t, "lanczos") for f, t in zip(tree.files, tree.targets)]
    return tree.refs


# ---------------------------------------------------------------- running rows
class Child:
    """A per-image pipeline in its own process (bench/peer_pipelines.py), driven over a pipe."""

    def __init__(self, peer: Peer, job: Path):
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", VIPS_CONCURRENCY="1")
        self.p = subprocess.Popen([str(peer.python), str(BENCH / "peer_pipelines.py"), peer.name, str(job)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, line: str) -> str:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = self.p.stdout.readline().strip()
        if not reply or reply.startswith("error"):
            raise RuntimeError(f"pipeline child answered {reply!r} to {line!r} (exit {self.p.poll()})")
        return reply

    def check(self, out: Path) -> None:
        self.ask(f"check {out}")

    def time(self, _work: Path) -> tuple[float, float]:
        wall, cpu = self.ask("time").split()
        return float(wall), float(cpu)

    def versions(self) -> dict:
        return json.loads(self.ask("versions"))

    def close(self) -> None:
        try:
            self.ask("quit") if self.p.poll() is None else None
        except RuntimeError:
            pass
        self.p.wait(timeout=30)


class WholeTool:
    """A whole process per run: `fastrec pack` on a .lst, or ffcv's DatasetWriter on the list."""

    def __init__(self, peer: Peer, job: Path, tree: Tree):
        self.peer, self.job, self.tree = peer, job, tree
        self.env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")

    def _command(self, work: Path) -> tuple[list[str], Path]:
        if self.peer.name == "fastrec-pack":
            prefix = work / "pack"
            with open(prefix.with_suffix(".lst"), "w") as f:
                for i, path in enumerate(self.tree.files):
                    f.write(f"{i}\t{i % 1000:f}\t{os.path.relpath(path, self.tree.root)}\n")
            return ([str(self.peer.python), "-m", "fastrec", "pack", str(prefix), str(self.tree.root), "--resize",
                     str(RESIZE), "--quality", str(QUALITY), "--num-thread", "1", "--progress", "off"],
                    prefix.with_suffix(".rec"))
        out = work / "out.beton"
        return [str(self.peer.python), str(BENCH / "ffcv_writer.py"), str(self.job), str(out)], out

    def time(self, work: Path) -> tuple[float, float]:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        cmd, _ = self._command(work)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
        return wall, usage.ru_utime + usage.ru_stime

    def check(self, out: Path) -> None:
        work = out.parent / (out.name + "-run")
        self.time(work)
        if self.peer.name == "fastrec-pack":
            from fastrec.formats.recordio import _read_record, unpack
            with open(work / "pack.rec", "rb") as f:
                i = 0
                while (payload := _read_record(f)) is not None:
                    (out / f"{i}.jpg").write_bytes(unpack(payload)[1])
                    i += 1
        else:
            subprocess.run([str(self.peer.python), str(BENCH / "ffcv_writer.py"), str(self.job), "--check", str(out)],
                           check=True, env=self.env, stdout=subprocess.DEVNULL)
        self.file_bytes = sum(p.stat().st_size for p in work.iterdir() if p.suffix in (".rec", ".beton"))

    def versions(self) -> dict:
        code = ("import json,sys;v={'python':sys.version.split()[0]};import numpy;v['numpy']=numpy.__version__\n"
                "try:\n import ffcv,torch,cv2,numba;v.update(ffcv=ffcv.__version__ if hasattr(ffcv,'__version__') "
                "else '1.0.2',torch=torch.__version__,opencv=cv2.__version__,numba=numba.__version__)\n"
                "except ImportError: pass\nprint(json.dumps(v))")
        return json.loads(subprocess.run([str(self.peer.python), "-c", code], capture_output=True, text=True,
                                         check=True).stdout)

    def close(self) -> None:
        pass


def score(tree: Tree, out: Path) -> dict:
    """Geometry check and scores of a row's outputs 0.jpg .. n-1.jpg."""
    from fastrec.reports.metrics import psnr
    sizes, dbs, nbytes = [], [], []
    for i, ref in enumerate(references(tree)):
        data = (out / f"{i}.jpg").read_bytes()
        nbytes.append(len(data))
        with Image.open(io.BytesIO(data)) as im:
            sizes.append(im.size)
            px = np.asarray(im.convert("RGB"))
        if px.shape == ref.shape:
            dbs.append(psnr(ref, px))
    bad = [(tree.files[i], s, t) for i, (s, t) in enumerate(zip(sizes, tree.targets)) if tuple(s) != tuple(t)]
    sampling = _subsampling(out / "0.jpg")
    return {"geometry_ok": not bad, "geometry_mismatches": len(bad),
            "first_mismatch": [str(x) for x in bad[0]] if bad else None,
            "kib_per_image": float(np.mean(nbytes)) / 1024, "psnr_db": float(np.mean(dbs)) if dbs else float("nan"),
            "psnr_db_per_image": dbs, "subsampling": sampling}


def _subsampling(path: Path) -> str:
    from PIL import JpegImagePlugin
    with Image.open(path) as im:
        return {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(JpegImagePlugin.get_sampling(im), "?")


@dataclass
class RowResult:
    tree: str
    peer: str
    what: str
    threads: int
    whole_tool: bool
    versus: str
    images: int
    scores: dict
    versions: dict
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    file_bytes: int | None = None
    skipped: str | None = None


def run_tree(tree: Tree, peers: list[Peer], rounds: int, tmp: Path) -> list[RowResult]:
    job = tmp / f"{tree.name}-job.json"
    job.write_text(json.dumps({"files": tree.files, "sizes": tree.sizes, "targets": tree.targets, "resize": RESIZE}))
    runners, results = {}, {}
    for peer in peers:
        row = RowResult(tree.name, peer.name, peer.what, peer.threads, peer.whole_tool, peer.versus,
                        len(tree.files), {}, {})
        results[peer.name] = row
        if not peer.python.exists():
            row.skipped = f"{peer.python} missing: run `make bench-peers`"
            print(f"# {tree.name} {peer.name}: skipped ({row.skipped})", file=sys.stderr)
            continue
        out = tmp / f"{tree.name}-{peer.name}"
        out.mkdir()
        try:
            r = WholeTool(peer, job, tree) if peer.whole_tool else Child(peer, job)
            r.check(out)
            row.versions = r.versions()
        except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
            row.skipped = f"failed: {err}"
            print(f"# {tree.name} {peer.name}: skipped ({row.skipped})", file=sys.stderr)
            continue
        row.scores = score(tree, out)
        row.file_bytes = getattr(r, "file_bytes", None)
        if not row.scores["geometry_ok"]:
            row.skipped = f"geometry differs from im2rec's: {row.scores['first_mismatch']}"
            print(f"# {tree.name} {peer.name}: dropped ({row.skipped})", file=sys.stderr)
            r.close()
            continue
        print(f"# {tree.name} {peer.name}: geometry = im2rec's on {len(tree.files)} images; "
              f"{row.scores['kib_per_image']:.1f} KiB/img, {row.scores['psnr_db']:.2f} dB, "
              f"{row.scores['subsampling']}", file=sys.stderr)
        runners[peer.name] = r
    names = list(runners)
    for rnd in range(rounds):
        turn = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in (turn[::-1] if rnd % 2 else turn):
            wall, cpu = runners[name].time(tmp / f"{tree.name}-{name}-work")
            results[name].walls.append(wall)
            results[name].cpus.append(cpu)
        print(f"# {tree.name} round {rnd + 1}/{rounds}: " + ", ".join(
            f"{n} {len(tree.files) / results[n].walls[-1]:.0f}/s" for n in names), file=sys.stderr)
    for r in runners.values():
        r.close()
    return list(results.values())


# ---------------------------------------------------------------- reporting
def ratios(row: RowResult, rows: dict[str, RowResult], kind: str = "walls") -> list[float]:
    """Per-round ratios row ÷ its fastrec row (same round): of images/s ("walls") or of images per
    CPU-second ("cpus"; steadier when other jobs take the cores away)."""
    base = rows.get(row.versus)
    if base is None or not getattr(base, kind) or not getattr(row, kind):
        return []
    return [b / a for a, b in zip(getattr(row, kind), getattr(base, kind))]


def table(results: list[RowResult]) -> str:
    head = ["tree", "row", "threads", "images/s (median)", "÷ fastrec: median (min–max of rounds)",
            "CPU ms/img", "÷ fastrec per CPU-second", "JPEG KiB/img", "PSNR dB vs reference", "chroma"]
    out = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 3) + "---|"]
    for tree in dict.fromkeys(r.tree for r in results):
        rows = {r.peer: r for r in results if r.tree == tree}
        for r in rows.values():
            if r.skipped or not r.walls:
                out.append(f"| {tree} ({r.images}) | {r.what} | {r.threads} | — | {r.skipped or 'not run'} | | | | | |")
                continue
            rate = r.images / float(np.median(r.walls))
            rs = ratios(r, rows)
            bold = r.peer in ("fastrec", "fastrec-pack")
            ratio = "—" if bold else (f"**{np.median(rs):.2f}×** ({min(rs):.2f}–{max(rs):.2f})" if rs else "")
            cs = ratios(r, rows, "cpus")
            cpu_ratio = "—" if bold else (f"{np.median(cs):.2f}× ({min(cs):.2f}–{max(cs):.2f})" if cs else "")
            what = f"**{r.what}**" if bold else r.what
            out.append(f"| {tree} ({r.images}) | {what} | {r.threads} | {rate:.1f} | {ratio} | "
                       f"{1000 * float(np.median(r.cpus)) / r.images:.2f} | {cpu_ratio} | {r.scores['kib_per_image']:.1f} | "
                       f"{r.scores['psnr_db']:.2f} | {r.scores['subsampling']} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/peers.py", description=__doc__.splitlines()[0])
    p.add_argument("--tree", default="imagenet,camera", help="trees to run: imagenet, camera, or folders")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (default 5)")
    p.add_argument("--peers", default="", help="comma-separated rows to run (default: all)")
    p.add_argument("--imagenet-count", type=int, default=0, help="images in the imagenet tree (default 300)")
    p.add_argument("--camera-count", type=int, default=0, help="photos in the camera tree (default 16)")
    p.add_argument("--label", default="", help="suffix of the results files")
    p.add_argument("--no-save", action="store_true", help="print only; write nothing under bench/results")
    p.add_argument("--report", metavar="JSON", help="print the table of a saved run again (no new run)")
    a = p.parse_args(argv)
    if a.report:
        with open(a.report) as f:
            doc = json.load(f)
        print(table([RowResult(**r) for r in doc["rows"]]))
        return 0
    wanted = [x for x in a.peers.split(",") if x]
    peers = [x for x in PEERS if not wanted or x.name in wanted or x.name in ("fastrec", "fastrec-pack")]
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    t0 = time.perf_counter()
    results: list[RowResult] = []
    with tempfile.TemporaryDirectory(prefix="fastrec-peers-") as tmp:
        for name in [t for t in a.tree.split(",") if t]:
            tree = load_tree(name, a.imagenet_count if name == "imagenet" else a.camera_count)
            results += run_tree(tree, peers, a.rounds, Path(tmp))
            report(results, a, started, time.perf_counter() - t0)  # after each tree: a partial run is kept
    return 0


def report(results: list[RowResult], a, started: str, seconds: float) -> None:
    """Print the table and write bench/results/peers-<start>[-label].{md,json}."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    note = (f"Measured {started[:4]}-{started[4:6]}-{started[6:8]} {started[9:11]}:{started[11:13]} UTC by "
            f"`bench/peers.py --rounds {a.rounds}` on {platform.processor() or platform.machine()} "
            f"({os.cpu_count()} CPUs; load average at the end {os.getloadavg()[0]:.2f}), fastrec {commit}, "
            f"{seconds:.0f} s. images/s: the median of {a.rounds} interleaved rounds (one pass over the tree "
            f"each); ÷ fastrec: the per-round ratio to fastrec's core (per-image rows) or to `fastrec pack` "
            f"(whole-tool rows), median and min–max; every row's geometry checked equal to im2rec's first.")
    text = table(results) + "\n\n" + note + "\n"
    print(text)
    if not a.no_save:
        RESULTS.mkdir(exist_ok=True)
        stem = RESULTS / f"peers-{started}{'-' + a.label if a.label else ''}"
        stem.with_suffix(".md").write_text(text)
        doc = {"started": started, "seconds": seconds, "commit": commit, "rounds": a.rounds,
               "resize": RESIZE, "quality": QUALITY, "machine": {"processor": platform.processor(),
                                                                  "cpu_count": os.cpu_count(),
                                                                  "python": platform.python_version(),
                                                                  "loadavg_end": os.getloadavg()},
               "rows": [asdict(r) for r in results]}
        stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {stem}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
