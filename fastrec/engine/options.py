"""What a pack is asked to do: im2rec's pack flags plus fastrec's own, and their limits."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from fastrec._native.core import Worker
from fastrec.errors import FastrecError, UsageError
from fastrec.formats.lists import ListRules

DEFAULT_MAX_PIXELS = 178956970   # Pillow's decompression-bomb limit
DEFAULT_MAX_BYTES = 256 << 20
DEFAULT_MAX_SCANS = 100          # libjpeg-turbo's TurboJPEG uses 500; real files have < 20
DEFAULT_MAX_SKIPPED = 0.01       # more skipped images than this share ends the pack non-zero

# The fields that change the bytes of the outputs: the manifest records them, and --resume and
# the Dask shards refuse to continue work made with other values. The rest only change speed
# or how the run is watched.
BYTE_SETTINGS = ("resize", "center_crop", "quality", "color", "encoding", "pack_label", "pass_through",
                 "no_upscale", "filter", "subsampling", "fast_dct", "max_pixels", "max_bytes", "max_scans",
                 "pass_through_unchecked")
# Byte settings added after manifests were first written, with the value older packs had: --resume
# reads a manifest without them as made with that value.
LATER_SETTINGS = {"pass_through_unchecked": False}
MAX_SIDE = 65500                 # libjpeg's largest JPEG side (JPEG_MAX_DIMENSION)
INT64_MAX = (1 << 63) - 1


class PackError(FastrecError):
    """The pack cannot start or go on; the message says what to do."""


@dataclass
class PackOptions:
    """im2rec's pack flags plus fastrec's own (see `fastrec pack --help`)."""

    resize: int = 0
    center_crop: bool = False
    quality: int = 95
    num_thread: int = 1
    color: int = 1
    encoding: str = ".jpg"
    pack_label: bool = False
    pass_through: bool = False
    pass_through_unchecked: bool = False   # with pass_through: store any bytes, as im2rec does
    skip_bad_lines: bool = False           # the list rules (formats.lists.ListRules)
    allow_outside_root: bool = False
    allow_duplicate_ids: bool = False
    no_upscale: bool = False
    filter: str = "auto"
    subsampling: int = 420
    fast_dct: bool = False
    strict: bool = False
    max_skipped: float = DEFAULT_MAX_SKIPPED   # share of the items (0..1) that may be skipped
    resume: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_scans: int = DEFAULT_MAX_SCANS
    batch_size: int = 64
    io_depth: int = 0             # concurrent reads ahead of the decoders (0: grows while they starve)
    io_budget: int = 0            # bytes the reads ahead may hold (0: reader.default_budget)
    progress: str = "auto"
    dask: str | None = None       # scheduler address or local[:WORKERS]
    shard_size: int = 0           # with dask: items per task (0: one task per .lst)

    def __post_init__(self) -> None:
        if self.pass_through_unchecked:   # pass-through as im2rec does it: implies --pass-through
            self.pass_through = True

    @classmethod
    def from_args(cls, a) -> "PackOptions":
        names = cls.__dataclass_fields__
        given = {k: v for k, v in vars(a).items() if k in names and v is not None}
        return cls(**given)

    def command_flags(self) -> list[str]:
        """The `fastrec pack` flags that give these options (defaults left out)."""
        out = []
        for flag in PACK_FLAGS:
            value = getattr(self, flag.field)
            if value != getattr(PackOptions, flag.field):
                out += [flag.option] if flag.parse is None else [flag.option, flag.text(value)]
        return out

    def validate(self) -> None:
        if self.encoding == ".jpg" and not 1 <= self.quality <= 100:
            raise PackError(f"--quality must be in 1..100 for JPEG, got {self.quality}")
        if self.encoding not in (".jpg", ".png"):
            raise PackError(f"--encoding must be .jpg or .png, got {self.encoding!r}")
        if self.resize < 0:
            raise PackError(f"--resize must be 0 (keep) or a positive size, got {self.resize}")
        if self.num_thread < 1 or self.batch_size < 1:
            raise PackError("--num-thread and --batch-size must be at least 1")
        if self.shard_size < 0:
            raise UsageError(f"--shard-size must be 0 (one shard per list) or a positive count, "
                             f"got {self.shard_size}")
        if not 0 <= self.max_skipped <= 1:
            raise UsageError(f"--max-skipped must be a share from 0% to 100%, got {self.max_skipped!r}")
        for flag in PACK_FLAGS:   # the ranges the command line checks, for the API and TOML too
            value = getattr(self, flag.field)
            if flag.parse is not None and value is not None and not isinstance(value, bool):
                try:
                    flag.parse(str(value))
                except ValueError as err:
                    raise PackError(f"{flag.option}: {err}") from None

    def settings(self) -> dict:
        """The byte-changing settings (BYTE_SETTINGS) by name, as the manifest records them."""
        return {name: getattr(self, name) for name in BYTE_SETTINGS}

    def list_rules(self) -> ListRules:
        return ListRules(skip_bad_lines=self.skip_bad_lines, allow_outside_root=self.allow_outside_root,
                         allow_duplicate_ids=self.allow_duplicate_ids)

    def worker(self) -> Worker:
        return Worker(resize=self.resize, center_crop=self.center_crop, color=self.color,
                      no_upscale=self.no_upscale, pass_through=self.pass_through,
                      check_whole=not self.pass_through_unchecked, filter=self.filter,
                      quality=self.quality if self.encoding == ".jpg" else 95,
                      subsampling=self.subsampling, fast_dct=self.fast_dct,
                      max_pixels=self.max_pixels, max_bytes=self.max_bytes, max_scans=self.max_scans,
                      raw=self.encoding == ".png" and not self.pass_through,
                      keep_alpha=self.encoding == ".png" and self.color == -1)


# ---------------------------------------------------------------- the pack flags, declared once
# `fastrec pack`, `fastrec im2rec` and `fastrec prepare` declare their pack flags from this table
# (fastrec.cli), and PackOptions.command_flags() writes a command line back from it (bench's advice).
# A parser takes the text after the flag and returns the field's value, or raises ValueError with a
# one-line reason; None marks a switch.

class Whole:
    """A whole number in lo..hi."""

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi

    def __call__(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number in {self.lo}..{self.hi}, got {text!r}") from None
        if not self.lo <= value <= self.hi:
            raise ValueError(f"must be in {self.lo}..{self.hi}, got {value}")
        return value


class OneOf:
    """One of the words of `values` (word -> field value)."""

    def __init__(self, values: dict):
        self.values = values

    def __call__(self, text: str):
        if text not in self.values:
            raise ValueError(f"expected one of {', '.join(self.values)}, got {text!r}")
        return self.values[text]

    def text(self, value) -> str:
        return next(k for k, v in self.values.items() if v == value)


def share(text: str) -> float:
    """`5%` or `0.05` -> 0.05 (a share from 0 to 1)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"expected a share such as 5% or 0.05, got {text!r}") from None
    if not 0 <= value <= 1:
        raise ValueError(f"must be from 0% to 100%, got {text!r}")
    return value


