"""`fastrec pack`: .lst files -> .rec/.idx, like im2rec.py but natively and in threads.

Data flows one way: the .lst is cut into batches; worker threads each own a native Worker
(decoder, encoder, buffers) and turn a batch into framed records without the GIL; the main
thread appends finished batches in list order. Per batch it writes the .rec bytes first, then
the skip lines, then the .idx lines, so the .idx never names a record that is not wholly in
the .rec, and an interrupted pack can be resumed (see `resume_point`). Beside the outputs, the
manifest (formats/manifest.py) records the settings, list and source at the start and the counts
at the end; `--resume` refuses to continue a pack whose manifest differs (`check_resumable`).
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from fastrec._native.core import NEEDS_FALLBACK, OK, STATUS_NAMES, Worker
from fastrec._version import __version__
from fastrec.engine.options import LATER_SETTINGS, PackError, PackOptions
from fastrec.engine.reader import Batch, Feed, default_budget
from fastrec.engine.outcome import Outcome, Summary
from fastrec.errors import DataError, EnvironmentFault, UsageError
from fastrec.formats.lists import BadLine, ListItem, ListRules, check_list, read_list, synset_of
from fastrec.formats.manifest import (ListDigest, Manifest, label_key, manifest_path, read_manifest,
                                      setting_differences, write_manifest)
from fastrec.formats.recordio import record_end_in_file
from fastrec.fsutil import CrashAfter
from fastrec.progress import PackProgress

log = logging.getLogger(__name__)

UINT64_MAX = (1 << 64) - 1
WRITEBACK_EVERY = 8 << 20


class ListFile:
    """The items of a .lst, read from the file each time they are walked (never all in memory):
    iterate, len() (counted once), and slices (what a cluster shard takes). The first walk checks
    the whole list under `rules` (formats.lists.check_list): a bad line stops the pack before
    anything is written, or, with rules.skip_bad_lines, is a BadLine item that becomes a skip."""

    def __init__(self, path: str, rules: ListRules = ListRules()):
        self.path, self.rules = path, rules
        self._len: int | None = None
        self._duplicates: dict[int, int] | None = None
        self._cursor: tuple[int, Iterator[ListItem]] | None = None   # (next index, its iterator)

    def __iter__(self) -> Iterator[ListItem | BadLine]:
        if self._duplicates is None:
            self._len, self._duplicates = check_list(self.path, self.rules)
        return read_list(self.path, self.rules, self._duplicates)

    def __len__(self) -> int:
        if self._len is None:
            self._len, self._duplicates = check_list(self.path, self.rules)
        return self._len

    def __getitem__(self, cut: slice) -> list[ListItem]:
        if not isinstance(cut, slice) or cut.step not in (None, 1) or (cut.start or 0) < 0 or \
                (cut.stop is not None and cut.stop < 0):
            raise TypeError("a ListFile is read in runs: take a slice [start:stop] of non-negative ends")
        start = cut.start or 0
        at, it = self._cursor if self._cursor and self._cursor[0] <= start else (0, iter(self))
        run = list(itertools.islice(it, start - at, None if cut.stop is None else max(cut.stop - at, start - at)))
        self._cursor = (start + len(run), it)    # consecutive runs (cluster shards) read the file once
        return run


@dataclass
class Job:
    """One .lst to pack: the list items and where the outputs go."""

    items: Sequence[ListItem] | ListFile
    root: str
    rec: str
    idx: str
    skipped: str
    source: object = None   # a sources.TarIndex to read images from instead of files under root
    lst: str = ""           # the .lst packed; "" for a Dask shard (no manifest of its own)

    @classmethod
    def for_list(cls, lst: str, root: str, rules: ListRules = ListRules()) -> "Job":
        """The outputs go beside the list, named after it (as im2rec names them)."""
        base = os.path.splitext(lst)[0]
        return cls(ListFile(lst, rules), root, base + ".rec", base + ".idx", base + ".skipped.tsv",
                   lst=os.path.abspath(lst))

    @property
    def manifest(self) -> str:
        return manifest_path(self.rec)


# ---------------------------------------------------------------- per-item preparation
def _head(item: ListItem, pack_label: bool) -> tuple[int, object] | str:
    """(id, label) for the record header, or the reason the item cannot have one."""
    if not 0 <= item.id <= UINT64_MAX:
        return f"id {item.id} is outside 0..2^64-1"
    labels = item.labels  # out-of-float32-range labels become inf, as with mxnet's struct 'f'
    if pack_label and len(labels) > 1:
        return item.id, tuple(labels)
    return item.id, labels[0]


_local = threading.local()


def _thread_worker(opts: PackOptions) -> Worker:
    w = getattr(_local, "worker", None)
    if w is None or getattr(_local, "opts", None) is not opts:
        w = _local.worker = opts.worker()
        _local.opts = opts
    return w


def feed_for(root: str, opts: PackOptions, source=None) -> Feed:
    """The readers that bring a job's image bytes to the decoders."""
    return Feed(root, source, max_bytes=opts.max_bytes, budget=opts.io_budget or default_budget(opts.num_thread),
                depth=opts.io_depth, start_depth=4 * opts.num_thread)


