"""`fastrec pack`: .lst files -> .rec/.idx, like im2rec.py but natively and in threads.

Data flows one way: the .lst is cut into batches; worker threads each own a native Worker
(decoder, encoder, buffers) and turn a batch into framed records without the GIL; the main
thread appends finished batches in list order. Per batch it writes the .rec bytes first, then
the skip lines, then the .idx lines, so the .idx never names a record that is not wholly in
the .rec, and an interrupted pack can be resumed (see `resume_point`).
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from fastrec._native.core import NEEDS_FALLBACK, OK, STATUS_NAMES, Worker

READ_ERROR = STATUS_NAMES.index("read-error")
from fastrec.lists import ListItem, find_lists, read_list
from fastrec.progress import Progress
from fastrec.recordio import record_end_in_file

log = logging.getLogger(__name__)

UINT64_MAX = (1 << 64) - 1
DEFAULT_MAX_PIXELS = 178956970   # Pillow's decompression-bomb limit
DEFAULT_MAX_BYTES = 256 << 20
DEFAULT_MAX_SCANS = 100          # libjpeg-turbo's TurboJPEG uses 500; real files have < 20


class PackError(Exception):
    """The pack cannot start or go on; the message says what to do."""


@dataclass
class PackOptions:
    """im2rec's pack flags plus fastrec's own (see `fastrec pack --help`)."""

    resize: int = 0
    center_crop: bool = False
    quality: int = 95
    num_thread: int = 1
    color: int = 1
    encoding: str = ".jpg"
    pack_label: bool = False
    pass_through: bool = False
    no_upscale: bool = False
    filter: str = "auto"
    subsampling: int = 420
    fast_dct: bool = False
    strict: bool = False
    resume: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_scans: int = DEFAULT_MAX_SCANS
    batch_size: int = 64
    progress: str = "auto"
    dask: str | None = None       # scheduler address or local[:WORKERS]
    shard_size: int = 0           # with dask: items per task (0: one task per .lst)

    @classmethod
    def from_args(cls, a) -> "PackOptions":
        names = cls.__dataclass_fields__
        given = {k: v for k, v in vars(a).items() if k in names and v is not None}
        return cls(**given)

    def validate(self) -> None:
        if self.encoding == ".jpg" and not 1 <= self.quality <= 100:
            raise PackError(f"--quality must be in 1..100 for JPEG, got {self.quality}")
        if self.encoding not in (".jpg", ".png"):
            raise PackError(f"--encoding must be .jpg or .png, got {self.encoding!r}")
        if self.resize < 0:
            raise PackError(f"--resize must be 0 (keep) or a positive size, got {self.resize}")
        if self.num_thread < 1 or self.batch_size < 1:
            raise PackError("--num-thread and --batch-size must be at least 1")

    def worker(self) -> Worker:
        return Worker(resize=self.resize, center_crop=self.center_crop, color=self.color,
                      no_upscale=self.no_upscale, pass_through=self.pass_through, filter=self.filter,
                      quality=self.quality if self.encoding == ".jpg" else 95,
                      subsampling=self.subsampling, fast_dct=self.fast_dct,
                      max_pixels=self.max_pixels, max_bytes=self.max_bytes, max_scans=self.max_scans,
                      raw=self.encoding == ".png" and not self.pass_through,
                      keep_alpha=self.encoding == ".png" and self.color == -1)


@dataclass
class Outcome:
    """What became of one list item: a record, or a skip with its reason."""

    record: bytes | None
    reason: str = "ok"
    message: str = ""
    in_bytes: int = 0
    size: tuple[int, int] = (0, 0)   # (width, height) of the packed image


@dataclass
class Summary:
    """Counts for one or more packed lists."""

    lists: list[str] = field(default_factory=list)
    images: int = 0
    skipped: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    resumed_from: int = 0

    def add(self, other: "Summary") -> None:
        self.lists += other.lists
        self.images += other.images
        self.skipped += other.skipped
        self.reasons.update(other.reasons)
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.seconds += other.seconds
        self.resumed_from += other.resumed_from

    def lines(self) -> list[str]:
        rate = self.images / self.seconds if self.seconds else 0.0
        out = [f"packed {self.images} images from {len(self.lists)} list(s) in {self.seconds:.2f} s "
               f"({rate:.1f} images/s); read {self.bytes_in / 1e6:.1f} MB, wrote {self.bytes_out / 1e6:.1f} MB"]
        if self.resumed_from:
            out.append(f"resumed after {self.resumed_from} already packed items")
        if self.skipped:
            detail = ", ".join(f"{r}: {n}" for r, n in sorted(self.reasons.items()))
            out.append(f"skipped {self.skipped} ({detail}); see the .skipped.tsv files")
        return out


@dataclass
class Job:
    """One .lst to pack: the list items and where the outputs go."""

    items: list[ListItem]
    root: str
    rec: str
    idx: str
    skipped: str
    source: object = None   # a tarsource.TarIndex to read images from instead of files under root

    @classmethod
    def for_list(cls, lst: str, root: str) -> "Job":
        """The outputs go beside the list, named after it (as im2rec names them)."""
        base = os.path.splitext(lst)[0]
        return cls(list(read_list(lst)), root, base + ".rec", base + ".idx", base + ".skipped.tsv")


# ---------------------------------------------------------------- per-item preparation
def _head(item: ListItem, pack_label: bool) -> tuple[int, object] | str:
    """(id, label) for the record header, or the reason the item cannot have one."""
    if not 0 <= item.id <= UINT64_MAX:
        return f"id {item.id} is outside 0..2^64-1"
    labels = item.labels  # out-of-float32-range labels become inf, as with mxnet's struct 'f'
    if pack_label and len(labels) > 1:
        return item.id, tuple(labels)
    return item.id, labels[0]


def _full_path(root: str, path: str) -> str:
    return os.path.join(root, path)  # an absolute path in the list overrides the root, as in im2rec


_local = threading.local()


def _thread_worker(opts: PackOptions) -> Worker:
    w = getattr(_local, "worker", None)
    if w is None or getattr(_local, "opts", None) is not opts:
        w = _local.worker = opts.worker()
        _local.opts = opts
    return w


def _read_member(source, path: str) -> bytes | Outcome:
    """An archive member's bytes; each thread keeps its archive descriptors open per source."""
    fds = getattr(_local, "fds", None)
    if fds is None or getattr(_local, "fds_source", None) is not source:
        for fd in (fds or {}).values():
            os.close(fd)
        fds = _local.fds = {}
        _local.fds_source = source
    try:
        return source.read(path, fds)
    except OSError as err:
        return Outcome(None, STATUS_NAMES[READ_ERROR], str(err))


