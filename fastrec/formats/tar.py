"""The tar archives fastrec reads: which files are archives, how a member's name becomes a path,
and a header reader that tells a damaged tar from a finished one.

`fastrec extract` and the tar index of `--from-tar` both follow these rules, so the index names
every image exactly as the extracted tree would.
"""
from __future__ import annotations

import os
import tarfile
from typing import Sequence

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
    return tar_stem(split_name(m.name)[-1]) if m.isfile() else None


def place_member(m: tarfile.TarInfo, stem: str | None, inner: str | None) -> tuple[str, list[str]] | None:
    """(class, path parts inside the class) that member `m` is extracted as, or None for a
    folder entry that makes nothing by itself; RefusedMember when it is not extracted.

    stem: the top-level archive's name without its suffix (None if it has no tar suffix);
    inner: the class of the inner tar `m` comes from (None for a top-level archive's member)."""
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        raise RefusedMember("device, fifo or other special file")
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
