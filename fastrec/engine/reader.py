"""The feed: image bytes read ahead of the decoders, with their own concurrency, bounded in bytes.

A decoder that opens and reads its own files waits out every per-file round trip (a disk seek,
an NFS lookup, an object-store gateway) instead of decoding. Here a small pool of reader
threads (os.open/os.pread drop the GIL) reads the items of the batches in flight, in list
order, into memory; a decoder takes a batch once its bytes are all there. So `--num-thread`
can equal the cores whatever the latency per file.

Bounds:
- bytes: what readers hold (read, not yet packed) stays within `budget` bytes, except that a
  batch whose earlier items already fill it may still take one file at a time (else a batch
  larger than the budget could never be read); budget is taken in list order, so a later item
  never holds bytes an earlier one waits for;
- depth: readers start at one per decode thread and double (up to `max_depth`) whenever a
  decoder finds its batch unread; `--io-depth N` pins N;
- descriptors: a reader holds one descriptor at a time (opened, read, closed) for loose files;
  archives are opened once each and shared by every thread through pread, in an LRU sized from
  RLIMIT_NOFILE.

From archives, a batch's members are read in the order they lie on disk, the kernel is told the
access is sequential (POSIX_FADV_SEQUENTIAL: larger read-ahead) and, when the batch's first read
starts, is asked for all of the batch's byte ranges at once (POSIX_FADV_WILLNEED), so on cold
storage they are fetched in parallel, merged where they are near each other.

Faults: a fault of one file (missing, unreadable, a folder, a FIFO, too large) is that item's
skip; a fault of the machine (descriptors, memory, I/O errors, a vanished mount, an archive
shorter than its index) stops the pack with EnvironmentFault (exit 75) and the way to continue.
"""
from __future__ import annotations

import collections
import errno
import os
import resource
import stat
import threading
from typing import Sequence

from fastrec.engine.outcome import Outcome
from fastrec.errors import EnvironmentFault
from fastrec.fsutil import file_kind

# errno values that are the machine's fault, never the image's
ENVIRONMENT_ERRNOS = frozenset(getattr(errno, name) for name in (
    "EMFILE", "ENFILE", "ENOMEM", "EIO", "ESTALE", "ETIMEDOUT", "ENOTCONN", "ENODEV", "EHOSTDOWN",
    "ENOSPC") if hasattr(errno, name))
CONTINUE = "fix the cause, then rerun the same `fastrec pack` command with --resume to continue"
DEFAULT_MAX_DEPTH = 64
RESERVED_FDS = 32          # left for outputs, logging, Pillow, the interpreter
# The system calls, as names a test can replace to inject latency or faults.
open_file, read_file, read_at = os.open, os.read, os.pread
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)   # a FIFO must not block


def _not_regular(mode: int) -> Outcome:
    return Outcome(None, "not-a-regular-file", f"is {file_kind(mode)}, not a regular file")


def default_budget(num_thread: int) -> int:
    """Read-ahead bytes: 48 MiB plus 8 MiB per decode thread (flat, whatever the dataset)."""
    return (48 << 20) + (8 << 20) * num_thread


