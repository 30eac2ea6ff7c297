"""Packing straight from tar archives: an index of member byte ranges, lists built from it, and
positioned reads in place of files.

An uncompressed tar stores each member's bytes contiguously, and so does an inner tar stored
inside an outer one; so one front-to-back pass over the headers (seeking over the data) gives
every image's (archive, offset, size), and packing then reads each image with one pread,
in .lst order, without writing 14 M files first. The index maps the path an image would have
after `fastrec extract` (`<class>/<member name>`) to its bytes, so lists made from the index
are byte-identical to lists of the extracted tree, and so are the packed records.

Every read checks itself: the index keeps, per member, how many header bytes precede its data
and a digest of them, and a read takes those header blocks and the data in one pread; if the
headers are not the ones indexed (the archive was rewritten: other members in another order, a
copy with its mtime restored), the pack stops as an EnvironmentFault naming the archive.

The index is cached beside the lists as `fastrec.tarindex`, keyed by the archives' paths, sizes,
modification and change times and inodes.
"""
from __future__ import annotations

import array
import hashlib
import json
import logging
import os
import tarfile
from collections.abc import Mapping
from typing import Iterable, Iterator, NamedTuple, Sequence

from fastrec.errors import EnvironmentFault
from fastrec.formats.lists import DEFAULT_EXTS, prefix_folder
from fastrec.formats.tar import (ClassTree, EndCheckedTarInfo, RefusedMember, TarError, check_class, check_end,
                                 compression, data_end, hard_link_rel, inner_tar_class, place_member, resolve_archives, tar_stem)

log = logging.getLogger(__name__)

INDEX_NAME = "fastrec.tarindex"   # cached in the folder of the lists
TAR_SUFFIX = ".tar"
COMPRESSED_SUFFIXES = (".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".zst")


class Member(NamedTuple):
    archive: int      # position in TarIndex.archives
    offset: int       # of the member's data in that archive file
    size: int
    head: int = 0     # bytes of the member's own header blocks, just before `offset`
    check: int = 0    # digest of those header bytes (header_digest)


def header_digest(head: bytes) -> int:
    """64 bits of blake2b over a member's header blocks, from its first header to its data: the
    ustar/GNU block (name, size, type, mtime, checksum...) and, for a long name, the GNU
    long-name/long-link blocks or the pax extended header and its records before it; so the full
    name is checked, not only the 100 bytes the last block holds. Not covered: a pax *global*
    header earlier in the archive (it belongs to no one member; a rewrite that changes it moves or
    changes the members' own headers too)."""
    return int.from_bytes(hashlib.blake2b(head, digest_size=8).digest(), "little")


def read_member(pread, fd: int, m: Member, archive: str, path: str, cache: str | None = None) -> bytes:
    """A member's bytes, read with its header blocks in one positioned read (`pread` as os.pread);
    EnvironmentFault when the archive is shorter or its headers are not the ones indexed."""
    want = m.head + m.size
    data = pread(fd, want, m.offset - m.head)
    if len(data) != want:
        raise EnvironmentFault(f"{archive} is shorter than its index says ({path} lies at {m.offset}, "
                               f"{m.size} bytes): the archive changed or its storage failed; "
                               f"{_relist(cache)}")
    if m.head and header_digest(data[:m.head]) != m.check:
        found = _header_name(data[m.head - tarfile.BLOCKSIZE:m.head])
        raise EnvironmentFault(f"{archive} changed since it was indexed: the tar header before the bytes "
                               f"of {path} (offset {m.offset}) is not the one indexed{found}; "
                               f"{_relist(cache)}")
    return data[m.head:] if m.head else data


def _header_name(block: bytes) -> str:
    try:
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.TarError:
        return " (no valid header there)"
    return f" (it names {info.name!r}, {info.size} bytes)"


def _relist(cache: str | None) -> str:
    """What to do about a stale index: its cache is dropped, so listing again indexes anew."""
    dropped = ""
    if cache:
        try:
            os.remove(cache)
            dropped = f" (its cached index {cache} is removed)"
        except OSError:
            dropped = f" (remove its cached index {cache} first)"
    return (f"run `fastrec list --from-tar` again{dropped} so the lists name the archive as it is now, "
            f"then pack")


class _Window:
    """A read-only file view of bytes [start, start+size) of `f`, for tarfile to parse an inner tar."""

    def __init__(self, f, start: int, size: int):
        self.f, self.start, self.size, self.pos = f, start, size, 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos if whence == 1 else self.size + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        if n <= 0:
            return b""
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        self.pos += len(data)
        return data


def _key(path: str) -> tuple[int, int]:
    """A 128-bit digest of a path, as two uint64 (no two of 14 M paths collide: p < 1e-24)."""
    d = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=16).digest()
    return int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little")