def pack_batch(items: Sequence[ListItem], root: str, opts: PackOptions, source=None) -> list[Outcome]:
    """Turn list items into outcomes, in order (runs in a worker thread; the C part drops the GIL).

    Images are files under `root`, or, given a tar `source`, byte ranges of its archives."""
    outcomes: list[Outcome | None] = [None] * len(items)
    ids, labels, paths, datas, where = [], [], [], [], []
    for i, item in enumerate(items):
        head = _head(item, opts.pack_label)
        if isinstance(head, str):
            outcomes[i] = Outcome(None, "bad-header", head)
            continue
        if source is not None:
            data = _read_member(source, item.path)
            if isinstance(data, Outcome):
                outcomes[i] = data
                continue
            datas.append(data)
        ids.append(head[0])
        labels.append(head[1])
        paths.append(os.fsencode(_full_path(root, item.path)))
        where.append(i)
    worker = _thread_worker(opts)
    if source is not None:
        blob, results = worker.pack_bytes(ids, labels, datas)
    else:
        blob, results = worker.pack_files(ids, labels, paths)
    start = 0
    for j, (status, end, message, _, _, out_w, out_h, _, in_bytes) in enumerate(results):
        i = where[j]
        if status == OK:
            outcomes[i] = Outcome(blob[start:end], in_bytes=in_bytes, size=(out_w, out_h))
            start = end
        elif status == NEEDS_FALLBACK:
            from fastrec import fallback   # Pillow and numpy load only when a file needs them
            data = datas[j] if source is not None else None
            outcomes[i] = fallback.pack(worker, paths[j], ids[j], labels[j], opts, data)
        else:
            outcomes[i] = Outcome(None, STATUS_NAMES[status], message, in_bytes)
    if opts.encoding == ".png" and not opts.pass_through:
        from fastrec.fallback import raw_to_png
        outcomes = [raw_to_png(o, opts) for o in outcomes]
    return outcomes  # type: ignore[return-value]


