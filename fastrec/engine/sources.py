"""Packing straight from tar archives: an index of member byte ranges, lists built from it, and
positioned reads in place of files.

An uncompressed tar stores each member's bytes contiguously, and so does an inner tar stored
inside an outer one; so one front-to-back pass over the headers (seeking over the data) gives
every image's (archive, offset, size), and packing then reads each image with one pread,
in .lst order, without writing 14 M files first. The index maps the path an image would have
after `fastrec extract` (`<class>/<member name>`) to its bytes, so lists made from the index
are byte-identical to lists of the extracted tree, and so are the packed records.

The index is cached beside the lists as `fastrec.tarindex.tsv`, keyed by the archives' paths,
sizes and modification times.
"""
from __future__ import annotations

import logging
import os
import tarfile
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Sequence

from fastrec.formats.lists import DEFAULT_EXTS
from fastrec.formats.tar import EndCheckedTarInfo, TarError, check_end, resolve_archives

log = logging.getLogger(__name__)

INDEX_NAME = "fastrec.tarindex.tsv"   # cached in the folder of the lists
TAR_SUFFIX = ".tar"


class Member(NamedTuple):
    archive: int      # position in TarIndex.archives
    offset: int       # of the member's data in that archive file
    size: int


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


@dataclass
class TarIndex:
    """Where each image of a set of archives lies: relative path -> Member."""

    archives: list[str] = field(default_factory=list)
    members: dict[str, Member] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)   # (member, reason)

    def read(self, path: str, fds: dict[int, int] | None = None) -> bytes:
        """The bytes of the image at relative `path` (one positioned read)."""
        m = self.members.get(path)
        if m is None:
            raise FileNotFoundError(f"{path} is not in the archives")
        fds = fds if fds is not None else {}
        fd = fds.get(m.archive)
        if fd is None:
            fd = fds[m.archive] = os.open(self.archives[m.archive], os.O_RDONLY)
        data = os.pread(fd, m.size, m.offset)
        if len(data) != m.size:
            raise OSError(f"{self.archives[m.archive]} is shorter than its index says (at {m.offset})")
        return data

    def locate(self, path: str) -> tuple[int, int, int] | None:
        """(archive, offset, size) of the image at relative `path`, or None."""
        return self.members.get(path)

    def position(self, path: str) -> tuple[int, int]:
        """Where `path` lies, to read members in disk order ((-1, 0) if absent)."""
        m = self.members.get(path)
        return (m.archive, m.offset) if m is not None else (-1, 0)

    def subset(self, paths: Iterable[str]) -> "TarIndex":
        """An index of just `paths` (what one shard of a cluster run needs)."""
        return TarIndex(self.archives, {p: self.members[p] for p in paths if p in self.members})


