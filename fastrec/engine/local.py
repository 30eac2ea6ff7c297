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

import array
import collections
import itertools
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator, Sequence

from fastrec._native.core import NEEDS_FALLBACK, OK, STATUS_NAMES, Worker
from fastrec.engine.job import Job, ListFile
from fastrec.engine.manifests import (_write_manifest, check_resumable, digested, finish_manifest, list_changed,
                                      list_digest, source_identity, start_manifest)
from fastrec.engine.options import PackOptions
from fastrec.engine.outcome import Outcome, Summary
from fastrec.engine.outputs import ResumePoint, _Outputs, _refuse_odd_outputs, resume_point
from fastrec.engine.reader import Batch, Feed, default_budget
from fastrec.formats.lists import BadLine, ListItem
from fastrec.formats.manifest import ListDigest
from fastrec.fsutil import CrashAfter
from fastrec.progress import PackProgress

log = logging.getLogger(__name__)

UINT64_MAX = (1 << 64) - 1

__all__ = ["Job", "ListFile", "ResumePoint", "check_resumable", "finish_manifest", "list_changed", "list_digest",
           "pack_batch", "pack_job", "pack_jobs", "resume_point", "source_identity", "start_manifest"]


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
    digests = array.array("Q", bytes(16 * len(datas)))   # (source, record) per item, filled by the core
    blob, results = worker.pack_bytes(ids, labels, datas, digests=digests)
    start = 0
    for j, (status, end, message, _, _, out_w, out_h, _, in_bytes) in enumerate(results):
        i = where[j]
        if status == OK:
            outcomes[i] = Outcome(blob[start:end], in_bytes=in_bytes, size=(out_w, out_h),
                                  source_digest=digests[2 * j], record_digest=digests[2 * j + 1])
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
