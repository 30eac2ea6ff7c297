"""Peer comparison with pytest-benchmark: fastrec's core against the per-image pipelines of others.

Every pipeline does the same job on the same preloaded file bytes (no disk I/O): JPEG bytes in ->
decode -> shorter edge 480 with im2rec's integer formula (smaller images are enlarged, as im2rec
does) -> JPEG quality 90, 4:2:0 out.  One thread each, plus fastrec at 2 threads:

* ``fastrec``        Worker.pack_bytes (reduced-DCT decode at the largest of 1/8, 1/4, 1/2 that
                     keeps the shorter edge >= 480, Lanczos resize, encode, RecordIO framing),
                     batches of 64 as `fastrec pack` hands them out
* ``fastrec-2t``     the same with 2 threads, 2 Workers, the list split in two
* ``im2rec``         im2rec.py's image_encode: cv2.imdecode (full decode) + cv2.resize
                     (INTER_LINEAR, its default) + cv2.imencode q90
* ``pyturbojpeg``    TurboJPEG decode at the same scale factor fastrec picks + cv2.resize INTER_AREA
                     + TurboJPEG encode q90 4:2:0 (needs the system libturbojpeg)
* ``simplejpeg``     decode_jpeg(min_width, min_height = the target; it may pick 3/8, 5/8, ...)
                     + cv2.resize INTER_AREA + encode_jpeg q90 4:2:0, accurate DCT
* ``pillow-bilinear`` / ``pillow-lanczos``  Image.draft(target) + resize from the box draft()
                     returns + save q90 (4:2:0)

bench/peers.py runs these rows and more (Pillow-SIMD, libvips, ffcv, whole tools) in interleaved
rounds, which `make bench` uses; this file keeps the pytest-benchmark form.

Before timing, each pipeline's outputs are checked for im2rec's geometry and scored: mean PSNR
against a full-resolution Pillow decode + Lanczos resize to the same size (as `fastrec bench`),
and mean JPEG KiB per image; both go into the JSON's extra_info.
OpenCV is limited to one thread (cv2.setNumThreads(1)) so that "one thread" holds for every row.
The trees come from bench/images.py (real photographs, cached in bench/.cache/trees):
ImageNet-like (100 images, ~500x375) and camera (8 photos of 8-12 MP).  Not collected by
`make test` (it lives in bench/).  Run, then make the README table:

    .venv/bin/python -m pytest bench/test_peers.py --benchmark-json bench/results/peers.json
    .venv/bin/python bench/ratios.py bench/results/peers.json

Environment: PEERS_TREES=imagenet,camera (which trees), PEERS_ROUNDS=5 (timed rounds per row; each
round is one pass over the whole tree, after one warm-up round).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")
pytest.importorskip("pytest_benchmark")

from fastrec._native.core import OK, Worker, output_size  # noqa: E402
from peer_pipelines import dct_scale  # noqa: E402  (bench/ is on sys.path: the DCT-scale rule, once)
from fastrec.formats.recordio import _read_record, unpack  # noqa: E402

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache" / "trees"
RESIZE, QUALITY, BATCH = 480, 90, 64
TREES = {  # name -> bench/images.py arguments
    "imagenet": dict(kind="imagenet", count=100, classes=2, seed=0),
    "camera": dict(kind="camera", count=8, classes=4, seed=0),
}
ROUNDS = int(os.environ.get("PEERS_ROUNDS", "5"))
SELECTED = [t for t in os.environ.get("PEERS_TREES", "imagenet,camera").split(",") if t]


# ---------------------------------------------------------------- trees
@dataclass
class Tree:
    name: str
    datas: list[bytes]
    sizes: list[tuple[int, int]]     # (width, height) of every input
    targets: list[tuple[int, int]]   # (width, height) of every output: im2rec's formula


def im2rec_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """im2rec.py image_encode: the shorter edge becomes `resize`, the other edge scales (floor)."""
    if height > width:
        return resize, height * resize // width
    return width * resize // height, resize


def build_tree(name: str) -> Path:
    spec = TREES[name]
    root = CACHE / f"peers-{spec['kind']}-{spec['count']}-c{spec['classes']}-s{spec['seed']}"
    stamp = root / ".complete"
    if not stamp.exists():
        cmd = [sys.executable, str(BENCH / "images.py"), str(root), "--kind", spec["kind"],
               "--count", str(spec["count"]), "--classes", str(spec["classes"]), "--seed", str(spec["seed"])]
        print(f"# building {name} tree: {' '.join(cmd)}", file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        stamp.write_text("ok\n")
    return root


_TREES: dict[str, Tree] = {}


def load_tree(name: str) -> Tree:
    if name not in _TREES:
        paths = sorted(p for p in build_tree(name).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        datas = [p.read_bytes() for p in paths]
        sizes = []
        for d in datas:
            with Image.open(io.BytesIO(d)) as im:
                sizes.append(im.size)
        _TREES[name] = Tree(name, datas, sizes, [im2rec_size(w, h, RESIZE) for w, h in sizes])
    return _TREES[name]




# ---------------------------------------------------------------- pipelines
def run_fastrec(tree: Tree, worker: Worker, idx: list[int]) -> list:
    out = []
    for b in range(0, len(idx), BATCH):
        part = idx[b:b + BATCH]
        out.append(worker.pack_bytes(part, [0.0] * len(part), [tree.datas[i] for i in part]))
    return out


def make_fastrec(tree: Tree, threads: int):
    workers = [Worker(resize=RESIZE, quality=QUALITY) for _ in range(threads)]
    shares = [list(range(t, len(tree.datas), threads)) for t in range(threads)]
    if threads == 1:
        return lambda: run_fastrec(tree, workers[0], shares[0])
    pool = ThreadPoolExecutor(threads)

    def run():
        futs = [pool.submit(run_fastrec, tree, w, s) for w, s in zip(workers, shares)]
        return [batch for f in futs for batch in f.result()]
    run.pool = pool
    return run


def make_im2rec(tree: Tree):
    params = [cv2.IMWRITE_JPEG_QUALITY, QUALITY]

    def run():
        out = []
        for d, (w, h) in zip(tree.datas, tree.targets):
            img = cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR)
            img = cv2.resize(img, (w, h))  # im2rec passes no interpolation: INTER_LINEAR
            out.append(cv2.imencode(".jpg", img, params)[1].tobytes())
        return out
    return run


def make_pyturbojpeg(tree: Tree):
    turbojpeg = pytest.importorskip("turbojpeg")
    try:
        tj = turbojpeg.TurboJPEG()
    except (OSError, RuntimeError) as err:
        pytest.skip(f"PyTurboJPEG cannot load libturbojpeg ({err}); apt-get install libturbojpeg0")
    scales = [(1, dct_scale(w, h, RESIZE)) for w, h in tree.sizes]

    def run():
        out = []
        for d, (w, h), sf in zip(tree.datas, tree.targets, scales):
            img = tj.decode(d, pixel_format=turbojpeg.TJPF_BGR, scaling_factor=sf)
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            out.append(tj.encode(img, quality=QUALITY, pixel_format=turbojpeg.TJPF_BGR,
                                 jpeg_subsample=turbojpeg.TJSAMP_420))
        return out
    return run


def make_simplejpeg(tree: Tree):
    simplejpeg = pytest.importorskip("simplejpeg")

    def run():
        out = []
        for d, (w, h) in zip(tree.datas, tree.targets):
            img = simplejpeg.decode_jpeg(d, colorspace="RGB", min_width=w, min_height=h)
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            out.append(simplejpeg.encode_jpeg(img, quality=QUALITY, colorspace="RGB",
                                              colorsubsampling="420", fastdct=False))
        return out
    return run


def make_pillow(tree: Tree, resample):
    def run():
        out = []
        for d, size in zip(tree.datas, tree.targets):
            with Image.open(io.BytesIO(d)) as im:
                # draft() rounds the scaled decode up; its box is the picture in that decode's
                # coordinates, so resizing from it does not stretch the image (as Image.thumbnail)
                _mode, box = im.draft("RGB", size)
                im = im.convert("RGB").resize(size, resample, box=box)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=QUALITY)  # Pillow's default subsampling is 4:2:0
            out.append(buf.getvalue())
        return out
    return run


def versions() -> dict[str, str]:
    v = {"opencv": cv2.__version__, "pillow": Image.__version__, "numpy": np.__version__}
    for mod in ("simplejpeg", "turbojpeg"):
        try:
            v[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    return v


PIPELINES = {  # name -> (factory(tree), threads)
    "fastrec": (lambda t: make_fastrec(t, 1), 1),
    "fastrec-2t": (lambda t: make_fastrec(t, 2), 2),
    "im2rec": (make_im2rec, 1),
    "pyturbojpeg": (make_pyturbojpeg, 1),
    "simplejpeg": (make_simplejpeg, 1),
    "pillow-bilinear": (lambda t: make_pillow(t, Image.Resampling.BILINEAR), 1),
    "pillow-lanczos": (lambda t: make_pillow(t, Image.Resampling.LANCZOS), 1),
}


def output_jpegs(tool: str, out, tree: Tree, threads: int) -> list[bytes]:
    """The output JPEGs of one run, in tree order."""
    if not tool.startswith("fastrec"):
        return list(out)
    jpegs = []
    for blob, results in out:
        start = 0
        for r in results:
            assert r[0] == OK, r
            jpegs.append(unpack(_read_record(io.BytesIO(blob[start:r[1]])))[1])
            start = r[1]
    order = [i for t in range(threads) for i in range(t, len(tree.datas), threads)]  # shares, one after the other
    ordered: list[bytes] = [b""] * len(jpegs)
    for i, j in zip(order, jpegs):
        ordered[i] = j
    return ordered


_REFS: dict[str, list[np.ndarray]] = {}


def references(tree: Tree) -> list[np.ndarray]:
    """Full-resolution Pillow decode + Lanczos to the target size (as `fastrec bench`)."""
    if tree.name not in _REFS:
        from fastrec.reports.bench import reference_image
        _REFS[tree.name] = [reference_image(d, t, "lanczos") for d, t in zip(tree.datas, tree.targets)]
    return _REFS[tree.name]


def fidelity(jpegs: list[bytes], tree: Tree) -> tuple[list[tuple[int, int]], float]:
    """(output sizes, mean PSNR in dB against the references)."""
    from fastrec.reports.metrics import psnr
    sizes, scores = [], []
    for j, ref in zip(jpegs, references(tree)):
        with Image.open(io.BytesIO(j)) as im:
            sizes.append(im.size)
            px = np.asarray(im.convert("RGB"))
        if px.shape == ref.shape:
            scores.append(psnr(ref, px))
    return sizes, float(np.mean(scores)) if scores else float("nan")


@pytest.fixture(autouse=True, scope="module")
def _one_opencv_thread():
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(before)


@pytest.mark.parametrize("tool", list(PIPELINES))
@pytest.mark.parametrize("tree_name", SELECTED)
def test_peer(benchmark, tree_name: str, tool: str):
    tree = load_tree(tree_name)
    # im2rec's formula is the geometry every pipeline aims at; fastrec computes it in C.
    assert [output_size(w, h, RESIZE) for w, h in tree.sizes] == tree.targets
    factory, threads = PIPELINES[tool]
    fn = factory(tree)
    try:
        out = fn()
        jpegs = output_jpegs(tool, out, tree, threads)
        sizes, db = fidelity(jpegs, tree)
        assert sizes == tree.targets
        benchmark.group = tree_name
        benchmark.extra_info.update(tree=tree_name, tool=tool, threads=threads, images=len(tree.datas),
                                    input_mb=sum(map(len, tree.datas)) / 1e6,
                                    output_kib_per_image=sum(map(len, jpegs)) / 1024 / len(jpegs),
                                    psnr_db=db, versions=versions())
        benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    finally:
        pool = getattr(fn, "pool", None)
        if pool is not None:
            pool.shutdown()
