"""`fastrec bench`: what codec settings cost in speed and size, and buy in fidelity, on your images.

Before packing millions of images, run the native core over a seeded random sample of the tree
for every combination of quality, chroma subsampling, DCT, resize filter and upscaling, and get
per setting:

* images/s per core: the sample's bytes are preloaded (no disk I/O), `threads` threads each run
  their own `Worker` over an interleaved share of the sample; one warm-up pass per setting, then
  `passes` timed rounds, each running every setting once in a rotated order (so a burst of load
  from other jobs hits all settings alike); the median round and the min–max, divided by `threads`;
* KiB per image: mean bytes the .rec file grows by per image (framing and IRHeader included), and
  the projected .rec size of the whole tree (that mean times the number of images under ROOT);
* PSNR (dB) and SSIM of the decoded output against a reference: a full-resolution Pillow decode
  (EXIF orientation applied, RGB) resized with a high-quality filter (Lanczos by default, no DCT
  reduction) to exactly the output size; metrics run on the first `metric_sample` images of the
  sample (fastrec.reports.metrics, equal to scikit-image's);
* margins against the seed's q90 4:2:0 (fastrec.reports.margins): the per-round speed ratio and
  bootstrap intervals of the per-image size, PSNR and SSIM differences; a setting is recommended
  only when it is better beyond its interval on one axis and worse beyond it on none.

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
from fastrec.reports.margins import BETTER, UNJUDGED, WORSE, Bootstrap, Margins, compare
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
    passes: int = 5              # timed rounds after the warm-up (every setting once per round)
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
    images_per_s_per_core: float  # median over the timed rounds
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
    rates: list[float] = field(default_factory=list)        # images/s per core of each timed round
    image_bytes: list[float] = field(default_factory=list)  # per sampled image (NaN: failed)
    image_psnr: list[float] = field(default_factory=list)   # per metric image (NaN: failed)
    image_ssim: list[float] = field(default_factory=list)   # per metric image (NaN: failed or too small)
    baseline: bool = False       # the row the margins are measured against
    margins: Margins | None = None  # against the baseline of the same upscale mode
    recommended: bool = False    # better than the baseline beyond the margins on one axis, worse on none

    @property
    def rate_lo(self) -> float:
        return min(self.rates) if self.rates else math.nan

    @property
    def rate_hi(self) -> float:
        return max(self.rates) if self.rates else math.nan

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


def _measure(s: Setting, items: list[_Item], datas, rels, metric: set, refs: dict, o: BenchOptions,
             total: int) -> Row:
    """A setting's row from its warm-up pass: per-image bytes, PSNR and SSIM (speed comes later)."""
    from fastrec.reports.metrics import psnr, ssim, ssim_window
    ok = [it for it in items if it.ok]
    nbytes = [math.nan] * len(datas)
    ps = [math.nan] * len(metric)
    ss = [math.nan] * len(metric)
    for it in ok:
        nbytes[it.index] = it.nbytes
        if it.jpeg is None:
            continue
        key = (it.index, it.out_size)
        if key not in refs:
            refs[key] = reference_image(datas[it.index], it.out_size, o.reference)
        ref, out = refs[key], _decode(it.jpeg)
        if ref.shape != out.shape:
            raise BenchError(f"{rels[it.index]}: output {out.shape} and reference {ref.shape} differ")
        ps[it.index] = psnr(ref, out)
        win = ssim_window(ref.shape)
        if win:
            ss[it.index] = ssim(ref, out, win)
    mean_bytes = float(np.mean([it.nbytes for it in ok])) if ok else math.nan
    scored_p = [v for v in ps if not math.isnan(v)]
    scored_s = [v for v in ss if not math.isnan(v)]
    return Row(s.quality, s.subsampling, s.dct, s.filter, s.upscale,
               images_per_s_per_core=math.nan,
               bytes_per_image=mean_bytes, projected_bytes=mean_bytes * total,
               psnr_db=float(np.mean(scored_p)) if scored_p else math.nan,
               ssim=float(np.mean(scored_s)) if scored_s else math.nan,
               images=len(ok), metric_images=len(scored_p), ssim_images=len(scored_s),
               failed=len(items) - len(ok), image_bytes=nbytes, image_psnr=ps, image_ssim=ss)


