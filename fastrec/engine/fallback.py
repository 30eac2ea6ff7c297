"""Images the native JPEG path does not take: decoded with Pillow, then packed by the same core.

Covers PNG/BMP/GIF/WebP/TIFF/PPM files (also under a .jpg name), following OpenCV's imread rules
that im2rec relies on: colour drops alpha, 16-bit samples are scaled to 8 bits, EXIF
orientation is applied unless --color -1. Also turns raw pixel records into PNG for
--encoding .png.

Only those formats are ever opened: Pillow also knows formats it decodes through an external
program (EPS/PS through Ghostscript), which untrusted files must never start; they, and PDF,
are skipped as `unsupported-format`. Pillow's global settings (Image.MAX_IMAGE_PIXELS) are the
host's: --max-pixels is checked here, after the header is read and before the pixels are.
"""
from __future__ import annotations

import array
import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fastrec._native.core import OK, STATUS_NAMES, fingerprint
from fastrec._native.recordio import frame
from fastrec.engine.options import PackOptions
from fastrec.engine.outcome import Outcome
from fastrec.fsutil import NOT_REGULAR, NotRegularFile, open_regular

FORMATS = ("PNG", "BMP", "GIF", "WEBP", "TIFF", "PPM")   # Pillow's names of what the fallback is for
UNSUPPORTED = "unsupported-format"
_OTHER_MAGIC = {b"%PDF": "PDF"}   # formats Pillow cannot read at all, named in the skip reason


def _to_array(im: Image.Image, color: int) -> np.ndarray:
    """Pixels in the channel layout im2rec's cv2.imread(path, color) would give (RGB order)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.uint32) >> 8           # 16-bit gray: keep the high byte
        im = Image.fromarray(arr.astype(np.uint8), "L")
    gray = im.mode in ("1", "L", "LA", "I", "F")
    alpha = "A" in im.getbands() or "transparency" in im.info
    # --color -1 keeps alpha, as IMREAD_UNCHANGED does (the JPEG encoder then ignores it).
    want = "L" if color == 0 or (color == -1 and gray) else "RGBA" if color == -1 and alpha else "RGB"
    return np.ascontiguousarray(np.asarray(im.convert(want)))


def _refused_format(fp) -> str | None:
    """The name of a known format outside FORMATS that `fp` starts like (magic bytes only:
    Pillow's registered checks look at the first 16 bytes and start nothing)."""
    fp.seek(0)
    prefix = fp.read(16)
    for magic, name in _OTHER_MAGIC.items():
        if prefix.startswith(magic):
            return name
    Image.init()
    for name, (_, accept) in list(Image.OPEN.items()):
        try:
            if name not in FORMATS and accept is not None and accept(prefix):
                return name
        except Exception:   # a plugin's check failing on odd bytes says nothing about the format
            continue
    return None


def decode(fp, color: int, max_pixels: int) -> np.ndarray | tuple[str, str]:
    """Upright pixels of a non-JPEG image (a binary file object), or (reason, message) when it
    cannot be used. Any failure to decode is this image's skip, never an exception."""
    try:
        with Image.open(fp, formats=FORMATS) as im:
            if im.width * im.height > max_pixels:
                return "too-many-pixels", f"{im.width}x{im.height} is above the limit of {max_pixels} pixels"
            if color != -1:
                im = ImageOps.exif_transpose(im)
            return _to_array(im, color)
    except UnidentifiedImageError:
        name = _refused_format(fp)
        if name:
            return UNSUPPORTED, f"{name} is not read by fastrec (JPEG, {', '.join(FORMATS)} are)"
        return "not-an-image", "not a format the image libraries know"
    except Image.DecompressionBombError as err:   # Pillow's own limit, as the host set it
        return "too-many-pixels", str(err)
    except MemoryError:
        return "out-of-memory", "not enough memory to decode the image"
    except Exception as err:
        reason = "truncated" if "truncated" in str(err) else "corrupt"
        return reason, f"{type(err).__name__}: {err}"


def pack(worker, path: bytes, id_: int, label, opts: PackOptions, data: bytes | None = None) -> Outcome:
    """Decode with Pillow (from `data` if given, else the file) and pack with the native worker."""
    if data is None:
        try:
            f = open_regular(path)
        except NotRegularFile as err:
            return Outcome(None, NOT_REGULAR, str(err))
        except OSError as err:
            return Outcome(None, "read-error", str(err))
        with f:
            try:
                data = f.read(opts.max_bytes + 1)   # the bytes fingerprinted are the bytes decoded
            except OSError as err:
                return Outcome(None, "read-error", str(err))
        if len(data) > opts.max_bytes:
            return Outcome(None, "file-too-large", f"above the limit of {opts.max_bytes} bytes")
    px, in_bytes = decode(io.BytesIO(data), opts.color, opts.max_pixels), len(data)
    if isinstance(px, tuple):
        return Outcome(None, px[0], px[1])
    digests = array.array("Q", bytes(16))
    record, (status, _, message, _, _, w, h, _, _) = worker.pack_pixels(px, id_, label, digests=digests)
    if status != OK:
        return Outcome(None, STATUS_NAMES[status], message)
    return Outcome(record, in_bytes=in_bytes, size=(w, h), source_digest=fingerprint(data),
                   record_digest=digests[1])


def raw_to_png(outcome: Outcome, opts: PackOptions) -> Outcome:
    """Turn a raw-pixel record (header, labels, then rows) into a framed record holding a PNG."""
    if outcome.record is None:
        return outcome
    w, h = outcome.size
    data = outcome.record
    head_len = 24 + 4 * int.from_bytes(data[:4], "little")   # IRHeader + flag float32 labels
    channels = (len(data) - head_len) // (w * h)
    arr = np.frombuffer(data, np.uint8, offset=head_len).reshape((h, w, channels) if channels > 1 else (h, w))
    buf = io.BytesIO()
    Image.fromarray(arr, {1: "L", 3: "RGB", 4: "RGBA"}[channels]).save(
        buf, "PNG", compress_level=max(0, min(opts.quality, 9)))  # OpenCV clamps to 0..9, so do we
    outcome.record = frame(bytes(data[:head_len]) + buf.getvalue())
    outcome.record_digest = fingerprint(outcome.record)   # the record the .rec holds is the PNG one
    return outcome