class TarIndex:
    """Where each image of a set of archives lies: relative path -> (archive, offset, size).

    Held compactly: while building, rows are appended to flat arrays (`add`); then `freeze`
    sorts them by a 128-bit digest of the path, so a lookup is a binary search over numpy arrays
    (36 bytes a member, plus the paths only when the index is walked to make lists). Loaded from
    its cache, the arrays are memory-mapped: pages are read as lookups touch them.
    """

    COLUMNS = (("hi", "<u8"), ("lo", "<u8"), ("archive", "<u4"), ("offset", "<u8"), ("size", "<u8"),
               ("head", "<u4"), ("check", "<u8"), ("row", "<u8"), ("starts", "<u8"), ("paths", "u1"))

    def __init__(self, archives: Sequence[str] = (), rejected: list | None = None):
        self.archives = list(archives)
        self.rejected: list[tuple[str, str]] = rejected if rejected is not None else []  # (member, reason)
        self._blob, self._starts = bytearray(), array.array("Q", [0])
        self._arch, self._off, self._size = array.array("I"), array.array("Q"), array.array("Q")
        self._head, self._check = array.array("I"), array.array("Q")
        self._cols: dict | None = None
        self.cache: str | None = None      # the file it was loaded from or saved to

    # ------------------------------------------------------------ building
    def add(self, rel: str, archive: int, offset: int, size: int, head: int = 0, check: int = 0) -> None:
        """One accepted member (a later one with the same path replaces it, as in extraction)."""
        if self._cols is not None:
            raise RuntimeError("a frozen TarIndex takes no more members")
        self._blob += rel.encode("utf-8", "surrogateescape")
        self._starts.append(len(self._blob))
        self._arch.append(archive)
        self._off.append(offset)
        self._size.append(size)
        self._head.append(head)
        self._check.append(check)

    def extend(self, other: "TarIndex") -> None:
        for rel, m in other._rows():
            self.add(rel, *m)

    def _rows(self) -> Iterator[tuple[str, Member]]:
        for r in range(len(self._arch)):
            rel = bytes(self._blob[self._starts[r]:self._starts[r + 1]]).decode("utf-8", "surrogateescape")
            yield rel, Member(self._arch[r], self._off[r], self._size[r], self._head[r], self._check[r])

    def freeze(self) -> "TarIndex":
        """Sort the rows by path digest (the last of equal paths wins) for lookups."""
        if self._cols is not None:
            return self
        import numpy as np

        n = len(self._arch)
        starts = np.frombuffer(self._starts, dtype=np.uint64) if n else np.zeros(1, np.uint64)
        blob = np.frombuffer(bytes(self._blob), dtype=np.uint8)
        keys = np.array([_key(rel) for rel, _ in self._rows()], dtype=np.uint64).reshape(n, 2)
        rows = np.arange(n, dtype=np.uint64)
        order = np.lexsort((rows, keys[:, 1], keys[:, 0]))      # by digest, then row
        hi, lo = keys[order, 0], keys[order, 1]
        last = np.ones(n, dtype=bool)                            # keep the last row of equal digests
        last[:-1] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        order = order[last]
        self._cols = {"hi": hi[last], "lo": lo[last],
                      "archive": np.frombuffer(self._arch, dtype=np.uint32)[order] if n else np.zeros(0, np.uint32),
                      "offset": np.frombuffer(self._off, dtype=np.uint64)[order] if n else np.zeros(0, np.uint64),
                      "size": np.frombuffer(self._size, dtype=np.uint64)[order] if n else np.zeros(0, np.uint64),
                      "head": np.frombuffer(self._head, dtype=np.uint32)[order] if n else np.zeros(0, np.uint32),
                      "check": np.frombuffer(self._check, dtype=np.uint64)[order] if n else np.zeros(0, np.uint64),
                      "row": rows[order], "starts": starts.copy(), "paths": blob}
        self._blob, self._starts = bytearray(), array.array("Q", [0])
        self._arch, self._off, self._size = array.array("I"), array.array("Q"), array.array("Q")
        self._head, self._check = array.array("I"), array.array("Q")
        return self

    # ------------------------------------------------------------ looking up
    def _row(self, path: str) -> int | None:
        import numpy as np

        c = self.freeze()._cols
        hi, lo = _key(path)
        i = int(c["hi"].searchsorted(np.uint64(hi)))   # a Python int below 2^63 would cast the column to float
        while i < len(c["hi"]) and int(c["hi"][i]) == hi:
            if int(c["lo"][i]) == lo:
                return i
            i += 1
        return None

    def locate(self, path: str) -> tuple[int, int, int] | None:
        """(archive, offset, size) of the image at relative `path`, or None."""
        i = self._row(path)
        if i is None:
            return None
        c = self._cols
        return int(c["archive"][i]), int(c["offset"][i]), int(c["size"][i])

    def member(self, path: str) -> Member | None:
        """Where the image at relative `path` lies, with its header blocks' length and digest."""
        i = self._row(path)
        if i is None:
            return None
        c = self._cols
        return Member(int(c["archive"][i]), int(c["offset"][i]), int(c["size"][i]), int(c["head"][i]),
                      int(c["check"][i]))

    def position(self, path: str) -> tuple[int, int]:
        """Where `path` lies, to read members in disk order ((-1, 0) if absent)."""
        place = self.locate(path)
        return (place[0], place[1]) if place else (-1, 0)

    def paths(self) -> Iterator[str]:
        """The indexed paths, in the order they were found."""
        c = self.freeze()._cols
        starts, blob = c["starts"], c["paths"]
        for r in sorted(c["row"].tolist()):
            yield bytes(blob[int(starts[r]):int(starts[r + 1])]).decode("utf-8", "surrogateescape")

    def __len__(self) -> int:
        return len(self.freeze()._cols["hi"])

    @property
    def members(self) -> "_Members":
        return _Members(self)

    def read(self, path: str) -> bytes:
        """The bytes of the image at relative `path` (one positioned read; the pack uses reader.Feed)."""
        m = self.member(path)
        if m is None:
            raise FileNotFoundError(f"{path} is not in the archives")
        with open(self.archives[m.archive], "rb") as f:
            return read_member(os.pread, f.fileno(), m, self.archives[m.archive], path, self.cache)

    def subset(self, paths: Iterable[str]) -> "TarIndex":
        """An index of just `paths` (what one shard of a cluster run needs)."""
        part = TarIndex(self.archives)
        part.cache = self.cache
        for p in paths:
            m = self.member(p)
            if m is not None:
                part.add(p, *m)
        return part.freeze()