def sweep(root: str, options: BenchOptions | None = None, **kw) -> BenchResult:
    """Measure every setting of `options` (or BenchOptions.make(**kw)) on a sample of `root`."""
    from fastrec._native.core import Worker

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

        bar.task("settings (warm-up and metrics)", len(settings))
        pool = ThreadPoolExecutor(o.threads, thread_name_prefix="fastrec-bench") if o.threads > 1 else None
        try:
            setting_workers = []
            for s in settings:
                bar.advance(0, description=s.label)
                workers = [Worker(**s.worker_kwargs(o.resize)) for _ in range(o.threads)]
                setting_workers.append(workers)
                _, items = _pass(pool, workers, datas, shares, metric)  # warm-up, keeps outputs
                result.rows.append(_measure(s, items, datas, rels, metric, refs, o, len(paths)))
                bar.advance(1)
            # Timed rounds: every setting once per round, the order rotated (and reversed on odd
            # rounds), so the machine's slow moments are shared out and the ratios are paired.
            bar.task("timed rounds", o.passes * len(settings))
            order = list(range(len(settings)))
            for r in range(o.passes):
                turn = order[r % len(order):] + order[:r % len(order)]
                for k in (turn[::-1] if r % 2 else turn):
                    seconds = _pass(pool, setting_workers[k], datas, shares, None)[0]
                    result.rows[k].rates.append(n / seconds / o.threads)
                    bar.advance(1)
            for row in result.rows:
                row.images_per_s_per_core = float(np.median(row.rates))
        finally:
            if pool is not None:
                pool.shutdown()
    mark(result.rows)
    judge(result.rows, Bootstrap(n, o.seed))
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


def baseline_of(rows: list[Row], upscale: bool) -> Row | None:
    """The row the margins of an upscale mode are measured against: the seed default's setting in
    that mode, else the first row marked seed default (same quality, subsampling and DCT)."""
    mode = [r for r in rows if r.upscale == upscale]
    exact = [r for r in mode if r.setting == replace(SEED_DEFAULT, upscale=upscale)]
    return (exact or [r for r in mode if r.seed_default] or [None])[0]


def judge(rows: list[Row], boot: Bootstrap) -> None:
    """Set each row's margins against its upscale mode's baseline (rows of the two modes are
    scored against different references) and whether it beats that baseline beyond them."""
    for up in {r.upscale for r in rows}:
        base = baseline_of(rows, up)
        if base is None:
            continue
        base.baseline = True
        for r in rows:
            if r.upscale != up:
                continue
            r.margins = compare(boot, r.rates, base.rates, r.image_bytes, base.image_bytes,
                                r.image_psnr, base.image_psnr, r.image_ssim, base.image_ssim)
            r.recommended = r is not base and r.margins.beats_baseline


# ---------------------------------------------------------------- reporting
MARGIN_FIELDS = (("speed_ratio", "speed_ratio"), ("size_change", "size_change_pct"),
                 ("psnr_diff", "psnr_diff_db"), ("ssim_diff", "ssim_diff"))


def margin_dict(m: Margins | None) -> dict:
    """Flat margin columns: each estimate with its interval (_lo, _hi; NaN: not judged) and the
    verdict per axis (better, worse, within noise, not judged); size in % of the baseline."""
    d = {}
    for attr, name in MARGIN_FIELDS:
        iv = getattr(m, attr) if m is not None else None
        scale = 100.0 if name.endswith("_pct") else 1.0
        for suffix, key in (("", "value"), ("_lo", "lo"), ("_hi", "hi")):
            d[name + suffix] = getattr(iv, key) * scale if iv is not None else math.nan
    for axis, verdict in (m.verdicts.items() if m is not None else ()):
        d[f"{axis}_verdict"] = verdict
    return d


