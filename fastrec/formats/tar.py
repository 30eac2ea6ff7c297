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
