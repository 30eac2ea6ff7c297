"""`fastrec pack --dask`: the same pack, cut into shards that run as tasks on a Dask cluster.

Each shard (a run of consecutive items of one .lst) is packed by the native core on a worker
into `<list>.rec.shards/<first item>.{rec,idx,skipped.tsv}`, written under temporary names and
renamed only when whole, so a task that is retried after its worker died produces the same
bytes and never a torn file, and a shard already on disk is not redone. The client then joins
the shards in list order: records frame the same wherever they sit, so only the .idx offsets
move, and the result is byte-identical to a local `fastrec pack`. The outputs and the image
root must be on storage every worker sees.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
import uuid

from fastrec.engine.local import Job, pack_jobs
from fastrec.engine.options import PackError, PackOptions
from fastrec.engine.outcome import Summary
from fastrec.progress import make_progress

CONNECT_TIMEOUT_S = 15


def _shard_dir(job: Job) -> str:
    return job.rec + ".shards"


def _shard_base(job: Job, start: int) -> str:
    return os.path.join(_shard_dir(job), f"{start:012d}")


def pack_shard(items: list, root: str, base: str, opts: PackOptions, source=None) -> int:
    """Pack `items` into the shard files `base`.{rec,idx,skipped.tsv} (runs on a worker).

    Idempotent: a shard already complete (its .idx is there) is kept. Returns the bytes read
    from the images."""
    if os.path.exists(base + ".idx"):
        return 0
    tmp = f"{base}.tmp-{uuid.uuid4().hex}"
    shard = Job(items, root, tmp + ".rec", tmp + ".idx", tmp + ".skipped.tsv", source)
    summary = pack_jobs([shard], dataclasses.replace(opts, resume=False, progress="off", dask=None))
    # .rec and .skipped.tsv (if anything was skipped) first: the .idx appearing last marks the
    # shard complete.
    if os.path.exists(tmp + ".skipped.tsv"):
        os.replace(tmp + ".skipped.tsv", base + ".skipped.tsv")
    os.replace(tmp + ".rec", base + ".rec")
    os.replace(tmp + ".idx", base + ".idx")
    return summary.bytes_in


def join_shards(job: Job, starts: list[int], summary: Summary) -> None:
    """Concatenate the shards in list order into the job's outputs, shifting .idx offsets."""
    tmp = f"{job.rec}.joining"
    summary.lists.append(job.rec)
    with open(tmp + ".rec", "wb") as rec, open(tmp + ".idx", "wb") as idx, open(tmp + ".skip", "wb") as skip:
        for start in starts:
            base = _shard_base(job, start)
            offset = rec.tell()
            with open(base + ".rec", "rb") as part:
                shutil.copyfileobj(part, rec, 1 << 22)
            with open(base + ".idx", "rb") as part:
                for line in part:
                    key, pos = line.rstrip(b"\n").split(b"\t")
                    idx.write(b"%s\t%d\n" % (key, int(pos) + offset))
                    summary.images += 1
            with open(base + ".skipped.tsv", "rb") if os.path.exists(base + ".skipped.tsv") \
                    else open(os.devnull, "rb") as part:    # no skip file: nothing skipped
                for line in part:
                    skip.write(line)
                    summary.skipped += 1
                    summary.reasons[line.split(b"\t")[1].decode()] += 1
            summary.bytes_out += rec.tell() - offset
        for f in (rec, idx, skip):
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp + ".rec", job.rec)
    if os.path.getsize(tmp + ".skip"):
        os.replace(tmp + ".skip", job.skipped)
    else:   # nothing skipped: no skip file, as a local pack leaves none
        os.remove(tmp + ".skip")
        if os.path.exists(job.skipped):
            os.remove(job.skipped)
    os.replace(tmp + ".idx", job.idx)
    shutil.rmtree(_shard_dir(job), ignore_errors=True)


def _client(address: str):
    """A dask Client for `address`: a scheduler address, or local[:WORKERS] for a LocalCluster."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:
        raise PackError("--dask needs Dask: pip install 'fastrec[dask]' (dask and distributed)") from err
    if address == "local" or address.startswith("local:"):
        workers = int(address.partition(":")[2] or os.cpu_count() or 1)
        # no dashboard; its HTTP server (always started) on a free port, not on a taken 8787
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", scheduler_kwargs={"dashboard": False})
        return Client(cluster), cluster
    try:
        return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s"), None
    except (OSError, TimeoutError) as err:
        raise PackError(f"cannot reach the Dask scheduler at {address!r} within {CONNECT_TIMEOUT_S} s "
                        f"({type(err).__name__}: {err}); check the address and that it is running") from err


def pack_jobs_dask(jobs: list[Job], opts: PackOptions, address: str, shard_size: int = 0,
                   retries: int = 3) -> Summary:
    """Pack `jobs` on a Dask cluster; the outputs equal those of `pack_jobs(jobs, opts)`."""
    opts.validate()
    client, cluster = _client(address)
    started = time.perf_counter()
    total = Summary()
    try:
        from dask.distributed import as_completed

        futures, plan = [], []
        for job in jobs:
            os.makedirs(_shard_dir(job), exist_ok=True)
            size = shard_size or max(len(job.items), 1)
            starts = list(range(0, len(job.items), size)) or [0]
            plan.append((job, starts))
            for start in starts:
                items = job.items[start:start + size]
                # a tar source travels as the byte ranges of this shard's members only
                source = job.source.subset(i.path for i in items) if job.source is not None else None
                futures.append(client.submit(pack_shard, items, job.root, _shard_base(job, start), opts,
                                             source, retries=retries, pure=False,
                                             key=f"fastrec-shard-{uuid.uuid4().hex}"))
        with make_progress(opts.progress, "count") as progress:
            task = progress.add_task("shards", total=len(futures))
            for fut in as_completed(futures):
                total.bytes_in += fut.result()
                progress.advance(task)
        for job, starts in plan:
            join_shards(job, starts, total)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    total.seconds = time.perf_counter() - started
    return total