def descriptor_budget() -> int:
    """Descriptors the feed may hold at once: the soft RLIMIT_NOFILE less those open and a reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = 16
    return max(2, soft - used - RESERVED_FDS)


def environment_fault(err: OSError, what: str) -> EnvironmentFault:
    name = errno.errorcode.get(err.errno or 0, "error")
    return EnvironmentFault(f"reading {what} failed: {err.strerror or err} ({name}); this is a fault of "
                            f"the machine or the storage, not of the image, so the pack stopped (the "
                            f"outputs hold every record before it); {CONTINUE}")


class ArchiveFiles:
    """One read-only descriptor per archive, shared by all threads (pread), at most `capacity`
    open: the least recently used one not in use is closed to open another."""

    def __init__(self, paths: Sequence[str], capacity: int):
        self.paths, self.capacity = paths, max(1, capacity)
        self._open: collections.OrderedDict[int, list[int]] = collections.OrderedDict()  # a -> [fd, users]
        self._lock = threading.Condition()

    def acquire(self, archive: int) -> int:
        with self._lock:
            while True:
                entry = self._open.get(archive)
                if entry is not None:
                    entry[1] += 1
                    self._open.move_to_end(archive)
                    return entry[0]
                if len(self._open) < self.capacity or self._evict():
                    break
                self._lock.wait()    # every descriptor is in use by another reader
            fd = open_file(self.paths[archive], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            if hasattr(os, "posix_fadvise"):   # members are read in index order: let the kernel read ahead
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            self._open[archive] = [fd, 1]
            return fd

    def _evict(self) -> bool:
        for archive, (fd, users) in self._open.items():
            if users == 0:
                del self._open[archive]
                os.close(fd)
                return True
        return False

    def advise(self, archive: int, start: int, length: int) -> None:
        """Ask the kernel to start reading a range now (on cold storage the reads then overlap)."""
        if not hasattr(os, "posix_fadvise"):
            return
        try:
            fd = self.acquire(archive)
        except OSError:
            return     # a hint only: the read itself reports the fault
        try:
            os.posix_fadvise(fd, start, length, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            self.release(archive)

    def release(self, archive: int) -> None:
        with self._lock:
            self._open[archive][1] -= 1
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._open.values():
                os.close(fd)
            self._open.clear()


def _spans(places: list[tuple[int, int, int]], gap: int = 1 << 16) -> list[tuple[int, int, int]]:
    """Sorted (archive, offset, size) -> (archive, start, length) ranges, near neighbours merged."""
    spans: list[list[int]] = []
    for archive, offset, size in places:
        if spans and spans[-1][0] == archive and offset - (spans[-1][1] + spans[-1][2]) <= gap:
            spans[-1][2] = max(spans[-1][2], offset + size - spans[-1][1])
        else:
            spans.append([archive, offset, size])
    return [(a, s, n) for a, s, n in spans]


class Batch:
    """The reads of one batch: per item its bytes, or the Outcome that skips it."""

    def __init__(self, feed: "Feed", n: int):
        self.feed = feed
        self.slots: list[bytes | Outcome | None] = [None] * n
        self.missing = n
        self.held = 0          # budget bytes this batch holds
        self.fault: BaseException | None = None
        self.done = threading.Event()
        self.hints: list[tuple[int, int, int]] = []   # (archive, start, length) to read ahead
        if n == 0:
            self.done.set()

    def wait(self) -> list[bytes | Outcome]:
        """Block until every item is read (asking for more readers if the decoder starves)."""
        if not self.done.is_set():
            self.feed.starving()
            self.done.wait()
        if self.fault is not None:
            raise self.fault
        return self.slots   # type: ignore[return-value]

    def release(self) -> None:
        """The decoder is done with these bytes: give their budget back."""
        self.feed.give_back(self)
        self.slots = []


class Feed:
    """Reader threads that read the submitted batches' items in order, ahead of the decoders."""

    def __init__(self, root: str, source=None, *, max_bytes: int, budget: int, depth: int = 0,
                 max_depth: int = DEFAULT_MAX_DEPTH, start_depth: int = 2):
        self.root, self.source, self.max_bytes, self.budget = root, source, max_bytes, budget
        fds = descriptor_budget()
        self.max_depth = max(1, min(depth or max_depth, fds))
        self.pinned = bool(depth)
        self.archives = ArchiveFiles(source.archives, fds) if source is not None else None
        self.root_dev = os.stat(root).st_dev if root and source is None else None
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)    # readers waiting for items
        self._waiting: dict[int, threading.Condition] = {}   # seq -> a reader waiting for its turn or budget
        self._idle = 0         # readers waiting for items
        self._queue: collections.deque[tuple[int, Batch, int, str]] = collections.deque()
        self._next_seq = 0     # sequence number of the next item submitted
        self._turn = 0         # the item whose turn it is to take budget
        self.held = 0          # budget bytes held by all batches
        self.peak = 0          # most bytes ever held (for tests and the bench)
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._grow(self.max_depth if self.pinned else min(start_depth, self.max_depth))

    # ------------------------------------------------------------ the decoders' side
    def submit(self, paths: Sequence[str | None]) -> Batch:
        """Read `paths` ahead; a None is not read (its slot holds a placeholder Outcome)."""
        batch = Batch(self, len(paths))
        order = [i for i, p in enumerate(paths) if p is not None]
        for i, p in enumerate(paths):
            if p is None:
                batch.slots[i] = Outcome(None, "not-read")
                batch.missing -= 1
        if not order:
            batch.done.set()
            return batch
        if self.source is not None:     # archive members in the order they lie on disk
            places = {i: self.source.locate(paths[i]) for i in order}
            order = sorted(order, key=lambda i: places[i][:2] if places[i] else (-1, 0))
            batch.hints = _spans([places[i] for i in order if places[i]])
        with self._lock:
            for i in order:
                self._queue.append((self._next_seq, batch, i, paths[i]))
                self._next_seq += 1
            self._work.notify(len(order))
        return batch

    def starving(self) -> None:
        """A decoder waits for its batch: if every reader is busy while items wait, add readers."""
        if not self.pinned:
            with self._lock:
                if not self._queue or self._idle:
                    return
                want = min(self.max_depth, 2 * len(self._threads))
            self._grow(want)

    def give_back(self, batch: Batch) -> None:
        with self._lock:
            self.held -= batch.held
            batch.held = 0
            self._wake_turn()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for _, batch, _, _ in self._queue:    # never read: a decoder waiting for them must not hang
                batch.fault = batch.fault or EnvironmentFault("the pack stopped before these images were read")
                batch.done.set()
            self._queue.clear()
            self._work.notify_all()
            for waiter in self._waiting.values():
                waiter.notify_all()
        for t in self._threads:
            t.join()
        if self.archives is not None:
            self.archives.close()

    @property
    def depth(self) -> int:
        return len(self._threads)

    # ------------------------------------------------------------ the readers' side
    def _grow(self, want: int) -> None:
        with self._lock:
            while len(self._threads) < want and not self._closed:
                t = threading.Thread(target=self._run, name=f"fastrec-read-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._work.wait()
                    self._idle -= 1
                if self._closed:
                    return
                seq, batch, i, path = self._queue.popleft()
                hints, batch.hints = batch.hints, []
            for archive, start, length in hints:    # the batch's first reader asks for all of it
                self.archives.advise(archive, start, length)
            try:
                result = self._read(seq, batch, path)
            except BaseException as err:     # a fault of the machine: the batch carries it
                self._take(seq, batch, 0)
                result, batch.fault = None, err
            with self._lock:
                batch.slots[i] = result
                batch.missing -= 1
                if batch.missing == 0:
                    batch.done.set()

    def _take(self, seq: int, batch: Batch, size: int) -> None:
        """Take `size` bytes of the budget, in list order (every item takes its turn, even 0 bytes).

        Each waiting reader sleeps on its own condition, woken only when it may be its turn."""
        with self._lock:
            if seq < self._turn:
                return       # this item already took its turn
            while not self._closed and (
                    self._turn != seq or
                    (self.held + size > self.budget and self.held != batch.held)):
                if seq not in self._waiting:
                    self._waiting[seq] = threading.Condition(self._lock)
                self._waiting[seq].wait()
            self._waiting.pop(seq, None)
            self._turn = max(self._turn, seq + 1)
            self.held += size
            batch.held += size
            self.peak = max(self.peak, self.held)
            self._wake_turn()

    def _wake_turn(self) -> None:
        """Wake the reader whose turn it is, if it waits (the lock is held)."""
        waiter = self._waiting.get(self._turn)
        if waiter is not None:
            waiter.notify()

    def _too_large(self, size: int) -> Outcome | None:
        if size > self.max_bytes:
            return Outcome(None, "file-too-large", f"{size} bytes, above the limit of {self.max_bytes}")
        return None

    def _read(self, seq: int, batch: Batch, path: str) -> bytes | Outcome:
        if self.source is not None:
            return self._read_member(seq, batch, path)
        full = os.path.join(self.root, path)   # an absolute path in the list overrides the root (im2rec)
        try:
            fd = open_file(full, _OPEN_FLAGS)
        except OSError as err:
            self._take(seq, batch, 0)
            try:   # a socket cannot be opened at all (ENXIO): say what it is, not that reading failed
                mode = os.stat(full).st_mode
            except OSError:
                mode = stat.S_IFREG
            if not stat.S_ISREG(mode):
                return _not_regular(mode)
            return self._skip_or_raise(err, full)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self._take(seq, batch, 0)
                return _not_regular(st.st_mode)
            skip = self._too_large(st.st_size)
            if skip is not None:
                self._take(seq, batch, 0)
                return skip
            self._take(seq, batch, st.st_size)
            chunks, got = [], 0
            while got < st.st_size:
                chunk = read_file(fd, st.st_size - got)
                if not chunk:
                    break      # the file shrank while we read it: pack what is there
                chunks.append(chunk)
                got += len(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except OSError as err:
            self._take(seq, batch, 0)   # a no-op if this item already took its turn
            return self._skip_or_raise(err, full)
        finally:
            os.close(fd)

    def _skip_or_raise(self, err: OSError, full: str) -> Outcome:
        if err.errno in ENVIRONMENT_ERRNOS:
            raise environment_fault(err, full) from err
        if err.errno == errno.ENOENT and self.root_dev is not None:
            try:
                vanished = os.stat(self.root).st_dev != self.root_dev
            except OSError:
                vanished = True
            if vanished:
                raise EnvironmentFault(f"the image root {self.root} is gone or is no longer the same file "
                                       f"system (an unmounted share?); {CONTINUE}") from err
        return Outcome(None, "read-error", err.strerror or str(err))

    def _read_member(self, seq: int, batch: Batch, path: str) -> bytes | Outcome:
        from fastrec.engine.sources import read_member

        m = self.source.member(path)
        if m is None:
            self._take(seq, batch, 0)
            return Outcome(None, "read-error", f"{path} is not in the archives")
        skip = self._too_large(m.size)
        if skip is not None:
            self._take(seq, batch, 0)
            return skip
        self._take(seq, batch, m.size)
        name = self.source.archives[m.archive]
        try:
            fd = self.archives.acquire(m.archive)
        except OSError as err:
            raise environment_fault(err, name) from err
        try:   # the member's header blocks come with its bytes, and must be the ones indexed
            return read_member(read_at, fd, m, name, path, self.source.cache)
        except OSError as err:
            raise environment_fault(err, f"{name} at {m.offset}") from err
        finally:
            self.archives.release(m.archive)