class _Members(Mapping):
    """A read-only path -> Member view of a TarIndex."""

    def __init__(self, index: TarIndex):
        self.index = index

    def __getitem__(self, path: str) -> Member:
        m = self.index.member(path)
        if m is None:
            raise KeyError(path)
        return m

    def __contains__(self, path) -> bool:
        return isinstance(path, str) and self.index.locate(path) is not None

    def __iter__(self) -> Iterator[str]:
        return self.index.paths()

    def __len__(self) -> int:
        return len(self.index)


def _add_member(index: TarIndex, rel: str, m: Member, exts: Sequence[str]) -> None:
    """The seam to the index's storage: one call per image the extracted tree would hold."""
    if exts is not None and os.path.splitext(rel)[1].lower() not in exts:
        index.rejected.append((rel, "not an image (extension)"))
    else:
        index.add(rel, *m)


class _Class:
    """The members of one class as `fastrec extract` would leave them (formats.tar.ClassTree):
    files (hard links are copies, so they share their source's bytes), folders and symbolic
    links, resolved as the file system would when the class is complete."""

    def __init__(self, cls: str, where: str):
        self.cls, self.where = cls, where
        self.tree = ClassTree()

    def add(self, m: tarfile.TarInfo, rel: str, place: Member | None, link_rel: str | None) -> None:
        """Raises RefusedMember as extract refuses the member."""
        if m.isdir():
            self.tree.add_dir(rel)
        elif m.islnk():
            self.tree.add_hardlink(rel, link_rel, m.linkname)
        elif m.issym():
            self.tree.add_symlink(rel, m.linkname)
        else:
            self.tree.add_file(rel, place)

    def finish(self, index: TarIndex, exts: Sequence[str]) -> None:
        self.tree.settle()
        for rel, why in self.tree.removed.items():
            index.rejected.append((f"{self.cls}/{rel}", why))
        listed = set()
        for rel, place in self.tree.files():
            listed.add(rel)
            _add_member(index, f"{self.cls}/{rel}", place, exts)
        for rel, _ in self.tree.links():
            if rel not in listed:
                index.rejected.append((f"{self.cls}/{rel}", "link to nothing once extracted: not an image file"))


