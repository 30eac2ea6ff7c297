"""The tar archives fastrec reads: which files are archives, how a member's name becomes a path,
and a header reader that tells a damaged tar from a finished one.

`fastrec extract` and the tar index of `--from-tar` both follow these rules, so the index names
every image exactly as the extracted tree would.
"""
from __future__ import annotations

import os
import posixpath
import tarfile
from typing import Iterator, Sequence

from fastrec.errors import FastrecError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class TarError(FastrecError):
    """An archive cannot be read or used; the message names it and what to do."""


class RefusedMember(Exception):
    """A member is not extracted; the message is the reason."""


def tar_stem(name: str) -> str | None:
    """`n01.tar.gz` -> `n01`; None if `name` has no tar suffix."""
    low = name.lower()
    for sfx in TAR_SUFFIXES:
        if low.endswith(sfx) and len(name) > len(sfx):
            return name[: -len(sfx)]
    return None


def resolve_archives(paths: Sequence[str]) -> list[str]:
    """The archive files named by `paths`: files as given, folders as their sorted tar files."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = [os.path.join(p, n) for n in sorted(os.listdir(p))
                     if tar_stem(n) and os.path.isfile(os.path.join(p, n))]
            if not found:
                raise TarError(f"folder {p!r} holds no tar files ({', '.join(TAR_SUFFIXES)}); "
                                   f"pass the archives or the folder that holds them")
            out += found
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise TarError(f"archive {p!r} does not exist; check the path")
    return out


_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
          (b"\x1f\x9d", "compress (.Z)"), (b"\x04\x22\x4d\x18", "lz4"))


def compression(start: bytes) -> str | None:
    """The compression a file starting with `start` has (whatever its name says), or None."""
    for magic, kind in _MAGIC:
        if start.startswith(magic):
            return kind
    return None


def data_end(tar: tarfile.TarFile, m: tarfile.TarInfo) -> int:
    """Where member `m`'s stored bytes end in `tar`'s file: a sparse member stores fewer bytes
    than its size (its holes are not stored), so there it is where the next header begins."""
    return m.offset_data + m.size if m.sparse is None else tar.offset


def split_name(name: str) -> list[str]:
    """Member name -> path components; RefusedMember for absolute names and `..`."""
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise RefusedMember("absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise RefusedMember("'..' in the path")
    if not parts:
        raise RefusedMember("empty name")
    return parts


def check_class(cls: str) -> None:
    if not cls or cls.startswith(".") or os.sep in cls or "\\" in cls:
        raise RefusedMember(f"{cls!r} cannot be a class folder name (empty, hidden or with a separator)")


# ---------------------------------------------------------------- where a member goes
# The one rule for `fastrec extract` and the `--from-tar` index: a member of an inner (per-class)
# tar goes to that class; a member `CLS/rest` of a top-level archive goes to `CLS/rest`, a member
# without a folder to the class named after the archive.

def inner_tar_class(m: tarfile.TarInfo) -> str | None:
    """The class of a per-class tar stored as member `m` of an outer tar, or None if `m` is not one."""
    return tar_stem(split_name(m.name)[-1]) if m.isfile() and m.sparse is None else None


def place_member(m: tarfile.TarInfo, stem: str | None, inner: str | None) -> tuple[str, list[str]] | None:
    """(class, path parts inside the class) that member `m` is extracted as, or None for a
    folder entry that makes nothing by itself; RefusedMember when it is not extracted.

    stem: the top-level archive's name without its suffix (None if it has no tar suffix);
    inner: the class of the inner tar `m` comes from (None for a top-level archive's member)."""
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        raise RefusedMember("device, fifo or other special file")
    if m.sparse is not None:   # its bytes are pieces with holes between, not one byte range
        raise RefusedMember("a sparse member (GNU tar --sparse): fastrec reads each image as one byte "
                            "range; make the archive again without --sparse")
    if m.isdir() and not m.name.strip("/").strip("./"):
        return None   # the archive's own top folder (`tar -C DIR .` writes `./`): makes nothing
    parts = split_name(m.name)
    if inner is not None:
        cls = inner
        if parts == [cls] and m.isdir():
            return None   # the class folder's own entry
        rel = parts[1:] if parts[0] == cls and len(parts) > 1 else parts
    elif len(parts) == 1:
        if m.isdir():
            return None   # a class folder's own entry: its files make the class
        cls, rel = stem, parts
    else:
        cls, rel = parts[0], parts[1:]
    if cls is None:
        raise RefusedMember("no class: a file at the top of an archive whose name has no tar suffix")
    check_class(cls)
    return cls, rel


def hard_link_rel(m: tarfile.TarInfo, cls: str, stem: str | None, inner: bool) -> str:
    """The path inside class `cls` that hard link `m` copies; RefusedMember for another class."""
    try:
        lparts = split_name(m.linkname)
    except RefusedMember as err:
        raise RefusedMember(f"hard link target {m.linkname!r}: {err}") from None
    if inner:
        lparts = lparts[1:] if lparts[0] == cls and len(lparts) > 1 else lparts
    elif len(lparts) > 1 and lparts[0] == cls:
        lparts = lparts[1:]
    elif not (len(lparts) == 1 and stem == cls):
        raise RefusedMember(f"hard link to {m.linkname!r} in another class")
    return "/".join(lparts)


# ---------------------------------------------------------------- one class folder, modelled
# `fastrec extract` and the `--from-tar` index both build a ClassTree per class, so they refuse
# the same members and keep the same links. Extraction writes files and folders as the model
# accepts them and makes the links the model keeps when the class is complete; the index lists
# what the model says a listing of that folder would find.

DIR = object()          # a folder node


class Link(str):
    """A symbolic link node: its target, as written in the archive."""


OUTSIDE, NOTHING = object(), object()   # what a path resolves to, besides a folder or a file
MAX_LINKS = 40          # symbolic links followed in one resolution (Linux's ELOOP limit)
LINK_TO_FOLDER = "link to a folder: only files are extracted as links"
LINK_OUTSIDE = "link resolves outside its class folder"


class ClassTree:
    """The folders, files and symbolic links of one class folder, by path inside it ("a/b.jpg").

    The rules are extract's: a later member of a name replaces an earlier one (not a folder);
    nothing is made through a link or under a file; a hard link copies a file made before it; a
    symbolic link must not point outside the class by its text. When the class is complete,
    `settle` resolves every link as the file system would (component by component, `..` after
    the link's own folder, links followed inside paths) and removes the links that end at a
    folder or outside the class, until none does; the links left end at a file or at nothing.
    A file's node is the caller's payload (where its bytes lie)."""

    def __init__(self):
        self.nodes: dict[str, object] = {}
        self.removed: dict[str, str] = {}     # link -> why settle removed it

    def _folder(self, parts: Sequence[str]) -> None:
        path = ""
        for part in parts:
            path = f"{path}/{part}" if path else part
            node = self.nodes.get(path)
            if node is None:
                self.nodes[path] = DIR
            elif isinstance(node, Link):
                raise RefusedMember(f"its folder {part!r} is a link; nothing is written through links")
            elif node is not DIR:
                raise RefusedMember(f"its folder {part!r} was extracted as a file before")

    def _target(self, rel: str) -> None:
        self._folder(rel.split("/")[:-1])
        if self.nodes.get(rel) is DIR:
            raise RefusedMember("a folder of that name was extracted before")

    def add_dir(self, rel: str) -> None:
        self._folder(rel.split("/"))

    def add_file(self, rel: str, payload) -> None:
        self._target(rel)
        self.nodes[rel] = payload

    def add_symlink(self, rel: str, target: str) -> None:
        if not target:
            raise RefusedMember("symbolic link with an empty target")
        lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if posixpath.isabs(target) or lexical == ".." or lexical.startswith("../"):
            raise RefusedMember(f"link to {target!r} points outside its class folder")
        self._target(rel)
        self.nodes[rel] = Link(target)

    def add_hardlink(self, rel: str, source: str, name: str):
        """A copy of the file at `source` (`name`: the link target as the archive gives it)."""
        found = self.nodes.get(source)
        if found is None or found is DIR or isinstance(found, Link):
            raise RefusedMember(f"hard link to {name!r}, which is not a file extracted before it "
                                f"in the same class")
        self._target(rel)
        self.nodes[rel] = found
        return found

    def resolve(self, rel: str):
        """What `rel` names on the file system: a file's payload, DIR, OUTSIDE or NOTHING."""
        todo, here, hops = rel.split("/"), [], 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not here:
                    return OUTSIDE
                here.pop()
                continue
            path = "/".join(here + [part])
            node = self.nodes.get(path)
            if node is None or path in self.removed:
                return NOTHING
            if node is DIR:
                here.append(part)
            elif isinstance(node, Link):
                hops += 1
                if hops > MAX_LINKS or posixpath.isabs(node):
                    return NOTHING if hops > MAX_LINKS else OUTSIDE
                todo = node.split("/") + todo      # relative to the link's own folder: `here`
            else:
                return NOTHING if todo else node    # `file/...` is ENOTDIR
        return DIR

    def settle(self) -> None:
        links = sorted(rel for rel, node in self.nodes.items() if isinstance(node, Link))
        changed = True
        while changed:
            changed = False
            for rel in links:
                if rel not in self.removed:
                    found = self.resolve(rel)
                    if found is DIR or found is OUTSIDE:
                        self.removed[rel] = LINK_TO_FOLDER if found is DIR else LINK_OUTSIDE
                        changed = True

    def links(self) -> Iterator[tuple[str, str]]:
        """(path, target) of each link that stays (after `settle`)."""
        for rel, node in self.nodes.items():
            if isinstance(node, Link) and rel not in self.removed:
                yield rel, str(node)

    def files(self) -> Iterator[tuple[str, object]]:
        """(path, payload) of every file a listing finds: files, and links that end at one."""
        for rel, node in self.nodes.items():
            if node is DIR or rel in self.removed:
                continue
            if isinstance(node, Link):
                node = self.resolve(rel)
                if node is DIR or node is OUTSIDE or node is NOTHING:
                    continue
            yield rel, node


class EndCheckedTarInfo(tarfile.TarInfo):
    """TarInfo that notes why a stream ended: tarfile ends iteration silently on a damaged or
    missing header after the first, which would pass a truncated tar off as complete."""

    @classmethod
    def fromtarfile(cls, tf):
        try:
            return super().fromtarfile(tf)
        except tarfile.EOFHeaderError:   # the end-of-archive marker: a proper end
            raise
        except tarfile.EmptyHeaderError:
            tf._fastrec_end = "the tar ends without its end-of-archive marker (truncated?)"
            raise
        except tarfile.HeaderError as err:
            tf._fastrec_end = f"damaged header ({err})"
            raise


def check_end(tar: tarfile.TarFile) -> None:
    """tarfile ends iteration quietly at a damaged header or a missing end marker: say so."""
    reason = getattr(tar, "_fastrec_end", None)
    if reason:
        raise tarfile.ReadError(reason)
