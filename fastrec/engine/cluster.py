"""`fastrec pack --dask`: the same pack, cut into shards that run as tasks on a Dask cluster.

Each shard (a run of consecutive items of one .lst) is packed by the native core on a worker
into `<list>.rec.shards/<first item>-<identity>.{rec,idx,skipped.tsv}`, written under temporary
names and renamed only when whole, so a task that is retried after its worker died produces the
same bytes and never a torn file. The identity is a digest of the shard's items (ids, labels,
paths), the byte-changing settings and the source (image root or archives): a rerun reuses a
shard on disk only if it was made from exactly the same inputs, and removes everything else in
the folder (shards of other settings or lists, orphan temporaries) before it starts. The client
then joins the shards in list order: records frame the same wherever they sit, so only the .idx
offsets move, and the result (and its manifest) is byte-identical to a local `fastrec pack`.
The outputs and the image root must be on storage every worker sees. Shards are submitted a
window at a time (twice the worker threads, at least 16), each with its items read from the list
as it is submitted, so the client and scheduler hold a bounded number of shards' items; with
`--shard-size` that bound is independent of the dataset (0, one shard per .lst, ships a whole
list with its task).

A run that fails (a full disk, a lost cluster) is continued by running the same command again:
complete shards are reused; `--resume` is not needed (and changes nothing here).
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import itertools
import json
import os
import shutil
import signal
import threading
import time
import uuid

from fastrec._native.core import fingerprint
from fastrec._version import __version__
from fastrec.engine.local import (Job, finish_manifest, list_changed, list_digest, pack_jobs, source_identity,
                                  start_manifest)
from fastrec.engine.options import PackError, PackOptions
from fastrec.engine.outcome import Summary
from fastrec.errors import DataError, EnvironmentFault, FastrecError
from fastrec.formats.fingerprints import HEADER_BYTES, FingerprintsError, entries_bytes, iter_entries, open_entries
from fastrec.formats.fingerprints import SUFFIX as FP_SUFFIX
from fastrec.formats.manifest import FORMAT_VERSION, write_manifest
from fastrec.progress import make_progress

SHARD_SUFFIXES = (".rec", ".idx", ".skipped.tsv", FP_SUFFIX)   # the skip file only when something was skipped
JOIN_SUFFIXES = (".rec", ".idx", ".skip", FP_SUFFIX)
CONNECT_TIMEOUT_S = 15
RERUN = "run the same command again to continue: complete shards are kept and reused"


def _shard_dir(job: Job) -> str:
    return job.rec + ".shards"


def shard_identity(job: Job, items: list, opts: PackOptions) -> str:
    """A digest of what makes a shard's bytes: its items, the byte-changing settings, the source,
    and the fastrec and pack format that write them (another fastrec's shards are not reused)."""
    h = hashlib.sha256()
    h.update(list_digest(items).hexdigest().encode())
    h.update(json.dumps([opts.settings(), source_identity(job), __version__, FORMAT_VERSION],
                        sort_keys=True).encode())
    return h.hexdigest()[:20]


def _shard_base(job: Job, start: int, identity: str) -> str:
    return os.path.join(_shard_dir(job), f"{start:012d}-{identity}")


def _remove_stale(folder: str, keep: set[str]) -> None:
    """Remove every file in a shard folder that is not a complete shard of this run's plan."""
    for name in os.listdir(folder):
        if name not in keep:
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def pack_shard(items: list, root: str, base: str, opts: PackOptions, source=None) -> int:
    """Pack `items` into the shard files `base`.{rec,idx,skipped.tsv} (runs on a worker).

    Idempotent: a shard already complete (its .idx is there; its name says it was made from these
    inputs) is kept. On any failure its temporaries are removed. Returns the bytes read from the images."""
    if os.path.exists(base + ".idx"):
        return 0
    tmp = f"{base}.tmp-{uuid.uuid4().hex}"
    shard = Job(items, root, tmp + ".rec", tmp + ".idx", tmp + ".skipped.tsv", source)
    try:
        summary = pack_jobs([shard], dataclasses.replace(opts, resume=False, progress="off", dask=None))
        # .rec, .fingerprints and .skipped.tsv (if anything was skipped) first: the .idx appearing
        # last marks the shard complete.
        if os.path.exists(tmp + ".skipped.tsv"):
            os.replace(tmp + ".skipped.tsv", base + ".skipped.tsv")
        os.replace(tmp + ".rec", base + ".rec")
        os.replace(tmp + FP_SUFFIX, base + FP_SUFFIX)
        os.replace(tmp + ".idx", base + ".idx")
    except BaseException as err:
        _remove(tmp + s for s in SHARD_SUFFIXES)
        cause = err if isinstance(err, OSError) else err.__cause__
        if isinstance(cause, OSError):   # the machine, not the images (a full disk, an I/O error)
            raise EnvironmentFault(f"packing the shard {base} failed: {cause.strerror or cause}") from None
        raise
    return summary.bytes_in


def _remove(paths) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def _shard_damaged(base: str, what: str) -> DataError:
    """A complete shard whose files disagree with its fingerprints was altered on disk: it is
    removed, so that the rerun packs it again."""
    _remove(base + s for s in SHARD_SUFFIXES)
    return DataError(f"the shard {base} {what}, so it was altered after it was written; it was removed: {RERUN}")


def _copy_checked(base: str, rec, idx, fp) -> int:
    """Append one shard's records, .idx lines (offsets shifted) and fingerprints entries, checking
    each record's id and bytes against the shard's fingerprints. Returns the records copied."""
    offset = rec.tell()
    size = os.path.getsize(base + ".rec")
    with open(base + ".idx", "rb") as part_idx:
        lines = [line.rstrip(b"\n").split(b"\t") for line in part_idx]   # one shard's lines: bounded
    sidecar, count = open_entries(base + FP_SUFFIX)
    with sidecar, open(base + ".rec", "rb") as part:
        if count != len(lines):
            raise _shard_damaged(base, f"has {len(lines)} .idx lines but {count} fingerprints")
        ends = [int(pos) for _, pos in lines[1:]] + [size]
        for (key, pos), end, entry in zip(lines, ends, iter_entries(sidecar, count)):
            record = part.read(end - int(pos))
            if int(key) != entry[0] or int(pos) + len(record) != end or fingerprint(record) != entry[2]:
                raise _shard_damaged(base, f"holds a record (id {int(key)}) that does not match its fingerprints")
            rec.write(record)
            idx.write(b"%s\t%d\n" % (key, int(pos) + offset))
            fp.write(entries_bytes([entry]))
    return len(lines)


def join_shards(job: Job, bases: list[str], opts: PackOptions, summary: Summary, planned: str) -> None:
    """Concatenate the shards in list order into the job's outputs, shifting .idx offsets and
    checking every record against its shard's fingerprints.
    `planned`: the digest of the list the shards were planned from (the manifest must name it)."""
    tmp = f"{job.rec}.joining"
    joined = [tmp + s for s in JOIN_SUFFIXES]
    summary.lists.append(job.rec)
    images = skipped = written = 0
    reasons = summary.reasons.copy()
    try:
        with open(joined[0], "wb") as rec, open(joined[1], "wb") as idx, open(joined[2], "wb") as skip, \
                open(joined[3], "wb") as fp:
            fp.write(HEADER_BYTES)
            for base in bases:
                offset = rec.tell()
                try:
                    images += _copy_checked(base, rec, idx, fp)
                except (FingerprintsError, FileNotFoundError, ValueError) as err:   # not a shard's files
                    raise _shard_damaged(base, f"cannot be checked against its fingerprints ({err})") from None
                with open(base + ".skipped.tsv", "rb") if os.path.exists(base + ".skipped.tsv") \
                        else open(os.devnull, "rb") as part:    # no skip file: nothing skipped
                    for line in part:
                        skip.write(line)
                        skipped += 1
                        reasons[line.split(b"\t")[1].decode()] += 1
                written += rec.tell() - offset
            for f in (rec, idx, skip, fp):
                f.flush()
                os.fsync(f.fileno())
        manifest = start_manifest(job, opts)
        if manifest.list_digest != planned:
            _remove(joined)
            raise list_changed(job.lst)
        write_manifest(job.manifest, manifest)   # incomplete while the outputs are being replaced
        os.replace(joined[0], job.rec)
        os.replace(joined[3], job.fingerprints)
        if os.path.getsize(joined[2]):
            os.replace(joined[2], job.skipped)
        else:   # nothing skipped: no skip file, as a local pack leaves none
            os.remove(joined[2])
            if os.path.exists(job.skipped):
                os.remove(job.skipped)
        os.replace(joined[1], job.idx)
        write_manifest(job.manifest, finish_manifest(job, manifest))
    except DataError:
        _remove(joined)
        raise
    except OSError as err:
        _remove(joined)
        raise EnvironmentFault(f"joining the shards into {job.rec} failed: {err.strerror or err}; fix that "
                               f"and {RERUN}") from err
    summary.images += images
    summary.skipped += skipped
    summary.reasons = reasons
    summary.bytes_out += written
    shutil.rmtree(_shard_dir(job), ignore_errors=True)


def _settle(client, futures: list, interrupted: bool, timeout_s: float = 120) -> None:
    """After a failure: let the other shards end (each one finished is reused by the rerun), so
    that no task writes into the shard folder after the run has returned; after Ctrl-C, cancel."""
    from dask.distributed import wait

    if interrupted:
        client.cancel(futures)
        return
    try:
        wait(futures, timeout=timeout_s)
    except Exception:   # a lost cluster or the timeout: leave it to the rerun's clean-up
        pass


def _drop_unwritable(record) -> None:
    """A log line the disk cannot take (a full disk, the very fault being logged) is dropped:
    logging's default prints a '--- Logging error ---' traceback to the terminal for each one."""


WORKERS_LOG_HANDLER = "fastrec-workers-log"


def _workers_log_to(path: str) -> None:
    """Runs on each worker: its Dask log lines (a "Compute Failed" block for every retry of every
    failed shard) go to `path`, not to the terminal, where fastrec's one line says what failed."""
    import logging
    _workers_log_back()     # an earlier run's file (one whose end could not reach the workers)
    dask_log = logging.getLogger("distributed")
    moved = [h for h in dask_log.handlers if type(h) is logging.StreamHandler]
    for handler in moved:
        dask_log.removeHandler(handler)
    handler = logging.FileHandler(path)
    handler.handleError = _drop_unwritable
    handler.set_name(WORKERS_LOG_HANDLER)
    handler.moved = moved
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    dask_log.addHandler(handler)


def _workers_log_back() -> None:
    """Runs on each worker when a run ends: a long-lived cluster's workers log where they did
    before (not to this run's file, which the join removes, kept open run after run)."""
    import logging
    dask_log = logging.getLogger("distributed")
    for handler in [h for h in dask_log.handlers if h.get_name() == WORKERS_LOG_HANDLER]:
        dask_log.removeHandler(handler)
        handler.close()
        for moved in handler.moved:
            dask_log.addHandler(moved)


def _quiet_workers(client, path: str) -> str | None:
    """Send the workers' log lines to `path` (unless -vv: then they show); returns the path if so."""
    import logging
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return None
    try:
        client.run(_workers_log_to, path)
    except Exception:    # a worker that cannot open the file keeps logging where it did
        return None
    return path


def _client(address: str):
    """A dask Client for `address`: a scheduler address, or local[:WORKERS] for a LocalCluster."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:
        raise PackError("--dask needs Dask: pip install 'dask[distributed]>=2024.1' (fastrec's dask extra)") from err
    if address == "local" or address.startswith("local:"):
        n = address.partition(":")[2]
        if n and not (n.isdigit() and int(n) >= 1):   # local:0 would wait for a worker forever
            raise PackError(f"--dask {address!r}: local:N needs N >= 1 workers")
        workers = int(n or os.cpu_count() or 1)
        # The worker processes start with Ctrl-C ignored (a disposition they inherit): on Ctrl-C
        # the client cancels and closes the cluster, without a traceback from every worker.
        quiet = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if quiet else None
        try:
            # no dashboard; its HTTP server (always started) on a free port, not on a taken 8787
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", scheduler_kwargs={"dashboard": False})
        finally:
            if quiet:
                signal.signal(signal.SIGINT, previous)
        return Client(cluster), cluster
    try:
        return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s"), None
    except (OSError, TimeoutError) as err:
        raise PackError(f"cannot reach the Dask scheduler at {address!r} within {CONNECT_TIMEOUT_S} s "
                        f"({type(err).__name__}: {err}); check the address and that it is running") from err


def plan_shards(job: Job, opts: PackOptions, shard_size: int) -> list[tuple[int, int, str]]:
    """(start, stop, base) of each shard of a job; 0 = one shard for the whole list. The items
    are read to name the shard and dropped: they are read again when the shard is submitted."""
    size = shard_size or max(len(job.items), 1)
    plan = []
    for start in range(0, len(job.items), size) or [0]:
        items = job.items[start:start + size]
        plan.append((start, start + len(items), _shard_base(job, start, shard_identity(job, items, opts))))
    return plan


def _see(worker_log: str | None) -> str:
    return f" (the workers' log: {worker_log}; -vv shows it here)" if worker_log else ""


def _window(client) -> int:
    """Shards submitted at once: enough to keep every worker thread busy (twice over), few enough
    that the client and scheduler hold a bounded number of shards' items, whatever the dataset."""
    try:
        threads = sum(client.nthreads().values())
    except Exception:     # an older or a remote client that cannot say: a fixed window
        threads = 0
    return max(16, 2 * threads)


def _shard_result(fut, worker_log: str | None) -> int:
    """A finished shard's bytes read, or the first failure in one line."""
    try:
        return fut.result()
    except EnvironmentFault as err:
        raise EnvironmentFault(f"{err}; fix that and {RERUN}{_see(worker_log)}") from None
    except FastrecError:
        raise
    except Exception as err:   # a worker lost, a task that could not run
        raise EnvironmentFault(f"a shard failed on the cluster: {type(err).__name__}: {err}; fix that "
                               f"and {RERUN}{_see(worker_log)}") from None


def _run_shards(client, plans: list, submit, in_flight: set, total: Summary, opts: PackOptions,
                worker_log: str | None) -> None:
    """Submit the shards a window at a time, gather each as it ends, then join each list's shards.
    On any failure the other shards settle and their temporaries go; finished shards are kept."""
    from dask.distributed import as_completed

    try:
        todo = ((job, *shard) for job, plan, _ in plans for shard in plan)
        running = as_completed([submit(job, start, stop, base)
                                for job, start, stop, base in itertools.islice(todo, _window(client))])
        with make_progress(opts.progress, "count") as progress:
            task = progress.add_task("shards", total=sum(len(plan) for _, plan, _ in plans))
            for fut in running:
                total.bytes_in += _shard_result(fut, worker_log)
                in_flight.discard(fut)
                progress.advance(task)
                nxt = next(todo, None)
                if nxt is not None:
                    running.add(submit(*nxt))
        for job, plan, planned in plans:
            join_shards(job, [base for _, _, base in plan], opts, total, planned)
    except BaseException as err:
        _settle(client, list(in_flight), interrupted=not isinstance(err, Exception))
        for job, _, _ in plans:   # shards are kept for the rerun; their temporaries are not
            _remove(glob.glob(os.path.join(glob.escape(_shard_dir(job)), "*.tmp-*")))
        raise


def pack_jobs_dask(jobs: list[Job], opts: PackOptions, address: str, shard_size: int = 0,
                   retries: int = 3) -> Summary:
    """Pack `jobs` on a Dask cluster; the outputs equal those of `pack_jobs(jobs, opts)`."""
    opts = dataclasses.replace(opts, shard_size=shard_size)
    opts.validate()
    plans = []
    for job in jobs:
        # the list is read again as shards are submitted and joined: each read must find it unchanged
        planned = list_digest(job.items).hexdigest()
        plan = plan_shards(job, opts, shard_size)
        os.makedirs(_shard_dir(job), exist_ok=True)
        _remove_stale(_shard_dir(job), {os.path.basename(base) + s for _, _, base in plan for s in SHARD_SUFFIXES})
        _remove(glob.glob(glob.escape(job.rec) + ".joining.*"))
        plans.append((job, plan, planned))
    client, cluster = _client(address)
    worker_log = _quiet_workers(client, os.path.join(_shard_dir(jobs[0]), "workers.log")) if jobs else None
    started = time.perf_counter()
    total = Summary()
    in_flight: set = set()

    def submit(job: Job, start: int, stop: int, base: str):
        items = job.items[start:stop]
        if _shard_base(job, start, shard_identity(job, items, opts)) != base:
            raise list_changed(job.lst)
        # a tar source travels as the byte ranges of this shard's members only
        source = job.source.subset(i.path for i in items) if job.source is not None else None
        fut = client.submit(pack_shard, items, job.root, base, opts, source, retries=retries, pure=False,
                            key=f"fastrec-shard-{uuid.uuid4().hex}")
        in_flight.add(fut)
        return fut

    try:
        # this client is the current one while it works: dask's helpers (as_completed, wait) use the
        # current client's loop, and a future waited on in another client's loop cannot be waited
        # on again here when a lost result is recomputed (a caller inside `with Client(...)`)
        with client.as_current():
            _run_shards(client, plans, submit, in_flight, total, opts, worker_log)
    finally:
        # a cluster of our own is closed just below; a lost one is not waited for (15 s to reconnect)
        if worker_log and cluster is None and client.status == "running":
            try:
                client.run(_workers_log_back)
            except Exception:    # a lost cluster: the next run's _workers_log_to puts it back
                pass
        client.close()
        if cluster is not None:
            cluster.close()
    total.seconds = time.perf_counter() - started
    return total