# ---------------------------------------------------------------- resume
@dataclass
class ResumePoint:
    items_done: int = 0
    rec_bytes: int = 0
    idx_bytes: int = 0
    skip_bytes: int = 0
    records: int = 0
    skips: int = 0


def _complete_lines(path: str) -> list[bytes]:
    """The lines of a file that end with a newline (a torn last line is dropped)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    return [line + b"\n" for line in lines[:-1]]


def resume_point(job: Job) -> ResumePoint:
    """How much of `job` its outputs already hold, by walking the list against them.

    Item by item: if the next skip line names the item's path, it was skipped; else if the next
    .idx line has the item's id and its record is whole and directly follows the previous one,
    it was packed; otherwise the work stops here. Whatever follows is a torn tail to cut.
    """
    point = ResumePoint()
    idx_lines = _complete_lines(job.idx)
    skip_lines = _complete_lines(job.skipped)
    rec_size = os.path.getsize(job.rec) if os.path.exists(job.rec) else 0
    with open(job.rec, "rb") if rec_size else open(os.devnull, "rb") as rec:
        for item in job.items:
            if point.skips < len(skip_lines):
                path = skip_lines[point.skips].split(b"\t", 1)[0]
                if path == os.fsencode(item.path):
                    point.skip_bytes += len(skip_lines[point.skips])
                    point.skips += 1
                    point.items_done += 1
                    continue
            if point.records >= len(idx_lines):
                break
            fields = idx_lines[point.records].split(b"\t")
            try:
                key, offset = int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                break
            if key != item.id or offset != point.rec_bytes:
                break
            end = record_end_in_file(rec, offset, rec_size)
            if end is None:
                break
            point.rec_bytes = end
            point.idx_bytes += len(idx_lines[point.records])
            point.records += 1
            point.items_done += 1
    return point


def _truncate(path: str, size: int) -> None:
    with open(path, "ab") as f:
        f.truncate(size)


# ---------------------------------------------------------------- writing
class _Outputs:
    """The three output files of a list, appended in the crash-safe order."""

    def __init__(self, job: Job, point: ResumePoint | None):
        mode = "r+b" if point else "wb"
        if point:
            for path, size in ((job.rec, point.rec_bytes), (job.idx, point.idx_bytes),
                               (job.skipped, point.skip_bytes)):
                if not os.path.exists(path):
                    open(path, "wb").close()
                _truncate(path, size)
        try:
            self.rec = open(job.rec, mode)
            self.idx = open(job.idx, mode)
            self.skip = open(job.skipped, mode)
        except OSError as err:
            raise PackError(f"cannot write {err.filename}: {err.strerror}") from err
        for f in (self.rec, self.idx, self.skip):
            f.seek(0, os.SEEK_END)
        self.pos = self.rec.tell()

    def append(self, items: Sequence[ListItem], outcomes: Sequence[Outcome]) -> tuple[int, int]:
        """Write a batch; returns (records, bytes written to the .rec)."""
        idx_lines, skip_lines, chunks = [], [], []
        pos = self.pos
        for item, out in zip(items, outcomes):
            if out.record is None:
                message = out.message.replace("\t", " ").replace("\n", " ")
                skip_lines.append(f"{item.path}\t{out.reason}\t{message}\n")
            else:
                idx_lines.append(f"{item.id}\t{pos}\n")
                chunks.append(out.record)
                pos += len(out.record)
        try:
            self.rec.write(b"".join(chunks))
            self.rec.flush()                       # records before the lines that name them
            self.skip.write("".join(skip_lines).encode("utf-8", "surrogateescape"))
            self.skip.flush()
            self.idx.write("".join(idx_lines).encode())
            self.idx.flush()
        except OSError as err:
            raise PackError(f"writing {err.filename or self.rec.name} failed: {err.strerror}; free some "
                            f"space and rerun with --resume to continue where it stopped") from err
        written = pos - self.pos
        self.pos = pos
        return len(chunks), written

    def close(self, sync: bool = True) -> None:
        """Flush and fsync (sync=True), or, after a failure, just close: --resume cuts any torn tail."""
        for f in (self.rec, self.idx, self.skip):
            try:
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
                f.close()
            except OSError as err:
                if sync:
                    raise PackError(f"closing {f.name} failed: {err.strerror}; rerun with --resume") from err
                try:
                    f.close()
                except OSError:
                    pass


def _batches(items: Sequence[ListItem], size: int) -> Iterator[Sequence[ListItem]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def pack_job(job: Job, opts: PackOptions, pool: ThreadPoolExecutor, progress: Progress) -> Summary:
    """Pack one list into its .rec/.idx/.skipped.tsv (resuming if asked)."""
    summary = Summary(lists=[job.rec])
    point = resume_point(job) if opts.resume else None
    todo = job.items[point.items_done:] if point else job.items
    if point:
        summary.resumed_from = point.items_done
    out = _Outputs(job, point)
    started = time.perf_counter()
    progress.start(job.rec, len(job.items), done=point.items_done if point else 0)
    inflight: collections.deque[tuple[Sequence[ListItem], Future]] = collections.deque()
    # Short lists (or lists of big photos) still need every thread busy: at least 4 batches each.
    batch_size = max(1, min(opts.batch_size, -(-len(todo) // (4 * opts.num_thread))))
    batches = _batches(todo, batch_size)
    try:
        while True:
            while len(inflight) < 2 * opts.num_thread:     # bounded: memory stays flat
                batch = next(batches, None)
                if batch is None:
                    break
                inflight.append((batch, pool.submit(pack_batch, batch, job.root, opts, job.source)))
            if not inflight:
                break
            batch, fut = inflight.popleft()
            outcomes = fut.result()
            records, written = out.append(batch, outcomes)
            for item, o in zip(batch, outcomes):
                summary.bytes_in += o.in_bytes
                if o.record is None:
                    summary.skipped += 1
                    summary.reasons[o.reason] += 1
                    log.debug("skipped %s: %s: %s", item.path, o.reason, o.message)
            summary.images += records
            summary.bytes_out += written
            progress.advance(len(batch), written, summary.skipped)
    except BaseException:
        for _, fut in inflight:
            fut.cancel()
        out.close(sync=False)
        raise
    out.close()
    summary.seconds = time.perf_counter() - started
    return summary


def pack_jobs(jobs: Iterable[Job], opts: PackOptions) -> Summary:
    opts.validate()
    total = Summary()
    with ThreadPoolExecutor(opts.num_thread, thread_name_prefix="fastrec") as pool, \
            Progress(opts.progress) as progress:
        for job in jobs:
            total.add(pack_job(job, opts, pool, progress))
    return total


def pack_prefix(prefix: str, root: str | None, opts: PackOptions, archives: Sequence[str] = ()) -> Summary:
    """Pack every .lst that im2rec would pack for PREFIX, each into <list>.rec/.idx beside it.

    The images are files under `root`, or, with `archives`, members of those tar archives."""
    opts.validate()
    work, lists = find_lists(prefix)
    if not lists:
        raise PackError(f"no .lst file matches the prefix {os.path.abspath(prefix)!r} "
                        f"(run `fastrec list` first)")
    source = None
    if archives:
        from fastrec.tarsource import TarError, cache_path, index_for
        try:
            source = index_for(archives, cache_path(prefix))
        except TarError as err:
            raise PackError(str(err)) from err
        root = ""
    else:
        if not root:
            raise PackError("give the image ROOT the lists are relative to (or --from-tar ARCHIVE)")
        root = os.path.abspath(root)
        if not os.path.isdir(root):
            raise PackError(f"image root {root!r} does not exist or is not a folder")
    for lst in lists:
        log.info("Creating .rec file from %s in %s", lst, work)
    jobs = [Job.for_list(lst, root) for lst in lists]
    for job in jobs:
        job.source = source
    if opts.dask:
        from fastrec.distributed import pack_jobs_dask
        summary = pack_jobs_dask(jobs, opts, opts.dask, opts.shard_size)
    else:
        summary = pack_jobs(jobs, opts)
    for line in summary.lines():
        log.info("%s", line)
    return summary
