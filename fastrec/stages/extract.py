"""`fastrec extract`: unpack class tars into `DEST/<class>/`, in parallel, resumably and safely.

Inputs (any mix, each given on the command line):
- an outer tar whose members are per-class tars (`ILSVRC2012_img_train.tar` holding
  `n01440764.tar`, ...): the outer tar is read once as a stream (`r|*`) and each inner tar is
  read as a stream from it, never written to disk; the class is the inner tar's name without
  its suffix;
- a folder of per-class tars: each is a top-level archive (below);
- a top-level archive (`.tar`, `.tar.gz`, ...) of files: a member `CLS/rest` goes to
  `DEST/CLS/rest`; a member without a folder goes to the class named after the archive
  (`n01440764.tar` holding `n01440764_10026.JPEG`).

Resumable: a class is written into `DEST/.CLS.partial/`; only when all its files are written
and fsynced is that folder renamed to `DEST/CLS` (one atomic rename). A rerun skips classes
whose folder exists and starts half-written ones (their `.partial` folder) afresh. A class whose
tar turns out corrupt is not renamed into place: its partial folder is discarded, the problem is
reported with the member name, and the other classes go on; a rerun tries it again. A class
that `fastrec filter` moved out of DEST (recorded in `DEST/.fastrec-stages.json`) counts as done,
so rerunning the step-by-step chain does not bring it back.

Safe, in the spirit of tarfile's "data" filter (PEP 706), which we also apply where Python has
it (3.11.4+): absolute names, names with a `..` component, devices, fifos and other special
members are refused; a link must stay inside its class folder (checked when it is made, and
again, physically, before the class is renamed into place); nothing is written through a link.

Parallelism uses threads: the work is reading, writing and fsyncing files and (for `.tar.gz`)
zlib, all of which release the GIL, and one outer stream feeds many classes, which threads can
share through memory without pickling 100 MB class tars between processes. Inner tars of a
stream are buffered in memory (at most `buffer_bytes` at once) and handed to `jobs` workers;
top-level archives are read by up to `jobs` threads of their own.
"""
from __future__ import annotations

import argparse
import copy
import io
import logging
import os
import shutil
import tarfile
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, NamedTuple, Sequence

from fastrec import fsutil
from fastrec.progress import make_progress
from fastrec.stages import treestate
from fastrec.stages.args import PATH, hidden_alias, whole
from fastrec.errors import UsageError
from fastrec.formats.tar import (ClassTree, EndCheckedTarInfo, RefusedMember as _Refused, TarError,
                                 check_class as _check_class, hard_link_rel, inner_tar_class, place_member,
                                 resolve_archives, tar_stem as _tar_stem)

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
# tarfile.data_filter arrived in 3.11.4 (PEP 706); without it our own checks stand alone.
_DATA_FILTER: Callable | None = getattr(tarfile, "data_filter", None)
# What reading a damaged tar raises: tarfile's own errors, zlib's, EOF from bz2/lzma, and I/O.
_READ_ERRORS = (tarfile.TarError, zlib.error, EOFError, OSError)


class ExtractError(TarError):
    """Extraction cannot go on at all; the message names the path and what to do."""


class Problem(NamedTuple):
    where: str   # ARCHIVE[:INNER.tar][:MEMBER]
    reason: str


@dataclass
class ExtractOptions:
    """How `extract` works. jobs: worker threads (default 4). buffer_bytes: inner tars held in
    memory at once, in bytes (default 1 GiB; a larger inner tar is streamed by its reader).
    fsync: make each file durable before its class is marked done (default True). progress:
    "auto" (on a terminal), "on" or "off" (default). also_done: folders where a class folder
    also counts as done (e.g. where `fastrec filter` moved small classes), so a rerun of the
    whole chain does not extract them again (default none)."""

    jobs: int = 4
    buffer_bytes: int = 1 << 30
    fsync: bool = True
    progress: str = "off"
    also_done: Sequence[str] = ()


@dataclass
class ExtractSummary:
    extracted: list[str] = field(default_factory=list)  # classes written by this run
    skipped: list[str] = field(default_factory=list)    # classes done by an earlier run
    filtered: list[str] = field(default_factory=list)   # of those, classes filter moved away
    files: int = 0
    bytes: int = 0                                      # bytes of files written
    refused: list[Problem] = field(default_factory=list)
    corrupt: list[Problem] = field(default_factory=list)
    checks: str = ""                                    # which member checks ran

    @property
    def classes(self) -> int:
        return len(self.extracted)


class _Corrupt(Exception):
    """Reading a tar failed; carries the member being read."""


class _CountingReader(io.RawIOBase):
    """A read-only file that reports how many bytes were read (for the progress bar)."""

    def __init__(self, raw: BinaryIO, on_read: Callable[[int], None]):
        self.raw, self.on_read = raw, on_read

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.on_read(len(data))
        return data


