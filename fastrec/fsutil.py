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

import errno
import hashlib
import logging
import os
import shutil
import stat
import sys
from typing import Sequence
from fastrec.errors import FastrecError

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
