"""The move rules every preparation stage follows, and an atomic write.

Moves are renames on the same filesystem (copy + verify + remove across filesystems); nothing is
deleted; an interrupted stage leaves no half-moved class that a rerun cannot finish; every
refusal names the offending path and what to do.

A cross-filesystem move of a folder copies into a hidden sibling `DST_PARENT/.NAME.partial/`,
verifies every file against its source, renames the copy into place, and only then removes the
source. An interruption therefore leaves either the source intact (and a stale `.partial` copy
that the next attempt discards) or a verified copy in place next to the source (which the next
attempt verifies again before removing the source). Same for single files.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import stat
import sys
import time
from typing import Sequence
from fastrec.errors import EnvironmentFault, FastrecError

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"        # hidden temporary siblings: `.NAME.partial`
CRASH_ENV = "FASTREC_TEST_CRASH_AFTER"  # tests: os._exit(137) after this many items
CRASH_STATUS = 137                 # what a SIGKILL'd process reports (128 + 9)
_COPY_CHUNK = 1 << 20


class MoveError(FastrecError):
    """A move cannot go ahead safely; the message names the path and what to do."""


# ---------------------------------------------------------------- small helpers
def is_image(name: str, exts: Sequence[str]) -> bool:
    """True if `name`'s lower-cased extension is one of `exts` (as `fastrec list` decides)."""
    return os.path.splitext(name)[1].lower() in exts


def list_images(folder: str, exts: Sequence[str]) -> list[str]:
    """Sorted names of the image files directly inside `folder` (what one class label gets)."""
    return sorted(n for n in os.listdir(folder)
                  if is_image(n, exts) and os.path.isfile(os.path.join(folder, n)))


def class_folders(root: str) -> list[str]:
    """Sorted names of the visible sub-folders of `root` (hidden ones are fastrec's temporaries)."""
    return sorted(n for n in os.listdir(root)
                  if not n.startswith(".") and os.path.isdir(os.path.join(root, n)))


NOT_REGULAR = "not-a-regular-file"   # the skip reason for folders, FIFOs, sockets and devices


class NotRegularFile(OSError):
    """A path names a folder, FIFO, socket or device: it is never opened for reading."""


def open_regular(path: str | bytes):
    """Open a regular file for reading (binary) without ever blocking: anything else is refused
    from stat() (a FIFO would block open() or read() forever; a device may act on being opened),
    and the open cannot block (O_NONBLOCK) should the path change in between."""
    st = os.stat(path)
    if stat.S_ISREG(st.st_mode):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return os.fdopen(fd, "rb")
        os.close(fd)
    raise NotRegularFile(f"{os.fsdecode(path)} is {file_kind(st.st_mode)}, not a regular file")


def file_kind(mode: int) -> str:
    """What a non-regular file is, for a skip reason or an error: "a folder", "a FIFO", ..."""
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device")


def partial_path(path: str) -> str:
    """The hidden temporary sibling a folder or file is assembled in: `PARENT/.NAME.partial`."""
    parent, name = os.path.split(os.path.abspath(path))
    return os.path.join(parent, f".{name}{PARTIAL_SUFFIX}")


