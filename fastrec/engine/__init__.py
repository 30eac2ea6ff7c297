"""The packing engine: lists in, .rec/.idx out, on local threads or on a Dask cluster."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Sequence

from fastrec.engine.local import Job, pack_jobs
from fastrec.engine.options import PackError, PackOptions
from fastrec.engine.outcome import Summary
from fastrec.errors import DataError
from fastrec.formats.lists import find_lists, prefix_files
from fastrec.formats.manifest import read_manifest
from fastrec.fsutil import command_line, is_inside, output_lock, refuse_output_is_input

__all__ = ["PackError", "PackOptions", "Summary", "TooManySkipped", "pack_all", "pack_prefix"]

log = logging.getLogger(__name__)


def pack_prefix(prefix: str, root: str | None, opts: PackOptions, archives: Sequence[str] = ()) -> Summary:
    """Pack every .lst that im2rec would pack for PREFIX, each into <list>.rec/.idx beside it.

    The images are files under `root`, or, with `archives`, members of those tar archives."""
    opts.validate()
    work, lists = find_lists(prefix)
    if not lists:
        beside = os.path.abspath(prefix).rstrip(os.sep)
        if os.path.isdir(prefix) and prefix_files(beside + "_", ".lst")[1] + prefix_files(beside + ".", ".lst")[1]:
            raise PackError(f"{prefix!r} is a folder, so the prefix means the .lst files inside it (as in im2rec.py), "
                            f"and it holds none; the lists `fastrec list {prefix}` wrote lie beside it: write "
                            f"them under a prefix that is no folder (e.g. lists/NAME)")
        raise PackError(f"no .lst file matches the prefix {os.path.abspath(prefix)!r} "
                        f"(run `fastrec list` first)")
    outputs = [out for lst in lists for out in Job.for_list(lst, root or "").outputs]
    refuse_output_is_input(outputs,
                           [*archives, *lists, *([root] if root else [])],
                           "rename the input or the lists (the outputs are named after the .lst files)")
    for out in outputs:
        if root and os.path.islink(out) and is_inside(os.path.realpath(out), root):
            # an output that is a link to an image under the root would overwrite that image
            raise PackError(f"the output {out} is a link to {os.path.realpath(out)}, under the image root "
                            f"{root}: writing it would destroy that image; remove the link and run again")
        if os.path.isfile(out) and os.stat(out).st_nlink > 1:
            # a hard link to an image, or a `cp -al` snapshot: the outputs are rewritten in place
            raise PackError(f"the output {out} has another name (a hard link): writing it would change that "
                            f"file too (an image, a snapshot); remove {out} (the other name keeps the bytes) "
                            f"and run again")
    with output_lock(prefix, command_line()):
        return _pack_prefix(prefix, lists, work, root, opts, archives)


def _pack_prefix(prefix: str, lists: list[str], work: str, root: str | None, opts: PackOptions,
                 archives: Sequence[str]) -> Summary:
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
    jobs = [Job.for_list(lst, root, opts.list_rules()) for lst in lists]
    if not any(job.items for job in jobs):
        raise PackError(f"the list(s) {', '.join(os.path.basename(p) for p in lists)} hold no image line "
                        f"(`id<TAB>label<TAB>path`); nothing to pack (was `fastrec list` run without "
                        f"--recursive on a tree of class folders?)")
    for job in jobs:
        job.source = source
    return pack_all(jobs, opts)


def pack_all(jobs: Sequence[Job], opts: PackOptions) -> Summary:
    """Pack `jobs` on local threads or, with `opts.dask`, on a Dask cluster; then the guard against
    a quietly thin dataset (--max-skipped, --strict). Every route to a pack (pack, im2rec, prepare)
    comes through here. Each list's outputs are locked for the run (one writer per output)."""
    with contextlib.ExitStack() as locks:
        for job in jobs:
            locks.enter_context(output_lock(os.path.splitext(job.rec)[0], command_line()))
        return _pack_all(jobs, opts)


def _pack_all(jobs: Sequence[Job], opts: PackOptions) -> Summary:
    if opts.dask:
        from fastrec.engine.cluster import pack_jobs_dask
        summary = pack_jobs_dask(jobs, opts, opts.dask, opts.shard_size)
    else:
        summary = pack_jobs(jobs, opts)
    for line in summary.lines():
        log.info("%s", line)
    _check_skipped_share(jobs, opts, summary)
    return summary


class TooManySkipped(DataError):
    """More skips than --max-skipped (or any, with --strict); the outputs are whole, and `summary`
    is the run's (so `--json` can still print it)."""

    def __init__(self, message: str, summary: Summary):
        super().__init__(message)
        self.summary = summary


def _check_skipped_share(jobs: Sequence[Job], opts: PackOptions, summary: Summary) -> None:
    """The guard against a quietly thin dataset: the outputs are all written, but if more than
    --max-skipped of the items (over all lists, resumed parts included) became skips, or with
    --strict any did, fail."""
    expected = skipped = 0
    for job in jobs:
        manifest = read_manifest(job.manifest)
        expected += manifest.expected if manifest else len(job.items)
        skipped += manifest.skipped if manifest else 0
    if opts.strict and skipped:
        raise TooManySkipped(f"{skipped} of {expected} images were skipped and --strict allows none; the outputs "
                             f"are written, see the .skipped.tsv files for why", summary)
    if expected and skipped > opts.max_skipped * expected:
        raise TooManySkipped(f"{skipped} of {expected} images were skipped ({100 * skipped / expected:.2f} %), more "
                             f"than --max-skipped {100 * opts.max_skipped:g} % allows; the outputs are written, "
                             f"see the .skipped.tsv files for why (pass a higher --max-skipped to accept them)",
                             summary)
