"""The packing engine: lists in, .rec/.idx out, on local threads or on a Dask cluster."""
from __future__ import annotations

import logging
import os
from typing import Sequence

from fastrec.engine.local import Job, pack_jobs
from fastrec.engine.options import PackError, PackOptions
from fastrec.engine.outcome import Summary
from fastrec.formats.lists import find_lists

__all__ = ["PackError", "PackOptions", "Summary", "pack_prefix"]

log = logging.getLogger(__name__)


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
        from fastrec.engine.sources import cache_path, index_for
        source = index_for(archives, cache_path(prefix), exts=None)   # the list names what it needs
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
        from fastrec.engine.cluster import pack_jobs_dask
        summary = pack_jobs_dask(jobs, opts, opts.dask, opts.shard_size)
    else:
        summary = pack_jobs(jobs, opts)
    for line in summary.lines():
        log.info("%s", line)
    return summary