class _Builder:
    """Places members with extract's rules (fastrec.formats.tar) and refuses what it refuses."""

    def __init__(self, index: TarIndex, exts: Sequence[str]):
        self.index, self.exts = index, exts
        self.source: dict[str, str] = {}   # class -> where it comes from

    def claim(self, cls: str, where: str) -> _Class:
        other = self.source.setdefault(cls, where)
        if other != where:   # extract refuses the second source of a class: say so, pack nothing
            raise TarError(f"class {cls!r} comes from both {other} and {where}; `fastrec extract` "
                           f"refuses the second. Put the class in one archive")
        return _Class(cls, where)

    def members(self, tar, archive: int, fd: int, base: int, stem: str | None, inner: str | None, where: str,
                classes: dict[str, _Class], on_inner=None) -> None:
        """Place every member of `tar` (data at `base` + offset in archive file `archive`, open as
        `fd`); each is yielded first, for the caller's checks."""
        for m in tar:
            yield m
            mwhere = f"{where}:{m.name}"
            try:
                if inner is None and m.isfile() and inner_tar_class(m):
                    on_inner(m, inner_tar_class(m), mwhere)
                    continue
                placed = place_member(m, stem, inner)
                if placed is None:
                    continue
                cls, rel = placed
                link_rel = hard_link_rel(m, cls, stem, inner is not None) if m.islnk() else None
                if cls not in classes:
                    classes[cls] = self.claim(cls, where)
                place = None
                if m.isfile():   # its header blocks, to check at each read that they are still these
                    head = os.pread(fd, m.offset_data - m.offset, base + m.offset)
                    place = Member(archive, base + m.offset_data, m.size, len(head), header_digest(head))
                classes[cls].add(m, "/".join(rel), place, link_rel)
            except RefusedMember as err:
                self.index.rejected.append((mwhere, str(err)))


def _index_inner(b: _Builder, archive: int, f, cls: str, start: int, size: int, where: str) -> None:
    """Index the members of a per-class tar stored at [start, start+size) of an archive file.
    A corrupt inner tar contributes nothing, as `fastrec extract` keeps no half class."""
    last = None
    classes = {cls: b.claim(cls, where)}
    try:
        with tarfile.open(fileobj=_Window(f, start, size), mode="r:", tarinfo=EndCheckedTarInfo) as inner:
            for m in b.members(inner, archive, f.fileno(), start, cls, cls, where, classes):
                last = m.name
                if data_end(inner, m) > size:
                    raise tarfile.ReadError("member runs past the end of its tar")
            check_end(inner)
    except tarfile.TarError as err:
        at = f"after member {last!r}" if last else "at its start"
        b.index.rejected.append((where, f"corrupt inner tar {at}: {err}"))
        return
    classes[cls].finish(b.index, b.exts)


def build_index(archives: Sequence[str], exts: Sequence[str] | None = DEFAULT_EXTS) -> TarIndex:
    """Scan the archives' headers once, front to back (data is seeked over, not read)."""
    index = TarIndex(resolve_archives(archives))
    b = _Builder(index, exts)
    for a, path in enumerate(index.archives):
        size = os.path.getsize(path)
        last = None
        with open(path, "rb") as f:
            kind = compression(f.read(6)) or ("compressed" if path.endswith(COMPRESSED_SUFFIXES) else None)
            if kind:
                raise TarError(f"{path} is a {kind}-compressed archive: --from-tar reads each image at its offset, "
                               f"which needs an uncompressed tar; decompress it first (or use `fastrec "
                               f"extract`, which streams it)")
            f.seek(0)

            def on_inner(m, cls, where):
                if not m.name.endswith(TAR_SUFFIX) or compression(os.pread(f.fileno(), 6, m.offset_data)):
                    index.rejected.append((where, "a compressed class tar has no byte ranges to read "
                                                  "images from; use `fastrec extract`"))
                    return
                try:
                    check_class(cls)
                except RefusedMember as err:
                    index.rejected.append((where, str(err)))
                    return
                _index_inner(b, a, f, cls, m.offset_data, m.size, where)
                f.seek(m.offset_data + m.size)   # back where the outer tar's reader expects to be

            classes: dict[str, _Class] = {}
            try:
                with tarfile.open(fileobj=f, mode="r:", tarinfo=EndCheckedTarInfo) as outer:
                    for m in b.members(outer, a, f.fileno(), 0, tar_stem(os.path.basename(path)), None, path,
                                       classes, on_inner):
                        if data_end(outer, m) > size:
                            raise tarfile.ReadError(f"member {m.name!r} runs past the end of the file")
                        last = m.name
                    check_end(outer)
            except (tarfile.TarError, OSError) as err:
                where = f"the last good member is {last!r}" if last else "no member could be read"
                raise TarError(f"{path} is damaged or truncated ({err}); {where}. Replace the archive "
                               f"(a pack made so far can be continued with --resume)") from err
            for c in classes.values():
                c.finish(index, exts)
    for rel, reason in index.rejected:
        log.warning("not packed: %s: %s", rel, reason)
    return index.freeze()