def row_dict(r: Row) -> dict:
    d = asdict(r)
    d.pop("margins")
    d["subsampling"] = SUBSAMPLING_LABEL[r.subsampling]
    d["upscale"] = "yes" if r.upscale else "no"
    d["kib_per_image"] = r.kib_per_image
    d["projected_gb"] = r.projected_gb
    d["images_per_s_per_core_min"] = r.rate_lo
    d["images_per_s_per_core_max"] = r.rate_hi
    d.update(margin_dict(r.margins))
    return d


CSV_FIELDS = ("quality", "subsampling", "dct", "filter", "upscale", "images_per_s_per_core",
              "images_per_s_per_core_min", "images_per_s_per_core_max",
              "kib_per_image", "bytes_per_image", "projected_gb", "psnr_db", "ssim", "pareto",
              "seed_default", "im2rec_default", "baseline", "recommended",
              "speed_ratio", "speed_ratio_lo", "speed_ratio_hi", "speed_verdict",
              "size_change_pct", "size_change_pct_lo", "size_change_pct_hi", "size_verdict",
              "psnr_diff_db", "psnr_diff_db_lo", "psnr_diff_db_hi", "psnr_verdict",
              "ssim_diff", "ssim_diff_lo", "ssim_diff_hi", "ssim_verdict",
              "images", "metric_images", "ssim_images", "failed", "projected_bytes")


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
        "timing": f"{o.threads} thread(s), {o.passes} timed rounds after a warm-up, every setting once per "
                  "round in a rotated order, images preloaded; images_per_s_per_core = images / seconds / "
                  "threads, the median round (rates: every round; _min/_max: their range)",
        "margins": "against the baseline row of the same upscale mode (the seed's q90 4:2:0): speed_ratio = "
                   "median of the per-round ratios, _lo/_hi their min-max (needs 3 rounds); size_change_pct, "
                   "psnr_diff_db, ssim_diff = mean per-image difference, _lo/_hi its 95% bootstrap interval "
                   "over images (needs 5 images); a verdict is better/worse only outside that interval; "
                   "recommended = better on one axis and worse on none",
        "recommendation": recommendation_lines(result),
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


def _signed(v: float, digits: int) -> str:
    return "—" if math.isnan(v) else f"{v:+.{digits}f}".replace("-", "−")


def _margin(iv, digits: int, scale: float = 1.0, signed: bool = True) -> str:
    """'+0.02 [−0.03, +0.07]'; the interval is left out when it could not be judged."""
    if iv is None or math.isnan(iv.value):
        return ""
    fmt = (lambda v: _signed(v * scale, digits)) if signed else (lambda v: f"{v * scale:.{digits}f}")
    return fmt(iv.value) + (f" [{fmt(iv.lo)}, {fmt(iv.hi)}]" if iv.judged else "")


def _table(result: BenchResult):
    from rich.table import Table
    o = result.options
    t = Table(title=f"fastrec bench: {len(result.sampled)} of {result.total_images} images, short edge "
                    f"{o.resize or 'kept'}; margins vs the baseline (q90 4:2:0), [interval]",
              title_justify="left")
    for name, just in (("quality", "right"), ("sub", "left"), ("dct", "left"), ("filter", "left"),
                       ("upscale", "left"), ("img/s/core (min–max)", "right"), ("speed ÷ base", "right"),
                       ("KiB/img", "right"), ("Δ size %", "right"), ("proj. GB", "right"),
                       ("PSNR dB", "right"), ("Δ dB", "right"), ("SSIM", "right"), ("", "left")):
        t.add_column(name, justify=just)
    for r in result.rows:
        notes = []
        if r.baseline:
            notes.append("baseline")
        if r.recommended:
            notes.append("✔ beats baseline")
        if r.pareto:
            notes.append("★ pareto")
        if r.seed_default and not r.baseline:
            notes.append("seed default")
        if r.im2rec_default:
            notes.append("im2rec q95")
        if r.margins is not None and not r.baseline:
            v = r.margins.verdicts
            notes += [f"{axis} {v[axis]}" for axis in ("speed", "ssim") if v[axis] in (BETTER, WORSE)]
        if r.failed:
            notes.append(f"{r.failed} failed")
        m = None if r.baseline else r.margins
        t.add_row(str(r.quality), SUBSAMPLING_LABEL[r.subsampling], r.dct, r.filter,
                  "yes" if r.upscale else "no",
                  f"{r.images_per_s_per_core:.0f} ({r.rate_lo:.0f}–{r.rate_hi:.0f})",
                  _margin(m and m.speed_ratio, 2, signed=False), f"{r.kib_per_image:.1f}",
                  _margin(m and m.size_change, 1, 100.0), f"{r.projected_gb:.3g}", f"{r.psnr_db:.2f}",
                  _margin(m and m.psnr_diff, 2), f"{r.ssim:.4f}", ", ".join(notes),
                  style="bold" if r.recommended or r.baseline else None)
    return t


