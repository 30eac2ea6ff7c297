"""`fastrec inspect`: what is in a pack — headers, records per class (per file and across all the
files of a prefix, with class names where the pack's manifest or synset file gives them), image
sizes, and a contact sheet sampled from all the files."""
from __future__ import annotations

import collections
import io
import os
import random
import statistics
from dataclasses import dataclass, field
from typing import NamedTuple

from fastrec.formats.lists import synset_of
from fastrec.formats.manifest import label_key, manifest_path, read_manifest
from fastrec.formats.recordio import RecordReader, read_index, unpack


def label_text(label) -> str:
    """A label as a person reads it: `3`, not `3.0`; several labels joined by commas."""
    if isinstance(label, (list, tuple)):
        return ",".join(label_text(x) for x in label)
    return label_key(label) if float(label).is_integer() else f"{float(label):g}"


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

    def add(self, other: "Stats") -> None:
        self.count += other.count
        self.bytes += other.bytes
        for mine, theirs in ((self.labels, other.labels), (self.sizes, other.sizes), (self.formats, other.formats)):
            mine.update(theirs)
        self.widths += other.widths
        self.heights += other.heights

    def per_class(self) -> dict[str, int]:
        """Records per label, labels as text, in label order."""
        return {label_text(k): v for k, v in sorted(self.labels.items(), key=lambda kv: _order(kv[0]))}


def _order(label):
    return tuple(label) if isinstance(label, tuple) else (label,)


def class_names(recs: list[str]) -> dict[str, str]:
    """Label (as text) -> class folder over all `recs`: from their manifests (each knows the labels
    of its own list), completed from the synset file of the list prefix they are named after
    (`data.synset.txt` for `data_3.rec`); {} when neither exists."""
    names: dict[str, str] = {}
    for rec in recs:
        try:
            manifest = read_manifest(manifest_path(rec))
        except ValueError:
            manifest = None
        for label, folder in (manifest.classes if manifest is not None else {}).items():
            names.setdefault(label, folder)
        for label, folder in _synset_names(rec).items():
            names.setdefault(label, folder)
    return dict(sorted(names.items(), key=lambda kv: float(kv[0])))


def _synset_names(rec: str) -> dict[str, str]:
    return {str(i): c for i, c in enumerate(synset_of(rec) or [])}


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
            label = label_text(r.label)
            size = f"{r.size[0]}x{r.size[1]}" if r.size else "-"
            out.append(f"{r.number:>6} {r.offset:>12} {r.id:>10} {r.flag:>4} {label:>14} {r.bytes:>9}  "
                       f"{r.format} {size}")
    if stats.count:
        out.append(f"labels: {len(stats.labels)} distinct; records per label: min "
                   f"{min(stats.labels.values())}, max {max(stats.labels.values())}")
        out.append("  " + ", ".join(f"{k}: {v}" for k, v in list(stats.per_class().items())[:20])
                   + (" ..." if len(stats.labels) > 20 else ""))
        if stats.widths:
            out.append(f"image sizes: width {min(stats.widths)}..{max(stats.widths)} (median "
                       f"{statistics.median(stats.widths):g}), height {min(stats.heights)}..{max(stats.heights)} "
                       f"(median {statistics.median(stats.heights):g}); most common "
                       + ", ".join(f"{w}x{h} ({c})" for (w, h), c in stats.sizes.most_common(3)))
        out.append("formats: " + ", ".join(f"{k} ({v})" for k, v in stats.formats.most_common()))
    return out


def total_lines(recs: list[str], stats: Stats, names: dict[str, str]) -> list[str]:
    """Records per class across all the files of a prefix, with class names where known."""
    per_class = stats.per_class()
    out = [f"all {len(recs)} files: {stats.count} records in {len(per_class)} classes"]
    for label, count in per_class.items():
        name = names.get(label)
        out.append(f"  {label:>6} {count:>9}" + (f"  {name}" if name else ""))
    return out


def _offsets(rec: str) -> list[int]:
    """Where each record starts: from the .idx when there is one, else by walking the framing."""
    idx = os.path.splitext(rec)[0] + ".idx"
    if os.path.exists(idx):
        return sorted(offset for _, offset in read_index(idx))
    out = []
    with RecordReader(rec) as reader:
        while True:
            offset = reader.tell()
            if reader.read() is None:
                return out
            out.append(offset)


class Drawn(NamedTuple):
    rec: str
    offset: int
    caption: tuple[str, ...]   # the lines written under the image


def caption(record_id: int, label, names: dict[str, str] | None = None) -> tuple[str, ...]:
    """`id N label L`, and the class name of L on a second line where `names` gives one."""
    text = label_text(label)
    name = (names or {}).get(text)
    return (f"id {record_id} label {text}",) + ((name,) if name else ())


def contact_sheet(recs: str | list[str], path: str, count: int = 48, tile: int = 128,
                  seed: int = 0, names: dict[str, str] | None = None) -> list[Drawn]:
    """Write a PNG grid of `count` records sampled evenly (seeded) from all of `recs` together,
    each captioned with its id, label and (from `names`, label text -> class, as `class_names`
    gives it) class name; returns the records drawn, with their captions."""
    from PIL import Image, ImageDraw

    recs = [recs] if isinstance(recs, str) else list(recs)
    places = [(rec, offset) for rec in recs for offset in _offsets(rec)]
    chosen = sorted(random.Random(seed).sample(range(len(places)), min(count, len(places))))
    cols = max(1, min(8, len(chosen)))
    rows = max(1, -(-len(chosen) // cols))
    band = 26 if names else 14   # caption lines under each tile
    sheet = Image.new("RGB", (cols * tile, rows * (tile + band)), "white")
    draw = ImageDraw.Draw(sheet)
    readers: dict[str, RecordReader] = {}
    drawn = []
    try:
        for i, place in enumerate(chosen):
            rec, offset = places[place]
            reader = readers.get(rec) or readers.setdefault(rec, RecordReader(rec))
            reader.seek(offset)
            header, image = unpack(reader.read())
            x, y = (i % cols) * tile, (i // cols) * (tile + band)
            try:
                with Image.open(io.BytesIO(image)) as im:
                    im = im.convert("RGB")
                    im.thumbnail((tile, tile))
                    sheet.paste(im, (x + (tile - im.width) // 2, y + (tile - im.height) // 2))
            except Exception:  # draw the slot empty: the caption still says which record
                pass
            lines = caption(header.id, header.label if header.flag == 0 else list(header.label), names)
            for n, line in enumerate(lines):
                draw.text((x + 2, y + tile + 12 * n), line[:22], fill="black")
            drawn.append(Drawn(rec, offset, lines))
    finally:
        for reader in readers.values():
            reader.close()
    sheet.save(path, "PNG")
    return drawn
