"""What a pack is asked to do: im2rec's pack flags plus fastrec's own, and their limits."""
from __future__ import annotations

from dataclasses import dataclass

from fastrec._native.core import Worker
from fastrec.errors import FastrecError

DEFAULT_MAX_PIXELS = 178956970   # Pillow's decompression-bomb limit
DEFAULT_MAX_BYTES = 256 << 20
DEFAULT_MAX_SCANS = 100          # libjpeg-turbo's TurboJPEG uses 500; real files have < 20


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
    no_upscale: bool = False
    filter: str = "auto"
    subsampling: int = 420
    fast_dct: bool = False
    strict: bool = False
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

    @classmethod
    def from_args(cls, a) -> "PackOptions":
        names = cls.__dataclass_fields__
        given = {k: v for k, v in vars(a).items() if k in names and v is not None}
        return cls(**given)

    def validate(self) -> None:
        if self.encoding == ".jpg" and not 1 <= self.quality <= 100:
            raise PackError(f"--quality must be in 1..100 for JPEG, got {self.quality}")
        if self.encoding not in (".jpg", ".png"):
            raise PackError(f"--encoding must be .jpg or .png, got {self.encoding!r}")
        if self.resize < 0:
            raise PackError(f"--resize must be 0 (keep) or a positive size, got {self.resize}")
        if self.num_thread < 1 or self.batch_size < 1:
            raise PackError("--num-thread and --batch-size must be at least 1")
        if self.io_depth < 0 or self.io_budget < 0:
            raise PackError(f"--io-depth must be 0 (automatic) or a positive count, got {self.io_depth}")

    def worker(self) -> Worker:
        return Worker(resize=self.resize, center_crop=self.center_crop, color=self.color,
                      no_upscale=self.no_upscale, pass_through=self.pass_through, filter=self.filter,
                      quality=self.quality if self.encoding == ".jpg" else 95,
                      subsampling=self.subsampling, fast_dct=self.fast_dct,
                      max_pixels=self.max_pixels, max_bytes=self.max_bytes, max_scans=self.max_scans,
                      raw=self.encoding == ".png" and not self.pass_through,
                      keep_alpha=self.encoding == ".png" and self.color == -1)