_LOCAL = re.compile(r"local(:[1-9][0-9]{0,5})?")
_ADDRESS = re.compile(r"local(:[1-9][0-9]{0,5})?|([a-z][a-z0-9+]*://)?[^\s/:]+:[0-9]{1,5}")


def dask_address(text: str) -> str:
    """`local`, `local:N` (N >= 1 workers) or a scheduler's HOST:PORT (with an optional scheme)."""
    local = text == "local" or text.startswith("local:")
    if not _ADDRESS.fullmatch(text) or (local and not _LOCAL.fullmatch(text)):
        raise ValueError(f"expected local, local:N (N >= 1 workers) or a scheduler's HOST:PORT, got {text!r}")
    return text


@dataclass(frozen=True)
class Flag:
    field: str                                # the PackOptions field it sets
    parse: Callable[[str], object] | None     # None: a switch
    help: str
    im2rec: bool = False                      # im2rec.py has it (its switches also take True/False)
    name: str = ""                            # the flag, when it is not --FIELD-WITH-DASHES

    @property
    def option(self) -> str:
        return self.name or "--" + self.field.replace("_", "-")

    def text(self, value) -> str:
        """`value` as it is written on the command line."""
        return self.parse.text(value) if isinstance(self.parse, OneOf) else str(value)


