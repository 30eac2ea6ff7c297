"""`fastrec bench`: what codec settings cost in speed and size, and buy in fidelity, on your images.

Before packing millions of images, run the native core over a seeded random sample of the tree
for every combination of quality, chroma subsampling, DCT, resize filter and upscaling, and get
per setting:

* images/s per core: the sample's bytes are preloaded (no disk I/O), `threads` threads each run
  their own `Worker` over an interleaved share of the sample; one warm-up pass, then the best of
  `passes` timed passes; the rate is divided by `threads`;
* KiB per image: mean bytes the .rec file grows by per image (framing and IRHeader included), and
  the projected .rec size of the whole tree (that mean times the number of images under ROOT);
* PSNR (dB) and SSIM of the decoded output against a reference: a full-resolution Pillow decode
  (EXIF orientation applied, RGB) resized with a high-quality filter (Lanczos by default, no DCT
  reduction) to exactly the output size; metrics run on the first `metric_sample` images of the
  sample (fastrec.reports.metrics, equal to scikit-image's).

`run()` prints a rich table (Pareto front of size vs PSNR and the seed default marked) and writes
bench.csv, bench.json and bench.png (size vs PSNR, colour = speed) into `out`; `sweep()` only
measures and returns a BenchResult.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import os
import platform
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Sequence

import numpy as np

from fastrec._version import __version__
from fastrec.formats.lists import DEFAULT_EXTS
from fastrec.errors import FastrecError
from fastrec.progress import make_progress, shown

log = logging.getLogger(__name__)

SUBSAMPLINGS = {"420": 420, "4:2:0": 420, "422": 422, "4:2:2": 422, "444": 444, "4:4:4": 444}
SUBSAMPLING_LABEL = {420: "4:2:0", 422: "4:2:2", 444: "4:4:4"}
DCTS = ("accurate", "fast")  # libjpeg JDCT_ISLOW / JDCT_IFAST, for decode and encode
FILTERS = ("auto", "lanczos", "bicubic", "triangle")
UPSCALES = {"yes": True, "no": False}
REFERENCES = ("lanczos", "bicubic", "triangle", "box")  # Pillow LANCZOS, BICUBIC, BILINEAR, BOX
PROGRESS_MODES = ("auto", "on", "off")
BATCH = 32  # images per pack_bytes call: bounds the memory of one output blob


class BenchError(FastrecError):
    """Bad arguments or a tree that cannot be benchmarked; the message says what to change."""


@dataclass(frozen=True)
class Setting:
    """One combination of encoder settings."""

    quality: int
    subsampling: int
    dct: str
    filter: str
    upscale: bool

    @property
    def label(self) -> str:
        return (f"q{self.quality} {SUBSAMPLING_LABEL[self.subsampling]} {self.dct} {self.filter}"
                f"{'' if self.upscale else ' no-upscale'}")

    def pack_command(self, resize: int) -> str:
        """The `fastrec pack` command line that packs with this setting (tests/test_cli.py parses it)."""
        return (f"fastrec pack PREFIX ROOT --resize {resize} --quality {self.quality} --subsampling "
                f"{self.subsampling} --dct {self.dct} --filter {self.filter}{'' if self.upscale else ' --no-upscale'}")

    def worker_kwargs(self, resize: int) -> dict:
        return dict(resize=resize, quality=self.quality, subsampling=self.subsampling,
                    fast_dct=self.dct == "fast", filter=self.filter, no_upscale=not self.upscale)


# The settings the table and plot point out: the seed workflow's (q90 4:2:0, accurate DCT, and
# fastrec's default filter with im2rec's upscaling) and im2rec.py's --quality default (95).
SEED_DEFAULT = Setting(90, 420, "accurate", "auto", True)
IM2REC_DEFAULT = Setting(95, 420, "accurate", "auto", True)


def _values(value, name: str) -> list[str]:
    """'80,90' or [80, 90] -> ['80', '90'] (order kept, duplicates dropped)."""
    if isinstance(value, (str, int, bool)):
        items = str(value).split(",")
    else:
        items = [str(v) for v in value]
    out = []
    for item in (i.strip().lower() for i in items):
        if item and item not in out:
            out.append(item)
    if not out:
        raise BenchError(f"--{name} needs at least one value")
    return out


def _choose(value, name: str, allowed: Sequence[str]) -> tuple[str, ...]:
    vals = _values(value, name)
    for v in vals:
        if v not in allowed:
            raise BenchError(f"unknown --{name} value {v!r}; choose from {', '.join(allowed)}")
    return tuple(vals)


@dataclass(frozen=True)
class BenchOptions:
    """What to sweep and how to measure; build it with `BenchOptions.make` to validate."""

    sample: int = 200            # images drawn from the tree (all of them if it has fewer)
    seed: int = 0                # seed of the random sample
    quality: tuple[int, ...] = (80, 90, 95)
    subsampling: tuple[int, ...] = (420, 444)
    dct: tuple[str, ...] = ("accurate",)
    filter: tuple[str, ...] = ("auto",)
    resize: int = 480            # shorter edge in pixels, as im2rec --resize (0: keep the size)
    upscale: tuple[bool, ...] = (True, False)
    threads: int = 1             # threads, each with its own Worker; rates are per thread
    passes: int = 2              # timed passes after the warm-up; the best one counts
    metric_sample: int = 50      # images (of the sample) that PSNR and SSIM are computed on
    reference: str = "lanczos"   # filter of the reference resize
    out: str | None = "fastrec-bench"  # folder for bench.csv/.json/.png; None: write nothing
    progress: str = "auto"       # "auto" (on a terminal), "on", "off"
    exts: tuple[str, ...] = DEFAULT_EXTS

    @classmethod
    def make(cls, **kw) -> "BenchOptions":
        """Options from Python values or CLI strings ("80,90,95", "444", "yes,no"); raises
        BenchError naming the bad argument."""
        unknown = set(kw) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown bench option(s): {', '.join(sorted(unknown))}")
        o = dict(kw)
        if "quality" in o:
            qs = []
            for v in _values(o["quality"], "quality"):
                try:
                    q = int(v)
                except ValueError:
                    raise BenchError(f"--quality {v!r} is not a whole number (JPEG quality is 1..100)") from None
                if not 1 <= q <= 100:
                    raise BenchError(f"--quality {q} is outside 1..100")
                qs.append(q)
            o["quality"] = tuple(dict.fromkeys(qs))
        if "subsampling" in o:
            o["subsampling"] = tuple(dict.fromkeys(
                SUBSAMPLINGS[v] for v in _choose(o["subsampling"], "subsampling", list(SUBSAMPLINGS))))
        if "dct" in o:
            o["dct"] = _choose(o["dct"], "dct", DCTS)
        if "filter" in o:
            o["filter"] = _choose(o["filter"], "filter", FILTERS)
        if "upscale" in o:
            v = o["upscale"]
            if isinstance(v, bool):
                v = "yes" if v else "no"
            elif not isinstance(v, str):
                v = ["yes" if x is True else "no" if x is False else x for x in v]
            o["upscale"] = tuple(UPSCALES[x] for x in _choose(v, "upscale", list(UPSCALES)))
        if "reference" in o:
            o["reference"] = _choose(o["reference"], "reference", REFERENCES)[0]
        if "progress" in o and o["progress"] not in PROGRESS_MODES:
            raise BenchError(f"unknown --progress value {o['progress']!r}; choose from auto, on, off")
        if "exts" in o:
            o["exts"] = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in o["exts"])
        for name, low in (("sample", 1), ("threads", 1), ("passes", 1), ("metric_sample", 1), ("resize", 0)):
            if name in o:
                v = o[name]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise BenchError(f"--{name.replace('_', '-')} must be a whole number, got {v!r}")
                if v < low:
                    raise BenchError(f"--{name.replace('_', '-')} must be at least {low}, got {v}")
        return cls(**o)

    def settings(self) -> list[Setting]:
        """Every combination, in the order quality, subsampling, dct, filter, upscale."""
        return [Setting(*c) for c in itertools.product(self.quality, self.subsampling, self.dct,
                                                       self.filter, self.upscale)]


@dataclass
class Row:
    """The measurements of one setting."""

    quality: int
    subsampling: int
    dct: str
    filter: str
    upscale: bool
    images_per_s_per_core: float
    bytes_per_image: float       # mean .rec bytes per image (record framing and IRHeader included)
    projected_bytes: float       # bytes_per_image x images under ROOT
    psnr_db: float               # mean over the metric images (identical images count as 100 dB)
    ssim: float                  # mean over the metric images large enough for a 3x3 window
    images: int                  # images encoded (and timed)
    metric_images: int
    ssim_images: int
    failed: int = 0              # images the core refused with this setting (left out of the means)
    pareto: bool = False         # no other setting is smaller and at least as faithful
    seed_default: bool = False
    im2rec_default: bool = False

    @property
    def setting(self) -> Setting:
        return Setting(self.quality, self.subsampling, self.dct, self.filter, self.upscale)

    @property
    def kib_per_image(self) -> float:
        return self.bytes_per_image / 1024

    @property
    def projected_gb(self) -> float:
        return self.projected_bytes / 1e9


@dataclass
class BenchResult:
    root: str
    options: BenchOptions
    total_images: int            # images under ROOT with a listed extension
    sampled: list[str]           # relative paths benchmarked, in sample order
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def metric_images(self) -> int:
        return min(self.options.metric_sample, len(self.sampled))


# ---------------------------------------------------------------- sampling and preloading
def find_images(root: str, exts: Sequence[str] = DEFAULT_EXTS) -> list[str]:
    """Relative paths of the files under `root` (recursively) whose lower-cased extension is in
    `exts`, sorted; the walk does not follow links to folders."""
    if not os.path.isdir(root):
        raise BenchError(f"image root {root!r} does not exist or is not a folder")
    found: list[str] = []

    def onerror(err: OSError) -> None:
        log.warning("cannot read folder %s: %s (left out)", err.filename, err.strerror)

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in filenames:
            if os.path.splitext(name)[1].lower() in exts:
                found.append(name if rel == "." else os.path.join(rel, name))
    found.sort()
    return found


class _Bar:
    """A rich progress bar, or nothing (so the sweep code has one shape either way)."""

    def __init__(self, mode: str):
        self._p = make_progress(mode, "count", transient=True) if shown(mode) else None
        self._task = None

    def __enter__(self) -> "_Bar":
        if self._p:
            self._p.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._p:
            self._p.stop()

    def task(self, description: str, total: int) -> None:
        if self._p:
            if self._task is not None:
                self._p.update(self._task, visible=False)
            self._task = self._p.add_task(description, total=total)

    def advance(self, n: int = 1, description: str | None = None) -> None:
        if self._p and self._task is not None:
            kw = {"description": description} if description else {}
            self._p.update(self._task, advance=n, **kw)


# ---------------------------------------------------------------- measuring
def _image_bytes(record: bytes) -> bytes:
    """The image bytes of one framed record (flag-0 IRHeader, as the bench writes)."""
    from fastrec.formats.recordio import _read_record, unpack
    payload = _read_record(io.BytesIO(record))
    return unpack(payload)[1]


@dataclass
class _Item:
    index: int           # position in the sample
    ok: bool
    nbytes: int          # framed record bytes
    out_size: tuple[int, int]
    jpeg: bytes | None   # kept for the metric images only
    message: str = ""


def _pack_share(worker, datas: Sequence[bytes], share: Sequence[int], keep: set | None) -> list[_Item]:
    """Pack the sample items `share` in batches; keep the image bytes of those in `keep`."""
    from fastrec._native.core import OK, STATUS_NAMES
    items: list[_Item] = []
    for b in range(0, len(share), BATCH):
        idx = share[b:b + BATCH]
        blob, results = worker.pack_bytes(list(idx), [0.0] * len(idx), [datas[i] for i in idx])
        start = 0
        for i, (status, end, message, _iw, _ih, ow, oh, _den, _nb) in zip(idx, results):
            ok = status == OK
            jpeg = _image_bytes(blob[start:end]) if ok and keep is not None and i in keep else None
            items.append(_Item(i, ok, end - start, (ow, oh), jpeg,
                               "" if ok else f"{STATUS_NAMES[status]}: {message}"))
            start = end
    return items


def _shares(n: int, threads: int) -> list[list[int]]:
    """Interleaved shares of range(n), one per thread (balances mixed image sizes)."""
    return [list(range(t, n, threads)) for t in range(threads)]


def _pass(pool, workers, datas, shares, keep) -> tuple[float, list[_Item]]:
    t0 = time.perf_counter()
    if pool is None:
        items = _pack_share(workers[0], datas, shares[0], keep)
    else:
        futs = [pool.submit(_pack_share, w, datas, s, keep) for w, s in zip(workers, shares)]
        items = [it for f in futs for it in f.result()]
    return time.perf_counter() - t0, items


def reference_image(data: bytes, size: tuple[int, int], filt: str) -> np.ndarray:
    """Full-resolution decode (EXIF orientation applied, RGB) + high-quality resize to `size`."""
    from PIL import Image, ImageOps
    resample = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
                "triangle": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX}[filt]
    with Image.open(io.BytesIO(data)) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        if im.size != size:
            im = im.resize(size, resample)
        return np.asarray(im)


def _decode(jpeg: bytes) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im.convert("RGB"))


def sweep(root: str, options: BenchOptions | None = None, **kw) -> BenchResult:
    """Measure every setting of `options` (or BenchOptions.make(**kw)) on a sample of `root`."""
    from fastrec._native.core import Worker
    from fastrec.reports.metrics import psnr, ssim, ssim_window

    o = options if options is not None else BenchOptions.make(**kw)
    t_start = time.perf_counter()
    paths = find_images(root, o.exts)
    if not paths:
        raise BenchError(f"no images ({', '.join(o.exts)}) under {root!r}")
    chosen = random.Random(o.seed).sample(paths, min(o.sample, len(paths)))
    result = BenchResult(root=root, options=o, total_images=len(paths), sampled=[])
    settings = o.settings()

    with _Bar(o.progress) as bar:
        bar.task("reading the sample", len(chosen))
        rels, datas = [], []
        for rel in chosen:
            try:
                with open(os.path.join(root, rel), "rb") as f:
                    datas.append(f.read())
                rels.append(rel)
            except OSError as err:
                result.excluded.append((rel, f"cannot read: {err.strerror}"))
            bar.advance()

        # One probe pass with plain settings: images the core cannot pack (PNG and other inputs
        # for the Python fallback, or files over the limits) are left out of every setting.
        probe = _pack_share(Worker(resize=o.resize), datas, list(range(len(datas))), None)
        good = [it.index for it in probe if it.ok]
        result.excluded += [(rels[it.index], it.message) for it in probe if not it.ok]
        if not good:
            raise BenchError(f"none of the {len(chosen)} sampled images under {root!r} can be packed by the "
                             f"native core (first: {result.excluded[0][0]}: {result.excluded[0][1]})")
        rels = [rels[i] for i in good]
        datas = [datas[i] for i in good]
        result.sampled = rels
        n = len(datas)
        metric = set(range(min(o.metric_sample, n)))
        shares = _shares(n, o.threads)
        refs: dict[tuple[int, tuple[int, int]], np.ndarray] = {}

        bar.task("settings", len(settings))
        pool = ThreadPoolExecutor(o.threads, thread_name_prefix="fastrec-bench") if o.threads > 1 else None
        try:
            for s in settings:
                bar.advance(0, description=s.label)
                workers = [Worker(**s.worker_kwargs(o.resize)) for _ in range(o.threads)]
                _, items = _pass(pool, workers, datas, shares, metric)  # warm-up, keeps outputs
                best = min(_pass(pool, workers, datas, shares, None)[0] for _ in range(o.passes))
                ok = [it for it in items if it.ok]
                ps, ss = [], []
                for it in ok:
                    if it.jpeg is None:
                        continue
                    key = (it.index, it.out_size)
                    if key not in refs:
                        refs[key] = reference_image(datas[it.index], it.out_size, o.reference)
                    ref, out = refs[key], _decode(it.jpeg)
                    if ref.shape != out.shape:
                        raise BenchError(f"{rels[it.index]}: output {out.shape} and reference {ref.shape} differ")
                    ps.append(psnr(ref, out))
                    win = ssim_window(ref.shape)
                    if win:
                        ss.append(ssim(ref, out, win))
                mean_bytes = float(np.mean([it.nbytes for it in ok])) if ok else math.nan
                result.rows.append(Row(
                    s.quality, s.subsampling, s.dct, s.filter, s.upscale,
                    images_per_s_per_core=n / best / o.threads,
                    bytes_per_image=mean_bytes, projected_bytes=mean_bytes * len(paths),
                    psnr_db=float(np.mean(ps)) if ps else math.nan,
                    ssim=float(np.mean(ss)) if ss else math.nan,
                    images=len(ok), metric_images=len(ps), ssim_images=len(ss),
                    failed=len(items) - len(ok)))
                bar.advance(1)
        finally:
            if pool is not None:
                pool.shutdown()
    mark(result.rows)
    result.seconds = time.perf_counter() - t_start
    return result


def mark(rows: list[Row]) -> None:
    """Set the pareto (size vs PSNR) and default flags of `rows`.

    Rows that upscale and rows that keep small images are measured against different references
    (the enlarged original, the original itself), so each has its own Pareto front."""
    valid = [r for r in rows if not (math.isnan(r.bytes_per_image) or math.isnan(r.psnr_db))]
    for r in rows:
        r.pareto = r in valid and not any(
            q.upscale == r.upscale and q.bytes_per_image <= r.bytes_per_image and q.psnr_db >= r.psnr_db
            and (q.bytes_per_image < r.bytes_per_image or q.psnr_db > r.psnr_db) for q in valid)
    for flag, default in (("seed_default", SEED_DEFAULT), ("im2rec_default", IM2REC_DEFAULT)):
        exact = [r for r in rows if r.setting == default]
        # Without the exact setting in the sweep, mark those that share its quality, subsampling, DCT.
        near = exact or [r for r in rows if (r.quality, r.subsampling, r.dct) ==
                         (default.quality, default.subsampling, default.dct)]
        for r in near:
            setattr(r, flag, True)


# ---------------------------------------------------------------- reporting
def row_dict(r: Row) -> dict:
    d = asdict(r)
    d["subsampling"] = SUBSAMPLING_LABEL[r.subsampling]
    d["upscale"] = "yes" if r.upscale else "no"
    d["kib_per_image"] = r.kib_per_image
    d["projected_gb"] = r.projected_gb
    return d


CSV_FIELDS = ("quality", "subsampling", "dct", "filter", "upscale", "images_per_s_per_core",
              "kib_per_image", "bytes_per_image", "projected_gb", "psnr_db", "ssim", "pareto",
              "seed_default", "im2rec_default", "images", "metric_images", "ssim_images", "failed",
              "projected_bytes")


def write_csv(result: BenchResult, path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in result.rows:
            w.writerow({k: v for k, v in row_dict(r).items() if k in CSV_FIELDS})


def write_json(result: BenchResult, path: str) -> None:
    o = result.options
    doc = {
        "fastrec_version": __version__, "root": os.path.abspath(result.root),
        "total_images": result.total_images, "sampled": len(result.sampled),
        "metric_images": result.metric_images, "excluded": [list(e) for e in result.excluded],
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(o).items()},
        "timing": f"{o.threads} thread(s), best of {o.passes} timed passes after a warm-up, "
                  "images preloaded; images_per_s_per_core = images / seconds / threads",
        "reference": f"full-resolution Pillow decode + {o.reference} resize to the output size",
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor(), "cpu_count": os.cpu_count()},
        "seconds": result.seconds,
        "rows": [row_dict(r) for r in result.rows],
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, allow_nan=True)
        f.write("\n")


def _short(r: Row) -> str:
    return (f"q{r.quality} {r.subsampling} {'fast' if r.dct == 'fast' else 'acc'} {r.filter[:4]}"
            f"{'' if r.upscale else ' noup'}")


PANELS = ((True, "upscale small images (im2rec)", "o"), (False, "keep small images (--no-upscale)", "s"))
MARKED = (("seed_default", SEED_DEFAULT, "seed default", (-80, 26)),
          ("im2rec_default", IM2REC_DEFAULT, "im2rec default (q95)", (-90, -34)))


def plot_figure(result: BenchResult):
    """The plot as a matplotlib Figure: one panel per upscale mode present (their references
    differ, so their PSNRs do not share an axis), each with KiB/img (x) vs PSNR (y), colour =
    images/s per core, its own Pareto front, and fastrec's seed default and im2rec's default
    (q95) marked."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise BenchError("the plot needs matplotlib: pip install 'matplotlib<3.10' "
                         "(or pass --out '' to skip the files)") from err
    rows = [r for r in result.rows if not (math.isnan(r.psnr_db) or math.isnan(r.bytes_per_image))]
    panels = [(up, title, marker) for up, title, marker in PANELS if any(r.upscale == up for r in rows)] \
        or [PANELS[0]]
    fig = Figure(figsize=(7 * len(panels) + 1.5, 6), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    speeds = [r.images_per_s_per_core for r in rows]
    vmin, vmax = (min(speeds), max(speeds)) if speeds else (0, 1)
    o = result.options
    sc = None
    for ax, (up, title, marker) in zip(axes, panels):
        sel = [r for r in rows if r.upscale == up]
        if sel:
            sc = ax.scatter([r.kib_per_image for r in sel], [r.psnr_db for r in sel],
                            c=[r.images_per_s_per_core for r in sel], cmap="viridis", vmin=vmin,
                            vmax=vmax if vmax > vmin else vmin + 1, marker=marker, s=46,
                            edgecolors="k", linewidths=0.4)
        _draw_front(ax, sorted((r for r in sel if r.pareto), key=lambda r: r.bytes_per_image))
        for flag, default, name, offset in MARKED:   # in both panels: the defaults' quality and codec
            marked = [r for r in sel if replace(r.setting, upscale=default.upscale) == default] or \
                [r for r in sel if getattr(r, flag)]
            for r in marked[:1]:
                ax.annotate(f"{name}\n{_short(r)}", (r.kib_per_image, r.psnr_db), xytext=offset,
                            textcoords="offset points", fontsize=8,
                            arrowprops=dict(arrowstyle="->", color="k", lw=0.8))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("KiB per image in the .rec")
        ax.set_ylabel(f"PSNR (dB) vs {o.reference} reference" if up else "PSNR (dB) vs the original")
        ax.grid(True, alpha=0.3)
    if sc is not None:
        fig.colorbar(sc, ax=list(axes), label="images/s per core")
    fig.suptitle(f"fastrec bench: {len(result.sampled)} images of {os.path.basename(os.path.abspath(result.root))}"
                 f", short edge {o.resize or 'kept'}, {o.threads} thread(s)", fontsize=10)
    return fig


def _draw_front(ax, front: list[Row]) -> None:
    """The Pareto front as a red step line, labelled where labels do not overlap."""
    if not front:
        return
    ax.step([r.kib_per_image for r in front], [r.psnr_db for r in front], where="post",
            color="tab:red", lw=1.2, label="Pareto front (size vs PSNR)")
    xspan = max(1e-9, front[-1].kib_per_image - front[0].kib_per_image)
    last = None
    for r in front:  # label the front, skipping points that would print over the previous label
        if last is not None and (r.kib_per_image - last.kib_per_image < 0.06 * xspan
                                 and abs(r.psnr_db - last.psnr_db) < 0.4):
            continue
        last = r
        ax.annotate(_short(r), (r.kib_per_image, r.psnr_db), xytext=(4, -10),
                    textcoords="offset points", fontsize=6.5, color="tab:red")
    ax.legend(fontsize=7, loc="lower right")


def write_plot(result: BenchResult, path: str) -> None:
    """bench.png: see `plot_figure`."""
    plot_figure(result).savefig(path, format="png")


def _table(result: BenchResult):
    from rich.table import Table
    o = result.options
    t = Table(title=f"fastrec bench: {len(result.sampled)} of {result.total_images} images, short edge "
                    f"{o.resize or 'kept'}", title_justify="left")
    for name, just in (("quality", "right"), ("subsampling", "left"), ("dct", "left"), ("filter", "left"),
                       ("upscale", "left"), ("img/s/core", "right"), ("KiB/img", "right"),
                       ("proj. GB", "right"), ("PSNR dB", "right"), ("SSIM", "right"), ("", "left")):
        t.add_column(name, justify=just)
    for r in result.rows:
        notes = []
        if r.pareto:
            notes.append("★ pareto")
        if r.seed_default:
            notes.append("seed default")
        if r.im2rec_default:
            notes.append("im2rec q95")
        if r.failed:
            notes.append(f"{r.failed} failed")
        style = "bold" if r.pareto else None
        t.add_row(str(r.quality), SUBSAMPLING_LABEL[r.subsampling], r.dct, r.filter,
                  "yes" if r.upscale else "no", f"{r.images_per_s_per_core:.0f}", f"{r.kib_per_image:.1f}",
                  f"{r.projected_gb:.3g}", f"{r.psnr_db:.2f}", f"{r.ssim:.4f}", ", ".join(notes), style=style)
    return t


def summary_lines(result: BenchResult) -> list[str]:
    """The notes under the table: how it was measured and which settings answer the question."""
    o, rows = result.options, result.rows
    m = result.metric_images
    lines = [
        f"sample: {len(result.sampled)} images (seed {o.seed}) of {result.total_images} under {result.root}; "
        f"speed: {o.threads} thread(s), best of {o.passes} passes after a warm-up, files preloaded",
        f"PSNR/SSIM on {m} of {len(result.sampled)} images"
        f"{' (subsample; --metric-sample to change)' if m < len(result.sampled) else ''}, against a full-resolution "
        f"decode + Pillow {o.reference} resize to the output size; KiB/img counts .rec bytes (framing included)",
        f"★ pareto: no other setting of the same upscale mode (the same reference) is both smaller and more "
        f"faithful (PSNR); seed default: {SEED_DEFAULT.label} with upscaling; im2rec q95: im2rec.py's --quality "
        "default",
    ]
    if any(not r.upscale for r in rows) and o.resize:
        lines.append(f"upscale no: images with a shorter edge below {o.resize} keep their size, and their "
                     "reference is the original image (fidelity to what that geometry can hold)")
    if result.excluded:
        ex = result.excluded
        lines.append(f"left out {len(ex)} sampled file(s) the native core does not pack (e.g. {ex[0][0]}: {ex[0][1]})")
    seed = next((r for r in rows if r.setting == SEED_DEFAULT), None)
    # the front of the upscaling rows (the seed default's reference), else the only one swept
    group = [r for r in rows if r.upscale] or rows
    front = sorted((r for r in group if r.pareto), key=lambda r: r.bytes_per_image)
    if seed and front:
        # The smallest Pareto setting that is at least as faithful as the seed default.
        alt = next((r for r in front if r.psnr_db >= seed.psnr_db - 1e-9), None)
        if alt is not None and alt.setting != seed.setting:
            lines.append(f"at the seed default's fidelity ({seed.psnr_db:.2f} dB), {alt.setting.label} is "
                         f"{100 * (1 - alt.bytes_per_image / seed.bytes_per_image):.0f}% smaller "
                         f"({alt.kib_per_image:.1f} vs {seed.kib_per_image:.1f} KiB/img) at "
                         f"{alt.images_per_s_per_core:.0f} vs {seed.images_per_s_per_core:.0f} img/s/core")
            lines.append(f"  to pack with it: {alt.setting.pack_command(o.resize)}")
        elif alt is not None:
            lines.append("the seed default is on the Pareto front: nothing smaller is as faithful")
    if front:
        fastest = max(front, key=lambda r: r.images_per_s_per_core)
        lines.append(f"fastest Pareto setting: {fastest.setting.label} ({fastest.images_per_s_per_core:.0f} img/s/core, "
                     f"{fastest.kib_per_image:.1f} KiB/img, {fastest.psnr_db:.2f} dB)")
        lines.append(f"  to pack with it: {fastest.setting.pack_command(o.resize)}")
    return lines


def write_outputs(result: BenchResult, out: str) -> list[str]:
    """bench.csv, bench.json and bench.png in `out` (created); returns their paths."""
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise BenchError(f"cannot create output folder {out!r}: {err.strerror}") from err
    paths = [os.path.join(out, n) for n in ("bench.csv", "bench.json", "bench.png")]
    write_csv(result, paths[0])
    write_json(result, paths[1])
    write_plot(result, paths[2])
    return paths


def run(root: str, options: BenchOptions | None = None, console=None, **kw) -> BenchResult:
    """`fastrec bench`: sweep, print the table and notes, write the files; returns the result."""
    from rich.console import Console
    o = options if options is not None else BenchOptions.make(**kw)
    result = sweep(root, o)
    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=150)
    console.print(_table(result))
    for line in summary_lines(result):
        console.print(line, highlight=False, markup=False)
    if o.out:
        paths = write_outputs(result, o.out)
        console.print(f"wrote {', '.join(paths)}", highlight=False, markup=False)
    return result