def is_inside(path: str, folder: str) -> bool:
    """True if `path` is `folder` or lies below it (both resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def fsync_dir(path: str) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes | str, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that a reader (or a crash) sees the old or the new file, whole.

    Writes `.NAME.partial` beside it, fsyncs, renames over `path`, fsyncs the folder.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = partial_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)   # a full disk leaves no half-written temporary behind
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


class CrashAfter:
    """Test hook: `os._exit(137)` (as if SIGKILL'd) once `tick()` was called N times.

    N comes from the environment variable FASTREC_TEST_CRASH_AFTER; unset, it never fires.
    Each stage makes its own, so there is no global state.
    """

    def __init__(self, n: int | None = None):
        if n is None:
            raw = os.environ.get(CRASH_ENV, "")
            n = int(raw) if raw.strip() else 0
        self.n = n
        self.count = 0

    def tick(self) -> None:
        if self.n <= 0:
            return
        self.count += 1
        if self.count >= self.n:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(CRASH_STATUS)


# ---------------------------------------------------------------- copy and verify
def _file_digest(path: str) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(_COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_file_synced(src: str, dst: str) -> str:
    """Copy bytes, permission bits and times; fsync; return the digest of what was read."""
    h = hashlib.blake2b(digest_size=20)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_COPY_CHUNK):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    shutil.copystat(src, dst)
    return h.hexdigest()


def _verify_file(src: str, dst: str, digest: str | None = None) -> None:
    if os.path.getsize(src) != os.path.getsize(dst) or (digest or _file_digest(src)) != _file_digest(dst):
        raise MoveError(f"the copy {dst!r} of {src!r} differs from its source; the source was left "
                        f"in place; check the target filesystem and run again")


def _tree(folder: str) -> tuple[set[str], set[str]]:
    """(relative folders, relative non-folders) below `folder`."""
    dirs, files = set(), set()
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        for d in dirnames:
            p = os.path.normpath(os.path.join(rel, d))
            (files if os.path.islink(os.path.join(dirpath, d)) else dirs).add(p)
        files.update(os.path.normpath(os.path.join(rel, f)) for f in filenames)
    return dirs, files


def _verify_tree(src: str, dst: str) -> None:
    """Raise MoveError unless `dst` holds exactly `src`'s folders and files with the same bytes."""
    sd, sf = _tree(src)
    dd, df = _tree(dst)
    if sd != dd or sf != df:
        extra = sorted((dd | df) - (sd | sf))[:3]
        missing = sorted((sd | sf) - (dd | df))[:3]
        raise MoveError(f"{dst!r} does not hold the same files as {src!r} (missing {missing}, extra "
                        f"{extra}); both were left in place: compare them, move one away, and run again")
    for rel in sorted(sf):
        s, d = os.path.join(src, rel), os.path.join(dst, rel)
        if os.path.islink(s) or os.path.islink(d):
            if not (os.path.islink(s) and os.path.islink(d) and os.readlink(s) == os.readlink(d)):
                raise MoveError(f"the link {d!r} differs from {s!r}; both were left in place: compare "
                                f"them, move one away, and run again")
            continue
        try:
            _verify_file(s, d)
        except MoveError:
            raise MoveError(f"{d!r} differs from {s!r}; both were left in place: compare them, move "
                            f"one away, and run again") from None


def _copy_tree_synced(src: str, dst: str) -> None:
    os.makedirs(dst)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        out = os.path.normpath(os.path.join(dst, rel))
        for d in list(dirnames):
            s = os.path.join(dirpath, d)
            if os.path.islink(s):
                os.symlink(os.readlink(s), os.path.join(out, d))
                dirnames.remove(d)   # a link to a folder is copied as a link, not followed
            else:
                os.mkdir(os.path.join(out, d))
        for f in filenames:
            s, d = os.path.join(dirpath, f), os.path.join(out, f)
            if os.path.islink(s):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISREG(os.lstat(s).st_mode):
                _copy_file_synced(s, d)
            else:
                raise MoveError(f"{s!r} is not a regular file, folder or link; move it out of "
                                f"{src!r} by hand and run again")
        fsync_dir(out)


def _remove_tree(path: str) -> None:
    shutil.rmtree(path)


# ---------------------------------------------------------------- moves
def move(src: str, dst: str, *, verify_existing: bool = True) -> bool:
    """Move the file or folder `src` to `dst` (which must not exist, unless a move was interrupted).

    Same filesystem: one rename. Across filesystems: copy to `.NAME.partial`, fsync, verify,
    rename into place, remove the source. Returns False if there was nothing left to do
    (`src` is gone and `dst` exists: an earlier run finished this move).

    Resuming: if both exist and `dst` is a complete, verified copy of `src` (an interrupted
    cross-filesystem move), the source is removed; if they differ, MoveError — nothing is
    deleted that has no verified copy.
    """
    src, dst = os.path.abspath(src), os.path.abspath(dst)
    src_exists, dst_exists = os.path.lexists(src), os.path.lexists(dst)
    if not src_exists:
        if dst_exists:
            return False
        raise MoveError(f"cannot move {src!r} to {dst!r}: neither exists; if you moved it by hand, "
                        f"put it back at either place and run again")
    is_dir = os.path.isdir(src) and not os.path.islink(src)
    if dst_exists:
        if not verify_existing:
            raise MoveError(f"cannot move {src!r}: {dst!r} already exists; move one of them away "
                            f"and run again")
        (_verify_tree if is_dir else _verify_file)(src, dst)
        log.info("%s is a verified copy of %s; removing the source", dst, src)
        (_remove_tree if is_dir else os.remove)(src)
        fsync_dir(os.path.dirname(src))
        return True
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise MoveError(f"cannot move {src!r} to {dst!r}: {err.strerror}; fix the permissions "
                            f"or free space and run again") from err
        _move_across(src, dst, is_dir)
    # A plain rename is not fsynced: after a crash the entry is at one place or the other, and
    # both states are ones a rerun finishes. Copies are fsynced before their source goes.
    return True


def _move_across(src: str, dst: str, is_dir: bool) -> None:
    tmp = partial_path(dst)
    if os.path.lexists(tmp):   # our own copy from an interrupted attempt; the source is intact
        log.info("discarding the incomplete copy %s from an interrupted move", tmp)
        (_remove_tree if os.path.isdir(tmp) and not os.path.islink(tmp) else os.remove)(tmp)
    if is_dir:
        _copy_tree_synced(src, tmp)
        _verify_tree(src, tmp)
    elif os.path.islink(src):
        os.symlink(os.readlink(src), tmp)
    else:
        digest = _copy_file_synced(src, tmp)
        _verify_file(src, tmp, digest)
    os.rename(tmp, dst)
    fsync_dir(os.path.dirname(dst))
    (_remove_tree if is_dir else os.remove)(src)
    fsync_dir(os.path.dirname(src))


def same_filesystem(a: str, b: str) -> bool:
    """True if the existing paths (or their nearest existing parents) are on one filesystem."""
    def dev(p: str) -> int:
        p = os.path.abspath(p)
        while not os.path.exists(p):
            p = os.path.dirname(p)
        return os.stat(p).st_dev
    return dev(a) == dev(b)


def refuse_nesting(a: str, a_flag: str, b: str, b_flag: str) -> None:
    """MoveError if one of the two folders lies inside the other (moves would loop)."""
    if is_inside(b, a) or is_inside(a, b):
        raise MoveError(f"{b_flag} {b!r} and {a_flag} {a!r} overlap (one lies inside the other); "
                        f"choose a {b_flag} folder outside {a!r}")


# ---------------------------------------------------------------- one writer per output
LOCK_SUFFIX = ".lock"
_held: dict[str, tuple[int, int]] = {}   # lock path -> (fd, depth): this process's own locks


class OutputBusy(EnvironmentFault):
    """Another fastrec run holds the lock on these outputs (exit 75: try again once it ended)."""


def output_folder_missing(folder: str, what: str) -> FastrecError:
    return FastrecError(f"output folder {folder!r} for {what} does not exist; create it first")


def lock_path(output: str) -> str:
    """The lock of an output (a prefix or a folder): the hidden sibling `PARENT/.NAME.lock`."""
    parent, name = os.path.split(os.path.abspath(output))
    return os.path.join(parent, f".{name or 'root'}{LOCK_SUFFIX}")


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process (it wrote no details)"


@contextlib.contextmanager
def output_lock(output: str, command: str):
    """Hold an exclusive lock on the outputs named by `output` (a prefix or a folder) for the run.

    The lock file `PARENT/.NAME.lock` holds the holder's pid, host and command line; a second run
    stops at once (OutputBusy, exit 75) naming them. flock() is released by the kernel when its
    holder exits however it exits, so a lock whose process died (SIGKILL, a crash) is simply taken
    over; the file is removed at the end of a run. Re-entrant within one process (prepare runs the
    stages, pack takes the prefix's lock and each list's)."""
    path = lock_path(output)
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
        try:
            yield path
        finally:
            fd, depth = _held[path]
            _held[path] = (fd, depth - 1)
        return
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise output_folder_missing(parent, os.path.abspath(output))
    while True:
        try:
            # O_NOFOLLOW: a lock planted as a symlink must not make us truncate the file it names
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise EnvironmentFault(f"the lock {path} is a symbolic link (fastrec writes its lock in place, "
                                       f"never through a link); remove it and run again") from err
            raise EnvironmentFault(f"cannot create the lock {path}: {err.strerror}; fix the permissions of "
                                   f"{parent!r} (fastrec needs to write there) and run again") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise EnvironmentFault(f"cannot lock {path}: {err.strerror} (a file system without locks? "
                                       f"see the README on NFS)") from err
            raise OutputBusy(f"another fastrec run is writing these outputs: {holder}; wait for it to end (or, "
                             f"if that process is gone, remove {path}) and run again") from None
        try:   # the file we locked may have been removed by its previous holder in between: lock anew
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        me = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: {command}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode("utf-8", "replace"), 0)
    except OSError:
        pass    # the lock holds without the details (a full disk): the refusal then says less
    _held[path] = (fd, 1)
    try:
        yield path
    finally:
        del _held[path]
        try:
            os.unlink(path)   # while still locked: a waiting run re-checks the inode and locks anew
        except OSError:
            pass
        os.close(fd)