def _safe_name(name: str) -> str | None:
    """The member's relative path, or None for absolute paths and '..' (never packed)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts or not parts:
        return None
    return "/".join(parts)


def _add_member(index: TarIndex, archive: int, rel: str, offset: int, size: int, exts: Sequence[str]) -> None:
    if os.path.splitext(rel)[1].lower() not in exts:
        index.rejected.append((rel, "not an image (extension)"))
    elif rel.count("/") < 1:
        index.rejected.append((rel, "not inside a class"))
    else:
        index.members[rel] = Member(archive, offset, size)


def _index_inner(index: TarIndex, archive: int, f, cls: str, start: int, size: int, exts) -> None:
    """Index the members of a per-class tar stored at [start, start+size) of an archive file.
    A corrupt inner tar contributes nothing, as `fastrec extract` keeps no half class."""
    last = None
    whole = TarIndex(index.archives)
    try:
        with tarfile.open(fileobj=_Window(f, start, size), mode="r:", tarinfo=EndCheckedTarInfo) as inner:
            for m in inner:
                last = m.name
                if not m.isreg():
                    index.rejected.append((f"{cls}/{m.name}", "not a regular file"))
                    continue
                rel = _safe_name(m.name)
                if rel is None:
                    index.rejected.append((f"{cls}/{m.name}", "unsafe path"))
                    continue
                if m.offset_data + m.size > size:
                    raise tarfile.ReadError("member runs past the end of its tar")
                _add_member(whole, archive, f"{cls}/{rel}", start + m.offset_data, m.size, exts)
            check_end(inner)
    except tarfile.TarError as err:
        where = f"after member {last!r}" if last else "at its start"
        index.rejected.append((f"{cls}{TAR_SUFFIX}", f"corrupt inner tar {where}: {err}"))
        return
    index.members.update(whole.members)
    index.rejected += whole.rejected


def build_index(archives: Sequence[str], exts: Sequence[str] = DEFAULT_EXTS) -> TarIndex:
    """Scan the archives' headers once, front to back (data is seeked over, not read)."""
    index = TarIndex(resolve_archives(archives))
    for a, path in enumerate(index.archives):
        if path.endswith((".gz", ".tgz", ".bz2", ".xz", ".zst")):
            raise TarError(f"{path}: a compressed archive has no byte ranges to read images from; "
                           f"decompress it first or use `fastrec extract`")
        stem = os.path.basename(path)[:-len(TAR_SUFFIX)] if path.endswith(TAR_SUFFIX) else None
        size = os.path.getsize(path)
        last = None
        with open(path, "rb") as f:
            try:
                with tarfile.open(fileobj=f, mode="r:", tarinfo=EndCheckedTarInfo) as outer:
                    for m in outer:
                        if m.offset_data + m.size > size:
                            raise tarfile.ReadError(f"member {m.name!r} runs past the end of the file")
                        if m.isreg() and m.name.endswith(TAR_SUFFIX):    # a per-class tar
                            cls = _safe_name(os.path.basename(m.name)[:-len(TAR_SUFFIX)])
                            if cls is None or m.name.startswith("/") or ".." in m.name.split("/"):
                                index.rejected.append((m.name, "unsafe path"))
                            else:
                                _index_inner(index, a, f, cls, m.offset_data, m.size, exts)
                        elif m.isreg():
                            rel = _safe_name(m.name)
                            if rel is None:
                                index.rejected.append((m.name, "unsafe path"))
                            elif stem is not None and "/" not in rel:   # a per-class tar of loose files
                                _add_member(index, a, f"{stem}/{rel}", m.offset_data, m.size, exts)
                            else:
                                _add_member(index, a, rel, m.offset_data, m.size, exts)
                        last = m.name
                    check_end(outer)
            except (tarfile.TarError, OSError) as err:
                where = f"the last good member is {last!r}" if last else "no member could be read"
                raise TarError(f"{path} is damaged or truncated ({err}); {where}. Replace the archive "
                               f"(a pack made so far can be continued with --resume)") from err
    for rel, reason in index.rejected:
        log.warning("not packed: %s: %s", rel, reason)
    return index


# ---------------------------------------------------------------- the cache
def _stamp(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)}\t{st.st_size}\t{st.st_mtime_ns}"


def save_index(index: TarIndex, path: str) -> None:
    from fastrec.fsutil import atomic_write

    lines = [f"#archive\t{_stamp(a)}\n" for a in index.archives]
    lines += [f"{rel}\t{m.archive}\t{m.offset}\t{m.size}\n" for rel, m in index.members.items()]
    atomic_write(path, "".join(lines).encode("utf-8", "surrogateescape"))


def load_index(path: str, archives: Sequence[str]) -> TarIndex | None:
    """The cached index, if it was made from exactly these archives as they are now."""
    if not os.path.exists(path):
        return None
    files = resolve_archives(archives)
    index = TarIndex(files)
    stamps = [_stamp(a) for a in files]
    seen = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if fields[0] == "#archive":
                seen.append("\t".join(fields[1:]))
            else:
                index.members[fields[0]] = Member(int(fields[1]), int(fields[2]), int(fields[3]))
    return index if seen == stamps else None


def index_for(archives: Sequence[str], cache: str | None, exts: Sequence[str] = DEFAULT_EXTS) -> TarIndex:
    """Load the cached index or build (and cache) it."""
    index = load_index(cache, archives) if cache else None
    if index is None:
        index = build_index(archives, exts)
        if cache:
            save_index(index, cache)
    return index


def cache_path(prefix: str) -> str:
    """Where the index of a prefix's archives is cached: the folder its lists live in."""
    prefix = os.path.abspath(prefix)
    folder = prefix if os.path.isdir(prefix) else os.path.dirname(prefix)
    return os.path.join(folder, INDEX_NAME)