def _paths(items: Sequence[ListItem | BadLine]) -> list[str | None]:
    """What the feed reads: nothing for a bad line (its path may leave the root)."""
    return [None if isinstance(item, BadLine) else item.path for item in items]


def pack_batch(items: Sequence[ListItem], root: str, opts: PackOptions, source=None,
               reads: Batch | None = None) -> list[Outcome]:
    """Turn list items into outcomes, in order (runs in a worker thread; the C part drops the GIL).

    Images are files under `root`, or, given a tar `source`, byte ranges of its archives; `reads`
    is their bytes as a Feed reads them ahead (without it, the batch is read here)."""
    own = None
    if reads is None:
        own = feed_for(root, opts, source)
        reads = own.submit(_paths(items))
    try:
        return _pack_read(items, opts, reads.wait())
    finally:
        reads.release()
        if own is not None:
            own.close()


def _pack_read(items: Sequence[ListItem], opts: PackOptions, reads: list) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(items)
    ids, labels, datas, where = [], [], [], []
    for i, item in enumerate(items):
        if isinstance(item, BadLine):    # read with --skip-bad-lines: its skip, never its file
            outcomes[i] = Outcome(None, item.reason, f"line {item.line}: {item.message}")
            continue
        head = _head(item, opts.pack_label)
        if isinstance(head, str):
            outcomes[i] = Outcome(None, "bad-header", head)
            continue
        if isinstance(reads[i], Outcome):
            outcomes[i] = reads[i]
            continue
        ids.append(head[0])
        labels.append(head[1])
        datas.append(reads[i])
        where.append(i)
    worker = _thread_worker(opts)
    blob, results = worker.pack_bytes(ids, labels, datas)
    start = 0
    for j, (status, end, message, _, _, out_w, out_h, _, in_bytes) in enumerate(results):
        i = where[j]
        if status == OK:
            outcomes[i] = Outcome(blob[start:end], in_bytes=in_bytes, size=(out_w, out_h))
            start = end
        elif status == NEEDS_FALLBACK:
            from fastrec.engine import fallback   # Pillow and numpy load only when a file needs them
            outcomes[i] = fallback.pack(worker, os.fsencode(items[i].path), ids[j], labels[j], opts, datas[j])
        else:
            outcomes[i] = Outcome(None, STATUS_NAMES[status], message, in_bytes)
    if opts.encoding == ".png" and not opts.pass_through:
        from fastrec.engine.fallback import raw_to_png
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