def command_line() -> str:
    """This process's command line, as the lock records it."""
    return " ".join(["fastrec", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith(("fastrec", "__main__.py")) \
        else " ".join(sys.argv)


def refuse_output_is_input(outputs: Sequence[str], inputs: Sequence[str], fix: str = "") -> None:
    """FastrecError if an output path is, or resolves to (a link, another name of the same file
    through a hard link), one of the input files or folders: writing it would destroy the input.
    Checked before anything is opened."""
    def identity(path: str):
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    known = {}
    for path in inputs:
        if path:
            known[os.path.realpath(path)] = path
            ident = identity(path)
            if ident is not None:
                known[ident] = path
    for out in outputs:
        hit = known.get(os.path.realpath(out)) or known.get(identity(out) or ("", ""))
        if hit is not None:
            raise FastrecError(f"the output {out} is the input {hit}: writing it would destroy it; "
                               f"{fix or 'choose another output name'}")


# ---------------------------------------------------------------- a set of outputs, all or nothing
class OutputSet:
    """Files that make one result (all chunks of one `list`, its synset files) written as a set:
    each to its hidden temporary `.NAME.partial`, fsynced, and renamed into place only when every
    one is whole. A failure (a full disk, a read-only folder, an I/O error) removes the
    temporaries, leaves the earlier files as they were, and is one EnvironmentFault line.

        with OutputSet("the lists") as out:
            with out.open(path) as f: ...
    """

    def __init__(self, what: str):
        self.what = what
        self.pending: list[tuple[str, str]] = []   # (temporary, final path)

    def open(self, path: str, **text):
        """A new file of the set, open for writing (binary, or text with `text` open() arguments)."""
        tmp = partial_path(path)
        self.pending = [(t, p) for t, p in self.pending if t != tmp]   # written again: the last one counts
        self.pending.append((tmp, path))
        try:
            return _SyncedFile(tmp, text)
        except OSError as err:
            raise self._fault(err) from err

    def _fault(self, err: OSError) -> EnvironmentFault:
        where = os.fsdecode(err.filename) if err.filename else "?"
        return EnvironmentFault(f"writing {self.what} failed: {err.strerror or err} ({where}); nothing was "
                                f"replaced (earlier files are as they were); fix that and run again")

    def commit(self) -> None:
        try:
            for tmp, path in self.pending:
                os.replace(tmp, path)
            for folder in sorted({os.path.dirname(os.path.abspath(p)) for _, p in self.pending}):
                fsync_dir(folder)
        except OSError as err:
            raise self._fault(err) from err
        self.pending = []

    def discard(self) -> None:
        for tmp, _ in self.pending:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self.pending = []

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, kind, err, tb) -> None:
        if kind is None:
            self.commit()
            return
        self.discard()
        if isinstance(err, OSError):
            raise self._fault(err) from err


class _SyncedFile:
    """A file that is flushed and fsynced when its `with` block ends."""

    def __init__(self, path: str, text: dict):
        self.f = open(path, "w" if text else "wb", **text)

    def __enter__(self):
        return self.f

    def __exit__(self, kind, err, tb) -> None:
        try:
            if kind is None:
                self.f.flush()
                os.fsync(self.f.fileno())
        finally:
            self.f.close()
