"""What a pack is asked to do: im2rec's pack flags plus fastrec's own, and their limits."""
from __future__ import annotations

from dataclasses import dataclass

from fastrec._native.core import Worker
from fastrec.errors import FastrecError, UsageError

DEFAULT_MAX_PIXELS = 178956970   # Pillow's decompression-bomb limit
DEFAULT_MAX_BYTES = 256 << 20
DEFAULT_MAX_SCANS = 100          # libjpeg-turbo's TurboJPEG uses 500; real files have < 20
DEFAULT_MAX_SKIPPED = 0.01       # more skipped images than this share ends the pack non-zero

# The fields that change the bytes of the outputs: the manifest records them, and --resume and
# the Dask shards refuse to continue work made with other values. The rest only change speed
# or how the run is watched.
BYTE_SETTINGS = ("resize", "center_crop", "quality", "color", "encoding", "pack_label", "pass_through",
                 "no_upscale", "filter", "subsampling", "fast_dct", "max_pixels", "max_bytes", "max_scans")


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
    max_skipped: float = DEFAULT_MAX_SKIPPED   # share of the items (0..1) that may be skipped
    resume: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_scans: int = DEFAULT_MAX_SCANS
    batch_size: int = 64
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
        if self.shard_size < 0:
            raise UsageError(f"--shard-size must be 0 (one shard per list) or a positive count, "
                             f"got {self.shard_size}")
        if not 0 <= self.max_skipped <= 1:
            raise UsageError(f"--max-skipped must be a share from 0% to 100%, got {self.max_skipped!r}")

    def settings(self) -> dict:
        """The byte-changing settings (BYTE_SETTINGS) by name, as the manifest records them."""
        return {name: getattr(self, name) for name in BYTE_SETTINGS}

    def worker(self) -> Worker:
        return Worker(resize=self.resize, center_crop=self.center_crop, color=self.color,
                      no_upscale=self.no_upscale, pass_through=self.pass_through, filter=self.filter,
                      quality=self.quality if self.encoding == ".jpg" else 95,
                      subsampling=self.subsampling, fast_dct=self.fast_dct,
                      max_pixels=self.max_pixels, max_bytes=self.max_bytes, max_scans=self.max_scans,
                      raw=self.encoding == ".png" and not self.pass_through,
                      keep_alpha=self.encoding == ".png" and self.color == -1)