def recommendation_lines(result: BenchResult) -> list[str]:
    """Which settings beat the baseline beyond the noise of this sample, or that none does."""
    o, rows = result.options, result.rows
    bases = [r for r in rows if r.baseline]
    if not bases:
        return [f"no recommendation: the baseline {SEED_DEFAULT.label} (or q90 4:2:0 accurate with another "
                "filter) is not in the sweep; add --quality 90 --subsampling 420 --dct accurate"]
    n = len(result.sampled)
    lines = []
    winners = sorted((r for r in rows if r.recommended),
                     key=lambda r: (r.margins.size_change.value, -r.margins.speed_ratio.value))
    for r in winners[:3]:
        m = r.margins
        better = [axis for axis, v in m.verdicts.items() if v == BETTER]
        lines.append(f"{r.setting.label} beats {_baseline_label(bases, r)} beyond noise on {', '.join(better)}: "
                     f"speed ×{_margin(m.speed_ratio, 2, signed=False)}, size {_margin(m.size_change, 1, 100.0)} %, "
                     f"PSNR {_margin(m.psnr_diff, 2)} dB, SSIM {_margin(m.ssim_diff, 4)}")
        lines.append(f"  to pack with it: {r.setting.pack_command(o.resize)}")
    if not winners:
        base = next((b for b in bases if b.upscale), bases[0])
        short = f"q{base.quality} {SUBSAMPLING_LABEL[base.subsampling]}"
        lines.append(f"no setting beats {short} beyond noise on these {n} images; sample more with --sample")
    unjudged = [axis for r in rows if r.margins is not None and not r.baseline
                for axis, v in r.margins.verdicts.items() if v == UNJUDGED]
    if "speed" in unjudged:
        lines.append(f"speed not judged: {o.passes} timed round(s); --passes 3 or more gives each ratio an interval")
    if {"size", "psnr", "ssim"} & set(unjudged):
        lines.append("size or quality not judged: fewer than 5 images scored; raise --sample / --metric-sample")
    return lines


def _baseline_label(bases: list[Row], r: Row) -> str:
    base = next(b for b in bases if b.upscale == r.upscale)
    return base.setting.label


def summary_lines(result: BenchResult) -> list[str]:
    """The notes under the table: how it was measured and which settings answer the question."""
    o, rows = result.options, result.rows
    m = result.metric_images
    lines = [
        f"sample: {len(result.sampled)} images (seed {o.seed}) of {result.total_images} under {result.root}; "
        f"speed: {o.threads} thread(s), median (min–max) of {o.passes} rounds after a warm-up, every setting "
        "once a round, files preloaded",
        f"PSNR/SSIM on {m} of {len(result.sampled)} images"
        f"{' (subsample; --metric-sample to change)' if m < len(result.sampled) else ''}, against a full-resolution "
        f"decode + Pillow {o.reference} resize to the output size; KiB/img counts .rec bytes (framing included)",
        "margins vs the baseline of the same upscale mode: speed ÷ base per round, median [min, max] (within "
        "1 ± 5 % counts as noise); Δ size "
        "and Δ dB per image, mean [95% bootstrap interval over the images]; a setting beats the baseline only "
        "when better outside its interval on one axis (speed, size, PSNR, SSIM) and worse outside it on none",
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
    return lines + recommendation_lines(result)


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