def _complete_lines(path: str) -> Iterator[bytes]:
    """The lines of a file that end with a newline, read as they are walked (a torn last line is
    dropped): a 14 M-line .idx is never held in memory."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            if line.endswith(b"\n"):
                yield line


def _count_lines(path: str) -> int:
    """Complete lines of a file (newlines), counted in 1 MiB reads."""
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def resume_point(job: Job) -> ResumePoint:
    """How much of `job` its outputs already hold, by walking the list against them.

    Item by item: if the next skip line names the item's path, it was skipped; else if the next
    .idx line has the item's id and its record is whole and directly follows the previous one,
    it was packed; otherwise the work stops here. Whatever follows is a torn tail to cut.
    """
    point = ResumePoint()
    idx_lines, skip_lines = _complete_lines(job.idx), _complete_lines(job.skipped)
    idx_line, skip_line = next(idx_lines, None), next(skip_lines, None)
    rec_size = os.path.getsize(job.rec) if os.path.exists(job.rec) else 0
    with open(job.rec, "rb") if rec_size else open(os.devnull, "rb") as rec:
        for item in job.items:
            if skip_line is not None and skip_line.split(b"\t", 1)[0] == os.fsencode(item.path):
                point.skip_bytes += len(skip_line)
                point.skips += 1
                point.items_done += 1
                skip_line = next(skip_lines, None)
                continue
            if idx_line is None:
                break
            fields = idx_line.split(b"\t")
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
            point.idx_bytes += len(idx_line)
            point.records += 1
            point.items_done += 1
            idx_line = next(idx_lines, None)
    return point


def _truncate(path: str, size: int) -> None:
    with open(path, "ab") as f:
        f.truncate(size)


# ---------------------------------------------------------------- the manifest
def source_identity(job: Job) -> dict:
    """Where the images come from: the image root, or the archives (path and size)."""
    if job.source is not None:
        return {"archives": [[os.path.abspath(a), os.path.getsize(a)] for a in job.source.archives]}
    return {"root": os.path.abspath(job.root)}


def list_digest(items: Iterable[ListItem]) -> ListDigest:
    digest = ListDigest()
    for _ in digested(items, digest):
        pass
    return digest


def list_changed(lst: str) -> DataError:
    """The fault of a .lst edited or replaced while it was packed (it is read more than once)."""
    return DataError(f"{lst} changed while it was being packed (its items are not those the pack started "
                     f"from), so the outputs would mix old and new items; pack it again, without --resume")


def digested(items: Iterable[ListItem], digest: ListDigest) -> Iterator[ListItem]:
    """`items`, fed to `digest` as they are walked."""
    for item in items:
        digest.update(item.id, item.labels, item.path)
        yield item


def start_manifest(job: Job, opts: PackOptions) -> Manifest:
    """The manifest of a pack that is starting: what it will make, from what, and how."""
    digest = list_digest(job.items)
    classes = digest.classes
    if len(set(classes.values())) < len(classes):   # one folder, several labels (a labelled flat val
        names = synset_of(job.lst) or []            # set): the folders name no class; the synset does
        classes = {k: names[int(k)] for k in classes if k.isdigit() and int(k) < len(names)}
    return Manifest(fastrec=__version__, settings=opts.settings(), list=job.lst,
                    list_digest=digest.hexdigest(), source=source_identity(job),
                    expected=len(job.items), classes=classes)


def finish_manifest(job: Job, manifest: Manifest) -> Manifest:
    """`manifest` with the counts of the finished outputs: the list walked against the skip lines
    (each item is a record or, in list order, a skip line), the records counted in the .idx."""
    skip_lines = _complete_lines(job.skipped)
    skip_line = next(skip_lines, None)
    reasons: collections.Counter = collections.Counter()
    per_class: collections.Counter = collections.Counter()
    k = 0   # skip lines that name the list's items, in order
    for item in job.items:
        if skip_line is not None and skip_line.split(b"\t", 1)[0] == os.fsencode(item.path):
            reasons[skip_line.split(b"\t")[1].decode("utf-8", "replace")] += 1
            k += 1
            skip_line = next(skip_lines, None)
        elif item.labels:
            per_class[label_key(item.labels[0])] += 1
    skipped = k + (skip_line is not None) + sum(1 for _ in skip_lines)
    written = _count_lines(job.idx)
    return dataclasses.replace(manifest, written=written, skipped=skipped, reasons=dict(reasons),
                               per_class=dict(per_class),
                               complete=written + skipped == manifest.expected == written + k)


def _write_manifest(job: Job, manifest: Manifest, out: "_Outputs | None" = None) -> None:
    try:
        write_manifest(job.manifest, manifest)
    except OSError as err:
        if out is not None:
            out.close(sync=False)
        raise EnvironmentFault(f"writing {job.manifest} failed: {err.strerror}; fix that and rerun with "
                               f"--resume to continue where it stopped") from err


def _describe_source(source: dict) -> str:
    if "root" in source:
        return f"the image root {source['root']}"
    return "the archives " + ", ".join(f"{path} ({size} bytes)" for path, size in source.get("archives", []))


def check_resumable(job: Job, fresh: Manifest) -> None:
    """Refuse (UsageError) to resume outputs whose manifest says they were made with other
    settings, from another list or from other images; without a manifest, say it cannot check."""
    old = read_manifest(job.manifest)
    if old is None:
        if os.path.exists(job.rec):
            log.warning("%s has no manifest (made by im2rec or an older fastrec): cannot check that it was "
                        "packed with these settings and this list; resuming as asked", job.rec)
        return
    problems = []
    changed = setting_differences({**LATER_SETTINGS, **old.settings}, fresh.settings)
    if changed:
        problems.append("the settings differ (" + "; ".join(changed) + ")")
    if old.list_digest != fresh.list_digest:
        problems.append(f"the list changed: the ids, labels or paths of {job.lst} are not the ones packed")
    if old.source != fresh.source:
        problems.append(f"the images come from elsewhere ({_describe_source(old.source)} -> "
                        f"{_describe_source(fresh.source)})")
    if problems:
        raise UsageError(f"cannot --resume {job.rec}: " + "; ".join(problems) + ". Rerun with what the "
                         "interrupted run used, or pack without --resume to start over (the files are untouched)")


# ---------------------------------------------------------------- writing
def _refuse_odd_outputs(job: Job) -> None:
    """An output's name taken by a folder, FIFO, socket or device is refused before anything is
    read or opened (opening a FIFO blocks forever; a folder fails halfway through a resume)."""
    for path in (job.rec, job.idx, job.skipped, job.manifest):
        if os.path.exists(path) and not os.path.isfile(path):   # a dangling link is written through
            raise PackError(f"cannot write {path}: it is there but is not a regular file; move it away and rerun")


class _Outputs:
    """The three output files of a list, appended in the crash-safe order. The .skipped.tsv
    exists only when something was skipped (it is opened at the first skip)."""

    def __init__(self, job: Job, point: ResumePoint | None):
        mode = "r+b" if point else "wb"
        if point:
            for path, size in ((job.rec, point.rec_bytes), (job.idx, point.idx_bytes)):
                if not os.path.exists(path):
                    open(path, "wb").close()
                _truncate(path, size)
            if os.path.exists(job.skipped):
                _truncate(job.skipped, point.skip_bytes)
        if os.path.exists(job.skipped) and not (point and point.skip_bytes):
            os.remove(job.skipped)   # an earlier pack's skips (or a torn first line) are not this one's
        self._skip_path = job.skipped
        self.skip = None
        try:
            self.rec = open(job.rec, mode)
            self.idx = open(job.idx, mode)
            if os.path.exists(job.skipped):
                self.skip = open(job.skipped, "ab")
        except OSError as err:
            raise PackError(f"cannot write {err.filename}: {err.strerror}") from err
        for f in (self.rec, self.idx):
            f.seek(0, os.SEEK_END)
        self.pos = self.rec.tell()
        self._written_back = self.pos   # .rec bytes before this are already on their way to the disk

    def _files(self) -> list:
        return [f for f in (self.rec, self.idx, self.skip) if f is not None]

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
            if skip_lines:
                if self.skip is None:
                    self.skip = open(self._skip_path, "ab")
                self.skip.write("".join(skip_lines).encode("utf-8", "surrogateescape"))
                self.skip.flush()
            self.idx.write("".join(idx_lines).encode())
            self.idx.flush()
        except OSError as err:   # the disk, not the images: stop, resumable
            raise EnvironmentFault(f"writing {err.filename or self.rec.name} failed: {err.strerror}; free "
                                   f"some space and rerun with --resume to continue where it stopped") from err
        written = pos - self.pos
        self.pos = pos
        self._start_writeback()
        return len(chunks), written

    def _start_writeback(self) -> None:
        """Every WRITEBACK_EVERY bytes, have the kernel start writing the .rec to disk and drop the
        pages once clean: the final fsync then waits for the last few MB, not the whole file
        (measured: 3 ms instead of 115 ms for a 232 MB .rec), and a 100 GB pack does not push
        the images it reads out of the page cache."""
        if self.pos - self._written_back < WRITEBACK_EVERY or not hasattr(os, "posix_fadvise"):
            return
        try:
            os.posix_fadvise(self.rec.fileno(), self._written_back, self.pos - self._written_back,
                             os.POSIX_FADV_DONTNEED)
        except OSError:
            pass    # a hint only
        self._written_back = self.pos

    def close(self, sync: bool = True) -> None:
        """Flush and fsync (sync=True), or, after a failure, just close: --resume cuts any torn tail."""
        for f in self._files():
            try:
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
                f.close()
            except OSError as err:
                if sync:
                    raise EnvironmentFault(f"closing {f.name} failed: {err.strerror}; rerun with --resume") from err
                try:
                    f.close()
                except OSError:
                    pass


def _batches(items: Iterable[ListItem], size: int) -> Iterator[list[ListItem]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def pack_job(job: Job, opts: PackOptions, pool: ThreadPoolExecutor, progress: PackProgress) -> Summary:
    """Pack one list into its .rec/.idx/.skipped.tsv (resuming if asked) and its manifest.

    The list is walked, not loaded: at most 2 x num_thread batches are in flight, their bytes read
    ahead by a Feed within its byte budget, so memory stays flat whatever the list's length."""
    summary = Summary(lists=[job.rec])
    _refuse_odd_outputs(job)
    manifest = start_manifest(job, opts) if job.lst else None
    point = None
    if opts.resume:
        if manifest is not None:
            check_resumable(job, manifest)     # before anything is cut: a refusal leaves the files as they are
        point = resume_point(job)
    done = point.items_done if point else 0
    total = manifest.expected if manifest is not None else len(job.items)
    packed = ListDigest()      # of the items this walk packs: the list must not change under the pack
    todo = itertools.islice(digested(job.items, packed), done, None)
    if point:
        summary.resumed_from = point.items_done
    out = _Outputs(job, point)
    if manifest is not None:   # after the outputs are opened: a stale manifest never vouches for new bytes
        _write_manifest(job, manifest, out)
    started = time.perf_counter()
    progress.done_before(done)
    inflight: collections.deque[tuple[Sequence[ListItem], Future]] = collections.deque()
    # Short lists (or lists of big photos) still need every thread busy: at least 4 batches each.
    batch_size = max(1, min(opts.batch_size, -(-(total - done) // (4 * opts.num_thread))))
    batches = _batches(todo, batch_size)
    crash = CrashAfter()
    feed = feed_for(job.root, opts, job.source)
    try:
        while True:
            while len(inflight) < 2 * opts.num_thread:     # bounded: memory stays flat
                batch = next(batches, None)
                if batch is None:
                    break
                reads = feed.submit(_paths(batch))
                inflight.append((batch, pool.submit(pack_batch, batch, job.root, opts, job.source, reads)))
            if not inflight:
                break
            batch, fut = inflight.popleft()
            outcomes = fut.result()
            records, written = out.append(batch, outcomes)
            crash.tick()   # tests: die here as if SIGKILL'd after N batches (FASTREC_TEST_CRASH_AFTER)
            skipped_before = summary.skipped
            for item, o in zip(batch, outcomes):
                summary.bytes_in += o.in_bytes
                if o.record is None:
                    summary.skipped += 1
                    summary.reasons[o.reason] += 1
                    log.debug("skipped %s: %s: %s", item.path, o.reason, o.message)
            summary.images += records
            summary.bytes_out += written
            progress.advance(len(batch), written, summary.skipped - skipped_before)
    except BaseException:
        for _, fut in inflight:
            fut.cancel()
        feed.close()           # wakes any decoder still waiting for reads
        out.close(sync=False)
        raise
    feed.close()
    out.close()
    if manifest is not None:
        if packed.hexdigest() != manifest.list_digest:
            raise list_changed(job.lst)      # the manifest stays unfinished: verify fails the pack too
        _write_manifest(job, finish_manifest(job, manifest))
    summary.seconds = time.perf_counter() - started
    log.debug("%s: %d records, %d skipped in %.2f s", job.rec, summary.images, summary.skipped, summary.seconds)
    return summary


def pack_jobs(jobs: Iterable[Job], opts: PackOptions) -> Summary:
    opts.validate()
    total = Summary()
    jobs = list(jobs)
    with ThreadPoolExecutor(opts.num_thread, thread_name_prefix="fastrec") as pool, \
            PackProgress(opts.progress) as progress:
        progress.start(sum(len(job.items) for job in jobs))   # one bar, one time left, for all lists
        for job in jobs:
            total.add(pack_job(job, opts, pool, progress))
    return total