# ---------------------------------------------------------------- the cache
# The cache is one file: a JSON header (what the index was made from, and where each column
# lies), then the columns, page-aligned, so a load memory-maps them instead of reading them.
CACHE_MAGIC = b"fastrec-tarindex\n"
RULES_VERSION = 3     # bump when what build_index accepts or how it names members changes
_ALIGN = 4096


def _cache_key(archives: Sequence[str], exts: Sequence[str] | None) -> dict:
    """Everything that changes the index: the rules, the archives as they are now, the extensions."""
    stamps = []
    for a in archives:
        st = os.stat(a)
        stamps.append([os.path.abspath(a), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    return {"rules": RULES_VERSION, "archives": stamps,
            "exts": None if exts is None else sorted(e.lower() for e in exts)}


def save_index(index: TarIndex, path: str, exts: Sequence[str] | None = DEFAULT_EXTS) -> None:
    from fastrec.fsutil import atomic_write

    cols = index.freeze()._cols
    key = _cache_key(index.archives, exts)
    base = _ALIGN
    while True:     # the header's page count depends on the offsets it records
        layout, pos = {}, base
        for name, _ in TarIndex.COLUMNS:
            pos = -(-pos // _ALIGN) * _ALIGN
            layout[name] = [pos, len(cols[name])]
            pos += cols[name].nbytes
        head = CACHE_MAGIC + json.dumps({"key": key, "columns": layout, "rejected": index.rejected},
                                        ensure_ascii=True).encode() + b"\n"
        if len(head) <= base:
            break
        base = -(-len(head) // _ALIGN) * _ALIGN
    out = bytearray(head)
    for name, _ in TarIndex.COLUMNS:
        out += b"\0" * (layout[name][0] - len(out))
        out += cols[name].tobytes()
    atomic_write(path, bytes(out))
    index.cache = path


def load_index(path: str, archives: Sequence[str], exts: Sequence[str] | None = DEFAULT_EXTS,
               any_exts: bool = False) -> TarIndex | None:
    """The cached index, if it was made from exactly these archives as they are now, by these rules,
    for these extensions (or any, with `any_exts`: a pack only looks up the paths its list names)."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            if f.read(len(CACHE_MAGIC)) != CACHE_MAGIC:
                return None
            header = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    files = resolve_archives(archives)
    key, want = header.get("key", {}), _cache_key(files, exts)
    if any_exts:
        key, want = dict(key, exts=None), dict(want, exts=None)
    if key != want:
        return None
    index = TarIndex(files, [tuple(r) for r in header.get("rejected", [])])
    cols = {}
    for name, dtype in TarIndex.COLUMNS:
        offset, count = header["columns"][name]
        cols[name] = (np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,)) if count
                      else np.zeros(0, dtype=dtype))
    index._cols = cols
    index.cache = path
    return index


def index_for(archives: Sequence[str], cache: str | None, exts: Sequence[str] | None = DEFAULT_EXTS) -> TarIndex:
    """Load the cached index or build (and cache) it. `exts=None`: every member (what a pack
    needs), and a cached index made for any extensions will do."""
    index = load_index(cache, archives, exts, any_exts=exts is None) if cache else None
    if index is None:
        index = build_index(archives, exts)
        if cache:
            save_index(index, cache, exts)
    return index


def cache_path(prefix: str) -> str:
    """Where the index of a prefix's archives is cached: the folder its lists live in."""
    return os.path.join(prefix_folder(prefix), INDEX_NAME)
