"""Images the native JPEG path does not take: decoded with Pillow, then packed by the same core.

Covers PNG/BMP/GIF/WebP/TIFF files (also under a .jpg name), following OpenCV's imread rules
that im2rec relies on: colour drops alpha, 16-bit samples are scaled to 8 bits, EXIF
orientation is applied unless --color -1. Also turns raw pixel records into PNG for
--encoding .png.
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fastrec._native.core import OK, STATUS_NAMES
from fastrec._native.recordio import frame
from fastrec.engine.options import PackOptions
from fastrec.engine.outcome import Outcome

Image.MAX_IMAGE_PIXELS = None  # we check --max-pixels ourselves, before decoding


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


def decode(source, color: int, max_pixels: int) -> np.ndarray | tuple[str, str]:
    """Upright pixels of a non-JPEG image (a path, or a file-like object), or (reason, message)
    when it cannot be used."""
    if isinstance(source, bytes):
        source = source.decode("utf-8", "surrogateescape")
    try:
        with Image.open(source) as im:
            if im.width * im.height > max_pixels:
                return "too-many-pixels", f"{im.width}x{im.height} is above the limit of {max_pixels} pixels"
            if color != -1:
                im = ImageOps.exif_transpose(im)
            return _to_array(im, color)
    except UnidentifiedImageError:
        return "not-an-image", "not a format the image libraries know"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        reason = "truncated" if "truncated" in str(err) else "corrupt"
        return reason, f"{type(err).__name__}: {err}"


def pack(worker, path: bytes, id_: int, label, opts: PackOptions, data: bytes | None = None) -> Outcome:
    """Decode with Pillow (from `data` if given, else the file) and pack with the native worker."""
    px = decode(io.BytesIO(data) if data is not None else path, opts.color, opts.max_pixels)
    if isinstance(px, tuple):
        return Outcome(None, px[0], px[1])
    record, (status, _, message, _, _, w, h, _, _) = worker.pack_pixels(px, id_, label)
    if status != OK:
        return Outcome(None, STATUS_NAMES[status], message)
    in_bytes = len(data) if data is not None else os.path.getsize(path)
    return Outcome(record, in_bytes=in_bytes, size=(w, h))


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
    outcome.record = frame(data[:head_len] + buf.getvalue())
    return outcome