PACK_FLAGS: tuple[Flag, ...] = (
    Flag("pass_through", None, "store the file bytes unchanged (each checked to be a whole JPEG or PNG; "
         "other formats by their signature)", im2rec=True),
    Flag("pass_through_unchecked", None, "--pass-through that stores any bytes unchecked, as im2rec.py's does"),
    Flag("skip_bad_lines", None, "skip .lst lines that are not items (counted as bad-list-line, "
         "duplicate-id, outside-root) instead of stopping, as im2rec.py passes over them"),
    Flag("allow_outside_root", None, "read list paths that leave ROOT (absolute, ..), as im2rec.py does"),
    Flag("allow_duplicate_ids", None, "pack lines that repeat an id, as im2rec.py does"),
    Flag("resize", Whole(0, MAX_SIDE), "resize the shorter edge to this many pixels (0: keep the size)", im2rec=True),
    Flag("center_crop", None, "cut the centre square before resizing", im2rec=True),
    Flag("quality", Whole(0, 100), "JPEG quality (1-100) or PNG compression (0-9)", im2rec=True),
    Flag("num_thread", Whole(1, 1024), "worker threads", im2rec=True),
    Flag("color", OneOf({"1": 1, "0": 0, "-1": -1}),
         "1: colour, 0: grayscale, -1: keep the channels (no EXIF rotation)", im2rec=True),
    Flag("encoding", OneOf({".jpg": ".jpg", ".png": ".png"}), "output encoding", im2rec=True),
    Flag("pack_label", None, "store every label of multi-label lines", im2rec=True),
    Flag("no_upscale", None, "keep images whose shorter edge is below --resize at their size (im2rec upscales)"),
    Flag("filter", OneOf({k: k for k in ("auto", "triangle", "bicubic", "lanczos")}),
         "resampling filter for --resize, antialiased when shrinking (auto: Lanczos-3 when shrinking, "
         "Catmull-Rom bicubic when enlarging)"),
    Flag("subsampling", OneOf({"420": 420, "422": 422, "444": 444}), "JPEG chroma subsampling (im2rec: 420)"),
    Flag("fast_dct", OneOf({"accurate": False, "fast": True}), "JPEG DCT (fast gains little on AVX2)",
         name="--dct"),
    Flag("strict", None, "exit non-zero if any image was skipped"),
    Flag("max_skipped", share, "exit non-zero (1) if more than this share of the images was skipped, "
         "e.g. 5% or 0.05 (the outputs are still written)"),
    Flag("resume", None, "continue an interrupted pack where its .rec/.idx stop"),
    Flag("max_pixels", Whole(1, INT64_MAX), "skip images with more pixels than this (Pillow's limit)"),
    Flag("max_bytes", Whole(1, INT64_MAX), "skip files larger than this many bytes"),
    Flag("max_scans", Whole(1, 100_000), "skip progressive JPEGs with more scans than this"),
    Flag("batch_size", Whole(1, 1 << 16),
         "most images handed to a worker at once (fewer for short lists, so all threads work)"),
    Flag("io_depth", Whole(0, 4096), "reads in flight ahead of the decoders (0: automatic, grows while they wait)"),
    Flag("progress", OneOf({k: k for k in ("auto", "on", "off")}), "progress bar (auto: only on a terminal)"),
    Flag("dask", dask_address, "run on a Dask cluster: a scheduler HOST:PORT, or local[:WORKERS] for a local one"),
    Flag("shard_size", Whole(0, INT64_MAX), "with --dask: images per task (0: one task per .lst)"),
)