class _Budget:
    """Bytes of inner tars held in memory; `acquire` waits while over the limit."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self.cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.used == 0 or self.used + n <= self.limit)
            self.used += n

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


class _ClassWriter:
    """Writes one class into `DEST/.CLS.partial/` and renames it to `DEST/CLS` when done."""

    def __init__(self, run: "_Run", cls: str, where: str):
        self.run, self.cls, self.where = run, cls, where
        self.final = os.path.join(run.dest, cls)
        self.dir = fsutil.partial_path(self.final)
        self.real = os.path.realpath(self.dir)
        self.files = self.bytes = 0
        self.tree = ClassTree()
        if os.path.lexists(self.dir):
            log.info("%s: starting the half-written class %s again", where, cls)
            shutil.rmtree(self.dir)
        os.mkdir(self.dir)

    def _path(self, rel: str) -> str:
        """The place of `rel` in the partial folder, emptied of a file an earlier member made
        there (a later member of a name replaces it, as with tar; ClassTree said it may)."""
        target = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target) and not os.path.isdir(target):
            os.remove(target)
        return target

    def add(self, tar: tarfile.TarFile, m: tarfile.TarInfo, rel: str, link_rel: str | None) -> None:
        """Write member `m` as `rel` (links: to `link_rel`, relative to the class folder).

        The class's ClassTree decides what is refused (the same rules as the --from-tar index);
        symbolic links are made by `finish`, once the tree says which stay, so until then no
        link exists on disk and nothing can be written through one."""
        checked = copy.copy(m)
        checked.name = rel
        if link_rel is not None:
            checked.linkname = link_rel
        if _DATA_FILTER is not None:
            try:
                _DATA_FILTER(checked, self.dir)
            except tarfile.FilterError as err:
                raise _Refused(f"tarfile data filter: {err}") from None
        if m.isdir():
            self.tree.add_dir(rel)
            os.makedirs(os.path.join(self.dir, rel), exist_ok=True)
            return
        if m.issym():
            self.tree.add_symlink(rel, m.linkname)
            self._path(rel)      # an earlier file of that name goes; the link is made by finish
            return
        if m.islnk():   # a copy, not a second name: the class folder stays self-contained
            self.tree.add_hardlink(rel, link_rel, m.linkname)
            if os.path.normpath(link_rel) == os.path.normpath(rel):
                return           # a hard link to itself: the file stays as it is
            target = self._path(rel)
            shutil.copyfile(os.path.join(self.dir, link_rel), target)
            n = os.path.getsize(target)
        else:
            self.tree.add_file(rel, True)
            target = self._path(rel)
            n = self._write_file(tar.extractfile(m), target, m.name)
        os.utime(target, (m.mtime, m.mtime))
        self.files += 1
        self.bytes += n
        self.run.file_done()

    def _write_file(self, src: BinaryIO, target: str, name: str) -> int:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        n = 0
        try:
            while True:
                try:
                    chunk = src.read(_CHUNK)
                except _READ_ERRORS as err:
                    if isinstance(err, OSError) and err.errno is not None:
                        raise   # the device failed (EIO), not the archive's bytes: stop, as for a write
                    raise _Corrupt(f"while reading member {name}: {err}") from err
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                n += len(chunk)
            if self.run.opts.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        return n

    def finish(self) -> None:
        """Make the links the class's tree keeps, check each physically, fsync, rename into place."""
        self.tree.settle()
        for rel, why in sorted(self.tree.removed.items()):
            self.run.refuse(f"{self.where}:{rel}", why)
        resolves = {rel for rel, _ in self.tree.files()}
        links = sorted(self.tree.links())
        for rel, target in links:
            os.symlink(target, os.path.join(self.dir, rel))
        for rel, target in links:   # the model and the file system must agree; if not, the link goes
            p = os.path.join(self.dir, rel)
            if not fsutil.is_inside(os.path.realpath(p), self.real) or os.path.isdir(p) \
                    or os.path.isfile(p) != (rel in resolves):
                os.remove(p)
                self.run.refuse(f"{self.where}:{rel}", "link resolves differently on disk than fastrec "
                                                       "expected (a bug: please report it)")
        if self.run.opts.fsync:
            for dirpath, _, _ in os.walk(self.dir):
                fsutil.fsync_dir(dirpath)
        os.rename(self.dir, self.final)
        if self.run.opts.fsync:
            fsutil.fsync_dir(self.run.dest)
        self.run.class_done(self)

    def abandon(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class _Run:
    """One `extract` call: shared state of the readers and the class workers."""

    def __init__(self, dest: str, opts: ExtractOptions, bar, bytes_task, classes_task):
        self.dest, self.opts = dest, opts
        self.bar, self.bytes_task, self.classes_task = bar, bytes_task, classes_task
        self.summary = ExtractSummary(checks="tarfile.data_filter + fastrec's own checks"
                                      if _DATA_FILTER else "fastrec's own checks (this Python has "
                                      "no tarfile.data_filter; 3.11.4+ adds it)")
        self.lock = threading.Lock()
        self.claimed: dict[str, str] = {}
        self.filtered = treestate.filtered_classes(dest)   # moved away by filter: done, not missing
        self.crash = fsutil.CrashAfter()
        self.budget = _Budget(opts.buffer_bytes)
        self.pool = ThreadPoolExecutor(opts.jobs, "extract-class") if opts.jobs > 1 else None
        self.futures: list[Future] = []

    # -- bookkeeping (thread-safe)
    def on_read(self, n: int) -> None:
        self.bar.update(self.bytes_task, advance=n)

    def file_done(self) -> None:
        with self.lock:
            self.crash.tick()

    def class_done(self, w: _ClassWriter) -> None:
        with self.lock:
            s = self.summary
            s.extracted.append(w.cls)
            s.files += w.files
            s.bytes += w.bytes
        self.bar.update(self.classes_task, advance=1)
        log.debug("extracted %s: %d files, %d bytes", w.cls, w.files, w.bytes)

    def refuse(self, where: str, reason: str) -> None:
        log.warning("refused %s: %s", where, reason)
        with self.lock:
            self.summary.refused.append(Problem(where, reason))

    def corrupt(self, where: str, reason: str) -> None:
        log.warning("corrupt %s: %s; going on with the other classes", where, reason)
        with self.lock:
            self.summary.corrupt.append(Problem(where, reason))

    def claim(self, cls: str, where: str) -> _ClassWriter | None:
        """A writer for `cls`, or None if it is done already or comes from elsewhere in this run."""
        with self.lock:
            if cls in self.claimed:
                other = self.claimed[cls]
                self.summary.refused.append(Problem(where, f"class {cls!r} already comes from {other}"))
                log.warning("refused %s: class %r already comes from %s", where, cls, other)
                return None
            self.claimed[cls] = where
            if any(os.path.isdir(os.path.join(d, cls)) for d in (self.dest, *self.opts.also_done)):
                self.summary.skipped.append(cls)
                return None
            if cls in self.filtered:
                self.summary.skipped.append(cls)
                self.summary.filtered.append(cls)
                return None
        return _ClassWriter(self, cls, where)

    # -- reading
    def archive(self, path: str) -> None:
        with open(path, "rb") as raw:
            self.stream(_CountingReader(raw, self.on_read), path, _tar_stem(os.path.basename(path)))

    def stream(self, fileobj: BinaryIO, where: str, stem: str | None,
               writer: _ClassWriter | None = None) -> None:
        """Extract one tar stream. With `writer`, it is an inner tar: all goes to that class."""
        writers: dict[str, _ClassWriter | None] = {}
        if writer is not None:
            writers[writer.cls] = writer
        current = ""
        try:
            tar = tarfile.open(fileobj=fileobj, mode="r|*", tarinfo=EndCheckedTarInfo)
            try:
                for m in tar:
                    current = m.name
                    self.member(tar, m, where, stem, writer, writers)
                if getattr(tar, "_fastrec_end", None):
                    raise tarfile.ReadError(tar._fastrec_end)
            finally:
                tar.close()
        # Only reading errors: a write error (OSError: disk full, permissions) stops the run.
        except (_Corrupt, tarfile.TarError, zlib.error, EOFError) as err:
            reason = str(err) or type(err).__name__
            if not isinstance(err, _Corrupt):
                reason = f"{f'after member {current}' if current else 'at the start'}: {reason}"
            self.corrupt(where, reason)
            for w in writers.values():
                if w is not None:
                    w.abandon()
            return
        for w in writers.values():
            if w is not None:
                w.finish()

    def member(self, tar, m, where, stem, writer, writers) -> None:
        mwhere = f"{where}:{m.name}"
        try:
            if writer is None and m.isfile() and inner_tar_class(m):
                self.inner(tar, m, mwhere, inner_tar_class(m))
                return
            placed = place_member(m, stem, writer.cls if writer is not None else None)
            if placed is None:
                return
            cls, rel = placed
            link_rel = hard_link_rel(m, cls, stem, writer is not None) if m.islnk() else None
            if cls not in writers:
                writers[cls] = self.claim(cls, where)
            w = writers[cls]
            if w is not None:
                w.add(tar, m, os.path.join(*rel), link_rel)
        except _Refused as err:
            self.refuse(mwhere, str(err))

    def inner(self, tar, m, where: str, cls: str) -> None:
        _check_class(cls)
        w = self.claim(cls, where)
        if w is None:
            return
        if self.pool is None or m.size > self.opts.buffer_bytes:
            try:
                self.stream(tar.extractfile(m), where, cls, w)
            except BaseException:
                w.abandon()
                raise
            return
        self.budget.acquire(m.size)
        try:
            data = tar.extractfile(m).read()
        except BaseException:
            self.budget.release(m.size)
            w.abandon()
            raise

        def job() -> None:
            try:
                self.stream(io.BytesIO(data), where, cls, w)
            except BaseException:
                w.abandon()
                raise
            finally:
                self.budget.release(m.size)
        self.futures.append(self.pool.submit(job))


def extract(archives: Sequence[str], dest: str, options: ExtractOptions | None = None) -> ExtractSummary:
    """Extract outer tars, folders of class tars and plain tars into `dest/<class>/`.

    archives: paths of tar files (any compression `tarfile` reads) or folders of them. dest:
    the folder classes are written into; created if missing. options: `ExtractOptions`
    (jobs, buffer size, fsync, progress). Returns an `ExtractSummary`; corrupt tars and refused
    members are listed there, not raised. Raises ExtractError for missing inputs.
    """
    opts = options or ExtractOptions()
    if opts.jobs < 1:
        raise ExtractError(f"--jobs must be at least 1, got {opts.jobs}")
    paths = resolve_archives(archives)
    dest = os.path.abspath(dest)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise ExtractError(f"destination {dest!r} exists and is not a folder; choose a folder")
    os.makedirs(dest, exist_ok=True)
    total = sum(os.path.getsize(p) for p in paths)
    with make_progress(opts.progress, "bytes") as bar:
        bytes_task = bar.add_task("extract: archives read", total=total)
        classes_task = bar.add_task("extract: classes done", total=None)
        run = _Run(dest, opts, bar, bytes_task, classes_task)
        log.info("extracting %d archives into %s; members checked with %s", len(paths), dest,
                 run.summary.checks)
        try:
            if opts.jobs > 1 and len(paths) > 1:
                with ThreadPoolExecutor(min(opts.jobs, len(paths)), "extract-read") as readers:
                    for f in [readers.submit(run.archive, p) for p in paths]:
                        f.result()
            else:
                for p in paths:
                    run.archive(p)
            for f in run.futures:
                f.result()
        except BaseException:
            if run.pool is not None:   # stop queued classes; their partial folders are redone next run
                run.pool.shutdown(wait=True, cancel_futures=True)
            raise
        if run.pool is not None:
            run.pool.shutdown(wait=True)
    s = run.summary
    for lst in (s.extracted, s.skipped, s.filtered, s.refused, s.corrupt):
        lst.sort()
    return s


# ---------------------------------------------------------------- command line
def cmd_extract(a: argparse.Namespace) -> int:
    opts = ExtractOptions(jobs=a.jobs, fsync=not a.no_fsync, progress=a.progress,
                          buffer_bytes=a.buffer_mib << 20, also_done=tuple(a.skip_classes_in))
    try:
        s = extract(a.archives, a.dest, opts)
    except ExtractError as err:
        raise UsageError(str(err)) from err
    for p in s.refused:
        print(f"refused\t{p.where}\t{p.reason}")
    for p in s.corrupt:
        print(f"corrupt\t{p.where}\t{p.reason}")
    moved = f" ({len(s.filtered)} moved away by filter)" if s.filtered else ""
    print(f"{s.classes} classes extracted ({s.files} files, {s.bytes} bytes); {len(s.skipped)} "
          f"already done{moved}; {len(s.refused)} members refused; {len(s.corrupt)} corrupt tars")
    return 1 if s.corrupt or s.refused else 0


def register(subparsers) -> None:
    p = subparsers.add_parser("extract", help="unpack an outer tar of class tars (or class tars) into DEST/<class>/")
    p.add_argument("archives", nargs="+", metavar="ARCHIVE", type=PATH,
                   help="an outer tar of class tars, a folder of class tars, or a tar of files")
    p.add_argument("dest", metavar="DEST", help="folder the classes are extracted into")
    p.add_argument("--num-thread", dest="jobs", type=whole(1, 1024), default=4, help="classes extracted at once (threads)")
    hidden_alias(p, "--jobs", "jobs", type=whole(1, 1024))
    p.add_argument("--buffer-mib", type=whole(1, 1 << 30), default=1024,
                   help="MiB of inner tars held in memory at once")
    p.add_argument("--no-fsync", action="store_true",
                   help="do not fsync files (faster; a crash may leave classes marked done but incomplete)")
    p.add_argument("--skip-classes-in", action="append", default=[], metavar="DIR", type=PATH,
                   help="a class with a folder in DIR counts as done too (e.g. filter's --move-to); repeatable")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar (auto: only on a terminal)")
    p.set_defaults(func=cmd_extract)
