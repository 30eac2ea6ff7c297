"""What became of each list item, and the counts of a pack."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass
class Outcome:
    """What became of one list item: a record, or a skip with its reason."""

    record: bytes | memoryview | None   # a framed record (a slice of the batch's output, not a copy)
    reason: str = "ok"
    message: str = ""
    in_bytes: int = 0
    size: tuple[int, int] = (0, 0)   # (width, height) of the packed image
    source_digest: int = 0           # fingerprint of the source's bytes as read (formats/fingerprints.py)
    record_digest: int = 0           # fingerprint of `record`, the framed record as the .rec holds it


@dataclass
class Summary:
    """Counts for one or more packed lists."""

    lists: list[str] = field(default_factory=list)
    images: int = 0
    skipped: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    resumed_from: int = 0

    def add(self, other: "Summary") -> None:
        self.lists += other.lists
        self.images += other.images
        self.skipped += other.skipped
        self.reasons.update(other.reasons)
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.seconds += other.seconds
        self.resumed_from += other.resumed_from

    def lines(self) -> list[str]:
        rate = self.images / self.seconds if self.seconds else 0.0
        out = [f"packed {self.images} images from {len(self.lists)} list(s) in {self.seconds:.2f} s "
               f"({rate:.1f} images/s); read {self.bytes_in / 1e6:.1f} MB, wrote {self.bytes_out / 1e6:.1f} MB"]
        if self.resumed_from:
            out.append(f"resumed after {self.resumed_from} already packed items")
        if self.skipped:
            detail = ", ".join(f"{r}: {n}" for r, n in sorted(self.reasons.items()))
            out.append(f"skipped {self.skipped} ({detail}); see the .skipped.tsv files")
        return out
