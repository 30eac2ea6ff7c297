"""`fastrec inspect`: what is in a .rec — headers, label counts, image sizes, and a contact sheet."""
from __future__ import annotations

import collections
import io
import random
import statistics
from dataclasses import dataclass, field

from fastrec.formats.recordio import RecordReader, unpack


@dataclass
class RecordInfo:
    number: int
    offset: int
    id: int
    flag: int
    label: object
    bytes: int
    size: tuple[int, int] | None   # image (width, height), None if the header cannot be read
    format: str


@dataclass
class Stats:
    count: int = 0
    bytes: int = 0
    labels: collections.Counter = field(default_factory=collections.Counter)
    sizes: collections.Counter = field(default_factory=collections.Counter)
    formats: collections.Counter = field(default_factory=collections.Counter)
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)


def _image_size(image: bytes) -> tuple[tuple[int, int] | None, str]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image)) as im:
            return im.size, im.format or "?"
    except Exception:  # an undecodable image is reported as such, not raised
        return None, "unreadable"


def scan(rec: str):
    """Yield a RecordInfo for every record of a .rec, in file order."""
    with RecordReader(rec) as reader:
        n = 0
        while True:
            offset = reader.tell()
            payload = reader.read()
            if payload is None:
                return
            header, image = unpack(payload)
            label = [float(x) for x in header.label] if header.flag > 0 else header.label
            size, fmt = _image_size(image)
            yield RecordInfo(n, offset, header.id, header.flag, label, len(payload), size, fmt)
            n += 1


def collect(rec: str, head: int = 10) -> tuple[list[RecordInfo], Stats]:
    first, stats = [], Stats()
    for info in scan(rec):
        if len(first) < head:
            first.append(info)
        stats.count += 1
        stats.bytes += info.bytes
        stats.formats[info.format] += 1
        key = tuple(info.label) if isinstance(info.label, list) else info.label
        stats.labels[key] += 1
        if info.size:
            stats.sizes[info.size] += 1
            stats.widths.append(info.size[0])
            stats.heights.append(info.size[1])
    return first, stats


def report_lines(rec: str, first: list[RecordInfo], stats: Stats) -> list[str]:
    out = [f"{rec}: {stats.count} records, {stats.bytes / 1e6:.2f} MB of payload"
           + (f" ({stats.bytes / stats.count / 1024:.1f} KiB mean)" if stats.count else "")]
    if first:
        out.append(f"{'#':>6} {'offset':>12} {'id':>10} {'flag':>4} {'label':>14} {'bytes':>9}  image")
        for r in first:
            label = ",".join(f"{x:g}" for x in r.label) if isinstance(r.label, list) else f"{r.label:g}"
            size = f"{r.size[0]}x{r.size[1]}" if r.size else "-"
            out.append(f"{r.number:>6} {r.offset:>12} {r.id:>10} {r.flag:>4} {label:>14} {r.bytes:>9}  "
                       f"{r.format} {size}")
    if stats.count:
        out.append(f"labels: {len(stats.labels)} distinct; records per label: min "
                   f"{min(stats.labels.values())}, max {max(stats.labels.values())}")
        out.append("  " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.labels.items(), key=str)[:20])
                   + (" ..." if len(stats.labels) > 20 else ""))
        if stats.widths:
            out.append(f"image sizes: width {min(stats.widths)}..{max(stats.widths)} (median "
                       f"{statistics.median(stats.widths):g}), height {min(stats.heights)}..{max(stats.heights)} "
                       f"(median {statistics.median(stats.heights):g}); most common "
                       + ", ".join(f"{w}x{h} ({c})" for (w, h), c in stats.sizes.most_common(3)))
        out.append("formats: " + ", ".join(f"{k} ({v})" for k, v in stats.formats.most_common()))
    return out


def contact_sheet(rec: str, path: str, count: int = 48, tile: int = 128, seed: int = 0) -> int:
    """Write a PNG grid of `count` records sampled evenly (seeded); returns how many were drawn."""
    from PIL import Image, ImageDraw

    offsets = [info.offset for info in scan(rec)]
    chosen = sorted(random.Random(seed).sample(offsets, min(count, len(offsets))))
    cols = max(1, min(8, len(chosen)))
    rows = max(1, -(-len(chosen) // cols))
    sheet = Image.new("RGB", (cols * tile, rows * (tile + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    with RecordReader(rec) as reader:
        for i, offset in enumerate(chosen):
            reader.seek(offset)
            header, image = unpack(reader.read())
            x, y = (i % cols) * tile, (i // cols) * (tile + 14)
            try:
                with Image.open(io.BytesIO(image)) as im:
                    im = im.convert("RGB")
                    im.thumbnail((tile, tile))
                    sheet.paste(im, (x + (tile - im.width) // 2, y + (tile - im.height) // 2))
            except Exception:  # draw the slot empty: the caption still says which record
                pass
            label = header.label if header.flag == 0 else ",".join(f"{v:g}" for v in header.label)
            draw.text((x + 2, y + tile), f"id {header.id} label {label}"[:22], fill="black")
    sheet.save(path, "PNG")
    return len(chosen)
