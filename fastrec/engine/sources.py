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
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Sequence

from fastrec.formats.lists import DEFAULT_EXTS, prefix_folder
from fastrec.formats.tar import (EndCheckedTarInfo, RefusedMember, TarError, check_class, check_end, hard_link_rel,
                                 inner_tar_class, place_member, resolve_archives, tar_stem)

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

    def subset(self, paths: Iterable[str]) -> "TarIndex":
        """An index of just `paths` (what one shard of a cluster run needs)."""
        return TarIndex(self.archives, {p: self.members[p] for p in paths if p in self.members})


def _add_member(index: TarIndex, archive: int, rel: str, offset: int, size: int, exts: Sequence[str]) -> None:
    """The seam to the index's storage: one call per image the extracted tree would hold."""
    if os.path.splitext(rel)[1].lower() not in exts:
        index.rejected.append((rel, "not an image (extension)"))
    else:
        index.members[rel] = Member(archive, offset, size)


class _Class:
    """The members of one class as `fastrec extract` would leave them: files (hard links are
    copies, so they share their source's bytes) and symbolic links, resolved when the class is
    complete. A later member of the same name replaces an earlier one, as with tar."""

    def __init__(self, cls: str, where: str):
        self.cls, self.where = cls, where
        self.entries: dict[str, tuple[int, int, int] | str] = {}   # rel -> (archive, offset, size) | link

    def add(self, m: tarfile.TarInfo, rel: str, place: tuple[int, int, int] | None,
            link_rel: str | None, rejected: list) -> None:
        if m.islnk():
            source = self.entries.get(link_rel)
            if not isinstance(source, tuple):
                rejected.append((f"{self.cls}/{rel}", f"hard link to {m.linkname!r}, which is not a file "
                                                      f"extracted before it in the same class"))
                return
            self.entries[rel] = source
        elif m.issym():
            self.entries[rel] = m.linkname
        elif m.isfile():
            self.entries[rel] = place

    def resolve(self, rel: str) -> tuple[int, int, int] | str:
        """The bytes a path of the class names, following its links; or why it has none."""
        seen = set()
        while isinstance(self.entries.get(rel), str) and rel not in seen:
            seen.add(rel)
            link = self.entries[rel]
            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), link))
            if posixpath.isabs(link) or target == ".." or target.startswith("../"):
                return f"link to {link!r} points outside its class folder"
            rel = target
        found = self.entries.get(rel)
        return found if isinstance(found, tuple) else "link to a folder or to nothing: not an image file"

    def finish(self, index: TarIndex, exts: Sequence[str]) -> None:
        for rel in self.entries:
            found = self.resolve(rel)
            if isinstance(found, str):
                index.rejected.append((f"{self.cls}/{rel}", found))
            else:
                _add_member(index, found[0], f"{self.cls}/{rel}", found[1], found[2], exts)


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

    def members(self, tar, archive: int, base: int, stem: str | None, inner: str | None, where: str,
                classes: dict[str, _Class], on_inner=None) -> None:
        """Place every member of `tar` (data at `base` + offset in archive file `archive`); each is
        yielded first, for the caller's checks."""
        for m in tar:
            yield m
            mwhere = f"{where}:{m.name}"
            try:
                if inner is None and m.isfile() and inner_tar_class(m):
                    on_inner(m, inner_tar_class(m), mwhere)
                    continue
                placed = place_member(m, stem, inner)
                if placed is None or m.isdir():
                    continue
                cls, rel = placed
                link_rel = hard_link_rel(m, cls, stem, inner is not None) if m.islnk() else None
            except RefusedMember as err:
                self.index.rejected.append((mwhere, str(err)))
                continue
            if cls not in classes:
                classes[cls] = self.claim(cls, where)
            classes[cls].add(m, "/".join(rel), (archive, base + m.offset_data, m.size), link_rel,
                             self.index.rejected)


def _index_inner(b: _Builder, archive: int, f, cls: str, start: int, size: int, where: str) -> None:
    """Index the members of a per-class tar stored at [start, start+size) of an archive file.
    A corrupt inner tar contributes nothing, as `fastrec extract` keeps no half class."""
    last = None
    classes = {cls: b.claim(cls, where)}
    try:
        with tarfile.open(fileobj=_Window(f, start, size), mode="r:", tarinfo=EndCheckedTarInfo) as inner:
            for m in b.members(inner, archive, start, cls, cls, where, classes):
                last = m.name
                if m.offset_data + m.size > size:
                    raise tarfile.ReadError("member runs past the end of its tar")
            check_end(inner)
    except tarfile.TarError as err:
        at = f"after member {last!r}" if last else "at its start"
        b.index.rejected.append((where, f"corrupt inner tar {at}: {err}"))
        return
    classes[cls].finish(b.index, b.exts)


def build_index(archives: Sequence[str], exts: Sequence[str] = DEFAULT_EXTS) -> TarIndex:
    """Scan the archives' headers once, front to back (data is seeked over, not read)."""
    index = TarIndex(resolve_archives(archives))
    b = _Builder(index, exts)
    for a, path in enumerate(index.archives):
        if path.endswith((".gz", ".tgz", ".bz2", ".xz", ".zst")):
            raise TarError(f"{path}: a compressed archive has no byte ranges to read images from; "
                           f"decompress it first or use `fastrec extract`")
        size = os.path.getsize(path)
        last = None
        with open(path, "rb") as f:

            def on_inner(m, cls, where):
                if not m.name.endswith(TAR_SUFFIX):
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
                    for m in b.members(outer, a, 0, tar_stem(os.path.basename(path)), None, path, classes,
                                       on_inner):
                        if m.offset_data + m.size > size:
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
    return os.path.join(prefix_folder(prefix), INDEX_NAME)
